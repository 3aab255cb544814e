"""Leakage-safe validation splits: whole source micrographs (groups) go to one side.

Tiles or crops of one micrograph share its grains, its contrast and its artefacts; validating on
one tile while training on its neighbour measures memory, not generalisation.  Every function here
keeps each group on one side.  Splits are made before any augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .datasets import SegSample

__all__ = ["group_split", "kfold_splits", "spatial_split"]


def _groups(groups: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique group names (sorted), the group index of every sample, and the samples per group."""
    groups = [str(g) for g in groups]
    if not groups:
        raise DataError(f"{what}: no samples to split")
    names, inverse, counts = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True,
                                       return_counts=True)
    return names, inverse.ravel(), counts


def group_split(groups: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split samples into training and validation by group.

    Groups are visited in a random order (``seed``) and moved to validation while they fit into
    ``val_fraction`` of the samples; validation always gets at least one group and training
    keeps at least one.

    Parameters
    ----------
    groups : the source micrograph of every sample
    val_fraction : target fraction of samples for validation, in (0, 1)
    seed : random seed; the same groups and seed give the same split

    Returns
    -------
    train_idx, val_idx : sorted int64 arrays of sample indices

    Raises
    ------
    DataError
        fewer than two groups (validation needs a second source micrograph; see
        :func:`spatial_split` for a single image).
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    names, inverse, counts = _groups(groups, "group_split")
    if len(names) < 2:
        raise DataError(f"validation needs at least 2 source micrographs (groups); all {len(inverse)} samples "
                        f"come from {names[0]!r}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    target = val_fraction * len(inverse)
    chosen: list[int] = []
    n_val = 0
    for g in order:
        if len(chosen) == len(names) - 1 or n_val >= target:
            break
        if n_val + counts[g] <= target:
            chosen.append(int(g))
            n_val += int(counts[g])
    if not chosen:  # every group is larger than the target: take the smallest (first in the random order)
        chosen = [int(order[np.argmin(counts[order])])]
    is_val = np.isin(inverse, chosen)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def kfold_splits(groups: Sequence[str], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group K-fold: every group is in exactly one validation fold; folds balanced by sample count.

    Groups are assigned largest first (ties in a random order from ``seed``) to the fold with the
    fewest samples so far.

    Returns
    -------
    list of ``k`` (train_idx, val_idx) pairs of sorted int64 arrays
    """
    if isinstance(k, bool) or int(k) != k or k < 2:
        raise DataError(f"k-fold cross-validation needs k >= 2, got {k!r}")
    k = int(k)
    names, inverse, counts = _groups(groups, "kfold_splits")
    if k > len(names):
        raise DataError(f"k-fold cross-validation with k={k} needs at least {k} source micrographs (groups), "
                        f"got {len(names)}")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(names))
    order = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    load = np.zeros(k, dtype=np.int64)
    fold_of = np.empty(len(names), dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += counts[g]
    sample_fold = fold_of[inverse]
    return [(np.flatnonzero(sample_fold != f), np.flatnonzero(sample_fold == f)) for f in range(k)]


def _part(sample: SegSample, sl: tuple[slice, slice], suffix: str) -> SegSample:
    from skimage.segmentation import relabel_sequential

    labels = relabel_sequential(np.ascontiguousarray(sample.labels[sl]))[0].astype(np.uint32, copy=False)
    twins = None if sample.twins is None else np.ascontiguousarray(sample.twins[sl])
    return SegSample(name=f"{sample.name}[{suffix}]", image=np.ascontiguousarray(sample.image[sl]), labels=labels,
                     group=sample.group, pixel_size=sample.pixel_size, twins=twins)


def spatial_split(sample: SegSample, val_fraction: float = 0.2, min_size: int = 8) -> tuple[SegSample, SegSample]:
    """Cut one annotated image into a training and a validation part.

    For a single source micrograph, where no group split exists.  The image is cut across its
    longer axis (top / bottom when it is at least as tall as wide); the validation part takes
    ``val_fraction`` of it at the bottom (right), or at the top (left) when only that gives both
    parts annotated pixels.  Labels are relabelled 1..n in each part; a grain crossing the cut
    appears in both.

    Returns
    -------
    (train, val) : two :class:`SegSample` named ``NAME[top]``, ``NAME[bottom]`` (or left / right)
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    h, w = sample.labels.shape
    axis = 0 if h >= w else 1
    n = (h, w)[axis]
    n_val = int(round(val_fraction * n))
    if n_val < min_size or n - n_val < min_size:
        raise DataError(f"{sample.name}: image of shape {(h, w)} is too small to split spatially with "
                        f"val_fraction={val_fraction} (each part needs {min_size} px)")
    names = ("top", "bottom") if axis == 0 else ("left", "right")

    def cut(a: int, b: int) -> tuple[slice, slice]:
        return (slice(a, b), slice(None)) if axis == 0 else (slice(None), slice(a, b))

    for val_at_end in (True, False):
        if val_at_end:
            tr, va = cut(0, n - n_val), cut(n - n_val, n)
            tr_name, va_name = names
        else:
            tr, va = cut(n_val, n), cut(0, n_val)
            va_name, tr_name = names
        if sample.labels[tr].any() and sample.labels[va].any():
            return _part(sample, tr, tr_name), _part(sample, va, va_name)
    raise DataError(f"{sample.name}: cannot split the image spatially: the annotation does not reach both ends "
                    f"(annotate grains near the top and bottom, or give a second image for validation)")
