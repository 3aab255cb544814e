"""``grainlab export`` and ``grainlab predict-onnx``: ONNX models on the command line.

``predict-onnx`` runs on onnxruntime and never imports torch, so it works where only numpy,
scipy, scikit-image, tifffile and onnxruntime are installed. Like :mod:`napari_grainlab.cli`,
this imports only the standard library at start-up.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from ._cli_engine import _nonnegative_float, _pixel_size, _tile
from .cli import EXIT_OK, EXIT_USAGE, Interrupted, UserError, _nonnegative_int, _positive_int, _StopOnInterrupt

FORMATS = ("onnx", "bioimageio")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@contextlib.contextmanager
def onnx_errors() -> Iterator[None]:
    """The torch-free engine's user-facing exceptions as :class:`UserError` (one line, exit code 2)."""
    from .core.data.io import DataError
    from .core.onnx_predict import OnnxModelError

    try:
        yield
    except (DataError, OnnxModelError) as exc:
        raise UserError(str(exc)) from None
    except MemoryError as exc:
        raise UserError(f"out of memory: {exc}") from None
    except OSError as exc:
        where = exc.filename or ""
        raise UserError(f"{where}: {exc.strerror or exc}" if where else str(exc)) from None


# ------------------------------------------------------------------------------------------ export
def _cmd_export(args: argparse.Namespace) -> int:
    from ._cli_engine import engine_errors

    with engine_errors():
        from .core.export import ExportError

        try:
            if args.format == "onnx":
                from .core.export import export_onnx

                report = export_onnx(args.model, args.out, opset=args.opset, check=not args.no_check,
                                     atol=args.atol, rtol=args.rtol, exporter=args.exporter)
                print(report)
            else:
                from .core.export import export_bioimageio

                if not args.out:
                    raise UserError("--format bioimageio needs --out FOLDER (or FILE.zip)")
                result = export_bioimageio(args.model, args.out, opset=args.opset, atol=args.atol, rtol=args.rtol,
                                           authors=args.author, license=args.license, name=args.name,
                                           exporter=args.exporter)
                print(result)
        except ExportError as exc:
            raise UserError(str(exc)) from None
    return EXIT_OK


# ------------------------------------------------------------------------------------- predict-onnx
def _image_paths(items: list[str]) -> list[Path]:
    paths = []
    for p in items:
        q = Path(p)
        if q.is_dir():
            paths += sorted(f for f in q.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(q)
    return paths


def _predict_onnx_one(model, path: Path, out: Path, args, stem: str) -> dict:
    import numpy as np

    from .core._io import atomic_write_tiff
    from .core.data.io import read_image
    from .core.measure import grain_table, summarize, write_table_csv
    from .core.onnx_predict import predict_onnx

    img = read_image(path)
    pixel_size = args.pixel_size or img.pixel_size
    row = {"image": path.name, "output": stem, "pixel_size_um": pixel_size or ""}
    res = predict_onnx(model, img.data, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                       tta=args.tta, histogram_match=args.histogram_match, min_size=args.min_size)
    if res.task == "segment":
        atomic_write_tiff(out / f"{stem}_labels.tif", res.labels.astype(np.uint32), pixel_size_um=pixel_size)
        atomic_write_tiff(out / f"{stem}_boundary.tif", res.boundary.astype(np.float32), pixel_size_um=pixel_size)
        write_table_csv(out / f"{stem}_grains.csv", grain_table(res.labels, pixel_size), pixel_size)
        if args.overlay:
            from .core._io import atomic_write_png
            from .core.visualize import overlay_rgb

            atomic_write_png(out / f"{stem}_overlay.png", overlay_rgb(img.data, res.labels))
        row.update(summarize(res.labels, pixel_size))
    else:
        atomic_write_tiff(out / f"{stem}_classes.tif", res.class_map.astype(np.uint16), pixel_size_um=pixel_size)
        atomic_write_tiff(out / f"{stem}_confidence.tif", res.confidence.astype(np.float32),
                          pixel_size_um=pixel_size)
        row.update({"class": res.image_class,
                    **{f"p_{n}": float(p) for n, p in zip(res.classes, res.class_probabilities)}})
    return row


def _cmd_predict_onnx(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    with onnx_errors():
        from .core.onnx_predict import OnnxModel

        providers = None if args.provider == "auto" else [
            {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[args.provider]]
        if providers == ["CUDAExecutionProvider"]:
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError("--provider cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
            providers.append("CPUExecutionProvider")
        model = OnnxModel(args.model, providers=providers)
        if args.histogram_match and not model.meta.get("histogram_reference"):
            raise UserError(f"{args.model}: the model has no intensity reference for --histogram-match")
        paths = _image_paths(args.images)
        if not paths:
            raise UserError("no images to predict")
        out.mkdir(parents=True, exist_ok=True)
    from .core.batch import output_stems, without_path, write_rows_csv

    rows, failed = [], 0
    with _StopOnInterrupt() as stop:
        for path, stem in zip(paths, output_stems(paths)):
            if stop.requested:
                break
            try:
                with onnx_errors():
                    rows.append(_predict_onnx_one(model, path, out, args, stem))
            except UserError as exc:
                failed += 1
                text = without_path(" ".join(str(exc).split()), path)
                print(f"grainlab: error: {path}: {text}", file=sys.stderr, flush=True)
    if rows:
        write_rows_csv(out / "summary.csv", rows, first=("image", "output"))
    print(f"predicted {len(rows)} of {len(paths)} image{'s' if len(paths) != 1 else ''} into {out} "
          f"(onnxruntime: {', '.join(model.providers)})" + (f" ({failed} failed)" if failed else ""))
    if stop.requested:
        raise Interrupted(f"{len(rows)} images done in {out}")
    return EXIT_USAGE if failed else EXIT_OK


# ------------------------------------------------------------------------------------------ parser
def add_export_commands(sub) -> None:
    x = sub.add_parser(
        "export", help="export a trained model to ONNX (checked against PyTorch) or a bioimage.io package",
        description="Export MODEL to ONNX with dynamic batch, height and width (multiples of 32). The napari-grainlab "
                    "description (task, classes, tile defaults, histogram reference, post-processing) is stored in the "
                    "file's metadata, so 'grainlab predict-onnx' needs nothing else. Unless --no-check, onnxruntime "
                    "and PyTorch are run on random images of two sizes and the file is written only when their "
                    "outputs agree within --atol + --rtol x |output|. --format bioimageio writes a bioimage.io "
                    "model-zoo package (needs the 'bioimageio' extra).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  grainlab export models/sem --format onnx                  # models/sem/best/model.onnx\n"
               "  grainlab export models/sem --format onnx --out sem.onnx\n"
               "  grainlab export models/sem --format bioimageio --out sem-bioimageio.zip",
    )
    x.add_argument("model", metavar="MODEL", help="model folder (or its model.json / model.safetensors)")
    x.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or bioimageio")
    x.add_argument("--out", metavar="FILE", default=None,
                   help="output .onnx file (default: model.onnx next to model.safetensors); for bioimageio a folder "
                        "or a .zip file")
    x.add_argument("--opset", type=_positive_int, default=18, metavar="N", help="ONNX opset (default 18)")
    x.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check (onnx format)")
    x.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="torch.export-based (dynamo) or tracing (torchscript) ONNX exporter; auto tries dynamo first")
    x.add_argument("--atol", type=_nonnegative_float, default=1e-4, metavar="A", help="absolute tolerance (default 1e-4)")
    x.add_argument("--rtol", type=_nonnegative_float, default=1e-3, metavar="R", help="relative tolerance (default 1e-3)")
    x.add_argument("--name", default=None, metavar="TEXT", help="bioimageio: model name")
    x.add_argument("--author", action="append", default=None, metavar="NAME",
                   help="bioimageio: an author (repeat for several; default 'napari-grainlab user')")
    x.add_argument("--license", default="CC-BY-4.0", metavar="SPDX", help="bioimageio: license (default CC-BY-4.0)")
    x.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "predict-onnx", help="segment micrographs with an exported ONNX model (onnxruntime, no torch needed)",
        description="Like 'grainlab predict', with a model exported by 'grainlab export'. Writes OUT/NAME_labels.tif, "
                    "NAME_boundary.tif, NAME_grains.csv and summary.csv (classification models: NAME_classes.tif and "
                    "NAME_confidence.tif). Runs on onnxruntime only: PyTorch need not be installed.",
    )
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--tile", type=_tile, default=None, metavar="PX",
                   help="tile side, at least 32 (default: the model's, 512 for segmentation)")
    p.add_argument("--overlap", type=_nonnegative_int, default=64, metavar="PX")
    p.add_argument("--batch-size", type=_positive_int, default=4, metavar="B")
    p.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    p.add_argument("--histogram-match", action="store_true",
                   help="domain adaptation: match intensities to the training data")
    p.add_argument("--min-size", type=_positive_int, default=None, metavar="PX", help="smallest grain area in px")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="UM",
                   help="pixel size in µm (default: from the image metadata)")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                   help="onnxruntime execution provider (default auto: CUDA when available, else CPU)")
    p.add_argument("--overlay", action="store_true", help="also write NAME_overlay.png")
    p.set_defaults(func=_cmd_predict_onnx)
