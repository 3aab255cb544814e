"""``grainlab predict-onnx``: predict with an exported ONNX model on onnxruntime.

Never imports torch, so it works where only numpy, scipy, scikit-image, tifffile and onnxruntime
are installed. The prediction flags are those of ``grainlab predict`` (from
:class:`~napari_grainlab.core.batch.BatchOptions`) less AdaBN and the device: onnxruntime's
providers (``--provider``) decide where it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.batch import BatchOptions
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    REPORTED,
    Interrupted,
    StopOnInterrupt,
    UserError,
    add_options,
    error_message,
    options_from_args,
    scale_report,
)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: prediction options that onnxruntime does not have (BatchNorm is folded into the graph; providers pick the device)
NOT_ONNX = ("adabn", "device")


def _image_paths(items: list[str]) -> list[Path]:
    paths = []
    for p in items:
        q = Path(p)
        if q.is_dir():
            paths += sorted(f for f in q.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(q)
    return paths


def _warning(path: Path, message: str) -> None:
    print(f"grainlab: warning: {path}: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _predict_one(model, path: Path, out: Path, options: BatchOptions, stem: str) -> dict:
    import numpy as np

    from ..core._io import atomic_write_tiff
    from ..core.batch import read_for_prediction, with_bar_rows
    from ..core.measure import grain_table, summarize, write_table_csv
    from ..core.onnx_predict import predict_onnx

    img, bar = read_for_prediction(path, options, lambda m: _warning(path, m))
    pixel_size = options.pixel_size or img.pixel_size
    row = {"image": path.name, "output": stem, "pixel_size_um": pixel_size or "", "data_bar_rows": bar}
    res = predict_onnx(model, img.data, options.inference(), warn=lambda m: _warning(path, m))
    if res.task == "segment":
        # written at the file's size (data bar rows 0), measured on the specimen rows
        atomic_write_tiff(out / f"{stem}_labels.tif", with_bar_rows(res.labels.astype(np.uint32), bar),
                          pixel_size_um=pixel_size)
        atomic_write_tiff(out / f"{stem}_boundary.tif", with_bar_rows(res.boundary.astype(np.float32), bar),
                          pixel_size_um=pixel_size)
        if res.twin_boundary is not None:
            from ..core.twins import twin_statistics

            atomic_write_tiff(out / f"{stem}_twin_boundary.tif",
                              with_bar_rows(res.twin_boundary.astype(np.float32), bar), pixel_size_um=pixel_size)
            row.update(twin_statistics(res.labels, res.twin_boundary, pixel_size))
        write_table_csv(out / f"{stem}_grains.csv", grain_table(res.labels, pixel_size), pixel_size)
        if options.overlay:
            from ..core._io import atomic_write_png
            from ..core.visualize import overlay_rgb

            atomic_write_png(out / f"{stem}_overlay.png", overlay_rgb(img.data, res.labels))
        row.update(summarize(res.labels, pixel_size))
        row.update(res.scaling.row())
        line = scale_report(res.scaling, rescale=options.rescale)
        if line:
            print(f"grainlab: {path}: {line}", file=sys.stderr, flush=True)
    else:
        atomic_write_tiff(out / f"{stem}_classes.tif", with_bar_rows(res.class_map.astype(np.uint16), bar),
                          pixel_size_um=pixel_size)
        atomic_write_tiff(out / f"{stem}_confidence.tif", with_bar_rows(res.confidence.astype(np.float32), bar),
                          pixel_size_um=pixel_size)
        row.update({"class": res.image_class,
                    **{f"p_{n}": float(p) for n, p in zip(res.classes, res.class_probabilities)}})
    return row


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    from ..core.batch import output_stems, summary_columns, without_path, write_rows_csv
    from ..core.onnx_predict import OnnxModel

    options = options_from_args(BatchOptions, args)
    providers = None if args.provider == "auto" else [
        {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[args.provider]]
    if providers == ["CUDAExecutionProvider"]:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("--provider cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        providers.append("CPUExecutionProvider")
    model = OnnxModel(args.model, providers=providers)
    if options.histogram_match and not model.meta.get("histogram_reference"):
        raise UserError(f"{args.model}: the model has no intensity reference for --histogram-match")
    paths = _image_paths(args.images)
    if not paths:
        raise UserError("no images to predict")
    out.mkdir(parents=True, exist_ok=True)

    rows, failed = [], 0
    with StopOnInterrupt() as stop:
        for path, stem in zip(paths, output_stems(paths)):
            if stop.requested:
                break
            full = str(path.resolve())
            try:
                rows.append({**_predict_one(model, path, out, options, stem), "status": "ok", "path": full})
            except REPORTED as exc:  # one bad image: report it and go on with the others
                failed += 1
                text = without_path(" ".join(error_message(exc).split()), path)
                print(f"grainlab: error: {path}: {text}", file=sys.stderr, flush=True)
                rows.append({"image": path.name, "output": stem, "status": "error", "error": text, "path": full})
    if rows:  # the same columns as 'grainlab predict', whichever images failed
        write_rows_csv(out / "summary.csv", rows, columns=summary_columns(model.meta))
    done = len(rows) - failed
    print(f"predicted {done} of {len(paths)} image{'s' if len(paths) != 1 else ''} into {out} "
          f"(onnxruntime: {', '.join(model.providers)})" + (f" ({failed} failed)" if failed else ""))
    if stop.requested:
        raise Interrupted(f"{done} images done in {out}")
    return EXIT_USAGE if failed else EXIT_OK


def register(sub) -> None:
    p = sub.add_parser(
        "predict-onnx", help="segment micrographs with an exported ONNX model (onnxruntime, no torch needed)",
        description="Like 'grainlab predict', with a model exported by 'grainlab export'. Writes OUT/NAME_labels.tif, "
                    "NAME_boundary.tif, NAME_grains.csv and summary.csv (a model with a twin class also NAME_twin_boundary.tif "
                    "and the twin statistics; classification models: NAME_classes.tif and "
                    "NAME_confidence.tif). Runs on onnxruntime only: PyTorch need not be installed.",
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                   help="onnxruntime execution provider (default auto: CUDA when available, else CPU)")
    add_options(p, BatchOptions, exclude=NOT_ONNX)
    p.set_defaults(func=run)
