"""Seconds per 1024 x 1024 synthetic SEM micrograph with 300 grains, single process.

Compares ``napari_grainlab.core.synthetic.generate`` (+ writing image and labels as TIFF)
with a naive reference written here: nearest seed for every pixel with a scipy cKDTree,
``skimage.segmentation.find_boundaries``, Gaussian blur, Poisson + Gaussian noise and the
same TIFF writes.  Prints seconds per image and the speed-up ratios (Voronoi and Laguerre).

Then end to end (process start included, every file on disk): ``grainlab synth OUT --count N``
against a script that runs the naive reference and writes its two TIFFs per image, each as a
fresh process, taking turns; prints the ratio.

    python benchmarks/bench_synth.py [--size 1024] [--grains 300] [--repeats 7] [--e2e-count 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.segmentation import find_boundaries

from napari_grainlab.core.synthetic import SynthParams, generate


def naive(size: int, grains: int, seed: int, out: Path) -> None:
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (grains, 2))
    yy, xx = np.mgrid[:size, :size]
    _, nearest = cKDTree(seeds).query(np.column_stack([yy.ravel(), xx.ravel()]))
    labels = (nearest.reshape(size, size) + 1).astype(np.uint32)
    bnd = find_boundaries(labels, mode="thick")
    grain_level = rng.uniform(0.2, 0.7, grains + 1)
    img = grain_level[labels]
    img[bnd] -= 0.25
    img = ndi.gaussian_filter(img, 1.0)
    img = rng.poisson(np.clip(img, 0, None) * 60.0) / 60.0
    img += rng.normal(0, 0.02, img.shape)
    img8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    tifffile.imwrite(out / "naive_image.tif", img8)
    tifffile.imwrite(out / "naive_labels.tif", labels)


def ours(params: SynthParams, seed: int, out: Path) -> None:
    s = generate(params, seed)
    tifffile.imwrite(out / "image.tif", s.image)
    tifffile.imwrite(out / "labels.tif", s.labels)


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions taking turns (so that a slower
    spell of the machine hits all of them alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(0)  # warm-up: imports, compiled kernels, FFT plans
    for i in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(i + 1)
            times[name].append(time.perf_counter() - t)
    return times


_NAIVE_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {bench!r})
from bench_synth import naive
out, size, grains, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
for i in range(count):
    item = out / str(i)
    item.mkdir(exist_ok=True)
    naive(size, grains, i, item)
"""


def end_to_end(size: int, grains: int, count: int, repeats: int) -> None:
    """``grainlab synth`` against the naive script, each a fresh process, taking turns."""
    grainlab = shutil.which("grainlab", path=str(Path(sys.executable).parent)) or shutil.which("grainlab")
    script = _NAIVE_SCRIPT.format(bench=str(Path(__file__).resolve().parent))
    cmds = {
        "naive": lambda out: [sys.executable, "-c", script, str(out), str(size), str(grains), str(count)],
        "synth": lambda out: [grainlab, "synth", str(out), "--count", str(count), "--size", str(size),
                              "--grains", str(grains), "--no-progress"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    with tempfile.TemporaryDirectory() as d:
        for r in range(repeats):
            for name, cmd in cmds.items():
                out = Path(d) / f"{name}{r}"
                t = time.perf_counter()
                subprocess.run(cmd(out), check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t)
                shutil.rmtree(out)
    ratios = [tn / ts for tn, ts in zip(times["naive"], times["synth"])]
    print(f"end to end, {count} x {size}x{size} px, process start included, {repeats} turns")
    print(f"  {'naive script (reference + 2 TIFFs per image)':<62s} {statistics.median(times['naive']):7.2f} s")
    print(f"  {'grainlab synth (4 files per image + dataset.json)':<62s} {statistics.median(times['synth']):7.2f} s"
          f"   speed-up x{statistics.median(ratios):.2f} (turns: {min(ratios):.2f}-{max(ratios):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--grains", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--e2e-count", type=int, default=40, help="images per end-to-end run (0: skip it)")
    ap.add_argument("--e2e-repeats", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        fns = {"naive": lambda s: naive(a.size, a.grains, s, out)}
        for method in ("voronoi", "laguerre"):
            p = SynthParams(height=a.size, width=a.size, style="sem")
            p.tessellation.grains = a.grains
            p.tessellation.method = method
            fns[method] = lambda s, p=p: ours(p, s, out)
        times = interleaved(fns, a.repeats)
    t_naive = statistics.median(times["naive"])
    print(f"{a.size}x{a.size} px, {a.grains} grains, full SEM look, single process, median of {a.repeats}")
    print(f"  {'naive reference (cKDTree + find_boundaries + blur + noise)':<62s} {t_naive:7.3f} s/image")
    for method in ("voronoi", "laguerre"):
        t = statistics.median(times[method])
        # ratio of each turn (naive and ours measured back to back), then the median
        ratios = [tn / to for tn, to in zip(times["naive"], times[method])]
        print(f"  {'grainlab ' + method:<62s} {t:7.3f} s/image   speed-up x{statistics.median(ratios):.2f}"
              f" (turns: {min(ratios):.2f}-{max(ratios):.2f})")
    if a.e2e_count > 0:
        end_to_end(a.size, a.grains, a.e2e_count, a.e2e_repeats)


if __name__ == "__main__":
    main()
