"""Peak memory and time of tiled prediction on a large image (target: < 3 GB at 8192 x 8192).

Each measurement runs in a fresh subprocess, which reports its peak resident set size
(``resource.getrusage(...).ru_maxrss``: everything the process ever held, Python, torch and
the image included), its resident size just before predicting, and the wall time. The model
is a small fully convolutional network with the segmentation convention (2 output
channels): by default the real U-Net on an ``efficientnet_lite0`` encoder (random weights:
the memory does not depend on them); ``--backbone NAME`` picks another timm encoder and
``--backbone tiny`` a small conv net of ``--channels`` channels. ``--watershed`` also measures the
watershed post-processing on 2-channel maps of the same size (separately: its memory is
not part of the prediction target).

    python benchmarks/bench_predict_memory.py [--size 8192] [--tile 512] [--overlap 64]
        [--batch-size 4] [--backbone efficientnet_lite0] [--channels 8] [--device cpu] [--amp]
        [--tta] [--watershed]
    python benchmarks/bench_predict_memory.py --end-to-end [--size 8192] [--grain 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

TARGET_GB = 3.0


def _rss_gb() -> float:
    """Current resident set size in GB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError):
        return 0.0


def _peak_gb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1e9 if sys.platform == "darwin" else 1e6)


def child_predict(args) -> dict:
    import numpy as np
    import torch
    from torch import nn

    from napari_grainlab.core.inference import predict_tiled

    torch.manual_seed(0)
    c = args.channels

    class TinyNet(nn.Module):
        task = "segment"
        out_channels = 2

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                      nn.Conv2d(c, 2, 1))

        def forward(self, x):
            return self.body(x)

    if args.backbone == "tiny":
        model = TinyNet()
    else:
        from napari_grainlab.core.models import ModelSpec, build_model

        model = build_model(ModelSpec(backbone=args.backbone))
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    before = _rss_gb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = predict_tiled(model, image, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                        tta=args.tta, device=args.device, amp=args.amp)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    result = {"what": "predict_tiled", "seconds": seconds, "before_gb": before, "peak_gb": _peak_gb(),
              "output_gb": out.nbytes / 1e9, "image_gb": image.nbytes / 1e9,
              "mpx_per_s": args.size * args.size / seconds / 1e6}
    if args.device.startswith("cuda"):
        result["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result


def child_watershed(args) -> dict:
    import numpy as np

    from napari_grainlab.core.inference import watershed_grains

    n = args.size
    period = 64.0  # grains about 64 px across
    ramp = np.abs(np.sin(np.arange(n, dtype=np.float32) * np.float32(np.pi / period)))
    distance = np.sqrt(ramp[:, None] * ramp[None, :], dtype=np.float32)
    boundary = np.subtract(np.float32(1.0), distance, dtype=np.float32)
    before = _rss_gb()
    t = time.perf_counter()
    labels = watershed_grains(boundary, distance, min_size=16)
    seconds = time.perf_counter() - t
    return {"what": "watershed_grains", "seconds": seconds, "before_gb": before, "peak_gb": _peak_gb(),
            "grains": int(labels.max()), "maps_gb": (boundary.nbytes + distance.nbytes) / 1e9}


def run_child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: ``grainlab predict`` on one 8192 px micrograph before the memory work (the issue's measurement)
BEFORE_E2E = {"peak_gb": 5.2, "seconds": 300.0}

_E2E_CHILD = """
import resource, subprocess, sys, time, json
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "peak_gb": kb / (1e9 if sys.platform == "darwin" else 1e6)}))
"""


def end_to_end(size: int, grain: float) -> dict:
    """``grainlab predict generalist IMAGE`` on a synthetic SEM micrograph, as a user runs it: the whole
    process (start, model, scale estimate, network, watershed, grain table, files) and its peak RSS."""
    import shutil
    import tempfile
    from pathlib import Path

    import tifffile

    from napari_grainlab.core.synthetic import SynthParams, generate

    grainlab = shutil.which("grainlab", path=str(Path(sys.executable).parent)) or shutil.which("grainlab")
    with tempfile.TemporaryDirectory() as d:
        params = SynthParams(height=size, width=size, style="sem")
        params.tessellation.grains = max(2, int(size * size / (grain * grain)))
        image = Path(d) / f"sem{size}.tif"
        tifffile.imwrite(image, generate(params, 1).image)
        cmd = [sys.executable, "-c", _E2E_CHILD, grainlab, "predict", "generalist", str(image), "--out",
               str(Path(d) / "out"), "--no-progress"]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    if r["rc"] != 0:
        raise SystemExit(f"grainlab predict failed (exit {r['rc']})")
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--backbone", default="efficientnet_lite0", help="timm encoder of the U-Net, or 'tiny'")
    p.add_argument("--channels", type=int, default=8, help="channels of the 'tiny' conv net")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--watershed", action="store_true")
    p.add_argument("--end-to-end", action="store_true",
                   help="only `grainlab predict generalist` on a --size synthetic SEM micrograph (whole process)")
    p.add_argument("--grain", type=float, default=32.0, help="grain diameter of that micrograph in px")
    p.add_argument("--child", choices=("predict", "watershed"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.end_to_end:
        r = end_to_end(args.size, args.grain)
        b = BEFORE_E2E
        print(f"grainlab predict generalist, one {args.size} x {args.size} synthetic SEM micrograph "
              f"(~{args.grain:.0f} px grains), whole process")
        print(f"  peak RSS {r['peak_gb']:.2f} GB = {r['peak_gb'] / TARGET_GB:.2f} x the {TARGET_GB:.0f} GB target "
              f"({'within' if r['peak_gb'] < TARGET_GB else 'OVER'}); before {b['peak_gb']:.1f} GB "
              f"(x{b['peak_gb'] / r['peak_gb']:.2f} less)")
        print(f"  {r['seconds']:.1f} s; before ~{b['seconds']:.0f} s (x{b['seconds'] / r['seconds']:.2f} faster, "
              "target x2)")
        return

    if args.child:
        fn = child_predict if args.child == "predict" else child_watershed
        print(json.dumps(fn(args)))
        return

    passthrough = [a for a in sys.argv[1:] if a != "--watershed"]
    r = run_child(["predict", *passthrough])
    print(f"predict_tiled {args.size} x {args.size}, tile {args.tile}, overlap {args.overlap}, "
          f"batch {args.batch_size}, "
          f"{f'{args.channels}-channel conv net' if args.backbone == 'tiny' else f'U-Net on {args.backbone}'}, "
          f"device {args.device}"
          f"{', amp' if args.amp else ''}{', tta' if args.tta else ''}")
    print(f"  image {r['image_gb']:.3f} GB, output {r['output_gb']:.3f} GB, "
          f"process before predicting {r['before_gb']:.3f} GB")
    print(f"  peak RSS {r['peak_gb']:.3f} GB = {r['peak_gb'] / TARGET_GB:.2f} x the {TARGET_GB:.0f} GB target "
          f"({'within' if r['peak_gb'] < TARGET_GB else 'OVER'})")
    if "gpu_peak_gb" in r:
        print(f"  GPU peak allocated {r['gpu_peak_gb']:.3f} GB")
    print(f"  {r['seconds']:.1f} s ({r['mpx_per_s']:.2f} Mpx/s)")
    if args.watershed:
        w = run_child(["watershed", *passthrough])
        print(f"watershed_grains {args.size} x {args.size}: {w['grains']} grains, {w['seconds']:.1f} s, "
              f"peak RSS {w['peak_gb']:.3f} GB (maps {w['maps_gb']:.3f} GB, before {w['before_gb']:.3f} GB)")


if __name__ == "__main__":
    main()
