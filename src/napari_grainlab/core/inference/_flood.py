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

Each strip is flooded by scikit-image's own flood kernel (``_watershed_cy.watershed_raveled``, the code
``watershed`` runs) on buffers prepared here: one padded float64 elevation, int8 mask and int32 output,
about 13 bytes per pixel instead of the 27 of ``watershed``'s conversions and padded copies. The
neighbour order and marker order are scikit-image's, so the labels are the same (the tests compare them);
where that private kernel is missing or has changed, the public ``watershed`` is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from skimage.segmentation import watershed

__all__ = ["flood", "flood_threads", "h_maxima_strips", "in_strips"]

#: below this many pixels the image is flooded in one piece (strips would not pay for their margins)
MIN_PIXELS = 1 << 21
#: rows per strip are chosen so that a strip has at most about this many pixels (its flood buffers ~13 B/px)
MAX_STRIP_PIXELS = 6 << 20
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
    """Four marker spacings (``sqrt(pixels / markers)``), at least 64 rows (the seam check widens it).

    Two spacings are not enough on a network's saturated maps: there the borders are flat ridges that
    the floods share in push order, and on a 8192 px prediction every seam disagreed at two spacings and
    none at four."""
    spacing = np.sqrt(markers.size / max(1, n_markers))
    return int(max(64, np.ceil(4 * spacing)))


def _kernel():
    """scikit-image's flood kernel and its two helpers, or None where they are not as expected."""
    try:
        from skimage.morphology._util import _offsets_to_raveled_neighbors, _validate_connectivity
        from skimage.segmentation._watershed_cy import watershed_raveled
    except ImportError:
        return None
    return watershed_raveled, _offsets_to_raveled_neighbors, _validate_connectivity


def _watershed(elevation: np.ndarray, markers: np.ndarray, mask: np.ndarray | None, compactness: float) -> np.ndarray:
    """``watershed(elevation, markers, mask=mask, compactness=compactness)`` (connectivity 1) with fewer
    temporaries: the buffers scikit-image's kernel floods are filled here, each once."""
    kernel = _kernel()
    if kernel is None:
        return watershed(elevation, markers, mask=mask, compactness=compactness)
    run, neighbours, connectivity = kernel
    try:
        footprint, offset = connectivity(2, 1, None)
        h, w = elevation.shape
        py, px = (int(o) for o in offset)
        inner = (slice(py, py + h), slice(px, px + w))
        image = np.zeros((h + 2 * py, w + 2 * px), dtype=np.float64)
        image[inner] = elevation
        flat_mask = np.zeros(image.shape, dtype=np.int8)
        output = np.zeros(image.shape, dtype=np.int32)
        if mask is None:
            flat_mask[inner] = 1
            output[inner] = markers
        else:
            flat_mask[inner] = mask
            np.multiply(markers, mask, out=output[inner], casting="unsafe")
        offsets = neighbours(image.shape, footprint, center=offset)
        strides = np.array(image.strides, dtype=np.intp) // image.itemsize
        run(image.ravel(), np.flatnonzero(output), offsets, flat_mask.ravel(), strides, float(compactness),
            output.ravel(), False)
    except (TypeError, ValueError):  # the private kernel's signature changed: the public function
        return watershed(elevation, markers, mask=mask, compactness=compactness)
    return output[inner]


def _strips(h: int, w: int, threads: int, margin: int, max_strip_pixels: int) -> list[int]:
    """Row positions ``0 = s_0 < s_1 < ... < s_k = h`` of the strip cores (one strip: ``[0, h]``)."""
    k = max(threads, int(np.ceil(h * w / max_strip_pixels)))
    k = min(k, max(1, h // (2 * margin)))  # a core at least two margins high, else the margins dominate
    return [round(i * h / k) for i in range(k + 1)]


def in_strips(fn: Callable[[int, int], np.ndarray], shape: tuple[int, int], margin: int, dtype, *,
              threads: int | None = None, max_strip_pixels: int = MAX_STRIP_PIXELS) -> np.ndarray:
    """``fn(0, h)`` computed as ``fn(y0, y1)`` on overlapping row strips in parallel threads and stitched.

    ``fn(y0, y1)`` computes the result for rows ``y0:y1`` of the image (a 2-D array of ``y1 - y0`` rows).
    Each strip gets ``margin`` extra rows on both sides; on every seam the two strips must agree on a band
    of ``margin`` rows, else the margin is doubled and everything computed again (one strip: ``fn(0, h)``).
    A finished strip's core rows go straight into the result and only its seam bands are kept, so the
    memory is the result plus the strips in flight.
    """
    h, w = shape
    threads = flood_threads() if threads is None else max(1, int(threads))
    margin = max(1, int(margin))
    out = None
    while True:
        cuts = _strips(h, w, threads, margin, max_strip_pixels)
        if len(cuts) <= 2:
            return fn(0, h)
        if out is None:
            out = np.empty((h, w), dtype=dtype)
        half = margin // 2
        spans = [(max(0, a - margin), min(h, b + margin)) for a, b in zip(cuts[:-1], cuts[1:])]

        def run(i: int, cuts=cuts, spans=spans, half=half, out=out) -> tuple[np.ndarray | None, np.ndarray | None]:
            (y0, y1), a, b = spans[i], cuts[i], cuts[i + 1]
            part = fn(y0, y1)
            out[a:b] = part[a - y0:b - y0]
            top = part[a - half - y0:a + half - y0].copy() if i > 0 else None  # the seam above, seen from below
            bottom = part[b - half - y0:b + half - y0].copy() if i < len(spans) - 1 else None
            return top, bottom

        with ThreadPoolExecutor(max_workers=min(threads, len(spans)), thread_name_prefix="grainlab-strips") as pool:
            bands = list(pool.map(run, range(len(spans))))
        if _bands_agree(bands):
            return out
        del bands
        margin *= 2


def flood(elevation: np.ndarray, markers: np.ndarray, *, mask: np.ndarray | None = None, compactness: float = 0.0,
          n_markers: int | None = None, threads: int | None = None, min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """``skimage.segmentation.watershed(elevation, markers, mask=mask, compactness=compactness)``, the same
    labels (int32), flooded in strips on ``threads`` cores when the image has at least ``min_pixels``."""
    h, w = elevation.shape
    if elevation.size < min_pixels:  # (too few rows for two strips: in_strips floods it in one piece)
        return _watershed(elevation, markers, mask, compactness)
    if n_markers is None:
        n_markers = int(markers.max(initial=0))

    def part(y0: int, y1: int) -> np.ndarray:
        m = None if mask is None else mask[y0:y1]
        return _watershed(elevation[y0:y1], markers[y0:y1], m, compactness)

    return in_strips(part, (h, w), _initial_margin(markers, n_markers), np.int32, threads=threads)


def h_maxima_strips(image: np.ndarray, h: float, *, margin: int = 64, threads: int | None = None,
                    min_pixels: int = MIN_PIXELS // 4) -> np.ndarray:
    """``skimage.morphology.h_maxima(image, h)`` as a bool array, computed in strips (see :func:`in_strips`)
    when the image has at least ``min_pixels``: the reconstruction behind it holds several float64 copies
    of its input, and a dome of a grain-sized distance map is far narrower than a strip."""
    from skimage.morphology import h_maxima

    if image.size < min_pixels:
        return h_maxima(image, h).astype(bool)
    return in_strips(lambda y0, y1: h_maxima(image[y0:y1], h).astype(bool), image.shape, margin, bool,
                     threads=threads, max_strip_pixels=MAX_STRIP_PIXELS // 4)


def _bands_agree(bands: list[tuple[np.ndarray | None, np.ndarray | None]]) -> bool:
    """Whether each seam's band is the same seen from the strip above and from the strip below."""
    return all(np.array_equal(bands[i - 1][1], bands[i][0]) for i in range(1, len(bands)))
