"""Convert MTEX's example EBSD map ``data/EBSD/twins.ctf`` (mtex-toolbox/mtex, GPL-2.0; a magnesium polycrystal
with deformation twins, Oxford HKL .ctf) into a dataset folder: the band-contrast map (grey, SEM-like, dark
boundary lines, thin twin lamellae) with grain labels computed from the measured orientations.

    python benchmarks/real_data/prepare_mtex_twins.py --repo PATH/TO/mtex --out ~/grainlab-realdata \
        [--threshold 10] [--tiles 2]

``--repo`` is a clone or a bare mirror of https://github.com/mtex-toolbox/mtex; nothing is fetched.

The grain definition is the one of ``prepare_mtex_ebsd.py`` (MTEX calcGrains' default): 4-connected regions
whose neighbouring pixels are misoriented by less than ``--threshold`` degrees, here with the hexagonal
symmetry of magnesium (point group 622, the 12 proper rotations of 6/mmm) instead of the cubic one. Twins
(e.g. {10-12} extension twins, 86 deg about <11-20>) are therefore separate grains, as EBSD counts them.
The 167 x 137 map is cut into ``--tiles`` side-by-side fields so a few-shot split is possible.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prepare_mtex_ebsd as pme
from _source import Source

FILE = "data/EBSD/twins.ctf"
NAME = "mtex_twins_bc"

SOURCE_MD = """# {name}

- Repository: https://github.com/mtex-toolbox/mtex (commit {commit}), file `{file}` (MTEX's "twins" example
  data set: an Oxford HKL Channel text file of a magnesium polycrystal, project "Magtwin Group / Twin
  statistics", 20 kV, 70 deg tilt, square grid, {step} um step, {w} x {h} points, one phase "Magnesium"
  (Laue group 9, 6/mmm), {unindexed} unindexed points).
- Licence: GPL-2.0 (the repository's COPYING.txt covers the data shipped in it). Evaluation: allowed.
  Training: allowed by the licence; whoever distributes weights trained on it should note the GPL source.
  The data is not redistributed by grainlab (kept outside the repository and the wheel).
- Citation: Bachmann, F.; Hielscher, R.; Schaeben, H. Grain detection from 2d and 3d EBSD data --
  specification of the MTEX algorithm. Ultramicroscopy 111 (2011) 1720-1733 (MTEX); data from the MTEX
  example collection (MTEX's documentation uses it for its twinning tutorials).
- What it is: the band-contrast (BC, Kikuchi pattern quality) map: an SEM-like grey image, equiaxed grains of
  different grey with dark boundary lines (2-3 px), and thin lenticular or parallel-sided deformation twins
  (1-5 px wide) inside some grains, whose boundaries are weaker than the grain boundaries. Tests the
  hexagonal, twinned case: twins are thin grains.
- Labels: DERIVED, computed from the measured orientations, not drawn by hand: 4-connected regions whose
  neighbours are misoriented by < {threshold} deg (hexagonal 622 symmetry; MTEX calcGrains' default
  threshold). Twins are separate grains. Grains < {min_size} px become 0, 0-spots < {fill_below} px are
  filled from the nearest grain; the few unindexed points are isolated, so nothing stays unlabelled. {n_grains}
  grains in the whole map; mean equivalent diameter {diam:.1f} px, median {med:.1f} px (the many thin twins
  pull the median down).
- Conversion: the map cut into {tiles} side-by-side fields of {tile_w} x {h} px; BC (0-255 as stored) written
  as 8-bit grey TIFF unchanged; labels uint16 TIFF, relabelled 1..n per field. Pixel size {step} um (stored in
  the TIFF resolution tags).
"""


def hexagonal_symmetry() -> np.ndarray:
    """The 12 proper rotations of point group 622 in a Cartesian crystal frame with z || c.

    Six rotations about c by multiples of 60 deg and six 2-fold axes in the basal plane every 30 deg (these
    cover both the a and the a* directions, so the result does not depend on which one x is aligned with).
    """
    ops = []
    for k in range(6):
        c, s = np.cos(np.radians(60 * k)), np.sin(np.radians(60 * k))
        ops.append(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))
    for k in range(6):
        u = np.array([np.cos(np.radians(30 * k)), np.sin(np.radians(30 * k)), 0.0])
        ops.append(2.0 * np.outer(u, u) - np.eye(3))
    return np.array(ops)


def read_ctf(text: str) -> tuple[dict[str, np.ndarray], float]:
    """Phase, Euler1-3 (deg) and BC of an Oxford .ctf square grid as (H, W) arrays, and the step (um)."""
    lines = text.splitlines()
    head = {ln.split("\t")[0]: ln.split("\t")[1:] for ln in lines[:20] if "\t" in ln}
    w, h = int(head["XCells"][0]), int(head["YCells"][0])
    step = float(head["XStep"][0])
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Phase\tX\tY"))
    columns = lines[start].split("\t")
    data = np.loadtxt(io.StringIO("\n".join(lines[start + 1:])))
    if data.shape[0] != w * h:
        raise SystemExit(f"{FILE}: {data.shape[0]} points for a {w} x {h} grid")
    col = {name: data[:, i] for i, name in enumerate(columns)}
    x = np.round(col["X"] / step).astype(int)
    y = np.round(col["Y"] / step).astype(int)
    out = {}
    for name in ("Phase", "Euler1", "Euler2", "Euler3", "BC"):
        grid = np.zeros((h, w))
        grid[y, x] = col[name]
        out[name] = grid
    return out, step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="clone or bare mirror of mtex-toolbox/mtex")
    ap.add_argument("--out", required=True, help="the real-data root folder (e.g. ~/grainlab-realdata)")
    ap.add_argument("--threshold", type=float, default=10.0, help="grain boundary misorientation (deg)")
    ap.add_argument("--min-size", type=int, default=4, help="smaller grains become 0 (px)")
    ap.add_argument("--fill-below", type=int, default=20, help="unlabelled spots smaller than this are filled (px)")
    ap.add_argument("--tiles", type=int, default=2, help="side-by-side fields cut from the map")
    a = ap.parse_args(argv)
    src = Source(a.repo)
    m, step = read_ctf(src.read(FILE).decode("utf-8", "replace"))
    phase = m["Phase"].astype(int)
    h, w = phase.shape
    euler = np.stack([m["Euler1"], m["Euler2"], m["Euler3"]], axis=-1)  # .ctf Euler angles are in degrees
    g = pme._euler_matrices(euler.reshape(-1, 3)).reshape(h, w, 3, 3)
    # the grain definition of prepare_mtex_ebsd.py, with magnesium's hexagonal symmetry in place of the cubic one
    labels = pme.grains_from_orientations(g, phase, a.threshold, a.min_size, a.fill_below,
                                          symmetry=hexagonal_symmetry())
    bc8 = np.clip(m["BC"], 0, 255).astype(np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    diam = float(np.sqrt(4.0 * sizes.mean() / np.pi))
    med = float(np.sqrt(4.0 * np.median(sizes) / np.pi))
    tile_w = w // a.tiles
    root = Path(a.out) / NAME
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    res = (1e4 / step, 1e4 / step)  # pixels per cm
    for t in range(a.tiles):
        sl = (slice(None), slice(t * tile_w, (t + 1) * tile_w))
        lab = labels[sl]
        _, inv = np.unique(lab, return_inverse=True)
        lab = inv.reshape(lab.shape).astype(np.uint16) + (0 if (lab == 0).any() else 1)
        stem = f"mg_twins_{t + 1}"
        tifffile.imwrite(root / "images" / f"{stem}.tif", np.ascontiguousarray(bc8[sl]), resolution=res,
                         resolutionunit="CENTIMETER")
        tifffile.imwrite(root / "labels" / f"{stem}.tif", lab, compression="zlib", resolution=res,
                         resolutionunit="CENTIMETER")
    (root / "SOURCE.md").write_text(SOURCE_MD.format(
        name=NAME, commit=src.commit(), file=FILE, step=step, w=w, h=h, unindexed=int((phase == 0).sum()),
        threshold=a.threshold, min_size=a.min_size, fill_below=a.fill_below, n_grains=int(labels.max()),
        diam=diam, med=med, tiles=a.tiles, tile_w=tile_w), encoding="utf-8")
    print(f"{root}: {a.tiles} images ({tile_w} x {h} px), {int(labels.max())} grains in the whole map, "
          f"mean diameter {diam:.1f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
