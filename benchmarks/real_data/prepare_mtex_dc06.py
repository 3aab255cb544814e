"""Convert MTEX's example EBSD map ``data/EBSD/DC06_2uniax.ang`` (mtex-toolbox/mtex, GPL-2.0; a ferritic DC06
deep-drawing steel, EDAX/TSL .ang) into a dataset folder: the image-quality map (grey, SEM-like) with grain
labels computed from the measured orientations.

    python benchmarks/real_data/prepare_mtex_dc06.py --repo PATH/TO/mtex --out ~/grainlab-realdata [--threshold 10]

``--repo`` is a clone or a bare mirror of https://github.com/mtex-toolbox/mtex; nothing is fetched.

The grain definition is the one of ``prepare_mtex_ebsd.py`` (MTEX calcGrains' default): 4-connected regions
whose neighbouring pixels are misoriented by less than ``--threshold`` degrees (cubic m-3m: the file's
phase is "Iron (Alpha)", symmetry 43). Every point of this map is indexed (one phase), so nothing is 0.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _source import Source
from prepare_mtex_ebsd import _euler_matrices, grains_from_orientations

FILE = "data/EBSD/DC06_2uniax.ang"
NAME = "mtex_dc06_iq"

SOURCE_MD = """# {name}

- Repository: https://github.com/mtex-toolbox/mtex (commit {commit}), file `{file}` (an EDAX/TSL .ang map of
  DC06 (EN 10130 ferritic deep-drawing steel; "2uniax" in the name suggests uniaxial straining, not
  documented), phase "Iron (Alpha)", square grid,
  {step} um step, {w} x {h} points).
- Licence: GPL-2.0 (the repository's COPYING.txt covers the data shipped in it). Evaluation: allowed.
  Training: allowed by the licence; whoever distributes weights trained on it should note the GPL source.
  The data is not redistributed by grainlab (kept outside the repository and the wheel).
- Citation: Bachmann, F.; Hielscher, R.; Schaeben, H. Grain detection from 2d and 3d EBSD data --
  specification of the MTEX algorithm. Ultramicroscopy 111 (2011) 1720-1733 (MTEX); data from the MTEX
  example collection.
- What it is: the image-quality (IQ, Kikuchi pattern sharpness) map: an SEM-like grey image, grain interiors
  of different grey, boundaries thin dark dotted lines (about 1 px), a few bright and dark spots; grains
  about {diam:.0f} px across. A small field ({w} x {h} px, {n} grains): it tests few, clear grains.
- Labels: DERIVED, computed from the measured orientations, not drawn by hand: 4-connected regions whose
  neighbours are misoriented by < {threshold} deg (cubic symmetry; MTEX calcGrains' default threshold).
  Grains < {min_size} px become 0, 0-spots < {fill_below} px are filled from the nearest grain; every point
  is indexed, so nothing is unlabelled.
- Conversion: IQ stretched min..max to 8 bit, written as one grey TIFF; labels uint16 TIFF. Pixel size
  {step} um (stored in the TIFF resolution tags).
"""


def read_ang(text: str) -> tuple[dict[str, np.ndarray], float]:
    """phi1, Phi, phi2 (deg), IQ and CI of a square-grid .ang file as (H, W) arrays, and the step (um)."""
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    if not any("SqrGrid" in ln for ln in header):
        raise SystemExit(f"{FILE}: not a square grid")
    step = float(next(ln.split(":")[1] for ln in header if ln.startswith("# XSTEP")))
    data = np.loadtxt(io.StringIO(text), comments="#")
    x = np.round(data[:, 3] / step).astype(int)
    y = np.round(data[:, 4] / step).astype(int)
    h, w = y.max() + 1, x.max() + 1
    if h * w != len(x):
        raise SystemExit(f"{FILE}: {len(x)} points for a {w} x {h} grid")
    out = {}
    for name, col, scale in (("phi1", 0, 180 / np.pi), ("Phi", 1, 180 / np.pi), ("phi2", 2, 180 / np.pi),
                             ("IQ", 5, 1.0), ("CI", 6, 1.0)):
        grid = np.zeros((h, w))
        grid[y, x] = data[:, col] * scale  # .ang Euler angles are in radians
        out[name] = grid
    return out, step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="clone or bare mirror of mtex-toolbox/mtex")
    ap.add_argument("--out", required=True, help="the real-data root folder (e.g. ~/grainlab-realdata)")
    ap.add_argument("--threshold", type=float, default=10.0, help="grain boundary misorientation (deg)")
    ap.add_argument("--min-size", type=int, default=4, help="smaller grains become 0 (px)")
    ap.add_argument("--fill-below", type=int, default=20, help="unlabelled spots smaller than this are filled (px)")
    a = ap.parse_args(argv)
    src = Source(a.repo)
    m, step = read_ang(src.read(FILE).decode("utf-8", "replace"))
    h, w = m["IQ"].shape
    euler = np.stack([m["phi1"], m["Phi"], m["phi2"]], axis=-1)
    g = _euler_matrices(euler.reshape(-1, 3)).reshape(h, w, 3, 3)
    labels = grains_from_orientations(g, np.ones((h, w), dtype=int), a.threshold, a.min_size, a.fill_below)
    iq = m["IQ"]
    iq8 = np.clip((iq - iq.min()) / max(np.ptp(iq), 1e-9) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    root = Path(a.out) / NAME
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    res = (1e4 / step, 1e4 / step)  # pixels per cm
    tifffile.imwrite(root / "images" / "dc06_1.tif", iq8, resolution=res, resolutionunit="CENTIMETER")
    tifffile.imwrite(root / "labels" / "dc06_1.tif", labels, compression="zlib", resolution=res,
                     resolutionunit="CENTIMETER")
    sizes = np.bincount(labels.ravel())[1:]
    diam = float(np.sqrt(4.0 * sizes[sizes > 0].mean() / np.pi))
    (root / "SOURCE.md").write_text(SOURCE_MD.format(
        name=NAME, commit=src.commit(), file=FILE, step=step, w=w, h=h, diam=diam, n=int(labels.max()),
        threshold=a.threshold, min_size=a.min_size, fill_below=a.fill_below), encoding="utf-8")
    print(f"{root}: 1 image, {int(labels.max())} grains")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
