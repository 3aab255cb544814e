"""Convert MTEX's example EBSD map ``85_829grad_07_09_06.txt`` (mtex-toolbox/mtex, GPL-2.0) into two
dataset folders: the band-contrast map (grey, SEM-like) and an inverse-pole-figure colour map, both with
grain labels computed from the measured orientations.

    python benchmarks/real_data/prepare_mtex_ebsd.py --repo PATH/TO/mtex --out ~/grainlab-realdata [--threshold 10]

``--repo`` is a clone or a bare mirror of https://github.com/mtex-toolbox/mtex; nothing is fetched.

Grains are what MTEX's ``calcGrains`` defines by default: 4-connected regions of one phase whose
neighbouring pixels are misoriented by less than ``--threshold`` degrees (cubic m-3m symmetry, as MTEX's
own example loads this file). Unindexed pixels and grains smaller than ``--min-size`` px are 0; 0-spots
smaller than ``--fill-below`` px are filled from the nearest grain, larger unindexed areas stay 0 (not scored). The 425 x 143 map is cut into ``--tiles`` side-by-side fields so a few-shot split is possible.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _source import Source

FILE = "data/EBSD/85_829grad_07_09_06.txt"
STEP_UM = 0.6

SOURCE_MD = """# {name}

- Repository: https://github.com/mtex-toolbox/mtex (commit {commit}), file `{file}` (MTEX's
  "aachen" example data set, loaded in MTEX's own documentation with two cubic m-3m phases, Fe and Mg).
- Licence: GPL-2.0 (the repository's COPYING.txt covers the data shipped in it). Evaluation: allowed.
  Training: allowed by the licence; whoever distributes weights trained on it should note the GPL source.
  The data is not redistributed by grainlab (kept outside the repository and the wheel).
- Citation: Bachmann, F.; Hielscher, R.; Schaeben, H. Grain detection from 2d and 3d EBSD data --
  specification of the MTEX algorithm. Ultramicroscopy 111 (2011) 1720-1733 (MTEX); data from the MTEX
  example collection (RWTH Aachen).
- What it is: {what}
- Labels: computed from the measured orientations, not drawn by hand: 4-connected regions of one phase
  whose neighbours are misoriented by < {threshold} deg (cubic symmetry; MTEX calcGrains' default
  threshold). Unindexed pixels and grains < {min_size} px become 0; 0-spots < {fill_below} px are
  then filled from the nearest grain (as MTEX's `fill`), larger unindexed areas stay 0 (not scored). The labels are therefore exact for what
  EBSD calls a grain (twins and low-angle boundaries above the threshold included).
- Conversion: the 425 x 143 map (0.6 um step) cut into {tiles} side-by-side fields of {tile_w} x 143 px,
  written as {fmt}; labels uint16 TIFF. Pixel size {step} um (stored in the TIFF resolution tags).
"""


def _euler_matrices(euler_deg: np.ndarray) -> np.ndarray:
    """Bunge (phi1, Phi, phi2) in degrees -> orientation matrices g (sample -> crystal), shape (N, 3, 3)."""
    p1, P, p2 = np.radians(euler_deg).T
    c1, s1, c, s, c2, s2 = np.cos(p1), np.sin(p1), np.cos(P), np.sin(P), np.cos(p2), np.sin(p2)
    g = np.empty((len(p1), 3, 3))
    g[:, 0, 0] = c1 * c2 - s1 * s2 * c
    g[:, 0, 1] = s1 * c2 + c1 * s2 * c
    g[:, 0, 2] = s2 * s
    g[:, 1, 0] = -c1 * s2 - s1 * c2 * c
    g[:, 1, 1] = -s1 * s2 + c1 * c2 * c
    g[:, 1, 2] = c2 * s
    g[:, 2, 0] = s1 * s
    g[:, 2, 1] = -c1 * s
    g[:, 2, 2] = c
    return g


def cubic_symmetry() -> np.ndarray:
    """The 24 proper rotations of the cube (signed permutation matrices with determinant +1)."""
    import itertools

    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                ops.append(m)
    return np.asarray(ops)


def misorientation_deg(g1: np.ndarray, g2: np.ndarray, symmetry: np.ndarray | None = None) -> np.ndarray:
    """Disorientation angle (deg) between orientation matrices, pairwise, under the proper rotations
    ``symmetry`` (S, 3, 3) of the crystal (default: cubic)."""
    sym = cubic_symmetry() if symmetry is None else symmetry
    delta = np.einsum("nij,nkj->nik", g1, g2)  # g1 g2^T: crystal-frame misorientation
    traces = np.einsum("sij,nji->ns", sym, delta)  # tr(S delta) for every symmetry op
    cos = np.clip((traces.max(axis=1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def grains_from_orientations(g: np.ndarray, phase: np.ndarray, threshold: float, min_size: int,
                             fill_below: int = 20, symmetry: np.ndarray | None = None) -> np.ndarray:
    """Grain labels of a (H, W) map of orientation matrices ``g`` (H, W, 3, 3); ``symmetry``: the crystal's
    proper rotations (default cubic).

    Unindexed pixels and grains under ``min_size`` px become 0; 0-regions under ``fill_below`` px are then
    filled from the nearest grain, larger unindexed areas stay 0 (not scored).
    """
    h, w = phase.shape
    idx = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        a, b = a.ravel(), b.ravel()
        pa, pb = phase.ravel()[a], phase.ravel()[b]
        ok = (pa > 0) & (pa == pb)
        a, b = a[ok], b[ok]
        gf = g.reshape(-1, 3, 3)
        same = misorientation_deg(gf[a], gf[b], symmetry) < threshold
        rows.append(a[same])
        cols.append(b[same])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(h * w, h * w))
    _, comp = connected_components(graph, directed=False)
    comp = comp.reshape(h, w) + 1
    comp[phase == 0] = 0
    sizes = np.bincount(comp.ravel())
    comp[sizes[comp] < min_size] = 0
    holes, n = ndi.label(comp == 0)
    small = np.zeros(n + 1, dtype=bool)
    small[1:] = np.bincount(holes.ravel(), minlength=n + 1)[1:] < fill_below
    fill = small[holes]
    if fill.any():  # small unindexed spots take the nearest grain, as MTEX's fill() does
        _, (iy, ix) = ndi.distance_transform_edt(comp == 0, return_indices=True)
        comp[fill] = comp[iy[fill], ix[fill]]
    _, inverse = np.unique(comp, return_inverse=True)
    out = inverse.reshape(h, w).astype(np.int64)
    if (comp == 0).any():
        return out.astype(np.uint16)  # 0 stays 0 (it is the smallest value)
    return (out + 1).astype(np.uint16)


def ipf_colours(g: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Inverse-pole-figure colour (sample Z in the crystal frame, cubic standard triangle) as uint8 RGB."""
    hkl = np.abs(g[..., :, 2])  # sample Z expressed in crystal axes
    hkl = np.sort(hkl, axis=-1)  # x <= y <= z: the standard triangle 001-101-111
    x, y, z = hkl[..., 0], hkl[..., 1], hkl[..., 2]
    rgb = np.stack([z - y, y - x, x * np.sqrt(3.0)], axis=-1)
    rgb /= np.maximum(rgb.max(axis=-1, keepdims=True), 1e-9)
    rgb = np.sqrt(rgb)
    rgb[~valid] = 0.0
    return (rgb * 255 + 0.5).astype(np.uint8)


def read_map(text: str) -> dict[str, np.ndarray]:
    lines = text.splitlines()
    header = lines[0].split()
    data = np.loadtxt(io.StringIO("\n".join(lines[1:])))
    col = {name: data[:, i] for i, name in enumerate(header)}
    x = np.round(col["X"] / STEP_UM).astype(int)
    y = np.round(col["Y"] / STEP_UM).astype(int)
    x -= x.min()
    y -= y.min()
    h, w = y.max() + 1, x.max() + 1
    if h * w != len(x):
        raise SystemExit(f"{FILE}: not a full square grid ({len(x)} points for {w} x {h})")
    out = {}
    for name in ("Phase", "BC", "Euler1", "Euler2", "Euler3"):
        grid = np.zeros((h, w))
        grid[y, x] = col[name]
        out[name] = grid
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="clone or bare mirror of mtex-toolbox/mtex")
    ap.add_argument("--out", required=True, help="the real-data root folder (e.g. ~/grainlab-realdata)")
    ap.add_argument("--threshold", type=float, default=10.0, help="grain boundary misorientation (deg)")
    ap.add_argument("--min-size", type=int, default=4, help="smaller grains become 0 (px)")
    ap.add_argument("--fill-below", type=int, default=20, help="unindexed spots smaller than this are filled (px)")
    ap.add_argument("--tiles", type=int, default=3, help="side-by-side fields cut from the map")
    a = ap.parse_args(argv)
    src = Source(a.repo)
    m = read_map(src.read(FILE).decode())
    phase = m["Phase"].astype(int)
    euler = np.stack([m["Euler1"], m["Euler2"], m["Euler3"]], axis=-1)
    g = _euler_matrices(euler.reshape(-1, 3)).reshape(*phase.shape, 3, 3)
    labels = grains_from_orientations(g, phase, a.threshold, a.min_size, a.fill_below)
    bc = m["BC"]
    bc8 = np.clip(bc / max(bc.max(), 1.0) * 255.0, 0, 255).astype(np.uint8)
    ipf = ipf_colours(g, phase > 0)
    h, w = phase.shape
    tile_w = w // a.tiles
    commit = src.commit()
    sources = {
        "mtex_ebsd_bc": ("band-contrast (Kikuchi pattern quality) map of a two-phase cubic steel/alloy section "
                         "(Oxford HKL, 0.6 um step): an SEM-like grey image where grain boundaries and "
                         "unindexed spots are dark, grain interiors vary in brightness.",
                         "8-bit grey TIFF", bc8),
        "mtex_ebsd_ipf": ("inverse-pole-figure colour map (sample Z, cubic standard triangle: red 001, green "
                          "101, blue 111) of the same map: grains differ only by colour, like a tint-etched or "
                          "EBSD-IPF image; unindexed pixels black. Derived from the same orientations as the "
                          "labels, so colour changes and label boundaries coincide by construction.",
                          "8-bit RGB TIFF", ipf),
    }
    res = (1e4 / STEP_UM, 1e4 / STEP_UM)  # pixels per cm
    for name, (what, fmt, image) in sources.items():
        root = Path(a.out) / name
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        for t in range(a.tiles):
            sl = (slice(None), slice(t * tile_w, (t + 1) * tile_w))
            lab = labels[sl]
            _, inv = np.unique(lab, return_inverse=True)
            lab = inv.reshape(lab.shape).astype(np.uint16) + (0 if (lab == 0).any() else 1)
            stem = f"aachen_{t + 1}"
            tifffile.imwrite(root / "images" / f"{stem}.tif", np.ascontiguousarray(image[sl]),
                             resolution=res, resolutionunit="CENTIMETER")
            tifffile.imwrite(root / "labels" / f"{stem}.tif", lab, compression="zlib",
                             resolution=res, resolutionunit="CENTIMETER")
        (root / "SOURCE.md").write_text(SOURCE_MD.format(
            name=name, commit=commit, file=FILE, what=what, threshold=a.threshold, min_size=a.min_size, fill_below=a.fill_below,
            tiles=a.tiles, tile_w=tile_w, fmt=fmt, step=STEP_UM), encoding="utf-8")
        print(f"{root}: {a.tiles} images, {int(labels.max())} grains in the whole map")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
