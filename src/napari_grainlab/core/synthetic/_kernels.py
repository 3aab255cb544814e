"""Compiled per-pixel kernels of the renderer (numba, cached on disk after the first call).

Each kernel is one pass over the image doing what would otherwise be several numpy passes
with full-size temporaries.  They write straight into the padded buffers of the Fourier
pass (mirror-reflected borders), so no separate padding or cropping copies are needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["specimen_and_lines", "finish", "pair_uniform"]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, nogil=True, inline="always")
def _mix(z):  # pragma: no cover - compiled
    z = (z ^ (z >> np.uint64(30))) * _M2
    z = (z ^ (z >> np.uint64(27))) * _M3
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def pair_uniform(a, b, salt):  # pragma: no cover - compiled
    """Uniform [0, 1) value for the unordered label pair (a, b)."""
    lo = min(a, b)
    hi = max(a, b)
    z = (np.uint64(lo) << np.uint64(32)) | np.uint64(hi)
    z = _mix(z + salt + _M1)
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def _boundary_weight(a, b, mode, p1, p2, salt):  # pragma: no cover - compiled
    """Line density weight of the boundary between labels a and b.

    mode 0: constant 1; mode 1: 1 + p1 * U(-1, 1) (edge variation);
    mode 2: etched optical lines: missing with probability p1, faint with p2, else strong.
    """
    if mode == 0:
        return 1.0
    u = pair_uniform(a, b, salt)
    if mode == 1:
        v = 1.0 + p1 * (2.0 * u - 1.0)
        return v if v > 0.0 else 0.0
    u2 = pair_uniform(a, b, salt ^ np.uint64(0x5DEECE66D))
    if u < p1:
        return 0.0
    if u < p1 + p2:
        return 0.15 + 0.3 * u2
    return 0.75 + 0.5 * u2


@njit(cache=True, nogil=True)
def specimen_and_lines(labels, lut, lut_twin, ramp_a, ramp_b, centre, twins, use_twins, use_ramp, line_mode, p1,
                       p2, salt, periodic, sp, ln, oy, ox, ymap, xmap):  # pragma: no cover - compiled
    """Fill ``sp`` (specimen intensity) and ``ln`` (boundary line density) of shape (Hp, Wp).

    Pixel (y, x) of the image sits at (y + oy, x + ox) in the padded buffers; padded row
    ``yp`` shows image row ``ymap[yp]`` (mirror reflection, or wrap-around when periodic).  ``ln`` gets half of a
    boundary's weight on each side of every label change.  ``line_mode < 0`` skips lines.
    """
    h, w = labels.shape
    hp, wp = sp.shape
    do_lines = line_mode >= 0
    # interior image: specimen
    for yp in range(hp):
        y = ymap[yp]
        for xp in range(wp):
            x = xmap[xp]
            g = labels[y, x]
            v = lut[g]
            if use_twins and twins[y, x] > 0:
                v = lut_twin[g]
            if use_ramp:
                dy = y - centre[g, 0]
                dx = x - centre[g, 1]
                if periodic:  # measure from the grain's centre the short way round
                    dy -= h * np.round(dy / h)
                    dx -= w * np.round(dx / w)
                v += ramp_a[g] * dy + ramp_b[g] * dx
            sp[yp, xp] = v
    if not do_lines:
        return
    ln[:, :] = 0.0
    # label changes inside the image, spread half to each side
    for y in range(h):
        for x in range(w):
            a = labels[y, x]
            if x + 1 < w or periodic:
                x2 = x + 1 if x + 1 < w else 0
                b = labels[y, x2]
                if a != b:
                    wgt = 0.5 * _boundary_weight(a, b, line_mode, p1, p2, salt)
                    ln[y + oy, x + ox] += wgt
                    ln[y + oy, x2 + ox] += wgt
            if y + 1 < h or periodic:
                y2 = y + 1 if y + 1 < h else 0
                b = labels[y2, x]
                if a != b:
                    wgt = 0.5 * _boundary_weight(a, b, line_mode, p1, p2, salt)
                    ln[y + oy, x + ox] += wgt
                    ln[y2 + oy, x + ox] += wgt
    if periodic:
        return
    # mirror the line map into the padding
    for yp in range(hp):
        y = ymap[yp] + oy
        inside_row = oy <= yp < oy + h
        for xp in range(wp):
            if inside_row and ox <= xp < ox + w:
                continue
            ln[yp, xp] = ln[y, xmap[xp] + ox]


@njit(cache=True, nogil=True)
def finish(full, oy, ox, shifts, use_shift, gy, gx, use_shading, line_off, dose, read, z, seed, out):  # pragma: no cover
    """Crop the blurred padded image into ``out`` applying, per pixel: the scan line's
    sub-pixel shift (linear interpolation), multiplicative shading ``1 + gy + gx``, the line
    brightness offset, and shot + read noise (exact Poisson below 12 counts, its Gaussian
    limit above; ``z`` holds standard normal draws)."""
    np.random.seed(seed)
    h, w = out.shape
    hp, wp = full.shape
    for y in range(h):
        s = shifts[y] if use_shift else 0.0
        fl = np.floor(s)
        fr = s - fl
        ish = int(fl)
        yy = y + oy
        for x in range(w):
            xs = x + ox - ish
            if use_shift:
                # out(x) = in(x - s): interpolate between x - floor(s) - 1 and x - floor(s)
                x0 = xs - 1
                x1 = xs
                if x0 < 0:
                    x0 = 0
                if x1 >= wp:
                    x1 = wp - 1
                if x1 < 0:
                    x1 = 0
                if x0 >= wp:
                    x0 = wp - 1
                v = fr * full[yy, x0] + (1.0 - fr) * full[yy, x1]
            else:
                v = full[yy, x + ox]
            if use_shading:
                v *= 1.0 + gy[y] + gx[x]
            v += line_off[y]
            if dose > 0.0:
                lam = v * dose if v > 0.0 else 0.0
                if lam < 12.0:
                    v = np.random.poisson(lam) / dose + read * z[y, x]
                else:
                    v += np.sqrt(lam / (dose * dose) + read * read) * z[y, x]
            elif read > 0.0:
                v += read * z[y, x]
            out[y, x] = v


@njit(cache=True, nogil=True)
def _find(parent, i):  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True, nogil=True)
def _union(parent, a, b):  # pragma: no cover - compiled
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra != rb:
        if ra < rb:
            parent[rb] = ra
        else:
            parent[ra] = rb


@njit(cache=True, nogil=True)
def stray_pixels(labels, n_labels, periodic):  # pragma: no cover - compiled
    """Pixels of every label > 0 outside that label's largest 4-connected piece.

    Works on runs of equal labels along rows: runs of one label overlapping in adjacent
    rows are joined with union-find (wrapping around the edges when ``periodic``).  Ties
    between equally large pieces go to the one met first in raster order.  Returns the
    (rows, cols) of the stray pixels.
    """
    h, w = labels.shape
    cap = h * w
    ry = np.empty(cap, dtype=np.int32)
    r0 = np.empty(cap, dtype=np.int32)
    r1 = np.empty(cap, dtype=np.int32)
    rl = np.empty(cap, dtype=np.int64)
    row_start = np.empty(h + 1, dtype=np.int64)
    n = 0
    for y in range(h):
        row_start[y] = n
        x = 0
        while x < w:
            v = labels[y, x]
            xe = x + 1
            while xe < w and labels[y, xe] == v:
                xe += 1
            if v != 0:
                ry[n] = y
                r0[n] = x
                r1[n] = xe
                rl[n] = v
                n += 1
            x = xe
    row_start[h] = n
    parent = np.arange(n, dtype=np.int64)
    for y in range(h):
        a, a_end = row_start[y], row_start[y + 1]
        if periodic and a_end - a >= 2:
            if r0[a] == 0 and r1[a_end - 1] == w and rl[a] == rl[a_end - 1]:
                _union(parent, a, a_end - 1)
        if y == 0 and not periodic:
            continue
        yp = y - 1 if y > 0 else h - 1
        if yp == y:
            continue
        b, b_end = row_start[yp], row_start[yp + 1]
        i, j = a, b
        while i < a_end and j < b_end:
            if r0[i] < r1[j] and r0[j] < r1[i] and rl[i] == rl[j]:
                _union(parent, i, j)
            if r1[i] < r1[j]:
                i += 1
            else:
                j += 1
    size = np.zeros(n, dtype=np.int64)
    for i in range(n):
        size[_find(parent, i)] += r1[i] - r0[i]
    best_root = np.full(n_labels + 1, -1, dtype=np.int64)
    best_size = np.zeros(n_labels + 1, dtype=np.int64)
    for i in range(n):
        r = parent[i]
        v = rl[i]
        if size[r] > best_size[v]:
            best_size[v] = size[r]
            best_root[v] = r
    count = 0
    for i in range(n):
        if parent[i] != best_root[rl[i]]:
            count += r1[i] - r0[i]
    rows = np.empty(count, dtype=np.int64)
    cols = np.empty(count, dtype=np.int64)
    k = 0
    for i in range(n):
        if parent[i] != best_root[rl[i]]:
            for x in range(r0[i], r1[i]):
                rows[k] = ry[i]
                cols[k] = x
                k += 1
    return rows, cols


@njit(cache=True, nogil=True)
def rsa(radii, y0, x0, y1, x1, metric, periodic, tries, seed):  # pragma: no cover - compiled
    """Random sequential addition of disks (radii in metric space, placed in the given order).

    A candidate centre is accepted when ``|metric @ (c - p)| >= r_c + r_p`` for every placed
    disk ``p`` (distances wrap around the box when ``periodic``).  A disk that finds no room
    after ``tries`` candidates shrinks by 10 % and tries again; after ``4 * tries`` it is
    placed anyway, so every disk gets a centre.  Neighbours are found through a grid hash.
    """
    np.random.seed(seed)
    n = len(radii)
    pts = np.empty((n, 2))
    rad = radii.copy()
    hgt = y1 - y0
    wid = x1 - x0
    # pixel-space reach of metric distances: the largest singular value of metric^-1
    a, b, c, d = metric[0, 0], metric[0, 1], metric[1, 0], metric[1, 1]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    s1 = ia * ia + ib * ib + ic * ic + id_ * id_
    s2 = ia * id_ - ib * ic
    reach = np.sqrt((s1 + np.sqrt(max(s1 * s1 - 4 * s2 * s2, 0.0))) / 2.0)
    rmax = 0.0
    for i in range(n):
        rmax = max(rmax, rad[i])
    cell = max(2.0 * rmax * reach, 1e-9)
    ny = max(1, int(hgt // cell))
    nx = max(1, int(wid // cell))
    csy = hgt / ny
    csx = wid / nx
    head = np.full(ny * nx, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        r_i = rad[i]
        cy = 0.0
        cx = 0.0
        for attempt in range(4 * tries):
            cy = y0 + hgt * np.random.random()
            cx = x0 + wid * np.random.random()
            gy = min(int((cy - y0) / csy), ny - 1)
            gx = min(int((cx - x0) / csx), nx - 1)
            ok = True
            for dyc in range(-1, 2):
                ky = gy + dyc
                if periodic:
                    ky %= ny
                elif ky < 0 or ky >= ny:
                    continue
                for dxc in range(-1, 2):
                    kx = gx + dxc
                    if periodic:
                        kx %= nx
                    elif kx < 0 or kx >= nx:
                        continue
                    j = head[ky * nx + kx]
                    while j >= 0:
                        ddy = cy - pts[j, 0]
                        ddx = cx - pts[j, 1]
                        if periodic:
                            ddy -= hgt * np.round(ddy / hgt)
                            ddx -= wid * np.round(ddx / wid)
                        e0 = a * ddy + b * ddx
                        e1 = c * ddy + d * ddx
                        if e0 * e0 + e1 * e1 < (r_i + rad[j]) ** 2:
                            ok = False
                            break
                        j = nxt[j]
                    if not ok:
                        break
                if not ok:
                    break
            if ok:
                break
            if (attempt + 1) % tries == 0:
                r_i *= 0.9
        rad[i] = r_i
        pts[i, 0] = cy
        pts[i, 1] = cx
        gy = min(int((cy - y0) / csy), ny - 1)
        gx = min(int((cx - x0) / csx), nx - 1)
        k = gy * nx + gx
        nxt[i] = head[k]
        head[k] = i
    return pts
