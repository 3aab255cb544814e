"""``grainlab predict``: batch prediction with a trained model on Dask workers, resumable.

The prediction flags come from :class:`~napari_grainlab.core.batch.BatchOptions`' field metadata
(the :class:`~napari_grainlab.core.inference.options.InferenceOptions` ones plus the pixel size and
the overlay); the Dask flags are this command's own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..core.batch import BatchOptions
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    StopOnInterrupt,
    UserError,
    add_options,
    options_from_args,
    positive_int,
    print_above,
    progress_bar,
    scale_report,
    show_progress,
)


def _model_diameter(model: str) -> Callable[[], float | None]:
    """A function giving the training grain scale ``model`` records (its metadata read on the first call;
    None: none, or unreadable)."""
    found: list[float | None] = []

    def get() -> float | None:
        if not found:
            from ..core.errors import USER_ERRORS
            from ..core.inference._rescale import model_grain_diameter
            from ..core.models.checkpoint import read_metadata

            try:
                found.append(model_grain_diameter(read_metadata(model)))
            except USER_ERRORS:
                found.append(None)
        return found[0]

    return get


def _scale_line(row: dict, model_diameter: Callable[[], float | None], rescale: bool) -> str:
    """The per-image grain-scale line of a batch summary row (see :func:`._common.scale_report`)."""
    import math

    from ..core.inference._result import ScaleInfo

    d = row.get("diameter_px")
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d):
        return ""
    scale = row.get("scale")
    scale = float(scale) if isinstance(scale, (int, float)) and math.isfinite(scale) else 1.0
    model_d = model_diameter() if scale == 1.0 else None  # needed only to say why it was not scaled
    info = ScaleInfo(float(d), str(row.get("diameter_source") or ""), model_d, scale)
    return scale_report(info, rescale=rescale)


def run(args: argparse.Namespace) -> int:
    """Batch prediction (:func:`napari_grainlab.core.batch.run_batch`)."""
    from ..core.batch import BatchFinished, BatchImageDone, BatchImageFailed, BatchStarted, run_batch

    out = Path(args.out)
    show = show_progress(args)
    bar = None
    end = None
    options = options_from_args(BatchOptions, args)
    model_diameter = _model_diameter(args.model)
    if options.histogram_match:  # imported only here: run_batch checks --scheduler before torch is loaded
        from ..core.models.checkpoint import read_metadata

        if not read_metadata(args.model).get("histogram_reference"):
            raise UserError(f"{args.model}: the model has no intensity reference for --histogram-match")

    with StopOnInterrupt() as stop:
        events = run_batch(args.model, args.images, out, scheduler=args.scheduler, workers=args.workers,
                           overwrite=args.overwrite, options=options, stop=stop)
        try:
            for ev in events:
                if isinstance(ev, BatchStarted):
                    bar = progress_bar(total=ev.total, initial=ev.skipped, desc="predict", unit="img", show=show)
                    if show:
                        bar.write(f"grainlab: {ev}", file=sys.stderr)
                elif isinstance(ev, BatchImageDone):
                    for w in ev.warnings:
                        print_above(bar, f"grainlab: warning: {ev.path}: {' '.join(w.split())}", sys.stderr)
                    line = _scale_line(ev.row, model_diameter, options.rescale)
                    if line:
                        print_above(bar, f"grainlab: {ev.path}: {line}", sys.stderr)
                    bar.update(1)
                elif isinstance(ev, BatchImageFailed):
                    print_above(bar, f"grainlab: error: {ev.path}: {ev.error}", sys.stderr)
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


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="segment micrographs with a trained model (batch, on Dask workers)",
        description="Writes OUT/NAME_labels.tif (grain instances), NAME_boundary.tif (boundary probability), "
                    "NAME_grains.csv (per-grain table) and summary.csv (per image: grain count, mean diameter, "
                    "ASTM G, the grain scale, status). A model trained with --twin-class also writes "
                    "NAME_twin_boundary.tif (twin-boundary probability) and adds the twin statistics to summary.csv "
                    "(twin-boundary fraction, twinned grains, G with twins counted and excluded). A model that records its training grain scale gets each "
                    "image resized so that its grains have that size (the image's grain diameter: --diameter, "
                    "else estimated; one line per image reports it); the outputs are at the image's resolution. Classification models write NAME_classes.tif and NAME_confidence.tif. "
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
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="local Dask workers (default: one per CPU core, or one per GPU)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786 (left running)")
    p.add_argument("--overwrite", action="store_true", help="predict again images whose outputs exist")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    add_options(p, BatchOptions)
    p.set_defaults(func=run)
