"""Compiled kernels of the grain-growth tessellation (numba, cached on disk after the first call).

``potts_coarsen`` is a Monte-Carlo Potts model with one unique spin per grain (so grains never
merge by chance and the spins stay instance labels): random sites, the new spin proposed from a
random one of the 8 neighbours (boundary sites only change; interior sites are rejected after one
read), Metropolis acceptance on the Moore-neighbourhood boundary energy.  ``smooth_upsample``
resamples the coarse lattice to the image: every image pixel takes the label whose Gaussian-
weighted share of the surrounding 4 x 4 lattice sites is largest (the 0.5 level set of the
smoothed indicator functions), which turns the lattice staircase into smooth curved boundaries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["potts_coarsen", "smooth_upsample"]

_DY = (-1, -1, -1, 0, 0, 1, 1, 1)
_DX = (-1, 0, 1, -1, 1, -1, 0, 1)


@njit(cache=True, nogil=True, inline="always")
def _next(state):  # pragma: no cover - compiled
    """xorshift64* step: returns (new state, 64 random bits)."""
    x = state
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    return x, x * np.uint64(0x2545F4914F6CDD1D)


@njit(cache=True, nogil=True, inline="always")
def _energy(a, b, orient, aniso):  # pragma: no cover - compiled
    """Boundary energy between grains a and b (1 when isotropic; Read-Shockley in the
    misorientation when ``aniso`` > 0, with 15 degrees as the high-angle limit)."""
    if aniso <= 0.0:
        return 1.0
    d = abs(orient[a] - orient[b])
    d = min(d, 1.0 - d) * 90.0  # orientations are fractions of a 90 degree period (cubic, in-plane)
    if d >= 15.0:
        g = 1.0
    elif d <= 1e-6:
        g = 0.0
    else:
        r = d / 15.0
        g = r * (1.0 - math.log(r))
    return 1.0 - aniso + aniso * g


@njit(cache=True, nogil=True)
def potts_coarsen(spins, area, orient, target, max_sweeps, kT, aniso, periodic, seed):  # pragma: no cover
    """Coarsen ``spins`` (int32 H x W, in place) until at most ``target`` grains are left or
    ``max_sweeps`` Monte-Carlo sweeps (H * W attempts each) are done.

    ``area`` (int64 per spin) is kept up to date.  Returns ``(sweeps, grains left)``.
    """
    h, w = spins.shape
    n_alive = 0
    for a in area:
        if a > 0:
            n_alive += 1
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)
    if state == np.uint64(0):
        state = np.uint64(1)
    n_sites = h * w
    inv53 = 1.0 / 9007199254740992.0
    # acceptance probabilities exp(-dE / kT) for the isotropic energies (dE = 1..8)
    boltz = np.zeros(9)
    for k in range(1, 9):
        boltz[k] = math.exp(-k / kT) if kT > 0.0 else 0.0
    sweeps = 0
    while sweeps < max_sweeps and n_alive > target:
        for _ in range(n_sites):
            state, r = _next(state)
            site = np.int64((r >> np.uint64(20)) % np.uint64(n_sites))
            k = np.int64(r & np.uint64(7))
            y = site // w
            x = site - y * w
            ny = y + _DY[k]
            nx = x + _DX[k]
            if periodic:
                ny = (ny + h) % h
                nx = (nx + w) % w
            elif ny < 0 or ny >= h or nx < 0 or nx >= w:
                continue
            s = spins[y, x]
            t = spins[ny, nx]
            if s == t:
                continue
            de = 0.0
            for j in range(8):
                yy = y + _DY[j]
                xx = x + _DX[j]
                if periodic:
                    yy = (yy + h) % h
                    xx = (xx + w) % w
                elif yy < 0 or yy >= h or xx < 0 or xx >= w:
                    continue
                q = spins[yy, xx]
                if q != s:
                    de -= _energy(s, q, orient, aniso)
                if q != t:
                    de += _energy(t, q, orient, aniso)
            if de > 0.0:
                if kT <= 0.0:
                    continue
                state, r2 = _next(state)
                u = np.float64(r2 >> np.uint64(11)) * inv53
                kd = int(de + 0.5)
                p = boltz[kd] if aniso <= 0.0 and abs(de - kd) < 1e-9 else math.exp(-de / kT)
                if u >= p:
                    continue
            spins[y, x] = t
            area[t] += 1
            area[s] -= 1
            if area[s] == 0:
                n_alive -= 1
                if n_alive <= target:
                    break
        sweeps += 1
    return sweeps, n_alive


@njit(cache=True, nogil=True)
def smooth_upsample(low, out_h, out_w, origin_y, origin_x, step_y, step_x, sigma, periodic):  # pragma: no cover
    """Labels of an ``out_h`` x ``out_w`` image from the lattice ``low``.

    Lattice site (i, j) sits at image position ``(origin + (i + 0.5) * step)`` (pixel centres
    at k + 0.5).  Each pixel takes the label with the largest Gaussian weight (``sigma`` in
    lattice sites) among the 4 x 4 sites around it.
    """
    hl, wl = low.shape
    out = np.empty((out_h, out_w), dtype=np.int32)
    inv2s2 = 0.5 / (sigma * sigma)
    labs = np.empty(16, dtype=np.int32)
    wts = np.empty(16)
    wy = np.empty(4)
    wx = np.empty(4)
    iy = np.empty(4, dtype=np.int64)
    ix = np.empty(4, dtype=np.int64)
    for i in range(out_h):
        ly = (i + 0.5 - origin_y) / step_y - 0.5
        by = int(math.floor(ly)) - 1
        for a in range(4):
            yy = by + a
            d = ly - yy
            wy[a] = math.exp(-d * d * inv2s2)
            if periodic:
                yy %= hl
            else:
                yy = min(max(yy, 0), hl - 1)
            iy[a] = yy
        for j in range(out_w):
            lx = (j + 0.5 - origin_x) / step_x - 0.5
            bx = int(math.floor(lx)) - 1
            for b in range(4):
                xx = bx + b
                d = lx - xx
                wx[b] = math.exp(-d * d * inv2s2)
                if periodic:
                    xx %= wl
                else:
                    xx = min(max(xx, 0), wl - 1)
                ix[b] = xx
            m = 0
            for a in range(4):
                for b in range(4):
                    v = low[iy[a], ix[b]]
                    wgt = wy[a] * wx[b]
                    found = False
                    for c in range(m):
                        if labs[c] == v:
                            wts[c] += wgt
                            found = True
                            break
                    if not found:
                        labs[m] = v
                        wts[m] = wgt
                        m += 1
            best = 0
            for c in range(1, m):
                if wts[c] > wts[best]:
                    best = c
            out[i, j] = labs[best]
    return out
