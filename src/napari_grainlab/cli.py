"""The ``grainlab`` command line.

Subcommands: ``synth`` (write a synthetic dataset folder), ``params`` (show / list generator
parameters), ``train`` / ``predict`` / ``eval`` / ``measure`` (the learning engine, in
:mod:`napari_grainlab._cli_engine`) and ``demo`` (the main job end to end on built-in data).

Conventions: every user error is reported as one line ``grainlab: error: ...`` on stderr with
exit code 2 and no traceback; Ctrl-C exits with 130. This module imports only the standard
library at start-up so ``grainlab --help`` is instant: NumPy, the generator and anything heavier
are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["UserError", "build_parser", "main"]

PROG = "grainlab"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Kept in sync with params.py by tests/test_cli.py (importing params here would slow down --help).
PRESETS = ("sem", "sem-elongated", "sem-twins", "optical", "porous")
STYLES = ("sem", "optical")
METHODS = ("voronoi", "laguerre")
BIT_DEPTHS = (8, 16)


class UserError(Exception):
    """A problem with the user's input or environment: one line on stderr, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a command after it stopped cleanly (the message says what was kept)."""


class _StopOnInterrupt:
    """Context manager: the first Ctrl-C asks the running job to stop after the current item
    (so only complete items stay on disk), a second one aborts at once.

    The instance is the ``stop`` callable that the core generators poll.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: stopping after the current image (press Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (and lets ``main`` decide the exit)."""

    def error(self, message: str):
        raise UserError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _user_errors(out: Path | None = None) -> Iterator[None]:
    """Turn the library's user-facing exceptions into :class:`UserError`."""
    from .core.synthetic import ParameterError
    from .core.synthetic.dataset import OutputExistsError

    try:
        yield
    except (ParameterError, OutputExistsError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(_os_error_message(exc, out)) from None


def _os_error_message(exc: OSError, path: Path | None = None) -> str:
    where = exc.filename or path or ""
    if isinstance(exc, FileExistsError):  # a file stands where a folder is needed
        reason = "exists and is not a folder"
    else:
        reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def _parse_size(text: str) -> tuple[int, int]:
    """``512`` -> (512, 512); ``384x512`` (height x width) -> (384, 512)."""
    t = text.strip().lower().replace("×", "x")
    parts = t.split("x") if "x" in t else [t, t]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected PX or HxW, got {text!r}")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PX or HxW with whole numbers, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected section.field=value, got {text!r}")
    return key.strip(), value.strip()


def _show_progress(args: argparse.Namespace) -> bool:
    return args.progress if args.progress is not None else sys.stderr.isatty()


def _resolve_workers(n: int) -> int:
    return max(1, os.cpu_count() or 1) if n == 0 else n


# ------------------------------------------------------------------ parameter building


def _field_type(cls: type, name: str) -> tuple[type, bool]:
    """The type of a params dataclass field and whether it may be None (``int | None``)."""
    import typing

    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    return (rest[0] if rest else hint), optional


def _coerce(text: str, key: str, cls: type, name: str) -> Any:
    """Parse the ``--set`` value ``text`` for field ``name`` of the params class ``cls``."""
    typ, optional = _field_type(cls, name)
    low = text.lower()
    if dataclasses.is_dataclass(typ):
        example = dataclasses.fields(typ)[0].name
        raise UserError(f"{key} is a section; set one of its fields, e.g. --set {key}.{example}=...")
    if low in ("null", "none") and optional:
        return None
    if typ is bool:
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise UserError(f"{key}: expected true or false, got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:
            v = float(text)  # 1e3 is a fine way to write 1000
        except ValueError:
            v = math.nan
        if v.is_integer():
            return int(v)
        raise UserError(f"{key}: expected an integer, got {text!r}")
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{key}: expected a number, got {text!r}") from None
    return text  # strings: validation checks the choices and names the valid ones


def _apply_set(data: dict, key: str, text: str) -> None:
    """Apply ``section.field=value`` (or ``field=value`` for a top-level field) to ``data``."""
    import difflib

    from .core.synthetic import SynthParams, param_fields

    cls: type = SynthParams
    target = data
    done: list[str] = []
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in param_fields(cls)]
        if part not in names:
            known = [".".join([*done, n]) for n in names]
            close = difflib.get_close_matches(".".join([*done, part]), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UserError(f"--set: unknown parameter {key!r}{hint} (see 'grainlab params --list')")
        done.append(part)
        if i == len(parts) - 1:
            target[part] = _coerce(text, key, cls, part)
            return
        typ, _ = _field_type(cls, part)
        if not dataclasses.is_dataclass(typ):
            where = ".".join(done)
            raise UserError(f"--set: {where} is not a section, write --set {where}=VALUE")
        cls = typ
        target = target[part]


def _load_params_file(path: str):
    from .core.synthetic import ParameterError, SynthParams

    p = Path(path)
    if p.is_dir():
        p = p / "dataset.json"
    if not p.exists():
        raise UserError(f"--params: no such file {str(p)!r}")
    try:
        return SynthParams.load(p)
    except ParameterError as exc:
        raise UserError(f"--params {p}: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        msg = str(exc).splitlines()[0]
        raise UserError(f"--params {p}: not a valid JSON parameter file ({msg})") from None


def build_params(args: argparse.Namespace):
    """The :class:`SynthParams` described by the options (preset or file, then options, then --set).

    Precedence, lowest to highest: the ``--preset`` (default ``sem``) or the ``--params`` file;
    the named options (``--size``, ``--grains``, ...); ``--set`` assignments in order. Giving a
    mean grain diameter without a grain count switches the count off so the diameter is used.
    """
    from .core.synthetic import SynthParams

    with _user_errors():
        if args.params and args.preset:
            raise UserError("give either --preset or --params, not both")
        base = _load_params_file(args.params) if args.params else SynthParams.preset(args.preset or "sem")
        data = base.to_dict()
        tess = data["tessellation"]
        if args.size is not None:
            data["height"], data["width"] = args.size
        if args.style is not None:
            data["style"] = args.style
        if args.bit_depth is not None:
            data["bit_depth"] = args.bit_depth
        if args.pixel_size is not None:
            data["pixel_size"] = args.pixel_size
        if args.method is not None:
            tess["method"] = args.method
        if args.grains is not None:
            tess["grains"] = args.grains
        if args.mean_diameter is not None:
            tess["mean_diameter"] = args.mean_diameter
        for key, value in args.set or ():
            _apply_set(data, key, value)
        set_keys = {k for k, _ in (args.set or ())}
        diameter_given = args.mean_diameter is not None or "tessellation.mean_diameter" in set_keys
        grains_given = args.grains is not None or "tessellation.grains" in set_keys
        if diameter_given and not grains_given and tess["mean_diameter"] is not None:
            tess["grains"] = None
        params = SynthParams.from_dict(data)
        params.validate()
        return params


def _add_param_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generator parameters (precedence: --preset/--params < options < --set)")
    g.add_argument("--preset", metavar="NAME", help=f"starting point: {', '.join(PRESETS)} (default: sem)")
    g.add_argument("--params", metavar="JSON",
                   help="start from a parameter file (or a dataset folder / dataset.json made by synth)")
    g.add_argument("--size", type=_parse_size, metavar="PX|HxW", help="image size: 512 or 384x512 (height x width)")
    g.add_argument("--grains", type=_positive_int, metavar="G", help="number of grains per image")
    g.add_argument("--mean-diameter", type=float, metavar="PX",
                   help="mean grain diameter in px (used instead of a grain count)")
    g.add_argument("--style", metavar="STYLE", help=f"rendering style: {' | '.join(STYLES)}")
    g.add_argument("--method", metavar="METHOD", help=f"tessellation: {' | '.join(METHODS)}")
    g.add_argument("--bit-depth", type=int, metavar="BITS", help=" | ".join(str(b) for b in BIT_DEPTHS))
    g.add_argument("--pixel-size", type=float, metavar="UM", help="pixel size in µm written to the TIFF metadata")
    g.add_argument("--set", type=_assignment, action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="set any parameter, e.g. --set sem.dose=30 --set tessellation.twin_fraction=0.3 "
                        "(repeatable; list them with 'grainlab params --list')")


def _add_run_options(p: argparse.ArgumentParser, workers: int) -> None:
    p.add_argument("--workers", type=_nonnegative_int, default=workers, metavar="W",
                   help="worker processes, 0 = one per CPU core; the output does not depend on it "
                        f"(default: {workers})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar on stderr (default: only when stderr is a terminal)")


# ------------------------------------------------------------------------- commands


def _write_dataset(out: Path, params, *, count: int, seed: int, overwrite: bool, workers: int,
                   progress: bool, desc: str) -> int:
    """Run the dataset writer with a progress bar; returns the number of images written.

    Ctrl-C stops after the image in progress and raises :class:`Interrupted`.
    """
    from tqdm import tqdm

    from .core.synthetic import write_dataset

    done = 0
    with _StopOnInterrupt() as stop:
        events = write_dataset(out, params, count=count, seed=seed, overwrite=overwrite, workers=workers,
                               stop=stop)
        with tqdm(total=count, desc=desc, unit="img", file=sys.stderr, disable=not progress,
                  dynamic_ncols=True, leave=True) as bar:
            try:
                for ev in events:
                    bar.update(ev.done - bar.n)
                    done = ev.done
            finally:
                events.close()
        if stop.requested:
            raise Interrupted(f"{done} of {count} images complete in {out}")
    return done


def _cmd_synth(args: argparse.Namespace) -> int:
    params = build_params(args)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} is not empty; pass --overwrite to replace the dataset in it")
    t0 = time.perf_counter()
    with _user_errors(out):
        n = _write_dataset(out, params, count=args.count, seed=args.seed, overwrite=args.overwrite,
                           workers=_resolve_workers(args.workers), progress=_show_progress(args),
                           desc="synth")
    dt = time.perf_counter() - t0
    style = {"sem": "SEM"}.get(params.style, params.style)
    print(f"wrote {n} {style} image{'' if n == 1 else 's'} of {params.height}x{params.width} px "
          f"({params.bit_depth}-bit, seed {args.seed}) to {out} in {dt:.1f} s")
    return EXIT_OK


def _param_reference() -> list[tuple[str, str, str, str]]:
    """(name, default, range or choices, help) for every generator parameter."""
    from .core.synthetic import SynthParams, param_fields

    rows = []

    def walk(cls: type, prefix: str) -> None:
        for f in param_fields(cls):
            typ, _ = _field_type(cls, f.name)
            if dataclasses.is_dataclass(typ):
                walk(typ, f"{prefix}{f.name}.")
                continue
            m = f.metadata
            if m.get("choices") is not None:
                rng = " | ".join(str(c) for c in m["choices"])
            elif typ is bool:
                rng = "true | false"
            elif m.get("min") is not None or m.get("max") is not None:
                lo = "" if m.get("min") is None else f"{m['min']:g}"
                hi = "" if m.get("max") is None else f"{m['max']:g}"
                rng = f"{lo} .. {hi}"
            else:
                rng = ""
            rows.append((prefix + f.name, json.dumps(f.default), rng, m.get("help", "")))

    walk(SynthParams, "")
    return rows


def _cmd_params(args: argparse.Namespace) -> int:
    if args.list:
        rows = _param_reference()
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        print(f"{'parameter':<{w0}}  {'default':<{w1}}  {'range':<{w2}}  description")
        for name, default, rng, help_ in rows:
            print(f"{name:<{w0}}  {default:<{w1}}  {rng:<{w2}}  {help_}")
        return EXIT_OK
    params = build_params(args)
    text = params.to_json()
    if args.out:
        from .core._io import atomic_write_text

        out = Path(args.out)
        try:
            atomic_write_text(out, text + "\n")
        except OSError as exc:
            raise UserError(_os_error_message(exc, out)) from None
        print(f"wrote parameters to {out}")
    else:
        print(text)
    return EXIT_OK


# ----------------------------------------------------------------------------- demo

DEMO_MARKER = "demo.json"


@dataclasses.dataclass
class _DemoContext:
    out: Path
    quick: bool
    workers: int
    progress: bool
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _DemoStep:
    key: str
    title: str
    run: Callable[[_DemoContext], dict[str, Any]]


def _demo_synth(ctx: _DemoContext, key: str, preset: str, count: int, size: int, grains: int, seed: int) -> dict:
    from .core.synthetic import SynthParams

    params = SynthParams.preset(preset)
    params.height = params.width = size
    params.tessellation.grains = grains
    params.validate()
    folder = ctx.out / key
    with _user_errors(folder):
        n = _write_dataset(folder, params, count=count, seed=seed, overwrite=True, workers=ctx.workers,
                           progress=ctx.progress, desc=key)
    return {"folder": key, "images": n, "size": size, "grains": grains, "preset": preset, "seed": seed}


def _demo_synth_sem(ctx: _DemoContext) -> dict:
    if ctx.quick:
        return _demo_synth(ctx, "synthetic-sem", "sem", count=2, size=128, grains=40, seed=0)
    return _demo_synth(ctx, "synthetic-sem", "sem", count=8, size=512, grains=200, seed=0)


def _demo_synth_optical(ctx: _DemoContext) -> dict:
    if ctx.quick:
        return _demo_synth(ctx, "synthetic-optical", "optical", count=1, size=128, grains=40, seed=1000)
    return _demo_synth(ctx, "synthetic-optical", "optical", count=2, size=512, grains=150, seed=1000)


def _read_pairs(folder: Path, limit: int) -> list[tuple]:
    """Up to ``limit`` (image, labels) pairs of a dataset folder, in name order."""
    import imageio.v3 as iio
    import tifffile

    pairs = []
    for img_path in sorted((folder / "images").iterdir())[:limit]:
        lab_path = folder / "labels" / f"{img_path.stem}.tif"
        if img_path.suffix.lower() in (".tif", ".tiff"):
            image = tifffile.imread(img_path)
        else:
            image = iio.imread(img_path)
        pairs.append((image, tifffile.imread(lab_path)))
    return pairs


def _demo_preview(ctx: _DemoContext) -> dict:
    from .core._io import atomic_write_png
    from .core.visualize import preview_grid

    samples = []
    for key, n in (("synth-sem", 3), ("synth-optical", 1)):
        samples += _read_pairs(ctx.out / ctx.results[key]["folder"], n)
    grid = preview_grid(samples, columns=2)
    path = ctx.out / "preview.png"
    with _user_errors(path):
        atomic_write_png(path, grid)
    return {"file": path.name, "shape": list(grid.shape)}


def _demo_train(ctx: _DemoContext) -> dict:
    """Fine-tune efficientnet_lite0 (offline ImageNet weights) on the SEM set mixed with randomised synthetic."""
    from tqdm import tqdm

    from ._cli_engine import engine_errors
    from .core.data.datasets import load_segmentation_folder
    from .core.training import Epoch, Finished, Started, Step, TrainConfig, fit

    folder = ctx.out / "model"
    epochs, steps = (1, 2) if ctx.quick else (6, 50)
    cfg = TrainConfig(backbone="efficientnet_lite0", weights="imagenet", strategy="finetune", epochs=epochs,
                      steps_per_epoch=steps, batch_size=8, patch_size=128 if not ctx.quick else 64,
                      lr=2e-3, synthetic="randomized", synthetic_ratio=0.5, val_tile=256 if not ctx.quick else 64,
                      patience=epochs, out=str(folder), seed=0)
    finished = None
    with engine_errors():
        samples = load_segmentation_folder(ctx.out / ctx.results["synth-sem"]["folder"])
        with _StopOnInterrupt() as stop:
            events = fit(cfg, samples, stop=stop)
            bar = None
            try:
                for ev in events:
                    if isinstance(ev, Started):
                        print(f"      {ev}", flush=True)
                        bar = tqdm(total=ev.epochs * ev.steps_per_epoch, desc="train", unit="step", file=sys.stderr,
                                   disable=not ctx.progress, dynamic_ncols=True)
                    elif isinstance(ev, Step) and bar is not None:
                        bar.update(ev.step - bar.n)
                        bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
                    elif isinstance(ev, Epoch):
                        (bar.write if bar is not None and ctx.progress else print)(f"      {ev}")
                    elif isinstance(ev, Finished):
                        finished = ev
            finally:
                if bar is not None:
                    bar.close()
                events.close()
            if stop.requested:
                raise Interrupted("training stopped")
    if finished is None or finished.best_path is None:
        raise UserError("demo training produced no model")
    f1 = finished.best_metrics.get("boundary_f1")
    return {"folder": str(Path(finished.best_path).relative_to(ctx.out)), "epochs": finished.epochs_run,
            "best_epoch": finished.best_epoch, "val_boundary_f1": f1, "train_seconds": round(finished.seconds, 1)}


def _demo_segment(ctx: _DemoContext) -> dict:
    """Segment a fresh synthetic micrograph and the built-in sample; score against the ground truth."""
    import numpy as np

    from ._cli_engine import engine_errors
    from ._sample_data import SEM_SEED, sem_sample_params
    from .core._io import atomic_write_png, atomic_write_tiff
    from .core.inference import classical_grains, segment_image
    from .core.measure import grain_table, summarize, write_table_csv
    from .core.metrics import segmentation_metrics
    from .core.models import ModelSpec, build_model, load_checkpoint, resolve_weights
    from .core.synthetic import SynthParams, generate
    from .core.visualize import overlay_rgb

    out = ctx.out / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    size = 128 if ctx.quick else 512
    fresh = SynthParams.preset("sem", height=size, width=size, pixel_size=0.05)
    fresh.tessellation.grains = 40 if ctx.quick else 180
    sample_params = sem_sample_params()
    if ctx.quick:
        sample_params.height = sample_params.width = 128
    cases = [("fresh_synthetic", generate(fresh, seed=424242)), ("sample_sem", generate(sample_params, SEM_SEED))]
    with engine_errors():
        model, meta = load_checkpoint(ctx.out / ctx.results["train"]["folder"])
        state, _ = resolve_weights("efficientnet_lite0", "imagenet")
        untrained = build_model(ModelSpec.from_dict(meta["spec"]), state).eval()
    result = {}
    for name, s in cases:
        img = s.image_float()
        lo, hi = np.percentile(img, (0.1, 99.9))
        img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
        px = s.params.pixel_size
        res = segment_image(model, img, tile=512)
        with _user_errors(out):
            atomic_write_tiff(out / f"{name}_image.tif", s.image, pixel_size_um=px)
            atomic_write_tiff(out / f"{name}_labels.tif", res.labels, pixel_size_um=px)
            atomic_write_tiff(out / f"{name}_boundary.tif", res.boundary.astype(np.float32), pixel_size_um=px)
            write_table_csv(out / f"{name}_grains.csv", grain_table(res.labels, px), px)
            atomic_write_png(out / f"{name}_overlay.png", overlay_rgb(img, res.labels))
        scores = {"trained": segmentation_metrics(res.labels, s.labels),
                  "untrained": segmentation_metrics(segment_image(untrained, img, tile=512).labels, s.labels),
                  "classical": segmentation_metrics(classical_grains(img)[0], s.labels)}
        result[name] = {"grains_true": int(s.labels.max()), **summarize(res.labels, px),
                        **{f"boundary_f1_{k}": round(float(v["boundary_f1"]), 4) for k, v in scores.items()},
                        **{f"grain_f1_{k}": round(float(v["grain_f1"]), 4) for k, v in scores.items()}}
    return result


DEMO_STEPS: tuple[_DemoStep, ...] = (
    _DemoStep("synth-sem", "synthetic SEM dataset", _demo_synth_sem),
    _DemoStep("synth-optical", "synthetic optical dataset", _demo_synth_optical),
    _DemoStep("preview", "preview picture (image | grains)", _demo_preview),
    _DemoStep("train", "fine-tune efficientnet_lite0 (ImageNet weights) on synthetic SEM grains", _demo_train),
    _DemoStep("segment", "segment a fresh synthetic micrograph and the sample image", _demo_segment),
)


def _write_marker(out: Path, record: dict) -> None:
    from .core._io import atomic_write_text

    atomic_write_text(out / DEMO_MARKER, json.dumps(record, indent=2) + "\n")


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file() and not args.overwrite:
        raise UserError(f"{out} is not empty and was not made by 'grainlab demo'; "
                        "choose another --out or pass --overwrite")
    ctx = _DemoContext(out=out, quick=args.quick, workers=_resolve_workers(args.workers),
                       progress=_show_progress(args))
    record: dict[str, Any] = {"grainlab": __version__, "quick": args.quick, "complete": False, "steps": {}}
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_marker(out, record)
    except OSError as exc:
        raise UserError(_os_error_message(exc, out)) from None
    t_all = time.perf_counter()
    for i, step in enumerate(DEMO_STEPS, 1):
        print(f"[{i}/{len(DEMO_STEPS)}] {step.title} ...", flush=True)
        t0 = time.perf_counter()
        result = step.run(ctx)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        ctx.results[step.key] = result
        record["steps"][step.key] = result
        _write_marker(out, record)
    record["complete"] = True
    record["seconds"] = round(time.perf_counter() - t_all, 2)
    _write_marker(out, record)

    sem, opt = ctx.results["synth-sem"], ctx.results["synth-optical"]
    rows = [
        (sem["folder"] + "/", f"{sem['images']} synthetic SEM images, {sem['size']}x{sem['size']} px, with grain "
                              "labels (images/, labels/, boundaries/, tables/, dataset.json)"),
        (opt["folder"] + "/", f"{opt['images']} synthetic optical image{'' if opt['images'] == 1 else 's'}, "
                              f"{opt['size']}x{opt['size']} px, same layout"),
        (ctx.results["preview"]["file"], "image | grain overlay of a few of them"),
        ("model/", "the fine-tuned model: best/ and last/ (model.safetensors + model.json)"),
        ("predictions/", "NAME_labels.tif, NAME_boundary.tif, NAME_grains.csv, NAME_overlay.png"),
        (DEMO_MARKER, "what ran, with timings and scores"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nDemo finished in {record['seconds']:.1f} s. Everything is in {out.resolve()}:")
    for name, what in rows:
        print(f"  {name:<{width}}  {what}")
    print("\nBoundary F1 against the ground truth (tolerance 2 px):")
    for case, r in ctx.results["segment"].items():
        if not isinstance(r, dict):
            continue
        print(f"  {case:<16} fine-tuned {r['boundary_f1_trained']:.3f} | ImageNet, not fine-tuned "
              f"{r['boundary_f1_untrained']:.3f} | classical ridge + watershed {r['boundary_f1_classical']:.3f}"
              f"  ({int(r['grains'])} grains found, {r['grains_true']} true)")
    return EXIT_OK


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="GrainLab: synthetic grain micrographs and grain segmentation for materials science.",
        epilog="Run 'grainlab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "synth", help="write a synthetic dataset folder (images/, labels/, dataset.json)",
        description="Generate synthetic grain micrographs with their grain labels into a dataset folder:\n"
                    "OUT/images/NAME.tif, OUT/labels/NAME.tif (grain instances), OUT/boundaries/NAME.tif,\n"
                    "OUT/tables/NAME.csv (per-grain table) and OUT/dataset.json (parameters and seeds).\n"
                    "The same parameters and seed always give the same files, whatever --workers is.",
        epilog="examples:\n"
               "  grainlab synth data/sem --count 100 --size 512 --grains 300 --seed 1\n"
               "  grainlab synth data/twins --preset sem-twins --set tessellation.twin_fraction=0.8\n"
               "  grainlab synth data/more --params data/sem --seed 2   # same parameters, new images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("out", metavar="OUT", help="dataset folder to create (must be empty or absent unless --overwrite)")
    s.add_argument("--count", type=_positive_int, default=16, metavar="N", help="number of images (default: 16)")
    s.add_argument("--seed", type=_nonnegative_int, default=0, metavar="S", help="random seed (default: 0)")
    s.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty OUT")
    _add_run_options(s, workers=1)
    _add_param_options(s)
    s.set_defaults(func=_cmd_synth)

    p = sub.add_parser(
        "params", help="print generator parameters as JSON, or list them all",
        description="Print the generator parameters that the options describe, as JSON to edit and pass "
                    "back with 'grainlab synth --params FILE'; or list every parameter with its range.",
    )
    p.add_argument("--list", action="store_true", help="list every parameter with default, range and description")
    p.add_argument("--out", metavar="FILE", help="write the JSON to FILE instead of printing it")
    _add_param_options(p)
    p.set_defaults(func=_cmd_params)

    d = sub.add_parser(
        "demo", help="run the main job end to end on built-in data",
        description="Generate a small synthetic SEM dataset and an optical one, draw preview.png, fine-tune "
                    "efficientnet_lite0 from ImageNet weights on the SEM set (mixed with domain-randomised synthetic "
                    "patches), then segment a fresh synthetic micrograph and the built-in sample image, writing "
                    "labels, boundary maps, grain tables and overlays; all into one folder.",
    )
    d.add_argument("--out", default="grainlab-demo", metavar="DIR", help="output folder (default: ./grainlab-demo)")
    d.add_argument("--quick", action="store_true", help="tiny images, for a smoke test in seconds")
    d.add_argument("--overwrite", action="store_true", help="allow a non-empty DIR not made by 'grainlab demo'")
    _add_run_options(d, workers=0)
    d.set_defaults(func=_cmd_demo)

    from ._cli_engine import add_commands

    add_commands(sub)
    from ._cli_export import add_export_commands

    add_export_commands(sub)
    from ._cli_experiment import add_experiment_command

    add_experiment_command(sub)
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grainlab`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.func(args)
    except UserError as exc:
        _error(" ".join(str(exc).split("\n")))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"{PROG}: interrupted{detail}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
