"""Twin boundaries predicted by a model with a twin class: the mask, the twins as grains, the statistics.

The convention (see ``docs/training.md``): grain labels are *parent* grains, a twin is part of the grain
it lies in, and the twin-boundary map marks the interfaces between twins and their parents.  The grain
watershed therefore never splits a twin off its parent.  To count twins as grains (ASTM E112 with twin
boundaries counted), :func:`split_at_twins` cuts every grain along the twin-boundary mask;
:func:`twin_statistics` hands both to :func:`~napari_grainlab.core.grainsize.grain_size`, which merges
them back to report G with twins counted and excluded.  NumPy / scikit-image only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["TWIN_THRESHOLD", "split_at_twins", "twin_mask", "twin_statistics"]

#: twin-boundary probability above which a pixel is a twin boundary
TWIN_THRESHOLD = 0.5


def twin_mask(twin_boundary: np.ndarray, threshold: float = TWIN_THRESHOLD) -> np.ndarray:
    """The bool twin-boundary mask of a probability map (``> threshold``)."""
    prob = np.asarray(twin_boundary)
    if prob.ndim != 2:
        raise DataError(f"the twin-boundary map must be 2-D, got shape {prob.shape}")
    if not 0.0 < float(threshold) < 1.0:
        raise DataError(f"the twin-boundary threshold must be between 0 and 1, got {threshold}")
    return prob > float(threshold)


def split_at_twins(labels: np.ndarray, twins: np.ndarray) -> np.ndarray:
    """``labels`` with every grain cut along the twin-boundary mask ``twins``: each part of a grain that
    twin boundaries separate becomes a grain of its own (4-connected), and the twin-boundary pixels go to
    nearest part of their grain (unlabelled when that is another grain's). Returns uint32 labels 1..n
    (0 stays 0)."""
    from scipy import ndimage as ndi
    from skimage.measure import label as connected
    from skimage.segmentation import relabel_sequential

    lab = np.asarray(labels)
    tw = np.asarray(twins, dtype=bool)
    if lab.shape != tw.shape or lab.ndim != 2:
        raise DataError(f"the twin-boundary mask has shape {tw.shape}, the labels {lab.shape}")
    cut = np.where(tw, 0, lab)
    parts = connected(cut, background=0, connectivity=1).astype(np.uint32)
    gaps = tw & (lab > 0)
    if gaps.any() and parts.any():
        # each twin-boundary pixel takes the label of the nearest part (ties: the part of its own grain)
        _, (iy, ix) = ndi.distance_transform_edt(parts == 0, return_indices=True)
        near = parts[iy, ix]
        own = lab[iy, ix] == lab
        parts[gaps] = np.where(own[gaps], near[gaps], 0)  # else left unlabelled: a gap that measurement fills
    return relabel_sequential(parts)[0].astype(np.uint32, copy=False)


def _boundary_edges(parts: np.ndarray, parents: np.ndarray) -> tuple[int, int]:
    """(twin-boundary edges, all boundary edges): 4-neighbour pixel pairs of two different ``parts``,
    twin when both lie in one parent grain."""
    twin = total = 0
    for a, b, pa, pb in ((parts[:, :-1], parts[:, 1:], parents[:, :-1], parents[:, 1:]),
                         (parts[:-1], parts[1:], parents[:-1], parents[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        total += int(np.count_nonzero(edge))
        twin += int(np.count_nonzero(edge & (pa == pb)))
    return twin, total


def twin_statistics(labels: np.ndarray, twin_boundary: np.ndarray, pixel_size: float | None = None,
                    threshold: float = TWIN_THRESHOLD) -> dict[str, Any]:
    """Twin numbers of one predicted micrograph (parent-grain ``labels``, twin-boundary probability map).

    The twins as grains are :func:`split_at_twins` of the labels.  Returns ``twin_boundary_fraction``
    (twin-boundary length / all boundary length, in pixel edges between the split grains after the
    measurement's gap filling), ``twinned_grains`` (parent grains that a twin boundary cuts),
    ``grains_twins_counted`` (grains when twins count as grains) and ``G_twins_counted`` /
    ``G_twins_excluded`` (ASTM E112 planimetric of the split and of the parent grains; NaN without a
    pixel size).
    """
    from .grainsize import fill_gaps, grain_size

    lab = np.asarray(labels)
    tw = twin_mask(twin_boundary, threshold)
    if tw.shape != lab.shape:
        raise DataError(f"the twin-boundary map has shape {tw.shape}, the labels {lab.shape}")
    nan = math.nan
    out: dict[str, Any] = {"twin_boundary_fraction": nan, "twinned_grains": 0, "grains_twins_counted": 0,
                           "G_twins_counted": nan, "G_twins_excluded": nan}
    if not lab.any():
        return out
    split = split_at_twins(lab, tw)
    if not split.any():  # twin boundary everywhere: nothing to count
        return out
    parts = fill_gaps(split)
    parents = fill_gaps(lab.astype(np.uint32, copy=False))
    twin, total = _boundary_edges(parts, parents)
    out["twin_boundary_fraction"] = twin / total if total else 0.0
    ids, first = np.unique(split[split > 0], return_index=True)
    parent_of = lab[split > 0][first]
    counts = np.bincount(parent_of.astype(np.int64))
    out["twinned_grains"] = int(np.count_nonzero(counts > 1))
    out["grains_twins_counted"] = int(ids.size)
    for key, value in (("G_twins_counted", split), ("G_twins_excluded", lab)):
        try:
            out[key] = float(grain_size(value, pixel_size).G)
        except DataError:  # nothing the measurement can count (no grain inside the field)
            pass
    return out
