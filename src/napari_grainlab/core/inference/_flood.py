"""The marker flood of :func:`~.postprocess.watershed_grains`, in overlapping strips on several cores.

scikit-image's watershed is a priority-queue flood: one core, ``O(n log n)``, and about 27 bytes per
pixel of temporaries (a float64 copy of the elevation, padded copies of everything). On a large image it
is the slowest step of a prediction and its largest memory peak. Here the image is cut into horizontal
strips, each flooded with a margin of ``margin`` rows above and below (scikit-image releases the GIL, so
the strips run in parallel threads), and each strip contributes its core rows.

A pixel's label depends only on the markers and elevations its flood came through. Markers are pushed
in raster order and the queue breaks ties by push order, so inside a strip the events of a flood that
stays inside the strip happen in the same relative order as in the whole image: away from the strips'
cut edges the labels are *identical* to a flood of the whole image. Whether the margin was wide enough
is checked, not assumed: on every seam the two neighbouring strips must agree on a band of ``margin``
rows around it. Where they disagree (a grain taller than the margin whose marker lies outside a strip),
the margin is doubled and the image flooded again, down to one strip (the plain flood) if needed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from skimage.segmentation import watershed

__all__ = ["flood", "flood_threads"]

#: below this many pixels the image is flooded in one piece (strips would not pay for their margins)
MIN_PIXELS = 1 << 21
#: rows per strip are chosen so that a strip has at most about this many pixels (its temporaries ~27 B/px)
MAX_STRIP_PIXELS = 1 << 23
#: the flood's threads, if set (an integer >= 1); else the cores this process may use, at most 8
THREADS_ENV = "GRAINLAB_FLOOD_THREADS"


def flood_threads() -> int:
    """Threads the flood uses: ``$GRAINLAB_FLOOD_THREADS``, else the usable cores (at most 8)."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _initial_margin(markers: np.ndarray, n_markers: int) -> int:
    """Four marker spacings (``sqrt(pixels / markers)``), at least 64 rows."""
    spacing = np.sqrt(markers.size / max(1, n_markers))
    return int(max(64, np.ceil(4 * spacing)))


def _strips(h: int, w: int, threads: int, margin: int) -> list[int]:
    """Row positions ``0 = s_0 < s_1 < ... < s_k = h`` of the strip cores (one strip: ``[0, h]``)."""
    k = max(threads, int(np.ceil(h * w / MAX_STRIP_PIXELS)))
    k = min(k, max(1, h // (2 * margin)))  # a core at least two margins high, else the margins dominate
    return [round(i * h / k) for i in range(k + 1)]


def _flood_strip(elevation, markers, mask, compactness, y0, y1):
    m = None if mask is None else mask[y0:y1]
    return watershed(elevation[y0:y1], markers[y0:y1], mask=m, compactness=compactness)


def flood(elevation: np.ndarray, markers: np.ndarray, *, mask: np.ndarray | None = None, compactness: float = 0.0,
          n_markers: int | None = None, threads: int | None = None, min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """``skimage.segmentation.watershed(elevation, markers, mask=mask, compactness=compactness)``, the same
    labels (int32), flooded in strips on ``threads`` cores when the image has at least ``min_pixels``."""
    h, w = elevation.shape
    threads = flood_threads() if threads is None else max(1, int(threads))
    if n_markers is None:
        n_markers = int(markers.max(initial=0))
    if elevation.size < min_pixels or h < 4 * 64:
        return watershed(elevation, markers, mask=mask, compactness=compactness)
    margin = _initial_margin(markers, n_markers)
    while True:
        cuts = _strips(h, w, threads, margin)
        if len(cuts) <= 2:
            return watershed(elevation, markers, mask=mask, compactness=compactness)
        spans = [(max(0, a - margin), min(h, b + margin)) for a, b in zip(cuts[:-1], cuts[1:])]
        with ThreadPoolExecutor(max_workers=min(threads, len(spans)),
                                thread_name_prefix="grainlab-flood") as pool:
            parts = list(pool.map(lambda s: _flood_strip(elevation, markers, mask, compactness, *s), spans))
        if _seams_agree(parts, spans, cuts, margin):
            out = np.empty((h, w), dtype=np.int32)
            for (a, b), (y0, _y1), part in zip(zip(cuts[:-1], cuts[1:]), spans, parts):
                out[a:b] = part[a - y0:b - y0]
            return out
        del parts
        margin *= 2


def _seams_agree(parts, spans, cuts, margin: int) -> bool:
    """Whether neighbouring strips label the ``margin`` rows around each seam alike."""
    half = margin // 2
    for i in range(1, len(parts)):
        s = cuts[i]
        lo, hi = s - half, s + half
        above = parts[i - 1][lo - spans[i - 1][0]:hi - spans[i - 1][0]]
        below = parts[i][lo - spans[i][0]:hi - spans[i][0]]
        if not np.array_equal(above, below):
            return False
    return True
