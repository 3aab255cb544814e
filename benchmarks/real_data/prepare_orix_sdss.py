"""Convert orix's example EBSD map ``sdss_ferrite_austenite/sdss_ferrite_austenite.ang`` (pyxem/orix-data,
CC BY 4.0; a super duplex stainless steel, ferrite + austenite, dictionary-indexed with EMsoft) into two dataset
folders: the image-quality map (grey, SEM-like, dark boundary lines) and an inverse-pole-figure colour map, both
with grain labels computed from the measured orientations.

    python benchmarks/real_data/prepare_orix_sdss.py --repo PATH/TO/orix-data --out ~/grainlab-realdata [--threshold 10]

``--repo`` is a clone or a bare mirror of https://github.com/pyxem/orix-data; nothing is fetched.

The grain definition is the one of ``prepare_mtex_ebsd.py`` (MTEX calcGrains' default): 4-connected regions of
one phase whose neighbouring pixels are misoriented by less than ``--threshold`` degrees. Both phases are cubic
(austenite fcc and ferrite bcc, m-3m), so the cubic disorientation of ``prepare_mtex_ebsd.py`` applies; a phase
boundary is always a grain boundary. Every point of the map carries a phase (dictionary indexing), so nothing
is unlabelled.
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
from prepare_mtex_ebsd import _euler_matrices, grains_from_orientations, ipf_colours

FILE = "sdss_ferrite_austenite/sdss_ferrite_austenite.ang"
LICENCE_FILE = "sdss_ferrite_austenite/LICENSE"

SOURCE_MD = """# {name}

- Repository: https://github.com/pyxem/orix-data (commit {commit}), file `{file}` (the test/tutorial data of the
  orix library: an EDAX/TSL-format .ang map of a super duplex stainless steel (SDSS), phases "austenite" and
  "ferrite", square grid, {step} um step, {w} x {h} points, patterns dictionary-indexed with EMsoft
  EMEBSDDI; operator Hakon Wiik Anes).
- Licence: CC BY 4.0 (the dataset's own `{licence_file}` and the repository README). Evaluation: allowed.
  Training: allowed; give attribution (dataset origin and citation below) when distributing the data or
  derived weights. The data is not redistributed by grainlab (kept outside the repository and the wheel).
- Origin / citation: acquired by Prof. Jarle Hjelen at NTNU (orix-data README); cite the orix library,
  doi:10.5281/zenodo.6199723 (the DOI the orix-data README asks for when a dataset has none of its own), and
  Johnstone, D. N.; Martineau, B. H.; Crout, P.; Midgley, P. A.; Eggeman, A. S. Density-based clustering of
  crystal (mis)orientations and the orix Python library. J. Appl. Cryst. 53 (2020) 1293-1298.
- What it is: {what}
- Labels: DERIVED, computed from the measured orientations, not drawn by hand: 4-connected regions of one
  phase whose neighbours are misoriented by < {threshold} deg (cubic symmetry for both phases; MTEX
  calcGrains' default threshold); phase boundaries are grain boundaries. Grains < {min_size} px become 0,
  0-spots < {fill_below} px are filled from the nearest grain. Annealing twins in the austenite (60 deg <111>)
  are separate grains, as EBSD counts them. Every point carries a phase, so nothing is unlabelled. {n_grains}
  grains ({n_aus} austenite, {n_fer} ferrite), mean equivalent diameter {diam:.1f} px, median {med:.1f} px.
- Conversion: {conversion} Labels uint16 TIFF, relabelled 1..n. Pixel size {step} um (stored in the TIFF
  resolution tags).
"""


def read_ang(text: str) -> tuple[dict[str, np.ndarray], float]:
    """phi1, Phi, phi2 (deg), IQ, CI and phase of this square-grid .ang file as (H, W) arrays, and the step (um).

    Columns (the file has 8): phi1 Phi phi2 (rad), x y (um), IQ, CI, phase (1 austenite, 2 ferrite).
    """
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    if not any("SqrGrid" in ln for ln in header):
        raise SystemExit(f"{FILE}: not a square grid")
    step = float(next(ln.split(":")[1] for ln in header if ln.startswith("# XSTEP")))
    data = np.loadtxt(io.StringIO(text), comments="#")
    if data.shape[1] != 8:
        raise SystemExit(f"{FILE}: expected 8 columns, found {data.shape[1]}")
    x = np.round(data[:, 3] / step).astype(int)
    y = np.round(data[:, 4] / step).astype(int)
    h, w = y.max() + 1, x.max() + 1
    if h * w != len(x):
        raise SystemExit(f"{FILE}: {len(x)} points for a {w} x {h} grid")
    out = {}
    for name, col, scale in (("phi1", 0, 180 / np.pi), ("Phi", 1, 180 / np.pi), ("phi2", 2, 180 / np.pi),
                             ("IQ", 5, 1.0), ("CI", 6, 1.0), ("phase", 7, 1.0)):
        grid = np.zeros((h, w))
        grid[y, x] = data[:, col] * scale  # .ang Euler angles are in radians
        out[name] = grid
    return out, step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="clone or bare mirror of pyxem/orix-data")
    ap.add_argument("--out", required=True, help="the real-data root folder (e.g. ~/grainlab-realdata)")
    ap.add_argument("--threshold", type=float, default=10.0, help="grain boundary misorientation (deg)")
    ap.add_argument("--min-size", type=int, default=4, help="smaller grains become 0 (px)")
    ap.add_argument("--fill-below", type=int, default=20, help="unlabelled spots smaller than this are filled (px)")
    a = ap.parse_args(argv)
    src = Source(a.repo)
    licence = src.read(LICENCE_FILE).decode("utf-8", "replace")
    if "Attribution 4.0" not in licence:
        raise SystemExit(f"{LICENCE_FILE}: not the CC BY 4.0 text this script was written for; check the licence")
    m, step = read_ang(src.read(FILE).decode("utf-8", "replace"))
    phase = m["phase"].astype(int)
    h, w = phase.shape
    euler = np.stack([m["phi1"], m["Phi"], m["phi2"]], axis=-1)
    g = _euler_matrices(euler.reshape(-1, 3)).reshape(h, w, 3, 3)
    labels = grains_from_orientations(g, phase, a.threshold, a.min_size, a.fill_below)
    iq = m["IQ"]
    lo, hi = np.percentile(iq, [0.5, 99.5])
    iq8 = np.clip((iq - lo) / max(hi - lo, 1e-9) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ipf = ipf_colours(g, phase > 0)
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    diam = float(np.sqrt(4.0 * sizes.mean() / np.pi))
    med = float(np.sqrt(4.0 * np.median(sizes) / np.pi))
    grain_phase = np.zeros(int(labels.max()) + 1, dtype=int)
    grain_phase[labels.ravel()] = phase.ravel()
    n_aus, n_fer = int((grain_phase[1:] == 1).sum()), int((grain_phase[1:] == 2).sum())
    commit = src.commit()
    sources = {
        "orix_sdss_iq": ("the image-quality (IQ) map of the dictionary-indexed patterns: an SEM-like grey image, "
                         "grain and phase boundaries thin dark lines (1-2 px), some intragranular shading and "
                         "pattern noise. Two phases of about equal area (austenite 48 %, ferrite 52 %; the "
                         "ferrite slightly brighter): the ferrite in few large grains, the austenite in many "
                         "small ones, most austenite-austenite boundaries straight annealing twins (60 deg).",
                         "IQ stretched between its 0.5 and 99.5 percentiles to 8 bit, written as one grey TIFF.",
                         iq8),
        "orix_sdss_ipf": ("inverse-pole-figure colour map (sample Z, cubic standard triangle: red 001, green 101, "
                          "blue 111) of the same map: grains differ only by colour, like a tint-etched or "
                          "EBSD-IPF image. Derived from the same orientations as the labels, so colour changes "
                          "and label boundaries coincide by construction.",
                          "IPF colours as one 8-bit RGB TIFF.", ipf),
    }
    res = (1e4 / step, 1e4 / step)  # pixels per cm
    for name, (what, conversion, image) in sources.items():
        root = Path(a.out) / name
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / "sdss_1.tif", np.ascontiguousarray(image), resolution=res,
                         resolutionunit="CENTIMETER")
        tifffile.imwrite(root / "labels" / "sdss_1.tif", labels, compression="zlib", resolution=res,
                         resolutionunit="CENTIMETER")
        (root / "SOURCE.md").write_text(SOURCE_MD.format(
            name=name, commit=commit, file=FILE, licence_file=LICENCE_FILE, step=step, w=w, h=h, what=what,
            threshold=a.threshold, min_size=a.min_size, fill_below=a.fill_below, n_grains=int(labels.max()),
            n_aus=n_aus, n_fer=n_fer, diam=diam, med=med, conversion=conversion), encoding="utf-8")
        print(f"{root}: 1 image ({w} x {h} px), {int(labels.max())} grains, mean diameter {diam:.1f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
