"""``grainlab export``: a trained model as ONNX (checked against PyTorch) or a bioimage.io package."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK, UserError, nonnegative_float, positive_int

FORMATS = ("onnx", "bioimageio")


def run(args: argparse.Namespace) -> int:
    if args.format == "onnx":
        from ..core.export import export_onnx

        report = export_onnx(args.model, args.out, opset=args.opset, check=not args.no_check, atol=args.atol,
                             rtol=args.rtol, exporter=args.exporter)
        print(report)
    else:
        from ..core.export import export_bioimageio

        if not args.out:
            raise UserError("--format bioimageio needs --out FOLDER (or FILE.zip)")
        result = export_bioimageio(args.model, args.out, opset=args.opset, atol=args.atol, rtol=args.rtol,
                                   authors=args.author, license=args.license, name=args.name, exporter=args.exporter)
        print(result)
    return EXIT_OK


def register(sub) -> None:
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
    x.add_argument("--opset", type=positive_int, default=18, metavar="N", help="ONNX opset (default 18)")
    x.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check (onnx format)")
    x.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="torch.export-based (dynamo) or tracing (torchscript) ONNX exporter; auto tries dynamo first")
    x.add_argument("--atol", type=nonnegative_float, default=1e-4, metavar="A",
                   help="absolute tolerance (default 1e-4)")
    x.add_argument("--rtol", type=nonnegative_float, default=1e-3, metavar="R",
                   help="relative tolerance (default 1e-3)")
    x.add_argument("--name", default=None, metavar="TEXT", help="bioimageio: model name")
    x.add_argument("--author", action="append", default=None, metavar="NAME",
                   help="bioimageio: an author (repeat for several; default 'napari-grainlab user')")
    x.add_argument("--license", default="CC-BY-4.0", metavar="SPDX", help="bioimageio: license (default CC-BY-4.0)")
    x.set_defaults(func=run)
