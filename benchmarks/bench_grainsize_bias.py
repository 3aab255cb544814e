"""Counting bias of the E112 intercept and circle methods on digital Voronoi label images.

    python benchmarks/bench_grainsize_bias.py [--size 512] [--diameters 12,20,30,40] [--images 3] [--step 0.02]

A Voronoi label image is the nearest seed at every pixel centre, so its exact grain boundaries are known:
the perpendicular bisectors between the seeds.  For each image the benchmark lays the intercept method's own
test lines (:func:`napari_grainlab.core.grainsize.test_pattern`, the default 0/45/90/135 degree directions and
spacing) and counts

- *digital*: the intersections :func:`~napari_grainlab.core.grainsize.grain_size` counts on the label image
  (tangent hits, the triple-point rule), with ``triple_point_radius`` 1 px (the default) and 1.5 px;
- *exact*: the changes of nearest seed along the same lines sampled every ``--step`` px, i.e. the lines'
  intersections with the exact cell boundaries,

and prints the relative excess ``digital / exact - 1``.  It also prints how much the Abrams three-circle
method's P_L rises when a triple point counts 2 instead of 1.5 (``circle_triple_point``), on the Voronoi
images and on regular hexagons (the Voronoi cells of a triangular lattice, edges 7.5 degrees off the test
lines).  Seeds are uniform (Poisson) points, ``size^2 / (pi d^2 / 4)`` of them for a mean diameter ``d``.
Nothing is timed; it prints ratios, it does not fail.
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
from scipy.spatial import cKDTree

from napari_grainlab.core.grainsize import grain_size, test_pattern


def voronoi(size: int, diameter: float, seed: int) -> tuple[np.ndarray, cKDTree]:
    """Labels (1..n) of the Voronoi cells of uniform random seeds at the pixel centres, and the seeds' tree
    (x, y)."""
    rng = np.random.default_rng(seed)
    n = max(2, int(round(size * size / (math.pi * diameter * diameter / 4.0))))
    # seeds also a little outside the image, so the cells at the border are cut, not stretched
    pad = 2.0 * diameter
    m = int(round(n * ((size + 2 * pad) / size) ** 2))
    pts = rng.uniform(-pad, size + pad, size=(m, 2))
    tree = cKDTree(pts)
    rr, cc = np.mgrid[:size, :size]
    _, idx = tree.query(np.stack([cc.ravel(), rr.ravel()], axis=1).astype(float))
    labels = (np.unique(idx, return_inverse=True)[1].reshape(size, size) + 1).astype(np.int32)
    return labels, tree


def hexagons(a: float, size: int, theta0: float = 7.5) -> tuple[np.ndarray, cKDTree]:
    """Regular hexagons of side ``a`` px, edges at ``theta0``, +60 and +120 degrees, and their centres' tree."""
    d = a * math.sqrt(3.0)
    phi = math.radians(theta0 - 30.0)
    v1 = d * np.array([math.cos(phi), -math.sin(phi)])
    v2 = d * np.array([math.cos(phi + math.pi / 3), -math.sin(phi + math.pi / 3)])
    r = int(2 * size / d) + 3
    i, j = np.mgrid[-r:r + 1, -r:r + 1]
    centres = i.ravel()[:, None] * v1 + j.ravel()[:, None] * v2 + np.array([0.37, 0.21])
    tree = cKDTree(centres)
    rr, cc = np.mgrid[:size, :size]
    _, idx = tree.query(np.stack([cc.ravel(), rr.ravel()], axis=1).astype(float))
    return (np.unique(idx, return_inverse=True)[1].reshape(size, size) + 1).astype(np.int32), tree


def exact_intersections(tree: cKDTree, lines: np.ndarray, step: float) -> tuple[int, float]:
    """Changes of nearest seed along ``lines`` ((n, 2, 2) [[y0, x0], [y1, x1]]) sampled every ``step`` px, and
    the lines' total length."""
    total, length = 0, 0.0
    for (y0, x0), (y1, x1) in lines:
        ell = math.hypot(y1 - y0, x1 - x0)
        k = max(2, int(math.ceil(ell / step)) + 1)
        t = np.linspace(0.0, 1.0, k)
        _, idx = tree.query(np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], axis=1))
        total += int(np.count_nonzero(idx[1:] != idx[:-1]))
        length += ell
    return total, length


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--diameters", default="12,20,30,40", help="mean grain diameters (px), comma-separated")
    ap.add_argument("--images", type=int, default=3, help="Voronoi images per diameter")
    ap.add_argument("--step", type=float, default=0.02, help="sampling step (px) of the exact count")
    a = ap.parse_args(argv)
    diameters = [float(v) for v in a.diameters.split(",") if v.strip()]

    print(f"intercept method on {a.size} x {a.size} px Voronoi label images, {a.images} per diameter: "
          "digital count / exact count - 1 on the same test lines")
    print(f"{'diameter':>8} {'grains':>7} {'lines':>6} {'exact P':>8} {'radius 1 px':>12} {'radius 1.5 px':>14} "
          f"{'circles 2 vs 1.5':>17}")
    excess: dict[float, list[float]] = {1.0: [], 1.5: []}
    circle_rise: list[float] = []
    for d in diameters:
        rows = {1.0: [], 1.5: []}
        rises, grains, n_lines, exact_total = [], 0, 0, 0
        for k in range(a.images):
            labels, tree = voronoi(a.size, d, seed=1000 * int(d) + k)
            pattern = test_pattern(labels.shape, "intercept", labels=labels)
            exact, _ = exact_intersections(tree, pattern["lines"], a.step)
            grains += int(labels.max())
            n_lines += len(pattern["lines"])
            exact_total += exact
            for r in rows:
                res = grain_size(labels, method="intercept", triple_point_radius=r,
                                 line_spacing=pattern["line_spacing"])
                rows[r].append(res.intersections / exact - 1.0)
            p15 = grain_size(labels, method="circles", circle_triple_point=1.5).value
            p2 = grain_size(labels, method="circles", circle_triple_point=2.0).value
            rises.append(p2 / p15 - 1.0)
        for r in rows:
            excess[r] += rows[r]
        circle_rise += rises
        print(f"{d:>6.0f} px {grains / a.images:>7.0f} {n_lines / a.images:>6.0f} {exact_total / a.images:>8.0f} "
              f"{100 * statistics.mean(rows[1.0]):>+11.2f}% {100 * statistics.mean(rows[1.5]):>+13.2f}% "
              f"{100 * statistics.mean(rises):>+16.2f}%")
    print(f"{'all':>9} {'':>7} {'':>6} {'':>8} {100 * min(excess[1.0]):>+6.2f}..{100 * max(excess[1.0]):+.2f}% "
          f"{100 * min(excess[1.5]):>+6.2f}..{100 * max(excess[1.5]):+.2f}% "
          f"{100 * min(circle_rise):>+7.2f}..{100 * max(circle_rise):+.2f}%   (range over the images)")
    print()
    print("regular hexagons (edges at 7.5, 67.5, 127.5 degrees), three circles: P_L with a triple point counted 2 "
          "/ counted 1.5 - 1")
    for side in (10.0, 16.0, 24.0):
        labels, _ = hexagons(side, a.size)
        p15 = grain_size(labels, method="circles", circle_triple_point=1.5).value
        p2 = grain_size(labels, method="circles", circle_triple_point=2.0).value
        print(f"  side {side:>4.0f} px ({int(labels.max())} cells): {100 * (p2 / p15 - 1):+.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
