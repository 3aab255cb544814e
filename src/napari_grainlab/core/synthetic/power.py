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
from numba import njit

__all__ = ["power_labels", "metric_matrices"]

_FINE = 4  # side of the sub-blocks the compiled kernel narrows before evaluating pixels
_LEAF = 64  # side of the blocks handed to the compiled kernel (narrowed there to 16, then 4)
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
    """Largest singular value of each 2 x 2 metric, in closed form (an SVD per seed costs more than the
    rest of a coarse rasterisation): ``s^2 = (T + sqrt(T^2 - 4 det^2)) / 2`` with ``T`` the squared
    Frobenius norm.  Raised by 1e-7 (the cancellation under the root can lose about sqrt(eps) of
    relative accuracy), so the block bounds that use it stay conservative."""
    a, b = metrics[..., 0, 0], metrics[..., 0, 1]
    c, d = metrics[..., 1, 0], metrics[..., 1, 1]
    t = a * a + b * b + c * c + d * d
    det = a * d - b * c
    s2 = 0.5 * (t + np.sqrt(np.maximum(t * t - 4.0 * det * det, 0.0)))
    return np.sqrt(s2) * (1.0 + 1e-7)


def power_labels(
    shape: tuple[int, int],
    seeds: np.ndarray,
    weights: np.ndarray | None = None,
    metrics: np.ndarray | None = None,
    origin: tuple[float, float] = (0.0, 0.0),
    step: float = 1.0,
    max_pairs: int = 4_000_000,
    warp: tuple[np.ndarray, np.ndarray, float, float] | None = None,
) -> np.ndarray:
    """Index of the winning seed for every pixel of a ``shape`` grid.

    Pixel ``(i, j)`` sits at ``origin + step * (i, j)`` in seed coordinates ``(y, x)``,
    moved by a smooth displacement when ``warp`` = ``(dy, dx, gy, gx)`` is given: grids of
    displacements (seed units) sampled every ``gy`` rows / ``gx`` columns and interpolated
    bilinearly.  A warp curves the otherwise straight cell edges.
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
    if warp is not None:
        wdy = np.ascontiguousarray(warp[0], dtype=np.float64)
        wdx = np.ascontiguousarray(warp[1], dtype=np.float64)
        wgy, wgx = float(warp[2]), float(warp[3])
        if wdy.shape != wdx.shape or wdy.shape[0] < int(np.ceil((h - 1) / wgy)) + 1 or \
                wdy.shape[1] < int(np.ceil((w - 1) / wgx)) + 1:
            raise ValueError("warp grids do not cover the image")
        dmax = float(np.sqrt(wdy**2 + wdx**2).max())
        # Lipschitz bound (per pixel index, max-norm) of each displacement component
        lip = 0.0
        for g in (wdy, wdx):
            ly = np.abs(np.diff(g, axis=0)).max(initial=0.0) / wgy
            lx = np.abs(np.diff(g, axis=1)).max(initial=0.0) / wgx
            lip = max(lip, ly + lx)
    else:
        lip = 0.0
        wdy = wdx = np.zeros((1, 1))
        wgy = wgx = 1.0
        dmax = 0.0

    # coarsest block: a power of 4 times the leaf block, covering the grid in a few blocks
    b0 = _LEAF
    while b0 * 4 <= max(h, w):
        b0 *= 4
    nby, nbx = int(np.ceil(h / b0)), int(np.ceil(w / b0))

    # a warp moves every point of a block by at most dmax: the bounds grow the block by it
    def bounds_filter(cand: np.ndarray, counts: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                      r: float) -> tuple[np.ndarray, np.ndarray]:
        hs = r / np.sqrt(2.0) + dmax
        return _filter_blocks(np.ascontiguousarray(cand, dtype=np.int32), np.ascontiguousarray(counts, dtype=np.int32),
                              np.ascontiguousarray(cy, dtype=np.float64), np.ascontiguousarray(cx, dtype=np.float64),
                              hs * np.sqrt(2.0), hs, sy, sx, ww, m00, m01, m10, m11, sig, dummy)

    # level 0: every seed is a candidate (processed in chunks of blocks)
    b = b0
    r = step * (b - 1) / np.sqrt(2.0)
    by, bx = np.meshgrid(np.arange(nby), np.arange(nbx), indexing="ij")
    cy_all = oy + step * (by.ravel() * b + (b - 1) / 2.0)
    cx_all = ox + step * (bx.ravel() * b + (b - 1) / 2.0)
    nb = nby * nbx
    chunk = max(1, max_pairs // n)
    parts = []
    for start in range(0, nb, chunk):
        stop = min(nb, start + chunk)
        cand = np.broadcast_to(np.arange(n, dtype=np.int32), (stop - start, n))
        parts.append(bounds_filter(cand, np.full(stop - start, n, np.int32), cy_all[start:stop], cx_all[start:stop], r))
    kmax = max(1, max(int(c.max()) for _, c in parts))
    cand = np.concatenate([p[:, :kmax] for p, _ in parts]).reshape(nby, nbx, kmax)

    # refine: each block splits into 4 x 4 children down to the leaf block size; children
    # of a block with a single candidate inherit it and need no work
    while b > _LEAF:
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
        sub, counts = bounds_filter(flat[active], (flat[active] != dummy).sum(axis=1), cyb, cxb, r)
        kmax = int(counts.max(initial=1))
        new = np.full((nby * nbx, kmax), dummy, dtype=np.int32)
        new[:, 0] = flat[:, 0]
        new[active] = sub[:, :kmax]
        cand = new.reshape(nby, nbx, -1)

    # leaf blocks: compiled kernel narrows each 4 x 4 sub-block and evaluates its pixels
    out = np.empty((h, w), dtype=np.int32)
    _fill_leaves(out, np.ascontiguousarray(cand), _LEAF, oy, ox, float(step), sy, sx, ww, m00, m01, m10, m11, sig,
                 dummy, warp is not None, wdy, wdx, wgy, wgx, lip, metrics is None or bool(np.all(mets == np.eye(2))))
    return out


@njit(cache=True, nogil=True)
def _filter_blocks(cand, counts, cy, cx, r, hs, sy, sx, ww, m00, m01, m10, m11, sig, dummy):  # pragma: no cover
    """Candidates of each block (row ``i``: the first ``counts[i]`` of ``cand[i]``) that can win a pixel of
    the block centred at (``cy[i]``, ``cx[i]``) with half side ``hs`` and half diagonal ``r``; kept in their
    order (so ties still go to the lower seed index), the rest of each row padded with ``dummy``.

    Lower bound of seed j over the block: (|M(c - s)| - sigma_max(M) r)^2 - w.  Upper bound: the power
    distance is convex, so its maximum over the block is at a corner; the smallest such maximum bounds
    the winning distance everywhere in it.  Returns the filtered rows and their counts."""
    m, kk = cand.shape
    out = np.full((m, kk), dummy, dtype=np.int32)
    kept = np.zeros(m, dtype=np.int32)
    lower = np.empty(kk)
    for i in range(m):
        k = counts[i]
        best = np.inf
        for t in range(k):
            j = cand[i, t]
            dy = cy[i] - sy[j]
            dx = cx[i] - sx[j]
            a00 = m00[j]
            a01 = m01[j]
            a10 = m10[j]
            a11 = m11[j]
            e0 = a00 * dy + a01 * dx
            e1 = a10 * dy + a11 * dx
            wc = ww[j]
            dc = np.sqrt(e0 * e0 + e1 * e1) - sig[j] * r
            if dc < 0.0:
                dc = 0.0
            lower[t] = dc * dc - wc
            # M @ (+-hs, +-hs): corner offsets in metric space
            p0 = (a00 + a01) * hs
            p1 = (a10 + a11) * hs
            q0 = (a00 - a01) * hs
            q1 = (a10 - a11) * hs
            u = max(max((e0 + p0) ** 2 + (e1 + p1) ** 2, (e0 - p0) ** 2 + (e1 - p1) ** 2),
                    max((e0 + q0) ** 2 + (e1 + q1) ** 2, (e0 - q0) ** 2 + (e1 - q1) ** 2)) - wc
            if u < best:
                best = u
        tol = best + 1e-9 * (abs(best) + 1.0)
        nk = 0
        for t in range(k):
            if lower[t] <= tol:
                out[i, nk] = cand[i, t]
                nk += 1
        kept[i] = nk
    return out, kept


@njit(cache=True, nogil=True, inline="always")
def _bilinear2(a, b, fy, fx):  # pragma: no cover - compiled
    iy = int(fy)
    ix = int(fx)
    ty = fy - iy
    tx = fx - ix
    iy1 = min(iy + 1, a.shape[0] - 1)
    ix1 = min(ix + 1, a.shape[1] - 1)
    w00 = (1.0 - ty) * (1.0 - tx)
    w01 = (1.0 - ty) * tx
    w10 = ty * (1.0 - tx)
    w11 = ty * tx
    va = w00 * a[iy, ix] + w01 * a[iy, ix1] + w10 * a[iy1, ix] + w11 * a[iy1, ix1]
    vb = w00 * b[iy, ix] + w01 * b[iy, ix1] + w10 * b[iy1, ix] + w11 * b[iy1, ix1]
    return va, vb


@njit(cache=True, nogil=True, inline="always")
def _fill(out, y0, y1, x0, x1, j):  # pragma: no cover - compiled
    for y in range(y0, y1):
        for x in range(x0, x1):
            out[y, x] = j


@njit(cache=True, nogil=True, inline="always")
def _centre(yi, xi, oy, ox, step, use_warp, wdy, wdx, wgy, wgx):  # pragma: no cover - compiled
    """Seed-space position of (fractional) pixel index (yi, xi), displaced by the warp."""
    cy = oy + step * yi
    cx = ox + step * xi
    if use_warp:
        ddy, ddx = _bilinear2(wdy, wdx, yi / wgy, xi / wgx)
        cy += ddy
        cx += ddx
    return cy, cx


@njit(cache=True, nogil=True, inline="always")
def _narrow(cand, k, cy, cx, half, rad, sy, sx, ww, m00, m01, m10, m11, sig, keep, iso):  # pragma: no cover
    """Candidates among ``cand[:k]`` that can win a pixel of the square block centred at
    (cy, cx) with half side ``half`` (and half diagonal ``rad``); written to ``keep``.

    ``iso`` (every metric is the identity) uses the exact nearest and farthest points of the
    square; otherwise the farthest corner and a lower bound through sigma_max(M)."""
    best_u = np.inf
    for t in range(k):
        j = cand[t]
        if iso:
            ay = abs(cy - sy[j]) + half
            ax = abs(cx - sx[j]) + half
            umax = ay * ay + ax * ax - ww[j]
        else:
            umax = -np.inf
            for cyo in (-half, half):
                for cxo in (-half, half):
                    dy = cy + cyo - sy[j]
                    dx = cx + cxo - sx[j]
                    e0 = m00[j] * dy + m01[j] * dx
                    e1 = m10[j] * dy + m11[j] * dx
                    d = e0 * e0 + e1 * e1 - ww[j]
                    if d > umax:
                        umax = d
        if umax < best_u:
            best_u = umax
    tol = best_u + 1e-9 * (abs(best_u) + 1.0)
    nk = 0
    for t in range(k):
        j = cand[t]
        dy = cy - sy[j]
        dx = cx - sx[j]
        if iso:
            ay = max(abs(dy) - half, 0.0)
            ax = max(abs(dx) - half, 0.0)
            lower = ay * ay + ax * ax - ww[j]
        else:
            e0 = m00[j] * dy + m01[j] * dx
            e1 = m10[j] * dy + m11[j] * dx
            dc = np.sqrt(e0 * e0 + e1 * e1) - sig[j] * rad
            if dc < 0.0:
                dc = 0.0
            lower = dc * dc - ww[j]
        if lower <= tol:
            keep[nk] = j
            nk += 1
    return nk


@njit(cache=True, nogil=True)
def _fill_leaves(out, cand, bsize, oy, ox, step, sy, sx, ww, m00, m01, m10, m11, sig, dummy, use_warp, wdy, wdx,
                 wgy, wgx, lip, iso):  # pragma: no cover
    """Leaf blocks (``bsize`` = 4 x mid = 16 x fine) are narrowed to 16-px, then 4-px
    sub-blocks; single-candidate sub-blocks are filled, the others evaluated per pixel."""
    h, w = out.shape
    nby, nbx, kmax = cand.shape
    mid = bsize // 4
    f = _FINE
    # With a warp, the displaced pixels of a square of half side a (pixel units) centred
    # at c lie in the square of half side step * a + lip * a centred at c + D(c): ``lip``
    # bounds how fast the bilinear displacement changes.
    am = (mid - 1) / 2.0
    af = (f - 1) / 2.0
    half_m = step * am + lip * am
    half_f = step * af + lip * af
    keep_m = np.empty(kmax, dtype=np.int32)
    keep_f = np.empty(kmax, dtype=np.int32)
    for by in range(nby):
        for bx in range(nbx):
            k = 0
            while k < kmax and cand[by, bx, k] != dummy:
                k += 1
            y0 = by * bsize
            x0 = bx * bsize
            y1 = min(y0 + bsize, h)
            x1 = min(x0 + bsize, w)
            if k == 1:
                _fill(out, y0, y1, x0, x1, cand[by, bx, 0])
                continue
            for my0 in range(y0, y1, mid):
                for mx0 in range(x0, x1, mid):
                    my1 = min(my0 + mid, h)
                    mx1 = min(mx0 + mid, w)
                    ccy, ccx = _centre(my0 + am, mx0 + am, oy, ox, step, use_warp, wdy, wdx, wgy, wgx)
                    km = _narrow(cand[by, bx], k, ccy, ccx, half_m, half_m * np.sqrt(2.0),
                                 sy, sx, ww, m00, m01, m10, m11, sig, keep_m, iso)
                    if km == 1:
                        _fill(out, my0, my1, mx0, mx1, keep_m[0])
                        continue
                    for sy0 in range(my0, my1, f):
                        for sx0 in range(mx0, mx1, f):
                            ye = min(sy0 + f, h)
                            xe = min(sx0 + f, w)
                            ccy, ccx = _centre(sy0 + af, sx0 + af, oy, ox, step, use_warp, wdy, wdx, wgy, wgx)
                            nk = _narrow(keep_m, km, ccy, ccx, half_f, half_f * np.sqrt(2.0),
                                         sy, sx, ww, m00, m01, m10, m11, sig, keep_f, iso)
                            if nk == 1:
                                _fill(out, sy0, ye, sx0, xe, keep_f[0])
                                continue
                            # the warp inside one grid cell is a bilinear polynomial in
                            # (y, x): take its coefficients once per sub-block
                            cell = False
                            if use_warp:
                                gy0 = int(sy0 / wgy)
                                gx0 = int(sx0 / wgx)
                                if int((ye - 1) / wgy) == gy0 and int((xe - 1) / wgx) == gx0:
                                    cell = True
                                    gy1 = min(gy0 + 1, wdy.shape[0] - 1)
                                    gx1 = min(gx0 + 1, wdy.shape[1] - 1)
                                    a00, a01 = wdy[gy0, gx0], wdy[gy0, gx1]
                                    a10, a11 = wdy[gy1, gx0], wdy[gy1, gx1]
                                    b00, b01 = wdx[gy0, gx0], wdx[gy0, gx1]
                                    b10, b11 = wdx[gy1, gx0], wdx[gy1, gx1]
                            for y in range(sy0, ye):
                                py0 = oy + step * y
                                if cell:
                                    ty = y / wgy - gy0
                                    ay0 = a00 + ty * (a10 - a00)
                                    ay1 = a01 + ty * (a11 - a01)
                                    by0 = b00 + ty * (b10 - b00)
                                    by1 = b01 + ty * (b11 - b01)
                                for x in range(sx0, xe):
                                    py = py0
                                    px = ox + step * x
                                    if cell:
                                        tx = x / wgx - gx0
                                        py += ay0 + tx * (ay1 - ay0)
                                        px += by0 + tx * (by1 - by0)
                                    elif use_warp:
                                        ddy, ddx = _bilinear2(wdy, wdx, y / wgy, x / wgx)
                                        py += ddy
                                        px += ddx
                                    best = np.inf
                                    bj = keep_f[0]
                                    for t in range(nk):
                                        j = keep_f[t]
                                        dy = py - sy[j]
                                        dx = px - sx[j]
                                        if iso:
                                            d = dy * dy + dx * dx - ww[j]
                                        else:
                                            e0 = m00[j] * dy + m01[j] * dx
                                            e1 = m10[j] * dy + m11[j] * dx
                                            d = e0 * e0 + e1 * e1 - ww[j]
                                        if d < best:
                                            best = d
                                            bj = j
                                    out[y, x] = bj


def brute_force_labels(shape, seeds, weights=None, metrics=None, origin=(0.0, 0.0), step=1.0, warp=None) -> np.ndarray:
    """Reference implementation (every seed at every pixel); for tests on small grids."""
    h, w = shape
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    n = len(seeds)
    wts = np.zeros(n) if weights is None else np.asarray(weights, dtype=np.float64)
    mets = np.broadcast_to(np.eye(2), (n, 2, 2)) if metrics is None else np.asarray(metrics, dtype=np.float64)
    yy, xx = np.meshgrid(origin[0] + step * np.arange(h), origin[1] + step * np.arange(w), indexing="ij")
    if warp is not None:
        from scipy.ndimage import map_coordinates

        ii, jj = np.meshgrid(np.arange(h) / warp[2], np.arange(w) / warp[3], indexing="ij")
        yy = yy + map_coordinates(warp[0], [ii, jj], order=1, mode="nearest")
        xx = xx + map_coordinates(warp[1], [ii, jj], order=1, mode="nearest")
    dy = yy[None] - seeds[:, 0, None, None]
    dx = xx[None] - seeds[:, 1, None, None]
    e0 = mets[:, 0, 0, None, None] * dy + mets[:, 0, 1, None, None] * dx
    e1 = mets[:, 1, 0, None, None] * dy + mets[:, 1, 1, None, None] * dx
    d = e0 * e0 + e1 * e1 - wts[:, None, None]
    return np.argmin(d, axis=0).astype(np.int32)
