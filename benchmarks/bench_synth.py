"""Seconds per 1024 x 1024 synthetic SEM micrograph with 300 grains, single process.

Compares ``napari_grainlab.core.synthetic.generate`` (+ writing image and labels as TIFF)
with a naive reference written here: nearest seed for every pixel with a scipy cKDTree,
``skimage.segmentation.find_boundaries``, Gaussian blur, Poisson + Gaussian noise and the
same TIFF writes.  Prints seconds per image and the speed-up ratios (Voronoi and Laguerre).

    python benchmarks/bench_synth.py [--size 1024] [--grains 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def timeit(fn, repeats: int) -> float:
    fn(0)  # warm-up (imports, FFT plans)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i + 1)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--grains", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        t_naive = timeit(lambda s: naive(a.size, a.grains, s, out), a.repeats)
        rows = [("naive reference (cKDTree + find_boundaries + blur + noise)", t_naive, None)]
        for method in ("voronoi", "laguerre"):
            p = SynthParams(height=a.size, width=a.size, style="sem")
            p.tessellation.grains = a.grains
            p.tessellation.method = method
            t = timeit(lambda s, p=p: ours(p, s, out), a.repeats)
            rows.append((f"grainlab {method}, full SEM look", t, t_naive / t))
    print(f"{a.size}x{a.size} px, {a.grains} grains, single process, median of {a.repeats}")
    for name, t, ratio in rows:
        r = "" if ratio is None else f"   speed-up x{ratio:.2f}"
        print(f"  {name:<62s} {t:7.3f} s/image{r}")


if __name__ == "__main__":
    main()
