"""Exact rasterisation of (anisotropic) power diagrams.

A pixel ``p`` belongs to the seed ``j`` that minimises the power distance

    d_j(p) = |M_j (p - s_j)|^2 - w_j

where ``M_j`` is a 2x2 metric (area preserving stretch + rotation; identity for plain
Voronoi) and ``w_j`` a weight (0 for Voronoi, squared radius for Laguerre cells).

Instead of evaluating every seed at every pixel (what a k-d tree query or a brute-force
argmin does), the image is cut into a hierarchy of square blocks.  For each block the
distance of every remaining candidate seed is bounded from below and above over the
block (``|M(c - s)| -/+ sigma_max(M) r``, ``c`` the block centre, ``r`` its half
diagonal); a seed whose lower bound exceeds some other seed's upper bound can win no
pixel of the block and is dropped.  Children inherit the surviving candidates of their
parent, so most 4x4 blocks end with a single candidate and are filled without looking
at their pixels.  Only blocks that straddle a cell boundary are evaluated pixel by pixel,
over their few candidates.  The result is identical to the brute-force argmin (ties are
broken towards the lower seed index in both).
"""

from __future__ import annotations

import numpy as np

__all__ = ["power_labels", "metric_matrices"]

_FINE = 4  # side of the smallest block, evaluated pixel by pixel
_BIG = np.float64(1e30)


def metric_matrices(angles_rad: np.ndarray, aspect: np.ndarray | float) -> np.ndarray:
    """Per-seed metrics ``M = diag(1/sqrt(a), sqrt(a)) @ R(-theta)`` in (y, x) coordinates.

    A cell grows ``sqrt(a)`` times longer along ``theta`` (counter-clockwise from +x, y down
    is image convention so the angle is measured with y pointing up) and ``sqrt(a)`` times
    thinner across it; ``det M = 1`` so areas are preserved.
    """
    angles_rad = np.asarray(angles_rad, dtype=np.float64)
    a = np.broadcast_to(np.asarray(aspect, dtype=np.float64), angles_rad.shape)
    sa = np.sqrt(a)
    c, s = np.cos(angles_rad), np.sin(angles_rad)
    # unit vector along theta in (y, x) with image y pointing down: (-sin, cos)
    # row 0: component along theta / sqrt(a);  row 1: component across theta * sqrt(a)
    m = np.empty(angles_rad.shape + (2, 2), dtype=np.float64)
    m[..., 0, 0] = -s / sa
    m[..., 0, 1] = c / sa
    m[..., 1, 0] = c * sa
    m[..., 1, 1] = s * sa
    return m


def _sigma_max(metrics: np.ndarray) -> np.ndarray:
    return np.linalg.norm(metrics, ord=2, axis=(-2, -1))


def _compress(cand: np.ndarray, keep: np.ndarray, dummy: int) -> tuple[np.ndarray, np.ndarray]:
    """Move kept candidates to the front of each row and trim the padding."""
    counts = keep.sum(axis=1)
    kmax = max(1, int(counts.max()))
    if kmax < cand.shape[1] or not keep.all():
        order = np.argsort(~keep, axis=1, kind="stable")[:, :kmax]
        cand = np.take_along_axis(cand, order, axis=1)
        kept = np.take_along_axis(keep, order, axis=1)
        cand = np.where(kept, cand, dummy)
    return cand, counts


def power_labels(
    shape: tuple[int, int],
    seeds: np.ndarray,
    weights: np.ndarray | None = None,
    metrics: np.ndarray | None = None,
    origin: tuple[float, float] = (0.0, 0.0),
    step: float = 1.0,
    max_pairs: int = 4_000_000,
) -> np.ndarray:
    """Index of the winning seed for every pixel of a ``shape`` grid.

    Pixel ``(i, j)`` sits at ``origin + step * (i, j)`` in seed coordinates ``(y, x)``.
    Returns an ``int32`` array of seed indices.
    """
    h, w = int(shape[0]), int(shape[1])
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    n = len(seeds)
    if n == 0:
        raise ValueError("power_labels needs at least one seed")
    wts = np.zeros(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n)
    if metrics is None:
        mets = np.broadcast_to(np.eye(2), (n, 2, 2))
    else:
        mets = np.asarray(metrics, dtype=np.float64).reshape(n, 2, 2)
    # a dummy seed (index n) that never wins pads the candidate lists
    sy = np.append(seeds[:, 0], 0.0)
    sx = np.append(seeds[:, 1], 0.0)
    ww = np.append(wts, -_BIG)
    m00 = np.append(mets[:, 0, 0], 1.0)
    m01 = np.append(mets[:, 0, 1], 0.0)
    m10 = np.append(mets[:, 1, 0], 0.0)
    m11 = np.append(mets[:, 1, 1], 1.0)
    sig = np.append(_sigma_max(mets), 1.0)
    dummy = n
    oy, ox = float(origin[0]), float(origin[1])

    # coarsest block: a power of 4 times the fine block, a handful of blocks per side
    b0 = _FINE
    while b0 * 4 <= max(h, w):
        b0 *= 4
    nby, nbx = int(np.ceil(h / b0)), int(np.ceil(w / b0))

    def bounds_filter(cand: np.ndarray, cy: np.ndarray, cx: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
        # cand: (nb, K); cy, cx: block centres (nb,); r: half diagonal.
        # Lower bound of seed j over the block: (|M(c - s)| - sigma_max(M) r)^2 - w.
        # Upper bound: the power distance is convex, so its maximum over the block is at a
        # corner; the smallest such maximum bounds the winning distance everywhere in it.
        dy = cy[:, None] - sy[cand]
        dx = cx[:, None] - sx[cand]
        a00, a01, a10, a11 = m00[cand], m01[cand], m10[cand], m11[cand]
        e0 = a00 * dy + a01 * dx
        e1 = a10 * dy + a11 * dx
        wc = ww[cand]
        dc = np.sqrt(e0 * e0 + e1 * e1)
        lower = np.maximum(dc - sig[cand] * r, 0.0) ** 2 - wc
        h = r / np.sqrt(2.0)  # half side
        # M @ (+-h, +-h): corner offsets in metric space
        p0, p1 = (a00 + a01) * h, (a10 + a11) * h
        q0, q1 = (a00 - a01) * h, (a10 - a11) * h
        c1 = np.maximum((e0 + p0) ** 2 + (e1 + p1) ** 2, (e0 - p0) ** 2 + (e1 - p1) ** 2)
        c2 = np.maximum((e0 + q0) ** 2 + (e1 + q1) ** 2, (e0 - q0) ** 2 + (e1 - q1) ** 2)
        upper = np.maximum(c1, c2) - wc
        best_upper = upper.min(axis=1, keepdims=True)
        keep = lower <= best_upper + 1e-9 * (np.abs(best_upper) + 1.0)
        return _compress(cand, keep, dummy)

    # level 0: every seed is a candidate (processed in chunks of blocks)
    b = b0
    r = step * (b - 1) / np.sqrt(2.0)
    by, bx = np.meshgrid(np.arange(nby), np.arange(nbx), indexing="ij")
    cy_all = oy + step * (by.ravel() * b + (b - 1) / 2.0)
    cx_all = ox + step * (bx.ravel() * b + (b - 1) / 2.0)
    nb = nby * nbx
    chunk = max(1, max_pairs // n)
    parts, counts_parts = [], []
    for start in range(0, nb, chunk):
        stop = min(nb, start + chunk)
        cand = np.broadcast_to(np.arange(n, dtype=np.int32), (stop - start, n))
        c, _ = bounds_filter(cand, cy_all[start:stop], cx_all[start:stop], r)
        parts.append(c)
    kmax = max(p.shape[1] for p in parts)
    cand = np.full((nb, kmax), dummy, dtype=np.int32)
    pos = 0
    for p in parts:
        cand[pos:pos + len(p), : p.shape[1]] = p
        pos += len(p)
    cand = cand.reshape(nby, nbx, kmax)

    # refine: each block splits into 4 x 4 children until the fine block size; children of
    # a block with a single candidate inherit it and need no work
    while b > _FINE:
        b //= 4
        cand = np.repeat(np.repeat(cand, 4, axis=0), 4, axis=1)
        nby, nbx, k = cand.shape
        flat = cand.reshape(nby * nbx, k)
        if k == 1:
            continue
        active = np.nonzero(flat[:, 1] != dummy)[0]
        r = step * (b - 1) / np.sqrt(2.0)
        cyb = oy + step * ((active // nbx) * b + (b - 1) / 2.0)
        cxb = ox + step * ((active % nbx) * b + (b - 1) / 2.0)
        # group the active blocks by their number of candidates so no work is padding
        counts = (flat[active] != dummy).sum(axis=1)
        groups = []
        for kk in np.nonzero(np.bincount(counts))[0]:
            sel = counts == kk
            groups.append((active[sel], bounds_filter(flat[active[sel], :kk], cyb[sel], cxb[sel], r)[0]))
        kmax = max(g[1].shape[1] for g in groups)
        new = np.full((nby * nbx, kmax), dummy, dtype=np.int32)
        new[:, 0] = flat[:, 0]
        for rows, sub in groups:
            new[rows, : sub.shape[1]] = sub
        cand = new.reshape(nby, nbx, -1)

    # fine blocks: fill single-candidate blocks, evaluate the others pixel by pixel
    nby, nbx, k = cand.shape
    flat = cand.reshape(nby * nbx, k)
    counts = (flat != dummy).sum(axis=1)
    out = np.empty((nby * nbx, _FINE, _FINE), dtype=np.int32)
    out[:] = flat[:, 0, None, None]
    multi = np.nonzero(counts > 1)[0]
    if len(multi):
        offs = step * np.arange(_FINE, dtype=np.float64)
        for kk in np.nonzero(np.bincount(counts[multi]))[0]:
            idx = multi[counts[multi] == kk]
            c = flat[idx, :kk]  # (m, kk)
            by_i = idx // nbx
            bx_i = idx % nbx
            py = (oy + step * by_i * _FINE)[:, None, None] + offs[None, :, None]  # (m, F, 1)
            px = (ox + step * bx_i * _FINE)[:, None, None] + offs[None, None, :]  # (m, 1, F)
            best = None
            best_d = None
            for t in range(kk):
                j = c[:, t]
                dy = py - sy[j][:, None, None]
                dx = px - sx[j][:, None, None]
                e0 = m00[j][:, None, None] * dy + m01[j][:, None, None] * dx
                e1 = m10[j][:, None, None] * dy + m11[j][:, None, None] * dx
                d = e0 * e0 + e1 * e1 - ww[j][:, None, None]
                if best is None:
                    best_d = d
                    best = np.broadcast_to(j[:, None, None], d.shape).copy()
                else:
                    # strict '<' keeps the first of equal distances; candidates are in
                    # increasing seed order, matching np.argmin on the full distance table
                    better = (d < best_d) | ((d == best_d) & (j[:, None, None] < best))
                    best_d = np.where(better, d, best_d)
                    best = np.where(better, j[:, None, None], best)
            out[idx] = best
    labels = out.reshape(nby, nbx, _FINE, _FINE).transpose(0, 2, 1, 3).reshape(nby * _FINE, nbx * _FINE)
    return np.ascontiguousarray(labels[:h, :w])


def brute_force_labels(shape, seeds, weights=None, metrics=None, origin=(0.0, 0.0), step=1.0) -> np.ndarray:
    """Reference implementation (every seed at every pixel); for tests on small grids."""
    h, w = shape
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    n = len(seeds)
    wts = np.zeros(n) if weights is None else np.asarray(weights, dtype=np.float64)
    mets = np.broadcast_to(np.eye(2), (n, 2, 2)) if metrics is None else np.asarray(metrics, dtype=np.float64)
    yy, xx = np.meshgrid(origin[0] + step * np.arange(h), origin[1] + step * np.arange(w), indexing="ij")
    dy = yy[None] - seeds[:, 0, None, None]
    dx = xx[None] - seeds[:, 1, None, None]
    e0 = mets[:, 0, 0, None, None] * dy + mets[:, 0, 1, None, None] * dx
    e1 = mets[:, 1, 0, None, None] * dy + mets[:, 1, 1, None, None] * dx
    d = e0 * e0 + e1 * e1 - wts[:, None, None]
    return np.argmin(d, axis=0).astype(np.int32)
