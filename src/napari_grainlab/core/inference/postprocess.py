"""From boundary / distance probabilities to grain instances: marker-controlled watershed.

Markers are the confident grain interiors (high distance-to-boundary, low boundary
probability); the flood runs on an elevation that rises towards the boundaries, so every
pixel joins the grain whose interior it can reach over the lowest boundary. Fragments below
a minimum size are merged into the neighbour they share the longest border with.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph
from skimage.segmentation import watershed

__all__ = ["boundary_from_labels", "merge_small_grains", "relabel_sequential", "watershed_grains"]


def _as_map(name: str, arr, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _check_labels(labels, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {labels.shape}")
    if labels.dtype.kind == "i":
        if labels.size and labels.min() < 0:
            raise ValueError(f"{name} must be >= 0")
    elif labels.dtype.kind != "u":
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
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
    labels = relabel_sequential(labels)
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
        labels = relabel_sequential(lut[labels])
    return labels


def watershed_grains(
    boundary: np.ndarray,
    distance: np.ndarray,
    *,
    marker_threshold: float = 0.5,
    boundary_threshold: float = 0.5,
    min_size: int = 16,
    min_marker_size: int = 4,
    mask: np.ndarray | None = None,
    compactness: float = 0.0,
) -> np.ndarray:
    """Grain instances from boundary and distance-to-boundary probability maps.

    Parameters
    ----------
    boundary : (H, W) float array
        Grain-boundary probability in [0, 1].
    distance : (H, W) float array
        Normalised distance to the nearest boundary in [0, 1] (1 deep inside a grain).
    marker_threshold, boundary_threshold : float
        Markers are the 4-connected components of
        ``(distance > marker_threshold) & (boundary < boundary_threshold)``.
    min_size : int
        Grains smaller than this (px) are merged into their longest-border neighbour.
    min_marker_size : int
        Markers smaller than this (px) are dropped before flooding.
    mask : (H, W) bool array, optional
        Only pixels inside the mask are labelled; the rest stay 0.
    compactness : float
        Compact watershed parameter (0 = classic watershed).

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
            raise ValueError(f"mask has shape {mask.shape}, expected {shape}")
        mask = mask.astype(bool, copy=False)
    if min_size < 0 or min_marker_size < 0:
        raise ValueError("min_size and min_marker_size must be >= 0")
    seeds = distance > np.float32(marker_threshold)
    seeds &= boundary < np.float32(boundary_threshold)
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
    elevation = np.subtract(np.float32(1.0), distance, dtype=np.float32)
    elevation += boundary
    elevation *= np.float32(0.5)
    labels = watershed(elevation, markers, mask=mask, compactness=float(compactness))
    del elevation, markers
    return merge_small_grains(labels, min_size)
