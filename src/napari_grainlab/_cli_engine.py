"""``grainlab train / predict / eval / measure``: the learning engine on the command line.

Split from :mod:`napari_grainlab.cli` to keep that module small; like it, this imports only the
standard library at start-up and loads torch and friends inside the commands.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from .cli import EXIT_OK, EXIT_USAGE, Interrupted, UserError, _nonnegative_int, _positive_int, _StopOnInterrupt

STRATEGY_HELP = {
    "scratch": "train every layer from random weights",
    "frozen": "keep the pretrained backbone fixed (weights and BatchNorm statistics); train only the decoder/head",
    "finetune": "train the last --finetune-stages backbone stages at a lower learning rate, plus the head",
    "gradual": "start frozen, unfreeze one more backbone stage (deepest first) every --unfreeze-every epochs",
}


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Map the engine's user-facing exceptions to :class:`UserError` (one line, exit code 2)."""
    from .core.batch import BatchError
    from .core.data.io import DataError
    from .core.models import CheckpointError, ModelError, WeightsError
    from .core.training import ConfigError

    try:
        yield
    except (DataError, CheckpointError, ModelError, WeightsError, ConfigError, BatchError) as exc:
        raise UserError(str(exc)) from None
    except MemoryError as exc:
        raise UserError(f"out of memory: {exc}") from None
    except FloatingPointError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        where = exc.filename or ""
        raise UserError(f"{where}: {exc.strerror or exc}" if where else str(exc)) from None


def _finite_float(text: str) -> float:
    """argparse type: a finite number (no nan / inf)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _float_in(lo: float, hi: float):
    def parse(text: str) -> float:
        v = _finite_float(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}], got {v:g}")
        return v

    return parse


def _positive_float(text: str) -> float:
    v = _finite_float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _nonnegative_float(text: str) -> float:
    v = _finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


#: largest pixel size accepted on the command line (µm): 1 m per pixel
MAX_PIXEL_SIZE_UM = 1e6


def _pixel_size(text: str) -> float:
    v = _positive_float(text)
    if v > MAX_PIXEL_SIZE_UM:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_PIXEL_SIZE_UM:g} µm, got {text}")
    return v


#: smallest tile side (px): the networks downsample by 32
MIN_TILE = 32


def _tile(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if v < MIN_TILE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_TILE} px, got {v}")
    return v


def _json_safe(obj):
    """``obj`` with NumPy values as Python ones and NaN / inf as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars
        return _json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _print_json(obj) -> None:
    print(json.dumps(_json_safe(obj), indent=2, allow_nan=False))


def _progress(args) -> bool:
    return args.progress if args.progress is not None else sys.stderr.isatty()


# ------------------------------------------------------------------------------------------- data
def load_training_data(paths: list[str], task: str | None):
    """Samples (and class names) from dataset folders; the task is detected when not given."""
    import warnings

    from .core.data.datasets import DataWarning, load_dataset_folders

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        task, samples, classes = load_dataset_folders(paths, task)
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"grainlab: warning: {' '.join(str(w.message).split())}", file=sys.stderr, flush=True)
    return task, samples, classes


# ------------------------------------------------------------------------------------------ train
def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (args.overwrite or args.resume):
        raise UserError(f"{out} is not empty; pass --overwrite to train into it anyway or --resume to continue")
    with engine_errors():
        from .core.training import (Checkpoint, ConfigError, CrossValidated, Epoch, Finished, FoldStarted, Started,
                                    Step, TrainConfig, cross_validate, fit)

        task, samples, classes = load_training_data(args.data, args.task)
        val = None
        if args.val:
            vtask, val, vclasses = load_training_data(args.val, task)
            if task == "classify" and vclasses != classes:
                raise UserError(f"validation classes {vclasses} differ from training classes {classes}")
        if not samples and task == "classify":
            raise UserError("classification needs training data folders")
        if not samples and args.synthetic == "none":
            raise UserError("no training data: give dataset folders or use --synthetic")
        opts = dict(task=task, backbone=args.backbone, weights=args.weights, strategy=args.strategy,
                    finetune_stages=args.finetune_stages, unfreeze_every=args.unfreeze_every,
                    backbone_lr_factor=args.backbone_lr_factor, epochs=args.epochs,
                    steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, patch_size=args.patch_size,
                    lr=args.lr, weight_decay=args.weight_decay, patience=args.patience,
                    val_fraction=args.val_fraction, augment=tuple(a for a in args.augment.split(",") if a)
                    if args.augment != "none" else (), oriented_growth=args.oriented_growth,
                    synthetic=args.synthetic, synthetic_ratio=args.synthetic_ratio, dropout=args.dropout,
                    label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix, device=args.device,
                    amp=args.amp, workers=args.workers, seed=args.seed, out=str(out), resume=args.resume,
                    classes=tuple(classes))
        try:
            cfg = TrainConfig(**opts)
        except ConfigError as exc:
            raise UserError(str(exc).replace("_", "-", 1)) from None
        from .core.models.networks import check_backbone

        check_backbone(cfg.backbone)
        if args.kfold == 1:
            raise UserError("--kfold needs K >= 2")
        if args.kfold and val:
            raise UserError("--kfold makes its own validation folds; drop --val")
        if args.kfold and cfg.resume:
            raise UserError("--resume does not work with --kfold")
        bar = None
        finished = None
        summary = None
        show = _progress(args)
        with _StopOnInterrupt() as stop:
            if args.kfold and args.kfold > 1:
                events = cross_validate(cfg, samples, args.kfold, stop=stop)
            else:
                events = fit(cfg, samples, val, stop=stop)
            try:
                for ev in events:
                    prefix = f"[fold {ev.fold + 1}] " if getattr(ev, "fold", None) is not None else ""
                    if isinstance(ev, Started):
                        print(prefix + str(ev), flush=True)
                        if bar is not None:
                            bar.close()
                        bar = tqdm(total=ev.epochs * ev.steps_per_epoch, desc=prefix + "train", unit="step",
                                   file=sys.stderr, disable=not show, dynamic_ncols=True)
                    elif isinstance(ev, Step):
                        if bar is not None:
                            bar.update(ev.step - bar.n)
                            bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
                    elif isinstance(ev, (Epoch, FoldStarted)) or type(ev).__name__ in (
                            "Unfrozen", "EarlyStopped", "TrainWarning"):
                        (bar.write if bar is not None and show else print)(prefix + str(ev))
                    elif isinstance(ev, Checkpoint):
                        pass
                    elif isinstance(ev, Finished):
                        finished = ev
                        if bar is not None:
                            bar.close()
                            bar = None
                        print(prefix + str(ev), flush=True)
                    elif isinstance(ev, CrossValidated):
                        summary = ev
            finally:
                if bar is not None:
                    bar.close()
                events.close()
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


# ---------------------------------------------------------------------------------------- predict
def _output_stems(paths: list[Path]) -> list[str]:
    """One output name per input (the file stem, ``_2``, ``_3``... for repeated stems)."""
    from .core.batch import output_stems

    return output_stems(paths)


def _write_rows(path: Path, rows: list[dict]) -> None:
    from .core.batch import write_rows_csv

    write_rows_csv(path, rows)


def _cmd_predict(args: argparse.Namespace) -> int:
    """Batch prediction (:func:`napari_grainlab.core.batch.run_batch`): Dask workers, resumable."""
    from tqdm import tqdm

    out = Path(args.out)
    show = _progress(args)
    bar = None
    end = None
    with engine_errors():
        from .core.batch import (BatchFinished, BatchImageDone, BatchImageFailed, BatchOptions, BatchStarted,
                                 run_batch)
        from .core.models.checkpoint import read_metadata

        if args.histogram_match and not read_metadata(args.model).get("histogram_reference"):
            raise UserError(f"{args.model}: the model has no intensity reference for --histogram-match")
        options = BatchOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                               min_size=args.min_size, tta=args.tta, adabn=args.adabn,
                               histogram_match=args.histogram_match, pixel_size=args.pixel_size,
                               overlay=args.overlay)

        def say(line: str) -> None:
            if bar is not None and show:
                bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)

        with _StopOnInterrupt() as stop:
            events = run_batch(args.model, args.images, out, scheduler=args.scheduler, workers=args.workers,
                               device=args.device, overwrite=args.overwrite, options=options, stop=stop)
            try:
                for ev in events:
                    if isinstance(ev, BatchStarted):
                        bar = tqdm(total=ev.total, initial=ev.skipped, desc="predict", unit="img", file=sys.stderr,
                                   disable=not show, dynamic_ncols=True)
                        if show:
                            bar.write(f"grainlab: {ev}", file=sys.stderr)
                    elif isinstance(ev, BatchImageDone):
                        for w in ev.warnings:
                            say(f"grainlab: warning: {ev.path}: {' '.join(w.split())}")
                        bar.update(1)
                    elif isinstance(ev, BatchImageFailed):
                        say(f"grainlab: error: {ev.path}: {ev.error}")
                        bar.update(1)
                    elif isinstance(ev, BatchFinished):
                        end = ev
            finally:
                if bar is not None:
                    bar.close()
                events.close()
    assert end is not None
    extra = [f"{end.skipped} already done"] if end.skipped else []
    if end.failed:
        extra.append(f"{end.failed} failed")
    print(f"predicted {end.ok} of {end.total} image{'s' if end.total != 1 else ''} into {out}"
          + (f" ({', '.join(extra)})" if extra else ""))
    if end.cancelled:
        raise Interrupted(f"{end.ok} of {end.total} images done in {out}; run the same command again to continue")
    return EXIT_USAGE if end.failed else EXIT_OK


# ------------------------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    with engine_errors():
        from .core.models import load_checkpoint
        from .core.training import resolve_device

        device = resolve_device(args.device)
        model, meta = load_checkpoint(args.model, device=device)
        task, samples, classes = load_training_data([args.data], model.task)
        results = {"model": str(args.model), "data": str(args.data), "task": task, "images": len(samples)}
        if args.histogram_match and not meta.get("histogram_reference"):
            raise UserError(f"{args.model}: the model has no intensity reference for --histogram-match")
        from .core.inference import predict_array

        def predict(image):
            # the same call as 'grainlab predict': tile (default: the model's), TTA, AdaBN and histogram matching
            # apply to segmentation and classification models alike
            return predict_array(model, meta, image, tta=args.tta, adabn=args.adabn,
                                 histogram_match=args.histogram_match, tile=args.tile, device=device)

        if task == "segment":
            from .core.inference import classical_grains
            from .core.metrics import segmentation_metrics

            per, base = [], []
            for s in samples:
                res = predict(s.image)
                m = segmentation_metrics(res.labels, s.labels, tolerance=args.tolerance)
                per.append({"image": s.name, **m})
                if args.baseline:
                    labels, _ = classical_grains(s.image)
                    base.append(segmentation_metrics(labels, s.labels, tolerance=args.tolerance))
            results["metrics"] = _mean_rows(per)
            if args.baseline:
                results["baseline_classical"] = _mean_rows(base)
            if args.per_image:
                results["per_image"] = per
        else:
            from .core.metrics import classification_metrics

            names = meta.get("classes") or classes
            index = {n: i for i, n in enumerate(names)}
            y_true, y_pred = [], []
            for s in samples:
                true_name = classes[s.label]
                if true_name not in index:
                    raise UserError(f"class '{true_name}' in the data is unknown to the model ({names})")
                y_true.append(index[true_name])
                y_pred.append(int(np.argmax(predict(s.image).class_probabilities)))
            results["metrics"] = classification_metrics(np.array(y_true), np.array(y_pred), len(names), names)
    _print_json(results)
    return EXIT_OK


def _mean_rows(rows: list[dict]) -> dict:
    import numpy as np

    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))] if rows else []
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in rows], dtype=float)
        out[k] = float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() else float("nan")
    return out


# ---------------------------------------------------------------------------------------- measure
def _cmd_measure(args: argparse.Namespace) -> int:
    rows = []
    with engine_errors():
        from .core.data.io import read_labels, read_pixel_size
        from .core.measure import grain_table, summarize, write_table_csv

        paths = [Path(p) for p in args.labels]
        for path, stem in zip(paths, _output_stems(paths)):
            labels = read_labels(path)
            px = args.pixel_size or read_pixel_size(path)
            row = {"labels": path.name, **({"output": stem} if args.out else {}), **summarize(labels, px)}
            rows.append(row)
            if args.out:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                write_table_csv(out / f"{stem}_grains.csv", grain_table(labels, px), px)
        if args.out:
            _write_rows(Path(args.out) / "summary.csv", rows)
    _print_json(rows if len(rows) > 1 else rows[0])
    return EXIT_OK


# ----------------------------------------------------------------------------------------- parser
def add_commands(sub) -> None:
    t = sub.add_parser(
        "train", help="fine-tune a pretrained backbone on dataset folders (and/or synthetic data)",
        description="Train a grain segmentation (or micrograph classification) model. DATA are dataset folders: "
                    "images/NAME.tif + labels/NAME.tif (grain instances, 0 = not annotated), or one sub-folder per "
                    "class. With no DATA the model pre-trains on domain-randomised synthetic micrographs.\n\n"
                    "strategies:\n" + "\n".join(f"  {k:<9} {v}" for k, v in STRATEGY_HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  grainlab train data/sem --out models/sem --epochs 30\n"
               "  grainlab train --synthetic randomized --out models/synth --epochs 20   # synthetic only\n"
               "  grainlab train data/real --weights models/synth --strategy finetune --out models/real\n"
               "  grainlab train data/real --kfold 5 --out cv/real",
    )
    t.add_argument("data", nargs="*", metavar="DATA", help="dataset folders")
    t.add_argument("--out", required=True, metavar="MODEL", help="output folder (best/ and last/ checkpoints)")
    t.add_argument("--task", choices=("segment", "classify"), help="default: detected from the data")
    t.add_argument("--backbone", default="efficientnet_lite0", metavar="NAME",
                   help="any timm model name, e.g. resnet18, resnet50, convnext_tiny (default: efficientnet_lite0)")
    t.add_argument("--weights", default="imagenet", metavar="SRC",
                   help="imagenet | none | PATH (.safetensors, .pth state dict, or a grainlab model folder)")
    t.add_argument("--strategy", default="finetune", choices=tuple(STRATEGY_HELP), help="see above")
    t.add_argument("--finetune-stages", type=_positive_int, default=2, metavar="K")
    t.add_argument("--unfreeze-every", type=_positive_int, default=2, metavar="E")
    t.add_argument("--backbone-lr-factor", type=_positive_float, default=0.1, metavar="F",
                   help="backbone learning rate = LR x F (default 0.1)")
    t.add_argument("--epochs", type=_positive_int, default=30, metavar="N")
    t.add_argument("--steps-per-epoch", type=_positive_int, default=None, metavar="S",
                   help="default: from the amount of data")
    t.add_argument("--batch-size", type=_positive_int, default=8, metavar="B")
    t.add_argument("--lr", type=_positive_float, default=1e-3, metavar="LR")
    t.add_argument("--weight-decay", type=_nonnegative_float, default=1e-4, metavar="WD")
    t.add_argument("--patch-size", type=_positive_int, default=256, metavar="PX", help="multiple of 32")
    t.add_argument("--patience", type=_positive_int, default=8, metavar="P", help="early-stopping patience (epochs)")
    t.add_argument("--val", nargs="+", metavar="DATA", help="validation folders (default: a group split of DATA)")
    t.add_argument("--val-fraction", type=_float_in(0, 0.9), default=0.2, metavar="F")
    t.add_argument("--kfold", type=_nonnegative_int, default=0, metavar="K",
                   help="group K-fold cross-validation; reports mean ± sd")
    t.add_argument("--augment", default="geometric,intensity,noise,sem", metavar="LIST",
                   help="comma-separated presets: geometric, intensity, noise, sem (or none)")
    t.add_argument("--oriented-growth", action="store_true",
                   help="the microstructure has a growth direction: no rotations or flips that change it")
    t.add_argument("--synthetic", default="randomized", metavar="SRC",
                   help="synthetic source: randomized (domain randomisation), a preset (sem, optical, ...), or none")
    t.add_argument("--synthetic-ratio", type=_float_in(0, 1), default=0.0, metavar="R",
                   help="fraction of training patches that are synthetic (1 = synthetic only)")
    t.add_argument("--dropout", type=_float_in(0, 0.95), default=0.1, metavar="P")
    t.add_argument("--label-smoothing", type=_float_in(0, 0.5), default=0.1, metavar="E")
    t.add_argument("--mixup", type=_nonnegative_float, default=0.0, metavar="ALPHA", help="classification: mixup alpha")
    t.add_argument("--cutmix", type=_nonnegative_float, default=0.0, metavar="ALPHA", help="classification: cutmix alpha")
    t.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | mps (default auto)")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="mixed precision on CUDA")
    t.add_argument("--workers", type=_nonnegative_int, default=0, metavar="W", help="data loader processes")
    t.add_argument("--seed", type=_nonnegative_int, default=0, metavar="S")
    t.add_argument("--resume", action="store_true", help="continue the run in MODEL from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="train into a non-empty MODEL folder")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    t.set_defaults(func=_cmd_train)

    def add_predict_options(p):
        p.add_argument("--tile", type=_tile, default=None, metavar="PX",
                       help=f"tile side, at least {MIN_TILE} (default: 512 for segmentation, the training patch "
                            "size for classification)")
        p.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
        p.add_argument("--adabn", action="store_true",
                       help="domain adaptation: re-estimate BatchNorm statistics on each image")
        p.add_argument("--histogram-match", action="store_true",
                       help="domain adaptation: match intensities to the training data")
        p.add_argument("--device", default="auto", metavar="DEV")

    p = sub.add_parser(
        "predict", help="segment micrographs with a trained model (batch, on Dask workers)",
        description="Writes OUT/NAME_labels.tif (grain instances), NAME_boundary.tif (boundary probability), "
                    "NAME_grains.csv (per-grain table) and summary.csv (per image: grain count, mean diameter, "
                    "ASTM G, status). Classification models write NAME_classes.tif and NAME_confidence.tif. "
                    "The images are shared among Dask workers: a local cluster (one worker per core, or per GPU) "
                    "or an existing one (--scheduler). Images whose outputs are complete are skipped, so "
                    "running the same command again continues an interrupted batch. One image, or --workers 1, "
                    "runs in this process without a cluster.",
        epilog="examples:\n"
               "  grainlab predict models/sem data/ --out results\n"
               "  grainlab predict models/sem 'data/**/*.tif' --out results --workers 4\n"
               "  grainlab predict models/sem data/ --out results --scheduler tcp://10.0.0.5:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model folder (or its model.json / model.safetensors)")
    p.add_argument("images", nargs="+", metavar="INPUT",
                   help="image files, folders or glob patterns (quote them; ** matches sub-folders)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="local Dask workers (default: one per CPU core, or one per GPU)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786 (left running)")
    p.add_argument("--overwrite", action="store_true", help="predict again images whose outputs exist")
    add_predict_options(p)
    p.add_argument("--overlap", type=_nonnegative_int, default=64, metavar="PX")
    p.add_argument("--batch-size", type=_positive_int, default=4, metavar="B")
    p.add_argument("--min-size", type=_positive_int, default=None, metavar="PX", help="smallest grain area in px")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="UM",
                   help="pixel size in µm (default: from the image metadata)")
    p.add_argument("--overlay", action="store_true", help="also write NAME_overlay.png")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(func=_cmd_predict)

    e = sub.add_parser("eval", help="score a model on a labelled dataset folder (JSON on stdout)")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("data", metavar="DATA")
    add_predict_options(e)
    e.add_argument("--tolerance", type=_nonnegative_int, default=2, metavar="PX", help="boundary F1 tolerance")
    e.add_argument("--baseline", action="store_true", help="also score the classical ridge + watershed baseline")
    e.add_argument("--per-image", action="store_true", help="include per-image metrics")
    e.set_defaults(func=_cmd_eval)

    m = sub.add_parser("measure", help="grain table, mean size and ASTM E112 grain size number of label images")
    m.add_argument("labels", nargs="+", metavar="LABELS")
    m.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="UM",
                   help="pixel size in µm (default: from the TIFF metadata)")
    m.add_argument("--out", metavar="DIR", help="write NAME_grains.csv and summary.csv here")
    m.set_defaults(func=_cmd_measure)

