"""Grain micrographs from renderers the synthetic generator knows nothing about.

Test sets for the sim-to-real check (``bench_sim2real.py``): a model trained only on
``napari_grainlab.core.synthetic`` data is evaluated on these.  Neither the geometry nor the
rendering reuses the package's generator; every image comes with ground-truth grain
instances (uint32, 0 = pore / not a grain).

Kinds
-----
``orientation``
    Johnson-Mehl nucleation and anisotropic growth, smoothed by zero-temperature Potts Monte
    Carlo; groove-less orientation contrast: each grain one intensity (cos^2 of a random
    orientation, so many neighbours look nearly alike), boundaries only as intensity steps,
    Gaussian blur, shot noise.
``optical``
    Near-simultaneous nucleation with aligned elliptical growth (a rolled texture), lightly
    Potts-smoothed; etched bright-field look: dark lines of
    varying width and depth along the boundaries, some missing, uneven illumination, colour
    camera noise, JPEG compression (Pillow via imageio) and conversion to gray.
``sem``
    Johnson-Mehl / Potts geometry; secondary-electron look: bright edge effect with an
    exponential profile, long-tailed (Cauchy) probe, low-dose shot noise, scan-line offsets
    and gains, a charging band and streaks.
``bse-twins``
    Potts geometry with annealing-twin bands (same label as their grain) and pores (label 0);
    backscatter orientation contrast, Gaussian probe, moderate shot noise.

    python benchmarks/foreign_renderers.py OUT [--kinds orientation optical sem bse-twins]
        [--count 6] [--size 512] [--seed 0]

writes ``OUT/<kind>/images/foreign_0000.tif`` + ``labels/foreign_0000.tif`` (a dataset folder for
``grainlab eval``) and a montage ``OUT/foreign_sets.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.measure import label as connected_label
from skimage.segmentation import find_boundaries

KINDS = ("orientation", "optical", "sem", "bse-twins")

__all__ = ["KINDS", "make_set", "render", "johnson_mehl", "potts_smooth"]


# ------------------------------------------------------------------------ geometry
def _clean(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Split every label into its connected pieces, give pieces smaller than ``min_area``
    to the nearest larger grain and number the grains 1..n (0 stays 0 where given as 0)."""
    pores = labels == 0
    pieces = connected_label(np.where(pores, -1, labels.astype(np.int64)), background=-1, connectivity=1)
    area = np.bincount(pieces.ravel())
    small = (area < min_area)[pieces] & ~pores
    if small.any():
        _, (iy, ix) = ndi.distance_transform_edt(small | pores, return_indices=True)
        filled = pieces[iy, ix]
        pieces = np.where(small, filled, pieces)
        pieces[pores] = 0
    ids, inv = np.unique(pieces, return_inverse=True)
    out = inv.reshape(pieces.shape).astype(np.uint32)
    if ids[0] != 0:
        out += 1
    return out


def johnson_mehl(shape: tuple[int, int], n: int, rng: np.random.Generator, anisotropy: float = 0.5,
                 nucleation: float = 0.9, speed_sigma: float = 0.2, texture: float | None = None) -> np.ndarray:
    """Johnson-Mehl microstructure: nuclei appear at random times (spread over ``nucleation``
    mean spacings) and grow at per-grain speeds (lognormal, ``speed_sigma``) with an
    elliptical growth front (axis ratio up to ``1 + anisotropy``; long axes at random or, with
    ``texture`` = an angle in radians, aligned within 15 degrees); each pixel belongs to the
    grain that reaches it first.  Boundaries are curved (hyperbolic and elliptic arcs)."""
    h, w = shape
    spacing = math.sqrt(h * w / n)
    m = spacing
    n_all = int(round(n * (h + 2 * m) * (w + 2 * m) / (h * w)))
    py = rng.uniform(-m, h + m, n_all).astype(np.float32)
    px = rng.uniform(-m, w + m, n_all).astype(np.float32)
    speed = np.exp(rng.normal(0.0, speed_sigma, n_all)).astype(np.float32)
    born = rng.uniform(0.0, nucleation * spacing, n_all).astype(np.float32)
    ratio = 1.0 + anisotropy * rng.random(n_all)
    if texture is None:
        angle = rng.uniform(0.0, math.pi, n_all)
    else:
        angle = texture + math.radians(15.0) * rng.standard_normal(n_all)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    best = np.full(shape, np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    for i in range(n_all):
        c, s = math.cos(angle[i]), math.sin(angle[i])
        dy, dx = yy - py[i], xx - px[i]
        u = (c * dx + s * dy) * np.float32(1.0 / math.sqrt(ratio[i]))
        v = (c * dy - s * dx) * np.float32(math.sqrt(ratio[i]))
        t = np.sqrt(u * u + v * v) / speed[i] + born[i]
        better = t < best
        best[better] = t[better]
        labels[better] = i + 1
    return _clean(labels, max(8, int(0.05 * spacing**2)))


def potts_smooth(labels: np.ndarray, sweeps: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-temperature Potts Monte Carlo (8 neighbours, checkerboard updates): every site
    tries the label of a random neighbour and takes it when that does not add unlike
    neighbours (ties accepted half of the time).  Boundaries smooth and migrate like in
    curvature-driven grain growth."""
    lab = labels.astype(np.int64)
    h, w = lab.shape
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    for _ in range(sweeps):
        for sy in (0, 1):
            for sx in (0, 1):
                pad = np.pad(lab, 1, mode="edge")
                cur = lab[sy::2, sx::2]
                nbs = np.stack([pad[1 + dy + sy : 1 + dy + h : 2, 1 + dx + sx : 1 + dx + w : 2] for dy, dx in offsets])
                pick = rng.integers(0, 8, cur.shape)
                cand = np.take_along_axis(nbs, pick[None], 0)[0]
                moving = cand != cur
                if not moving.any():
                    continue
                e_old = (nbs != cur[None]).sum(0)
                e_new = (nbs != cand[None]).sum(0)
                accept = moving & ((e_new < e_old) | ((e_new == e_old) & (rng.random(cur.shape) < 0.5)))
                cur[accept] = cand[accept]  # a view: writes into lab
    return _clean(lab, 12)


def _twins(labels: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Straight, parallel-sided twin bands inside a fraction of the grains (0 = none, else
    the band's index + 1 within its grain)."""
    twins = np.zeros(labels.shape, dtype=np.uint8)
    for g, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or rng.random() > fraction:
            continue
        mask = labels[sl] == g
        if mask.sum() < 150:
            continue
        yy, xx = np.nonzero(mask)
        theta = rng.uniform(0, math.pi)
        proj = (yy - yy.mean()) * math.sin(theta) + (xx - xx.mean()) * math.cos(theta)
        span = proj.max() - proj.min()
        for k in range(int(rng.integers(1, 3))):
            centre = rng.uniform(proj.min() + 0.15 * span, proj.max() - 0.15 * span)
            half = 0.5 * span * rng.uniform(0.06, 0.2)
            band = np.abs(proj - centre) < half
            twins[sl][yy[band], xx[band]] = k + 1
    return twins


def _pores(labels: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    h, w = labels.shape
    out = labels.copy()
    yy, xx = np.mgrid[:h, :w]
    target = fraction * h * w
    while (out == 0).sum() < target:
        r = rng.uniform(2.0, 7.0)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1, x0, x1 = int(max(0, cy - r - 1)), int(min(h, cy + r + 2)), int(max(0, cx - r - 1)), int(min(w, cx + r + 2))
        disk = (yy[y0:y1, x0:x1] - cy) ** 2 / 1.2 + (xx[y0:y1, x0:x1] - cx) ** 2 * 1.2 < r * r
        out[y0:y1, x0:x1][disk] = 0
    return out


# ------------------------------------------------------------------------ rendering
def _shading(shape, rng, strength: float) -> np.ndarray:
    h, w = shape
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    a, b, c = rng.normal(0, 1, 3)
    cy, cx = rng.uniform(-0.6, 0.6, 2)
    return strength * (0.5 * a * y + 0.5 * b * x - 0.4 * abs(c) * ((y - cy) ** 2 + (x - cx) ** 2))


def _pair_values(labels: np.ndarray):
    """Boundary pixels, the nearest boundary pixel of every pixel and its distance, and a
    per-boundary (unordered grain pair) index, for profiles that vary boundary by boundary."""
    h, w = labels.shape
    pair = np.full(labels.shape, -1, dtype=np.int64)
    n = int(labels.max()) + 1
    for axis in (0, 1):
        a = labels[:-1, :] if axis == 0 else labels[:, :-1]
        b = labels[1:, :] if axis == 0 else labels[:, 1:]
        diff = a != b
        key = np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)
        view = pair[:-1, :] if axis == 0 else pair[:, :-1]
        view[diff] = key[diff]
    bnd = pair >= 0
    dist, (iy, ix) = ndi.distance_transform_edt(~bnd, return_indices=True)
    keys, inv = np.unique(pair[bnd], return_inverse=True)
    index = np.full(labels.shape, -1, dtype=np.int64)
    index[bnd] = inv
    return dist.astype(np.float32), index[iy, ix], len(keys)


def _cauchy_blur(img: np.ndarray, gamma: float) -> np.ndarray:
    """Blur with a long-tailed probe: transfer function exp(-2 pi gamma |f|) (2-D Cauchy PSF)."""
    h, w = img.shape
    pad = int(8 * gamma) + 4
    x = np.pad(img, pad, mode="reflect")
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.rfftfreq(x.shape[1])[None, :]
    tf = np.exp(-2 * math.pi * gamma * np.sqrt(fy * fy + fx * fx))
    out = np.fft.irfft2(np.fft.rfft2(x) * tf, s=x.shape)
    return out[pad : pad + h, pad : pad + w].astype(np.float32)


def _finish(img: np.ndarray) -> np.ndarray:
    """Auto-contrast (0.2 / 99.8 percentiles) and 8-bit levels, as a microscope saves it."""
    lo, hi = np.percentile(img, (0.2, 99.8))
    out = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    return (np.round(out * 255) / 255).astype(np.float32)


def render_orientation(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(labels.max()) + 1
    level = 0.15 + 0.7 * np.cos(rng.uniform(0, math.pi, n)) ** 2
    img = level[labels].astype(np.float32)
    img += _shading(labels.shape, rng, rng.uniform(0.05, 0.2))
    img = ndi.gaussian_filter(img, rng.uniform(0.7, 1.8))
    dose = rng.uniform(20, 150)
    img = rng.poisson(np.clip(img, 0.01, None) * dose) / dose + rng.normal(0, 0.01, img.shape)
    return img.astype(np.float32)


def render_optical(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(labels.max()) + 1
    dist, nearest, k = _pair_values(labels)
    width = np.exp(rng.uniform(math.log(0.6), math.log(2.5), k))
    depth = rng.uniform(0.3, 0.75, k)
    u = rng.random(k)
    depth[u < 0.35] *= 0.25  # faint
    depth[u < 0.15] = 0.0  # missing
    line = depth[nearest] * np.exp(-0.5 * (dist / width[nearest]) ** 2)
    base = 0.72 + 0.05 * rng.standard_normal(n)
    tint = 1.0 + 0.04 * rng.standard_normal((n, 3))
    illum = 1.0 + _shading(labels.shape, rng, rng.uniform(0.15, 0.4))
    rgb = (base[labels][..., None] * tint[labels] - 0.75 * line[..., None]) * illum[..., None]
    rgb = ndi.gaussian_filter(rgb, (1.0, 1.0, 0))
    blotch = ndi.zoom(rng.standard_normal((8, 8, 3)), (labels.shape[0] / 8, labels.shape[1] / 8, 1), order=1)
    rgb = rgb + 0.02 * blotch[: labels.shape[0], : labels.shape[1]] + rng.normal(0, rng.uniform(0.015, 0.04), rgb.shape)
    rgb8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    iio.imwrite(buf, rgb8, extension=".jpg", quality=int(rng.integers(40, 81)))
    back = iio.imread(buf.getvalue(), extension=".jpg").astype(np.float32) / 255.0
    return back @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def render_sem(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = labels.shape
    n = int(labels.max()) + 1
    dist, nearest, k = _pair_values(labels)
    img = (0.3 + 0.06 * rng.standard_normal(n))[labels].astype(np.float32)
    lam = rng.uniform(1.0, 2.5)
    amp = rng.uniform(0.2, 0.45) * rng.uniform(0.5, 1.5, k)
    img += amp[nearest] * np.exp(-dist / lam)
    img = _cauchy_blur(img, rng.uniform(0.5, 1.2))
    img *= 1.0 + _shading(labels.shape, rng, rng.uniform(0.05, 0.25))
    # charging: a brighter band with a decaying tail, and a few streaks along the scan
    r0 = int(rng.integers(0, h))
    rows = np.arange(h)
    band = np.where(rows >= r0, np.exp(-(rows - r0) / rng.uniform(5, 30)), 0.0)
    img *= (1.0 + rng.uniform(0.2, 0.5) * band)[:, None].astype(np.float32)
    for _ in range(int(rng.integers(2, 8))):
        r, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        img[r, x0:] += rng.uniform(0.1, 0.3) * np.exp(-np.arange(w - x0) / rng.uniform(10, 80))
    dose = rng.uniform(3, 20)
    img = rng.poisson(np.clip(img, 0.0, None) * dose).astype(np.float32) / dose
    gain = 1.0 + rng.normal(0, 0.04, h)[:, None]
    offset = rng.normal(0, rng.uniform(0.02, 0.05), h)[:, None]
    return (img * gain + offset).astype(np.float32)


def render_bse(labels: np.ndarray, twins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(labels.max()) + 1
    phi = rng.uniform(0, math.pi, n)
    level = 0.2 + 0.6 * np.cos(phi) ** 2
    twin_level = 0.2 + 0.6 * np.cos(phi + rng.uniform(0.5, 1.2, n)) ** 2
    img = np.where(twins > 0, twin_level[labels], level[labels]).astype(np.float32)
    img[labels == 0] = 0.03
    img += _shading(labels.shape, rng, 0.1)
    img = ndi.gaussian_filter(img, rng.uniform(0.8, 1.5))
    dose = rng.uniform(50, 300)
    img = rng.poisson(np.clip(img, 0.0, None) * dose).astype(np.float32) / dose
    return img + rng.normal(0, 0.01, (labels.shape[0], 1)).astype(np.float32)


def render(kind: str, size: int | tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One micrograph of ``kind``: ``(image float32 in [0, 1] on 8-bit levels, labels uint32)``."""
    shape = (size, size) if np.isscalar(size) else tuple(int(s) for s in size)
    area = shape[0] * shape[1]
    n = max(4, int(area / rng.uniform(35.0, 65.0) ** 2 / (math.pi / 4)))
    if kind == "orientation":
        labels = potts_smooth(johnson_mehl(shape, n, rng, anisotropy=0.6), 12, rng)
        img = render_orientation(labels, rng)
    elif kind == "optical":
        labels = johnson_mehl(shape, n, rng, anisotropy=rng.uniform(0.5, 1.5), nucleation=0.2, speed_sigma=0.1,
                              texture=rng.uniform(0, math.pi))
        labels = potts_smooth(labels, 4, rng)
        img = render_optical(labels, rng)
    elif kind == "sem":
        labels = potts_smooth(johnson_mehl(shape, n, rng, anisotropy=0.3), 6, rng)
        img = render_sem(labels, rng)
    elif kind == "bse-twins":
        labels = potts_smooth(johnson_mehl(shape, n, rng, anisotropy=0.2), 12, rng)
        twins = _twins(labels, rng, 0.4)
        labels = _pores(labels, rng, 0.01)
        twins[labels == 0] = 0
        img = render_bse(labels, twins, rng)
    else:
        raise ValueError(f"kind: unknown renderer {kind!r}; choose one of {', '.join(KINDS)}")
    return _finish(img), labels.astype(np.uint32)


def make_set(kind: str, n: int, size: int = 512, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` micrographs of ``kind`` (reproducible from ``seed``): ``[(image, labels), ...]``."""
    if kind not in KINDS:
        raise ValueError(f"kind: unknown renderer {kind!r}; choose one of {', '.join(KINDS)}")
    salt = KINDS.index(kind)
    return [render(kind, size, np.random.default_rng([seed, salt, i])) for i in range(n)]


# ------------------------------------------------------------------------ output
def montage(sets: dict[str, list], columns: int = 3) -> np.ndarray:
    """RGB montage: one row per kind, the first image with its ground-truth boundaries in red,
    then ``columns`` images as they are."""
    rows = []
    for items in sets.values():
        img, lab = items[0]
        overlay = np.repeat(img[..., None], 3, axis=2)
        overlay[find_boundaries(lab, mode="inner")] = (1.0, 0.15, 0.1)
        tiles = [overlay] + [np.repeat(im[..., None], 3, axis=2) for im, _ in items[:columns]]
        h = min(t.shape[0] for t in tiles)
        w = min(t.shape[1] for t in tiles)
        tiles = [np.pad(t[:h, :w], ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    return (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)


def write_sets(out: Path, kinds, count: int, size: int, seed: int) -> dict[str, list]:
    sets = {}
    for kind in kinds:
        items = make_set(kind, count, size, seed)
        folder = out / kind
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        for i, (img, lab) in enumerate(items):
            name = f"foreign_{i:04d}.tif"
            tifffile.imwrite(folder / "images" / name, (img * 255).round().astype(np.uint8))
            tifffile.imwrite(folder / "labels" / name, lab)
        meta = {"generator": "benchmarks/foreign_renderers.py", "kind": kind, "count": count, "size": size,
                "seed": seed}
        (folder / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        sets[kind] = items
    iio.imwrite(out / "foreign_sets.png", montage(sets))
    return sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder (one dataset folder per kind)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--count", type=int, default=6, help="images per kind")
    ap.add_argument("--size", type=int, default=512, help="image size in px")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.count < 1 or a.size < 64:
        ap.error("--count must be >= 1 and --size >= 64")
    sets = write_sets(a.out, a.kinds, a.count, a.size, a.seed)
    for kind, items in sets.items():
        grains = [int(lab.max()) for _, lab in items]
        print(f"{kind:12s} {len(items)} images, {min(grains)}-{max(grains)} grains each -> {a.out / kind}")
    print(f"montage: {a.out / 'foreign_sets.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
