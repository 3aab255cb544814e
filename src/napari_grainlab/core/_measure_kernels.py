"""Compiled kernel of :func:`napari_grainlab.core.measure.grain_table` (numba, cached on disk after the first call).

One pass over the labels for the area and the first moments of every label, one more for the second
central moments: no per-pixel temporaries (the numpy formulation needs float64 coordinate arrays and
one ``bincount`` pass per moment, ~48 bytes a pixel and 6 passes).  The sums run in raster order, as
``np.bincount`` sums them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["first_pixels", "label_moments"]


@njit(cache=True, nogil=True, inline="always")
def _unwrap(v, ref, n):  # pragma: no cover - compiled
    """Coordinate ``v`` on a periodic axis of ``n`` px, moved by a period to lie within half a period of
    ``ref``: ``ref + (v - ref + n/2) % n - n/2``, the modulo only where the pixel moves."""
    d = v - ref
    half = n / 2.0
    if d >= half or d < -half:
        return ref + (d + half) % n - half
    return v


@njit(cache=True, nogil=True)
def label_moments(labels, nl, periodic, ref_y, ref_x):  # pragma: no cover - compiled (tested through grain_table)
    """``(area, mean_y, mean_x, cyy, cxx, cxy)`` per label 0 .. nl-1 of the 2-D integer ``labels``:
    pixel counts, centroids (px) and the sums of the squared / crossed deviations from the centroid.

    With ``periodic`` each pixel's coordinates are unwrapped to lie within half an image of the
    label's reference point (``ref_y``, ``ref_x``: arrays of length ``nl``), as a grain that wraps
    around the edges of a periodic image would be drawn in one piece.
    """
    h, w = labels.shape
    area = np.zeros(nl)
    sy = np.zeros(nl)
    sx = np.zeros(nl)
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            yy = float(y)
            xx = float(x)
            if periodic:
                yy = _unwrap(yy, ref_y[k], h)
                xx = _unwrap(xx, ref_x[k], w)
            area[k] += 1.0
            sy[k] += yy
            sx[k] += xx
    my = np.empty(nl)
    mx = np.empty(nl)
    for k in range(nl):
        a = max(area[k], 1.0)
        my[k] = sy[k] / a
        mx[k] = sx[k] / a
    cyy = np.zeros(nl)
    cxx = np.zeros(nl)
    cxy = np.zeros(nl)
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            yy = float(y)
            xx = float(x)
            if periodic:
                yy = _unwrap(yy, ref_y[k], h)
                xx = _unwrap(xx, ref_x[k], w)
            dy = yy - my[k]
            dx = xx - mx[k]
            cxy[k] += dx * dy
            cyy[k] += dy * dy
            cxx[k] += dx * dx
    return area, my, mx, cyy, cxx, cxy


@njit(cache=True, nogil=True)
def first_pixels(labels, nl):  # pragma: no cover - compiled (tested through grain_table)
    """``(y, x)`` (float64 arrays of length ``nl``) of the first pixel of every label in raster order; -1 for
    labels that do not occur."""
    h, w = labels.shape
    fy = np.full(nl, -1.0)
    fx = np.full(nl, -1.0)
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            if fy[k] < 0:
                fy[k] = y
                fx[k] = x
    return fy, fx
