"""ONNX export check and onnxruntime vs PyTorch prediction speed of the real U-Net.

Exports a segmentation model with :func:`napari_grainlab.core.export.export_onnx` (which checks
onnxruntime against PyTorch on two image sizes): ``--model`` (default ``generalist``, the built-in
model; a registry name or a model folder), or with ``--model none`` a U-Net built on ``--backbone``
(ImageNet encoder weights from the offline sources napari-grainlab knows, random weights when none
is found, a random decoder). Then it predicts one synthetic micrograph (``--size`` px, grains
of about 40 px; smoothed noise for ``--model none``, whose decoder draws no grains) with the PyTorch
pipeline (``predict_array``) and with the torch-free ONNX pipeline (``predict_onnx``): the same scale
estimate, tiling, blending and watershed, only the network differs. Prints the check (max abs diff,
file size), both timings (median of ``--repeat`` runs after one warm-up), their ratio and how far the
outputs differ.

    python benchmarks/bench_onnx.py [--model generalist|none|PATH] [--size 512] [--tile 512] [--threads 0]
        [--repeat 5] [--backbone efficientnet_lite0] [--device cpu] [--exporter auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


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
    ap.add_argument("--model", default="generalist", help="registry name or model folder; none: a U-Net on "
                                                          "--backbone with a random decoder")
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
    with tempfile.TemporaryDirectory() as tmp:
        if args.model.lower() == "none":
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
            ckpt = save_checkpoint(Path(tmp) / "model", model)
            print(f"model: a U-Net on {args.backbone} ({source}), random decoder; image: smoothed noise")
        else:
            import bench_real
            from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

            ckpt = bench_real.resolve_model(args.model)
            grains = max(4, round(args.size * args.size / (np.pi * 20.0 ** 2)))
            image = generate(SynthParams(height=args.size, width=args.size,
                                         tessellation=TessellationParams(grains=grains)), seed=0).image
            print(f"model: {args.model} ({ckpt.name}); image: synthetic SEM micrograph, {grains} grains, seed 0")
        report = export_onnx(ckpt, Path(tmp) / "model.onnx", exporter=args.exporter)
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
