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
    mode 2: etched optical lines: missing with probability p1, faint with p2, else strong;
    mode 3: as mode 1, but missing altogether with probability p2.
    """
    if mode == 0:
        return 1.0
    u = pair_uniform(a, b, salt)
    if mode == 3 and pair_uniform(a, b, salt ^ np.uint64(0x2545F4914F6CDD1D)) < p2:
        return 0.0
    if mode == 1 or mode == 3:
        v = 1.0 + p1 * (2.0 * u - 1.0)
        return v if v > 0.0 else 0.0
    u2 = pair_uniform(a, b, salt ^ np.uint64(0x5DEECE66D))
    if u < p1:
        return 0.0
    if u < p1 + p2:
        return 0.15 + 0.3 * u2
    return 0.75 + 0.5 * u2


@njit(cache=True, nogil=True, inline="always")
def _split_line(labels, ln, y, x, y2, x2, oy, ox, line_mode, p1, p2, salt):  # pragma: no cover - compiled
    """If pixels (y, x) and (y2, x2) belong to different labels, add half of their
    boundary's weight to each of them in the padded line map."""
    a = labels[y, x]
    b = labels[y2, x2]
    if a != b:
        wgt = 0.5 * _boundary_weight(a, b, line_mode, p1, p2, salt)
        ln[y + oy, x + ox] += wgt
        ln[y2 + oy, x2 + ox] += wgt


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
    flat_ramp = use_ramp and not periodic
    if flat_ramp:  # fold the ramps' centres into the per-grain levels: v = base + a y + b x
        off = np.empty(lut.size)
        for g in range(lut.size):
            off[g] = ramp_a[g] * centre[g, 0] + ramp_b[g] * centre[g, 1]
    # interior image: specimen
    for yp in range(hp):
        y = ymap[yp]
        for xp in range(wp):
            x = xmap[xp]
            g = labels[y, x]
            v = lut[g]
            if use_twins and twins[y, x] > 0:
                v = lut_twin[g]
            if flat_ramp:
                v += ramp_a[g] * y + ramp_b[g] * x - off[g]
            elif use_ramp:
                dy = y - centre[g, 0]
                dx = x - centre[g, 1]
                # on a periodic image, measure from the grain's centre the short way round
                dy -= h * np.round(dy / h)
                dx -= w * np.round(dx / w)
                v += ramp_a[g] * dy + ramp_b[g] * dx
            sp[yp, xp] = v
    if not do_lines:
        return
    ln[:, :] = 0.0
    # label changes inside the image, spread half to each side; the wrap-around neighbours of a
    # periodic image are taken outside the inner loop (an integer modulo per pixel made this pass
    # ten times slower than the comparisons themselves)
    for y in range(h):
        row = labels[y]
        yn = y + 1
        has_down = yn < h or periodic
        if yn == h:
            yn = 0
        down = labels[yn]
        for x in range(w - 1):
            a = row[x]
            if a != row[x + 1]:
                _split_line(labels, ln, y, x, y, x + 1, oy, ox, line_mode, p1, p2, salt)
            if has_down and a != down[x]:
                _split_line(labels, ln, y, x, yn, x, oy, ox, line_mode, p1, p2, salt)
        x = w - 1
        if periodic and row[x] != row[0]:
            _split_line(labels, ln, y, x, y, 0, oy, ox, line_mode, p1, p2, salt)
        if has_down and row[x] != down[x]:
            _split_line(labels, ln, y, x, yn, x, oy, ox, line_mode, p1, p2, salt)
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
def finish(full, oy, ox, shifts, use_shift, gy, gx, use_shading, line_off, dose, read, z, seed, periodic,
           out):  # pragma: no cover
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
                if periodic:  # the padded buffer is the image itself: wrap around
                    x0 %= wp
                    x1 %= wp
                else:
                    x0 = min(max(x0, 0), wp - 1)
                    x1 = min(max(x1, 0), wp - 1)
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
    # cells at least one disk diameter wide (neighbours sit in adjacent cells) and, for tiny
    # disks, no more cells than disks (a finer grid would only cost memory)
    cell = max(2.0 * rmax * reach, np.sqrt(hgt * wid / max(n, 1)), 1e-9)
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


@njit(cache=True, nogil=True)
def count_labels(labels, n):  # pragma: no cover - compiled
    """Pixel count of every label 0..n (``np.bincount`` without the int64 copy)."""
    counts = np.zeros(n + 1, dtype=np.int64)
    for v in labels.flat:
        counts[v] += 1
    return counts


@njit(cache=True, nogil=True)
def remap(labels, lut):  # pragma: no cover - compiled
    """``lut[labels]`` as uint32."""
    out = np.empty(labels.shape, dtype=np.uint32)
    src = labels.ravel()
    dst = out.ravel()
    for i in range(src.size):
        dst[i] = lut[src[i]]
    return out


@njit(cache=True, nogil=True)
def pixels_where(labels, flag):  # pragma: no cover - compiled
    """(rows, cols) of the pixels whose label has ``flag[label]`` set."""
    h, w = labels.shape
    count = 0
    for v in labels.flat:
        if flag[v]:
            count += 1
    rows = np.empty(count, dtype=np.int64)
    cols = np.empty(count, dtype=np.int64)
    k = 0
    for y in range(h):
        for x in range(w):
            if flag[labels[y, x]]:
                rows[k] = y
                cols[k] = x
                k += 1
    return rows, cols


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables of Marsaglia & Tsang's 128-layer ziggurat for the standard normal."""
    dn = 3.442619855899
    tn = dn
    vn = 9.91256303526217e-3
    m1 = 2147483648.0
    kn = np.zeros(128, dtype=np.int64)
    wn = np.zeros(128)
    fn = np.zeros(128)
    q = vn / np.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    kn[1] = 0
    wn[0] = q / m1
    wn[127] = dn / m1
    fn[0] = 1.0
    fn[127] = np.exp(-0.5 * dn * dn)
    for i in range(126, 0, -1):
        dn = np.sqrt(-2.0 * np.log(vn / dn + np.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = np.exp(-0.5 * dn * dn)
        wn[i] = dn / m1
    return kn, wn, fn


_ZIG_KN, _ZIG_WN, _ZIG_FN = _ziggurat_tables()


@njit(cache=True, nogil=True, inline="always")
def _bits32(raw, pos):  # pragma: no cover - compiled
    """The pos-th 32-bit word of the uint64 buffer ``raw``."""
    word = raw[pos >> 1]
    if pos & 1:
        word = word >> np.uint64(32)
    return np.uint32(word & np.uint64(0xFFFFFFFF))


@njit(cache=True, nogil=True)
def _ziggurat_fill(out, start, raw, kn, wn, fn):  # pragma: no cover - compiled
    """Standard normal draws into ``out.flat[start:]`` from the random words in ``raw``
    (128-layer ziggurat); returns how far it got before the words ran out."""
    flat = out.ravel()
    n = flat.size
    nwords = 2 * raw.size
    pos = 0
    r = 3.442620
    i = start
    while i < n:
        if pos + 8 > nwords:
            return i
        hz = np.int64(np.int32(_bits32(raw, pos)))
        pos += 1
        iz = hz & 127
        if abs(hz) < kn[iz]:
            flat[i] = hz * wn[iz]
            i += 1
            continue
        # rare slow path: wedges and the tail
        while True:
            x = hz * wn[iz]
            if iz == 0:
                while True:
                    if pos + 2 > nwords:
                        return i
                    u1 = (np.float64(_bits32(raw, pos)) + 0.5) / 4294967296.0
                    u2 = (np.float64(_bits32(raw, pos + 1)) + 0.5) / 4294967296.0
                    pos += 2
                    x = -np.log(u1) * 0.2904764
                    y = -np.log(u2)
                    if y + y >= x * x:
                        break
                x = r + x if hz > 0 else -r - x
                break
            if pos + 2 > nwords:
                return i
            u = (np.float64(_bits32(raw, pos)) + 0.5) / 4294967296.0
            pos += 1
            if fn[iz] + u * (fn[iz - 1] - fn[iz]) < np.exp(-0.5 * x * x):
                break
            hz = np.int64(np.int32(_bits32(raw, pos)))
            pos += 1
            iz = hz & 127
            if abs(hz) < kn[iz]:
                x = hz * wn[iz]
                break
        flat[i] = x
        i += 1
    return i


def standard_normal32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 standard normal draws (ziggurat over the generator's raw 64-bit words);
    about three times faster than ``Generator.standard_normal`` and equally reproducible."""
    out = np.empty(shape, dtype=np.float32)
    n = out.size
    done = 0
    while done < n:
        words = (n - done) // 2 + (n - done) // 32 + 64  # ~1.2 % of draws need extra words
        raw = rng.bit_generator.random_raw(words)
        done = _ziggurat_fill(out, done, raw, _ZIG_KN, _ZIG_WN, _ZIG_FN)
    return out


@njit(cache=True, nogil=True)
def fill_from_neighbours(labels, hy, hx, periodic):  # pragma: no cover - compiled
    """Give every listed pixel the label of a 4-neighbour that is settled (not listed, not
    a pore), pass by pass inwards; pixels that only ever touch pores become pores.  Every
    filled pixel touches the grain it joins.  Works in place."""
    h, w = labels.shape
    n = hy.size
    hole = np.zeros((h, w), dtype=np.bool_)
    for k in range(n):
        hole[hy[k], hx[k]] = True
    todo = np.arange(n)
    new = np.zeros(n, dtype=labels.dtype)
    got = np.zeros(n, dtype=np.bool_)
    dys = (-1, 1, 0, 0)
    dxs = (0, 0, -1, 1)
    while todo.size:
        any_got = False
        for t in range(todo.size):
            k = todo[t]
            y, x = hy[k], hx[k]
            got[k] = False
            for d in range(4):
                ny, nx = y + dys[d], x + dxs[d]
                if periodic:
                    ny %= h
                    nx %= w
                elif ny < 0 or ny >= h or nx < 0 or nx >= w:
                    continue
                if not hole[ny, nx] and labels[ny, nx] != 0:
                    new[k] = labels[ny, nx]
                    got[k] = True
                    any_got = True
                    break
        if not any_got:
            for t in range(todo.size):
                k = todo[t]
                labels[hy[k], hx[k]] = 0
            break
        rest = 0
        for t in range(todo.size):
            k = todo[t]
            if got[k]:
                labels[hy[k], hx[k]] = new[k]
                hole[hy[k], hx[k]] = False
            else:
                todo[rest] = k
                rest += 1
        todo = todo[:rest]
    return labels


@njit(cache=True, nogil=True)
def combine_spectra(spec, t_spec, lines, t_lines):  # pragma: no cover - compiled
    """``spec = spec * t_spec + lines * t_lines`` in one pass (in place)."""
    a = spec.ravel()
    b = lines.ravel()
    ta = t_spec.ravel()
    tb = t_lines.ravel()
    for i in range(a.size):
        a[i] = a[i] * ta[i] + b[i] * tb[i]


@njit(cache=True, nogil=True)
def shift_rows(arr, shifts, periodic):  # pragma: no cover - compiled
    """Row ``y`` moved right by ``shifts[y]`` px, nearest neighbour: ``out[y, x] =
    arr[y, x - round(shifts[y])]`` (edge pixels repeat, or wrap when ``periodic``)."""
    h, w = arr.shape
    out = np.empty_like(arr)
    for y in range(h):
        k = int(np.floor(shifts[y] + 0.5))
        for x in range(w):
            xs = x - k
            if periodic:
                xs %= w
            elif xs < 0:
                xs = 0
            elif xs >= w:
                xs = w - 1
            out[y, x] = arr[y, xs]
    return out
