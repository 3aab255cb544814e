"""Convert DefDAP's test EBSD map ``tests/data/testDataEBSD.cpr/.crc`` (MechMicroMan/DefDAP, Apache-2.0, a Ni
superalloy with annealing twins, Oxford AZtec binary) into two dataset folders: the band-contrast map (grey,
SEM-like) and an inverse-pole-figure colour map, both with grain labels computed from the measured orientations.

    python benchmarks/real_data/prepare_defdap_ebsd.py --repo PATH/TO/DefDAP --out ~/grainlab-realdata [--threshold 10]

``--repo`` is a clone or a bare mirror of https://github.com/MechMicroMan/DefDAP; nothing is fetched.

The grain definition is the one of ``prepare_mtex_ebsd.py`` (MTEX calcGrains' default): 4-connected regions
whose neighbouring pixels are misoriented by less than ``--threshold`` degrees (cubic m-3m, the file's Laue
group 11). The file is a cleaned export (every pixel carries an orientation), so there is no
unlabelled area. The 359 x 243 map is cut into ``--tiles`` side-by-side fields so a few-shot split is possible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _source import Source
from prepare_mtex_ebsd import _euler_matrices, grains_from_orientations, ipf_colours

CPR = "tests/data/testDataEBSD.cpr"
CRC = "tests/data/testDataEBSD.crc"

# Oxford .crc record layout for the field ids the .cpr lists (the table DefDAP's file_readers.py uses)
FIELDS = {3: ("ph1", "<f4"), 4: ("phi", "<f4"), 5: ("ph2", "<f4"), 6: ("MAD", "<f4"), 7: ("BC", "u1"),
          8: ("BS", "u1"), 10: ("bands", "u1"), 11: ("AFI", "u1"), 12: ("IB6", "<f4")}

SOURCE_MD = """# {name}

- Repository: https://github.com/MechMicroMan/DefDAP (commit {commit}), files `{cpr}` and `{crc}`
  (DefDAP's test EBSD map; Oxford Instruments AZtec, job "dogbone_2-6_map1", phase "Ni-superalloy",
  20 kV, 0.12 um step, {w} x {h} points, indexing coverage 94.1 %, exported after cleaning: .cpr Modified=True).
- Licence: Apache-2.0 (the repository's LICENSE covers the files in it). Evaluation: allowed. Training:
  allowed; keep the licence and attribution notice when distributing the data or derived weights.
  The data is not redistributed by grainlab (kept outside the repository and the wheel).
- Citation: Atkinson, M. D.; Thomas, R.; Quinta da Fonseca, J. DefDAP: a python library for correlating EBSD
  and HRDIC data (authors as listed in its pyproject.toml), doi:10.5281/zenodo.3688096 (the DOI its README
  gives).
- What it is: {what}
- Labels: DERIVED, computed from the measured orientations, not drawn by hand: 4-connected regions whose
  neighbours are misoriented by < {threshold} deg (cubic symmetry; MTEX calcGrains' default threshold).
  Grains < {min_size} px become 0, 0-spots < {fill_below} px are filled from the nearest grain. Annealing
  twins (60 deg <111>) are separate grains, as EBSD counts them. The 5.9 % of points AZtec could not index
  were filled before export (the file gives them an orientation but 0 bands); they carry their
  neighbours' orientation, so labels there follow the neighbours. {n_grains} grains in the whole map.
- Conversion: the map cut into {tiles} side-by-side fields of {tile_w} x {h} px, written as {fmt}; labels
  uint16 TIFF. Pixel size 0.12 um (stored in the TIFF resolution tags).
"""


def read_crc(cpr_text: str, crc_bytes: bytes) -> tuple[np.ndarray, float]:
    """The .crc records as a (H, W) structured array, using the field list and grid of the .cpr."""
    meta: dict[str, dict[str, str]] = {}
    section = ""
    for line in cpr_text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            meta[section] = {}
        elif "=" in line and section:
            k, v = line.split("=", 1)
            meta[section][k] = v
    w, h = int(meta["Job"]["xCells"]), int(meta["Job"]["yCells"])
    step = float(meta["Job"]["GridDistX"])
    dtype = [("phase", "u1")]
    for i in range(int(meta["Fields"]["Count"])):
        fid = int(meta["Fields"][f"Field{i + 1}"])
        if fid not in FIELDS:
            raise SystemExit(f"{CPR}: unknown field id {fid}")
        dtype.append(FIELDS[fid])
    data = np.frombuffer(crc_bytes, dtype=np.dtype(dtype))
    if data.size != w * h:
        raise SystemExit(f"{CRC}: {data.size} records for a {w} x {h} grid")
    return data.reshape(h, w), step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="clone or bare mirror of MechMicroMan/DefDAP")
    ap.add_argument("--out", required=True, help="the real-data root folder (e.g. ~/grainlab-realdata)")
    ap.add_argument("--threshold", type=float, default=10.0, help="grain boundary misorientation (deg)")
    ap.add_argument("--min-size", type=int, default=4, help="smaller grains become 0 (px)")
    ap.add_argument("--fill-below", type=int, default=20, help="unlabelled spots smaller than this are filled (px)")
    ap.add_argument("--tiles", type=int, default=2, help="side-by-side fields cut from the map")
    a = ap.parse_args(argv)
    src = Source(a.repo)
    data, step = read_crc(src.read(CPR).decode("utf-8", "replace"), src.read(CRC))
    h, w = data.shape
    euler = np.degrees(np.stack([data["ph1"], data["phi"], data["ph2"]], axis=-1).astype(np.float64))  # stored in rad
    g = _euler_matrices(euler.reshape(-1, 3)).reshape(h, w, 3, 3)
    phase = data["phase"].astype(int)
    labels = grains_from_orientations(g, phase, a.threshold, a.min_size, a.fill_below)
    ipf = ipf_colours(g, phase > 0)
    tile_w = w // a.tiles
    commit = src.commit()
    sources = {
        "defdap_ebsd_bc": ("band-contrast (Kikuchi pattern quality) map of a polycrystalline Ni superalloy: an "
                           "SEM-like grey image, grain boundaries dark lines, straight annealing-twin boundaries, "
                           "grain interiors of different grey, some dark deformation traces; grains about 30 px "
                           "across.", "8-bit grey TIFF (the stored 0-255 band contrast, unchanged)", data["BC"]),
        "defdap_ebsd_ipf": ("inverse-pole-figure colour map (sample Z, cubic standard triangle: red 001, green "
                            "101, blue 111) of the same map: grains differ only by colour, like a tint-etched or "
                            "EBSD-IPF image. Derived from the same orientations as the labels, so colour changes "
                            "and label boundaries coincide by construction.", "8-bit RGB TIFF", ipf),
    }
    res = (1e4 / step, 1e4 / step)  # pixels per cm
    for name, (what, fmt, image) in sources.items():
        root = Path(a.out) / name
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        for t in range(a.tiles):
            sl = (slice(None), slice(t * tile_w, (t + 1) * tile_w))
            lab = labels[sl]
            _, inv = np.unique(lab, return_inverse=True)
            lab = inv.reshape(lab.shape).astype(np.uint16) + (0 if (lab == 0).any() else 1)
            stem = f"ni_superalloy_{t + 1}"
            tifffile.imwrite(root / "images" / f"{stem}.tif", np.ascontiguousarray(image[sl]),
                             resolution=res, resolutionunit="CENTIMETER")
            tifffile.imwrite(root / "labels" / f"{stem}.tif", lab, compression="zlib",
                             resolution=res, resolutionunit="CENTIMETER")
        (root / "SOURCE.md").write_text(SOURCE_MD.format(
            name=name, commit=commit, cpr=CPR, crc=CRC, w=w, h=h, what=what, threshold=a.threshold,
            min_size=a.min_size, fill_below=a.fill_below, n_grains=int(labels.max()), tiles=a.tiles,
            tile_w=tile_w, fmt=fmt), encoding="utf-8")
        print(f"{root}: {a.tiles} images, {int(labels.max())} grains in the whole map")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
