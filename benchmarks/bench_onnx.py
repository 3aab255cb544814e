"""ONNX export check and onnxruntime vs PyTorch prediction speed of the real U-Net.

Builds the segmentation U-Net on ``efficientnet_lite0`` (ImageNet encoder weights from the
offline sources napari-grainlab knows, random weights when none is found), saves it as a
checkpoint, exports it with :func:`napari_grainlab.core.export.export_onnx` (which checks
onnxruntime against PyTorch on two image sizes), then predicts one image with the PyTorch
pipeline (``predict_array``) and with the torch-free ONNX pipeline (``predict_onnx``): the same
tiling, blending and watershed, only the network differs. Prints the check (max abs diff, file
size), both timings (median of ``--repeat`` runs after one warm-up), their ratio and how far
the outputs differ.

    python benchmarks/bench_onnx.py [--size 512] [--tile 512] [--threads 0] [--repeat 5]
        [--backbone efficientnet_lite0] [--device cpu] [--exporter auto]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _median_time(fn, repeat: int) -> tuple[float, object]:
    result = fn()  # warm-up (session / kernel initialisation)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in px (default 512)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both runtimes (0: their defaults)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch device; onnxruntime uses CUDA when "
                                                   "onnxruntime-gpu is installed and --device cuda)")
    ap.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from napari_grainlab.core.export import export_onnx
    from napari_grainlab.core.inference import predict_array
    from napari_grainlab.core.models import ModelSpec, WeightsError, build_model, load_checkpoint, save_checkpoint
    from napari_grainlab.core.models.weights import resolve_imagenet
    from napari_grainlab.core.onnx_predict import OnnxModel, predict_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        state, source = resolve_imagenet(args.backbone, allow_download=False)
    except WeightsError:
        state, source = None, "random weights (no offline ImageNet weights found)"
    torch.manual_seed(0)
    model = build_model(ModelSpec(task="segment", backbone=args.backbone), state).eval()
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    image = ndi.gaussian_filter(rng.random((args.size, args.size)), 2.0)
    image = ((image - image.min()) / (image.max() - image.min())).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "model", model)
        report = export_onnx(ckpt, Path(tmp) / "model.onnx", exporter=args.exporter)
        print(f"backbone: {args.backbone} ({source})")
        print(report)
        model, meta = load_checkpoint(ckpt, device=args.device)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device.startswith("cuda") else \
            ["CPUExecutionProvider"]
        onnx_model = OnnxModel(report.path, providers=providers, threads=args.threads or None)
        t_torch, ref = _median_time(lambda: predict_array(model, meta, image, tile=args.tile, device=args.device),
                                    args.repeat)
        t_onnx, got = _median_time(lambda: predict_onnx(onnx_model, image, tile=args.tile), args.repeat)
    diff = float(np.abs(got.boundary - ref.boundary).max())
    same = float((got.labels == ref.labels).mean())
    print(f"image {args.size}x{args.size}, tile {args.tile}, {args.device}, threads "
          f"{args.threads or 'default'}, onnxruntime providers {onnx_model.providers}")
    print(f"PyTorch predict_array: {t_torch * 1000:.0f} ms   onnxruntime predict_onnx: {t_onnx * 1000:.0f} ms   "
          f"ratio PyTorch / onnxruntime: {t_torch / t_onnx:.2f}")
    print(f"boundary max abs diff {diff:.2g}; labels identical at {same * 100:.3f} % of the pixels "
          f"({int(ref.labels.max())} vs {int(got.labels.max())} grains)")
    return {"torch_s": t_torch, "onnx_s": t_onnx, "ratio": t_torch / t_onnx, "export": report.to_dict(),
            "boundary_max_abs_diff": diff, "labels_same_fraction": same}


if __name__ == "__main__":
    main()
