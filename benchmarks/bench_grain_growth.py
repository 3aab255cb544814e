"""Time of the grain-growth tessellation: one 1024 x 1024 microstructure with ~300 grains.

    OMP_NUM_THREADS=1 python benchmarks/bench_grain_growth.py [--size 1024] [--grains 300] [--repeats 3]

Prints the median wall time of ``tessellate`` (method ``growth``: fine Voronoi, Monte-Carlo Potts
coarsening on a lattice of ``growth_resolution`` sites per final grain diameter, smooth
resampling to the image) on one core, the lattice and sweep counts, the grains in the image, and
the same for a Laguerre tessellation (the default method) for comparison.  The first, compiling
call is timed separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from napari_grainlab.core.synthetic import SynthParams, TessellationParams
from napari_grainlab.core.synthetic.render import EffectRNG
from napari_grainlab.core.synthetic.tessellation import tessellate


def _time(params: SynthParams, repeats: int) -> tuple[float, object]:
    times, micro = [], None
    for k in range(repeats):
        t0 = time.perf_counter()
        micro = tessellate(params, EffectRNG(k)("tessellation"))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), micro


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--grains", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tp = TessellationParams(method="growth", grains=args.grains)
    p = SynthParams(height=args.size, width=args.size, tessellation=tp)
    p.validate()
    small = SynthParams(height=64, width=64, tessellation=TessellationParams(method="growth", grains=8))
    t0 = time.perf_counter()
    tessellate(small, EffectRNG(0)("tessellation"))
    print(f"first call (compiles or loads the cached kernels): {time.perf_counter() - t0:.2f} s")
    t_growth, micro = _time(p, args.repeats)
    area = np.bincount(micro.labels.ravel())[1:]
    d = np.sqrt(4 * area / np.pi)
    info = micro.extras
    print(f"growth {args.size}x{args.size}, {args.grains} grains requested: {t_growth:.2f} s (median of "
          f"{args.repeats}); {micro.n_grains} grains in the image, mean diameter {d.mean():.1f} px "
          f"(requested {p.mean_diameter():.1f}), lattice {info['lattice'][0]}x{info['lattice'][1]}, "
          f"{info['initial_grains']} initial grains, {info['sweeps']} sweeps")
    lag = SynthParams(height=args.size, width=args.size, tessellation=TessellationParams(grains=args.grains))
    t_lag, _ = _time(lag, args.repeats)
    print(f"laguerre (for comparison): {t_lag:.3f} s; growth / laguerre = {t_growth / t_lag:.0f}x")


if __name__ == "__main__":
    main()
