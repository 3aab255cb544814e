"""From boundary / distance probabilities to grain instances: marker-controlled watershed.

1. Both maps are smoothed a little (Gaussian), so pixel noise in them makes no markers.
2. Markers are the dynamics-based (h-) maxima of the distance map: one per dome that rises at
   least ``h`` above the pass to any higher dome, and only where the distance is above a
   floor and the boundary probability is low. Unlike a fixed distance threshold this gives
   one marker per grain whatever height the network's distance peak has, and it keeps two
   grains joined by a shallow neck apart.
3. The flood runs on an elevation ``0.5 * ((1 - distance) + boundary)`` that rises towards
   the boundaries, so every pixel joins the grain whose interior it can reach over the
   lowest boundary.
4. Adjacent grains whose shared border has a low mean elevation (the network sees interior
   on both sides: no boundary, no distance valley) are merged, lowest border first
   (average linkage on the region adjacency graph).
5. Fragments below a minimum size are merged into the neighbour they share the longest
   border with.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

from ..errors import ConfigError, DataError
from ._flood import MIN_PIXELS, flood, flood_threads, h_maxima_strips
from .options import DEFAULTS as _D

__all__ = ["boundary_from_labels", "merge_small_grains", "merge_weak_borders", "relabel_sequential",
           "watershed_grains"]


def _as_map(name: str, arr, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise DataError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, reported below
        arr = arr.astype(np.float32, copy=False)
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        # h_maxima and the watershed misbehave (skimage can even crash) on NaN / inf
        raise DataError(f"{name} contains NaN or infinite values")
    return arr


def _check_labels(labels, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"{name} must be a 2-D array, got shape {labels.shape}")
    if labels.dtype.kind == "i":
        if labels.size and labels.min() < 0:
            raise DataError(f"{name} must be >= 0")
    elif labels.dtype.kind != "u":
        raise DataError(f"{name} must be integers, got dtype {labels.dtype}")
    return labels


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels > 0 as 1..n in order of their old value; returns uint32 (0 stays 0)."""
    labels = _check_labels(labels)
    if labels.size == 0:
        return labels.astype(np.uint32)
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.zeros(present.size, dtype=np.uint32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.uint32)
    return lut[labels]


def _relabel_through(labels: np.ndarray, lut: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """``relabel_sequential(lut[labels])`` in one full-size pass: the renumbering is composed on the table.

    ``lut`` (n,) maps every label value of ``labels`` (all < n) to its new value (``lut[0] == 0``);
    ``present`` (n,) bool: the values that occur in ``labels`` (default: counted).
    """
    n = lut.size
    if present is None:
        present = np.bincount(labels.ravel(), minlength=n) > 0
    used = np.zeros(int(lut.max(initial=0)) + 1, dtype=bool)
    used[lut[present]] = True
    used[0] = False
    rank = np.zeros(used.size, dtype=np.uint32)
    rank[used] = np.arange(1, int(used.sum()) + 1, dtype=np.uint32)
    return rank[lut][labels]


def _compact(labels: np.ndarray) -> np.ndarray:
    """``labels`` as they are when their largest value is at most their size, else renumbered 1..n (so that
    per-label tables stay small)."""
    if labels.size and int(labels.max()) > labels.size:
        return relabel_sequential(labels)
    return labels


def boundary_from_labels(labels: np.ndarray, *, thick: bool = False) -> np.ndarray:
    """Pixels where the label changes to its right or lower neighbour.

    Parameters
    ----------
    labels : (H, W) int array
        Instance labels; 0 (pores, not annotated) counts as a label of its own, so grain
        edges against it are boundaries too.
    thick : bool
        False: one pixel on one side of each interface (a one-pixel-wide line); True: both
        sides (a two-pixel band).

    Returns
    -------
    (H, W) bool array
    """
    labels = _check_labels(labels)
    dy = labels[1:, :] != labels[:-1, :]
    dx = labels[:, 1:] != labels[:, :-1]
    out = np.zeros(labels.shape, dtype=bool)
    out[:-1, :] |= dy
    out[:, :-1] |= dx
    if thick:
        out[1:, :] |= dy
        out[:, 1:] |= dx
    return out


def _neighbour_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label pairs (a, b), a != b, of 4-connected neighbours, both orders, one entry per shared edge."""
    a_parts, b_parts = [], []
    for left, right in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        diff = left != right
        a_parts.append(left[diff])
        b_parts.append(right[diff])
    a = np.concatenate(a_parts).astype(np.int64)
    b = np.concatenate(b_parts).astype(np.int64)
    return np.concatenate([a, b]), np.concatenate([b, a])


def merge_small_grains(labels: np.ndarray, min_size: int, *, max_rounds: int = 32) -> np.ndarray:
    """Merge every grain smaller than ``min_size`` px into the neighbour it shares the longest border with.

    Each round costs O(number of pixels): areas by ``bincount``, border lengths by a sparse
    table of the 4-connected label pairs, and all merges of the round at once as connected
    components of the "small grain -> chosen neighbour" graph (so chains and mutual choices
    resolve consistently). Rounds repeat until no small grain has a neighbour left (groups of
    small grains grow together). Label 0 is never merged into nor grown.

    Returns
    -------
    (H, W) uint32 labels numbered 1..n.
    """
    labels = _check_labels(labels)
    min_size = int(min_size)
    if min_size <= 1 or labels.size == 0:
        return relabel_sequential(labels)
    labels = _compact(labels)
    merged = False
    for _ in range(int(max_rounds)):
        n = int(labels.max()) + 1
        area = np.bincount(labels.ravel(), minlength=n)
        small = (area > 0) & (area < min_size)
        small[0] = False
        if not small.any():
            break
        src, dst = _neighbour_pairs(labels)
        keep = small[src] & (dst != 0)
        src, dst = src[keep], dst[keep]
        if src.size == 0:
            break
        border = sparse.coo_matrix((np.ones(src.size, dtype=np.int64), (src, dst)), shape=(n, n)).tocsr()
        rows = np.flatnonzero(np.diff(border.indptr) > 0)  # small grains with a neighbour
        target = np.asarray(border[rows].argmax(axis=1)).ravel()
        graph = sparse.coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, target)), shape=(n, n))
        _, comp = csgraph.connected_components(graph, directed=False)
        # label 0 is in no edge, so it is a component of its own: send it back to 0
        lut = (comp + 1).astype(np.uint32)
        lut[0] = 0
        labels = _relabel_through(labels, lut, area > 0)
        merged = True
    return labels if merged else relabel_sequential(labels)


def _border_table(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent label pairs (a < b) with the sum of ``values`` over their shared border and its length.

    A border element is a 4-connected pixel pair with different labels; its value is the mean
    of ``values`` at the two pixels. One pass over the image, then one sort of the border
    elements (O(perimeter) memory, not O(pixels)).
    """
    n = int(labels.max()) + 1
    keys, sums = [], []
    for (la, lb), (va, vb) in (((labels[:, :-1], labels[:, 1:]), (values[:, :-1], values[:, 1:])),
                               ((labels[:-1, :], labels[1:, :]), (values[:-1, :], values[1:, :]))):
        diff = la != lb
        a = la[diff].astype(np.int64)
        b = lb[diff].astype(np.int64)
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
        sums.append((va[diff].astype(np.float64) + vb[diff]) * 0.5)
        del diff, a, b
    key = np.concatenate(keys)
    val = np.concatenate(sums)
    del keys, sums
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv, weights=val, minlength=uniq.size)
    count = np.bincount(inv, minlength=uniq.size).astype(np.float64)
    return uniq // n, uniq % n, total, count


def merge_weak_borders(labels: np.ndarray, elevation: np.ndarray, threshold: float, *,
                       max_rounds: int = 256) -> np.ndarray:
    """Merge adjacent grains whose shared border has a mean ``elevation`` below ``threshold``.

    Region-adjacency-graph merging with average linkage: the border statistics (sum and
    length of ``elevation`` along each shared border) are collected once from the image; then,
    each round, every pair of grains whose border is below ``threshold`` and is the weakest
    border of both is merged, and the statistics of the merged grains' borders are summed
    (so a merged grain's border is the length-weighted mean of its parts' borders). Rounds
    repeat until no border is below ``threshold`` (or ``max_rounds``). Each round works on the
    table of adjacent pairs (a few per grain), not on the pixels, so the cost is one pass over
    the image plus one sort of the border pixels. Label 0 is never merged.

    Parameters
    ----------
    labels : (H, W) int array
        Grain instances (0: not a grain).
    elevation : (H, W) float array
        High on true boundaries, low inside grains (e.g. the watershed flood elevation).
    threshold : float
        Borders whose mean elevation is below this are removed.

    Returns
    -------
    (H, W) uint32 labels numbered 1..n.
    """
    labels = _compact(_check_labels(labels))
    elevation = _as_map("elevation", elevation, labels.shape)
    if labels.size == 0:
        return relabel_sequential(labels)
    n = int(labels.max()) + 1
    if n <= 2:
        return relabel_sequential(labels)
    pa, pb, total, count = _border_table(labels, elevation)
    lut = np.arange(n, dtype=np.int64)
    for _ in range(int(max_rounds)):
        keep = (pa != pb) & (pa > 0)
        pa, pb, total, count = pa[keep], pb[keep], total[keep], count[keep]
        if pa.size == 0:
            break
        uniq, inv = np.unique(pa * n + pb, return_inverse=True)
        if uniq.size < pa.size:  # pairs that became the same pair after the last merges
            total = np.bincount(inv, weights=total, minlength=uniq.size)
            count = np.bincount(inv, weights=count, minlength=uniq.size)
            pa, pb = uniq // n, uniq % n
        mean = total / count
        weak = mean < threshold
        if not weak.any():
            break
        best = np.full(n, np.inf)
        np.minimum.at(best, pa[weak], mean[weak])
        np.minimum.at(best, pb[weak], mean[weak])
        mutual = weak & (mean <= best[pa]) & (mean <= best[pb])  # the global weakest is always one
        graph = sparse.coo_matrix((np.ones(int(mutual.sum()), dtype=np.int8), (pa[mutual], pb[mutual])),
                                  shape=(n, n))
        _, comp = csgraph.connected_components(graph, directed=False)
        rep = np.full(int(comp.max()) + 1, n, dtype=np.int64)  # each group goes to its smallest label
        np.minimum.at(rep, comp, np.arange(n, dtype=np.int64))
        step = rep[comp]
        lut = step[lut]
        a, b = step[pa], step[pb]
        pa, pb = np.minimum(a, b), np.maximum(a, b)
    return _relabel_through(labels, lut)


def _upsample(coarse: np.ndarray, shape: tuple[int, int], subsample: int) -> np.ndarray:
    """A map of a ``subsample`` x coarser grid back on the full grid (each value repeated)."""
    rows = np.arange(shape[0]) // subsample
    cols = np.arange(shape[1]) // subsample
    return coarse[rows[:, None], cols[None, :]]


def _smooth_both(boundary: np.ndarray, distance: np.ndarray, sigma: float,
                 in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Both maps Gaussian-smoothed; on a large image in two threads (scipy's filters release the GIL).
    ``in_place``: the distance map is smoothed in its own memory (a float32 array only)."""
    def smooth(a: np.ndarray) -> np.ndarray:
        if in_place and a is distance:
            return ndi.gaussian_filter(a, sigma, output=a)  # separable: scipy filters line by line via buffers
        return ndi.gaussian_filter(a, sigma, output=np.float32)

    if boundary.size < MIN_PIXELS or flood_threads() < 2:
        return smooth(boundary), smooth(distance)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="grainlab-smooth") as pool:
        b, d = pool.map(smooth, (boundary, distance))
    return b, d


def watershed_grains(
    boundary: np.ndarray,
    distance: np.ndarray,
    *,
    marker_threshold: float = _D.marker_threshold,
    boundary_threshold: float = _D.boundary_threshold,
    min_size: int = 16,
    min_marker_size: int = 1,
    mask: np.ndarray | None = None,
    compactness: float = 0.0,
    smoothing: float = _D.smoothing,
    h: float = _D.h,
    merge_threshold: float | None = _D.merge_threshold,
    consume_distance: bool = False,
) -> np.ndarray:
    """Grain instances from boundary and distance-to-boundary probability maps.

    Parameters
    ----------
    boundary : (H, W) float array
        Grain-boundary probability in [0, 1].
    distance : (H, W) float array
        Normalised distance to the nearest boundary in [0, 1] (1 deep inside a grain).
    marker_threshold, boundary_threshold : float
        Markers only where the (smoothed) ``distance > marker_threshold`` and
        ``boundary < boundary_threshold``. With ``h = 0`` the markers are the 4-connected
        components of that region; ``marker_threshold=0.5, smoothing=0, h=0,
        merge_threshold=None, min_marker_size=4`` is the earlier, threshold-only
        post-processing.
    min_size : int
        Grains smaller than this (px) are merged into their longest-border neighbour.
    min_marker_size : int
        Markers smaller than this (px) are dropped before flooding.
    mask : (H, W) bool array, optional
        Only pixels inside the mask are labelled; the rest stay 0.
    compactness : float
        Compact watershed parameter (0 = classic watershed).
    smoothing : float
        Gaussian sigma (px) applied to both maps before anything else (0: none). It removes
        the pixel noise of the network's maps, the main source of spurious markers; the maps
        are smooth on the scale of a 2-px boundary band anyway. From 1 px on, the h-maxima
        are searched on a 2 x subsampled map (4 x less time and memory; the smoothed map has
        no detail at that scale).
    h : float
        Dynamics (in units of the normalised distance) a distance maximum needs to become a
        marker: every dome of the distance map that rises at least ``h`` above the pass to a
        higher one gets one marker. 0: threshold markers (see ``marker_threshold``).
    merge_threshold : float or None
        Adjacent grains whose shared border has a mean flood elevation
        ``0.5 * ((1 - distance) + boundary)`` below this are merged (average linkage, see
        :func:`merge_weak_borders`). On a true boundary the distance falls to 0, so the
        elevation reaches 0.5 even where the boundary probability is low; a split inside a
        grain has distance well above 0 and low boundary probability on both sides (about
        0.2 to 0.3). None or 0: no merging.
    consume_distance : bool
        The caller does not need ``distance`` any more: when it is a C-contiguous float32 array,
        it is smoothed and turned into the flood elevation in its own memory (its contents are
        lost; 4 bytes per pixel less at the peak). The labels are the same either way.

    Returns
    -------
    (H, W) uint32 labels 1..n. Without a mask every pixel belongs to a grain (no watershed
    lines); without any marker (a blank image) the result is a single grain.
    """
    boundary = _as_map("boundary", boundary)
    distance = _as_map("distance", distance, boundary.shape)
    shape = boundary.shape
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise DataError(f"mask has shape {mask.shape}, expected {shape}")
        mask = mask.astype(bool, copy=False)
    if min_size < 0 or min_marker_size < 0:
        raise ConfigError("min_size and min_marker_size must be >= 0")
    if smoothing < 0 or h < 0:
        raise ConfigError("smoothing and h must be >= 0")
    owned = smoothing > 0  # the maps here are this function's own copies (else the caller's arrays)
    reuse = bool(consume_distance) and distance.dtype == np.float32 and distance.flags.c_contiguous \
        and distance.flags.writeable
    if owned:
        boundary, distance = _smooth_both(boundary, distance, float(smoothing), in_place=reuse)
    owned = owned or reuse
    seeds = distance > np.float32(marker_threshold)
    seeds &= boundary < np.float32(boundary_threshold)
    find_maxima = h > 0 and bool(seeds.any())
    subsample = 2 if smoothing >= 1 and min(shape) >= 8 else 1
    coarse = None
    if find_maxima and subsample > 1:  # what the maxima need of the distance map; the rest becomes the elevation
        coarse = np.ascontiguousarray(distance[::subsample, ::subsample])
    elif find_maxima:
        seeds &= h_maxima_strips(distance, float(h))
    # the flood elevation, in the smoothed distance map's memory when that is this function's own copy
    elevation = np.subtract(np.float32(1.0), distance, out=distance if owned else None, dtype=np.float32)
    elevation += boundary
    elevation *= np.float32(0.5)
    del boundary, distance
    if coarse is not None:
        seeds &= _upsample(h_maxima_strips(coarse, float(h)), shape, subsample)
        del coarse
    if mask is not None:
        seeds &= mask
    markers = np.empty(shape, dtype=np.int32)
    n = ndi.label(seeds, output=markers)
    del seeds
    if n and min_marker_size > 1:
        area = np.bincount(markers.ravel(), minlength=n + 1)
        keep = area >= min_marker_size
        keep[0] = False
        lut = np.zeros(n + 1, dtype=np.int32)
        n = int(keep.sum())
        lut[keep] = np.arange(1, n + 1, dtype=np.int32)
        markers = lut[markers]
    if n == 0:
        return np.ones(shape, dtype=np.uint32) if mask is None else mask.astype(np.uint32)
    labels = flood(elevation, markers, mask=mask, compactness=float(compactness), n_markers=n)
    del markers
    if merge_threshold:
        labels = merge_weak_borders(labels, elevation, float(merge_threshold))
    del elevation
    return merge_small_grains(labels, min_size)
