"""``grainlab train``: fine-tune a pretrained backbone on dataset folders and/or synthetic data.

The training flags are generated from :class:`~napari_grainlab.core.training.config.TrainConfig`'s
field metadata (:func:`~napari_grainlab.cli._common.add_options`): a new training option needs no
edit here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

from ..core._schema import cli_flag, option_fields
from ..core.training.config import GROUPS, STRATEGY_HELP, TASKS, TrainConfig
from ._common import (
    EXIT_OK,
    Interrupted,
    StopOnInterrupt,
    UserError,
    add_options,
    follow_training,
    nonnegative_int,
    options_from_args,
    show_progress,
)
from ._data import load_training_data


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise UserError(f"{out} is not empty; pass --overwrite to train into it anyway or --resume to continue")
    from ..core.models.networks import check_backbone
    from ..core.training import cross_validate, fit

    task, samples, classes = load_training_data(args.data, args.task)
    val = None
    if args.val:
        _, val, vclasses = load_training_data(args.val, task)
        if task == "classify" and vclasses != classes:
            raise UserError(f"validation classes {vclasses} differ from training classes {classes}")
    if not samples and task == "classify":
        raise UserError("classification needs training data folders")
    if not samples and args.synthetic == "none":
        raise UserError("no training data: give dataset folders or use --synthetic")
    cfg = options_from_args(TrainConfig, args, task=task, out=str(out), classes=tuple(classes))
    check_backbone(cfg.backbone)
    if args.kfold == 1:
        raise UserError("--kfold needs K >= 2")
    if args.kfold and val:
        raise UserError("--kfold makes its own validation folds; drop --val")
    if args.kfold and cfg.resume:
        raise UserError("--resume does not work with --kfold")
    with StopOnInterrupt() as stop:
        if args.kfold > 1:
            events = cross_validate(cfg, samples, args.kfold, stop=stop)
        else:
            events = fit(cfg, samples, val, stop=stop)
        finished, summary = follow_training(events, progress=show_progress(args))
    if summary is not None:
        print(f"\n{summary.k}-fold cross-validation (mean ± sd over folds):")
        for k in summary.mean:
            print(f"  {k:<20} {summary.mean[k]:.4f} ± {summary.sd[k]:.4f}")
        print(f"per-fold models and cross_validation.json in {out}")
    if stop.requested:
        where = finished.best_path if finished and finished.best_path else out
        raise Interrupted(f"training stopped; best model so far in {where}")
    if finished is not None and finished.best_path:
        print(f"model: {finished.best_path}  (use: grainlab predict {finished.best_path} IMAGE... --out DIR)")
    return EXIT_OK


class _ConfigFile(argparse.Action):
    """``--config FILE``: training options from a JSON object of :class:`TrainConfig` fields (a recipe,
    or the ``config.json`` a run writes); they replace the defaults, and flags after ``--config``
    replace them in turn."""

    def __call__(self, parser, namespace, value, option_string=None):
        path = Path(value)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            parser.error(f"--config {path}: {exc.strerror or exc}")
        except json.JSONDecodeError as exc:
            parser.error(f"--config {path}: not JSON ({exc.msg}, line {exc.lineno})")
        if not isinstance(data, dict):
            parser.error(f"--config {path}: expected a JSON object of training options")
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        flagged = {f.name for f in option_fields(TrainConfig) if f.metadata.get("cli") is not False}
        skip = {"out", "task", "classes", "resume"}  # where the run goes, what the data says, how it started
        for key, item in data.items():
            if key.startswith("_") or key in skip:
                continue
            if key not in fields:
                parser.error(f"--config {path}: unknown training option {key!r}")
            if key not in flagged:
                continue
            setattr(namespace, key, tuple(item) if isinstance(item, list) else item)
        namespace.config = str(path)


def _strategies() -> str:
    """The strategy descriptions of the configuration, with option names written as flags."""
    flags = {f.name: flag for f in option_fields(TrainConfig) if (flag := cli_flag(f))}

    def as_flags(text: str) -> str:
        return re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: flags.get(m.group(0), m.group(0)), text)

    return "\n".join(f"  {k:<9} {as_flags(v)}" for k, v in STRATEGY_HELP.items())


def register(sub) -> None:
    t = sub.add_parser(
        "train", help="fine-tune a pretrained backbone on dataset folders (and/or synthetic data)",
        description="Train a grain segmentation (or micrograph classification) model. DATA are dataset folders: "
                    "images/NAME.tif + labels/NAME.tif (grain instances, 0 = not annotated), or one sub-folder per "
                    "class. With no DATA the model pre-trains on domain-randomised synthetic micrographs.\n\n"
                    "strategies:\n" + _strategies(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  grainlab train data/sem --out models/sem --epochs 30\n"
               "  grainlab train --synthetic randomized --out models/synth --epochs 20   # synthetic only\n"
               "  grainlab train data/real --weights models/synth --strategy finetune --out models/real\n"
               "  grainlab train data/real --kfold 5 --out cv/real",
    )
    t.add_argument("data", nargs="*", metavar="DATA", help="dataset folders")
    t.add_argument("--out", required=True, metavar="MODEL", help="output folder (best/ and last/ checkpoints)")
    t.add_argument("--task", choices=TASKS, help="default: detected from the data")
    t.add_argument("--overwrite", action="store_true", help="train into a non-empty MODEL folder")
    t.add_argument("--config", action=_ConfigFile, metavar="FILE",
                   help="training options from a JSON file (a recipe, or a run's config.json); flags after "
                        "--config override it")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    groups = add_options(t, TrainConfig, group_order=GROUPS)
    validation = groups["Validation"]
    validation.add_argument("--val", nargs="+", metavar="DATA", help="validation folders (default: a group split "
                                                                     "of DATA)")
    validation.add_argument("--kfold", type=nonnegative_int, default=0, metavar="K",
                            help="group K-fold cross-validation; reports mean ± sd")
    t.set_defaults(func=run)
