"""``grainlab retrain``: one retraining round on a dataset folder's annotations (the Annotate dock's *Retrain*)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.retrain_options import RetrainOptions
from ._common import (
    EXIT_OK,
    Interrupted,
    StopOnInterrupt,
    UserError,
    add_options,
    follow_training,
    options_from_args,
    print_json,
    show_progress,
)


def _rounds_folder(args: argparse.Namespace) -> Path:
    return Path(args.rounds) if args.rounds else Path(args.data) / "models"


def _list(folder: Path, as_json: bool) -> int:
    from dataclasses import asdict

    from ..core.retrain import RoundStore

    rounds = RoundStore(folder).rounds()
    if as_json:
        print_json([asdict(r) for r in rounds])
        return EXIT_OK
    if not rounds:
        print(f"no rounds in {folder}")
        return EXIT_OK
    print(f"{'round':>5}  {'val F1':>6}  {'images':>6}  {'seconds':>7}  started from  →  model")
    for r in rounds:
        score = "n/a" if r.score is None else f"{r.score:.3f}"
        print(f"{r.number:>5}  {score:>6}  {len(r.images):>6}  {r.seconds:>7.0f}  {r.base}  →  {r.path}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from ..core.retrain import RoundStore, retrain, retrain_samples

    folder = _rounds_folder(args)
    if args.list:
        return _list(folder, args.json)
    from ..core.data.datasets import load_segmentation_folder

    data = Path(args.data)
    if not data.is_dir():
        raise UserError(f"{data}: no such dataset folder")
    samples = retrain_samples([(s.name, s.image, s.labels) for s in load_segmentation_folder(data)])
    model = args.model
    if model is None:
        rounds = RoundStore(folder).rounds()
        model = rounds[-1].path if rounds else "generalist"
        print(f"starting from {'round ' + str(rounds[-1].number) if rounds else 'the built-in model'}: {model}")
    options = options_from_args(RetrainOptions, args)
    outcome: dict = {}

    def events():
        outcome["round"] = yield from retrain(samples, model, folder, options, stop=stop)

    with StopOnInterrupt() as stop:
        follow_training(events(), progress=show_progress(args))
    r = outcome.get("round")
    if stop.requested:
        raise Interrupted("retraining stopped" + (f"; round {r.number} kept in {r.path}" if r else "; no round kept"))
    if r is None:
        raise UserError("the round wrote no model")
    print(f"{r.text()}; model: {r.path}")
    return EXIT_OK


def register(sub) -> None:
    r = sub.add_parser(
        "retrain", help="fine-tune a model on a dataset folder's annotations as the next kept round",
        description="One retraining round, as the Annotate dock's Retrain: fine-tune MODEL (default: the newest "
                    "round, else the built-in generalist) on the annotated images of DATA (labels 0 = not "
                    "annotated, ignored) with few-shot defaults, and keep the result as ROUNDS/round-NN with its "
                    "validation score in ROUNDS/rounds.json.",
        epilog="examples:\n"
               "  grainlab retrain data/steel                 # round 1 from generalist, round 2 from round 1, ...\n"
               "  grainlab retrain data/steel --list          # the rounds and their validation F1\n"
               "  grainlab predict data/steel/models/round-02 new.tif --out seg",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("data", metavar="DATA", help="dataset folder (images/ + labels/)")
    r.add_argument("--model", default=None, metavar="MODEL",
                   help="model to start from: a model folder or a built-in name (default: the newest round, else "
                        "generalist)")
    r.add_argument("--rounds", default=None, metavar="ROUNDS", help="folder of the rounds (default: DATA/models)")
    r.add_argument("--list", action="store_true", help="list the rounds and exit")
    r.add_argument("--json", action="store_true", help="with --list: print JSON")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_options(r, RetrainOptions, grouped=False)
    r.set_defaults(func=run)
