"""Segmentation and classification metrics.

Label images follow the project convention: grains are labels > 0, and 0 in the ground truth
means "not annotated" (or pore) and is left out wherever a metric allows it. Every function
returns plain Python numbers in a dict, ready for JSON.

- :func:`boundary_f1`: boundary precision / recall / F1 at a pixel tolerance.
- :func:`rand_vi`: adapted Rand error and variation of information (split / merge).
- :func:`grain_matching`: one-to-one grain matching at an IoU threshold.
- :func:`grain_size_error`: mean equivalent-circle diameter of both and their relative error.
- :func:`segmentation_metrics`: all of the above in one flat dict.
- :func:`classification_metrics`: accuracy, macro F1, per-class scores, confusion matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from .errors import MetricError

__all__ = [
    "boundary_f1",
    "classification_metrics",
    "grain_matching",
    "grain_size_error",
    "rand_vi",
    "segmentation_metrics",
]




def _labels(arr, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise MetricError(f"{name} must be a 2-D label image, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise MetricError(f"{name} must be an integer label image, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise MetricError(f"{name} has negative labels")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, names: str = "pred and true") -> None:
    if a.shape != b.shape:
        raise MetricError(f"{names} differ in shape: {a.shape} vs {b.shape}")


def _ratio(num: float, den: float) -> float:
    """num / den with 0 / 0 = 1 (nothing to find and nothing found is perfect)."""
    return float(num) / float(den) if den else 1.0


def _f1(p: float, r: float) -> float:
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


def _boundary_mask(arr, name: str, thin: bool) -> np.ndarray:
    from .inference.postprocess import boundary_from_labels

    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise MetricError(f"{name} must be 2-D, got shape {arr.shape}")
    if arr.dtype == bool:
        if thin:
            from skimage.morphology import thin as thin_mask

            return thin_mask(arr)
        return arr
    return boundary_from_labels(_labels(arr, name))


def boundary_f1(pred, true, tolerance: float = 2, valid=None, *, thin: bool = True) -> dict:
    """Boundary precision, recall and F1 at a pixel tolerance.

    Parameters
    ----------
    pred, true : (H, W) int labels or bool boundary masks
        Labels are turned into one-pixel boundaries (a pixel whose right or lower neighbour
        has another label); bool masks (e.g. a thresholded boundary probability) are
        thinned to one-pixel lines first unless ``thin=False``.
    tolerance : float
        A predicted boundary pixel is correct when a true boundary pixel lies within this
        Euclidean distance (px), and a true one is found when a predicted one does.
    valid : (H, W) bool array, optional
        Only boundary pixels inside ``valid`` are counted (e.g. the annotated region).

    Returns
    -------
    dict with ``precision``, ``recall``, ``f1``. With no boundary on a side, the ratio that
    would divide by zero counts as 1.

    Notes
    -----
    Matching is by distance transform, not one-to-one: several predicted pixels may match one
    true pixel (a double line next to a true one is not penalised as such).
    """
    if tolerance < 0:
        raise MetricError(f"tolerance must be >= 0, got {tolerance}")
    pb = _boundary_mask(pred, "pred", thin)
    tb = _boundary_mask(true, "true", thin)
    _same_shape(pb, tb)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        _same_shape(valid, pb, "valid and pred")
        pb_count, tb_count = pb & valid, tb & valid
    else:
        pb_count, tb_count = pb, tb
    n_pred, n_true = int(pb_count.sum()), int(tb_count.sum())
    tol = float(tolerance)

    def near(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.zeros(mask.shape, dtype=bool)
        return ndi.distance_transform_edt(~mask) <= tol

    hit_pred = int((pb_count & near(tb)).sum()) if n_pred else 0
    hit_true = int((tb_count & near(pb)).sum()) if n_true else 0
    precision = _ratio(hit_pred, n_pred)
    recall = _ratio(hit_true, n_true)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def rand_vi(pred, true) -> dict:
    """Adapted Rand error and variation of information; pixels with ``true == 0`` are ignored.

    Returns
    -------
    dict with ``adapted_rand_error`` (0 is perfect), ``vi_split`` = H(pred | true)
    (over-segmentation), ``vi_merge`` = H(true | pred) (under-segmentation), and their sum
    ``vi`` (in bits).
    """
    from skimage.metrics import adapted_rand_error, variation_of_information

    pred, true = _labels(pred, "pred"), _labels(true, "true")
    _same_shape(pred, true)
    if not (true > 0).any():
        raise MetricError("true has no annotated pixels (all labels are 0)")
    are = adapted_rand_error(true, pred, ignore_labels=(0,))[0]
    split, merge = variation_of_information(true, pred, ignore_labels=(0,))
    return {"adapted_rand_error": float(are), "vi_split": float(split), "vi_merge": float(merge),
            "vi": float(split + merge)}


def _areas_inside(pred: np.ndarray, annotated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total area of every pred label and its area inside the annotated region."""
    n = int(pred.max()) + 1 if pred.size else 1
    total = np.bincount(pred.ravel(), minlength=n)
    inside = np.bincount(pred[annotated], minlength=n)
    return total, inside


def grain_matching(pred, true, iou: float = 0.5) -> dict:
    """Grain-level detection scores: one-to-one matching of grains at IoU >= ``iou``.

    Intersections come from a sparse contingency table of the annotated pixels
    (``true > 0``); a predicted grain's IoU uses its whole area, so spilling into unannotated
    pixels counts against it. Pairs are matched greedily by decreasing IoU (for ``iou`` > 0.5
    the match is unique anyway). Predicted grains count for precision when more than half
    of their area is annotated, or when they are matched.

    Returns
    -------
    dict with ``precision``, ``recall``, ``f1``, ``n_pred``, ``n_true``, ``n_matched`` and
    ``mean_iou`` (over the matched pairs; nan without any).
    """
    pred, true = _labels(pred, "pred"), _labels(true, "true")
    _same_shape(pred, true)
    if not 0.0 < iou <= 1.0:
        raise MetricError(f"iou must be in (0, 1], got {iou}")
    annotated = true > 0
    t = true[annotated].astype(np.int64)
    p = pred[annotated].astype(np.int64)
    area_t = np.bincount(t, minlength=1)
    area_p, inside_p = _areas_inside(pred, annotated)
    n_true = int(np.count_nonzero(area_t[1:]))
    matched = 0
    ious: list[float] = []
    matched_pred = np.zeros(area_p.size, dtype=bool)
    if t.size:
        table = sparse.coo_matrix((np.ones(t.size, dtype=np.int64), (t, p)),
                                  shape=(area_t.size, area_p.size)).tocsr()
        rows, cols, inter = sparse.find(table)
        keep = cols > 0
        rows, cols, inter = rows[keep], cols[keep], inter[keep].astype(np.float64)
        pair_iou = inter / (area_t[rows] + area_p[cols] - inter)
        ok = pair_iou >= iou
        rows, cols, pair_iou = rows[ok], cols[ok], pair_iou[ok]
        order = np.argsort(-pair_iou, kind="stable")
        used_t = np.zeros(area_t.size, dtype=bool)
        for k in order:
            r, c = rows[k], cols[k]
            if used_t[r] or matched_pred[c]:
                continue
            used_t[r] = matched_pred[c] = True
            ious.append(float(pair_iou[k]))
        matched = len(ious)
    counted = (2 * inside_p > area_p) | matched_pred
    counted[0] = False
    n_pred = int(counted.sum())
    precision = _ratio(matched, n_pred)
    recall = _ratio(matched, n_true)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "n_pred": n_pred,
            "n_true": n_true, "n_matched": matched, "mean_iou": float(np.mean(ious)) if ious else math.nan}


def _border_labels(labels: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))


def _equivalent_diameters(area: np.ndarray, ids: np.ndarray, scale: float) -> np.ndarray:
    return np.sqrt(4.0 * area[ids] / math.pi) * scale


def grain_size_error(pred, true, pixel_size: float | None = None, *, exclude_border: bool = True) -> dict:
    """Mean equivalent-circle diameter of the predicted and the true grains and their relative error.

    Parameters
    ----------
    pred, true : (H, W) int labels
    pixel_size : float, optional
        Diameters in these units per px (default: px).
    exclude_border : bool
        Leave out grains touching the image border (their size is cut by the frame), as
        standard grain-size measurements do.

    Returns
    -------
    dict with ``mean_diameter_pred``, ``mean_diameter_true``, ``relative_error`` =
    (pred - true) / true (signed: negative when grains are split, positive when merged),
    ``n_pred``, ``n_true``. Predicted grains are used when more than half of their area is
    annotated (``true > 0``). Means without grains are nan.
    """
    pred, true = _labels(pred, "pred"), _labels(true, "true")
    _same_shape(pred, true)
    scale = float(pixel_size) if pixel_size else 1.0
    annotated = true > 0
    area_t = np.bincount(true.ravel(), minlength=1)
    ids_t = np.flatnonzero(area_t)
    ids_t = ids_t[ids_t > 0]
    area_p, inside_p = _areas_inside(pred, annotated)
    ids_p = np.flatnonzero((area_p > 0) & (2 * inside_p > area_p))
    ids_p = ids_p[ids_p > 0]
    if exclude_border:
        ids_t = np.setdiff1d(ids_t, _border_labels(true))
        ids_p = np.setdiff1d(ids_p, _border_labels(pred))
    d_t = _equivalent_diameters(area_t, ids_t, scale)
    d_p = _equivalent_diameters(area_p, ids_p, scale)
    mean_t = float(d_t.mean()) if d_t.size else math.nan
    mean_p = float(d_p.mean()) if d_p.size else math.nan
    rel = (mean_p - mean_t) / mean_t if d_t.size and d_p.size else math.nan
    return {"mean_diameter_pred": mean_p, "mean_diameter_true": mean_t, "relative_error": float(rel),
            "n_pred": int(d_p.size), "n_true": int(d_t.size)}


def segmentation_metrics(pred, true, tolerance: float = 2, *, iou: float = 0.5, pixel_size: float | None = None,
                         valid=None) -> dict:
    """All segmentation metrics of one image in a flat dict (as ``grainlab eval`` prints them).

    ``valid`` restricts the boundary F1; by default it is the annotated region (``true > 0``)
    grown by ``tolerance`` px (at least 1), so partial annotations are not penalised for the
    boundaries of grains nobody drew (everything when ``true`` has no 0).

    Keys: ``boundary_precision``, ``boundary_recall``, ``boundary_f1``, ``adapted_rand_error``,
    ``vi_split``, ``vi_merge``, ``vi``, ``grain_precision``, ``grain_recall``, ``grain_f1``,
    ``grain_mean_iou``, ``n_pred``, ``n_true``, ``n_matched``, ``mean_diameter_pred``,
    ``mean_diameter_true``, ``diameter_relative_error``.
    """
    pred, true = _labels(pred, "pred"), _labels(true, "true")
    _same_shape(pred, true)
    if valid is None:
        annotated = true > 0
        if not annotated.all():
            r = max(1, int(math.ceil(tolerance)))
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            valid = ndi.binary_dilation(annotated, structure=yy * yy + xx * xx <= r * r)
    bf = boundary_f1(pred, true, tolerance, valid)
    rv = rand_vi(pred, true)
    gm = grain_matching(pred, true, iou)
    gs = grain_size_error(pred, true, pixel_size)
    return {
        "boundary_precision": bf["precision"], "boundary_recall": bf["recall"], "boundary_f1": bf["f1"],
        **rv,
        "grain_precision": gm["precision"], "grain_recall": gm["recall"], "grain_f1": gm["f1"],
        "grain_mean_iou": gm["mean_iou"], "n_pred": gm["n_pred"], "n_true": gm["n_true"],
        "n_matched": gm["n_matched"],
        "mean_diameter_pred": gs["mean_diameter_pred"], "mean_diameter_true": gs["mean_diameter_true"],
        "diameter_relative_error": gs["relative_error"],
    }


def classification_metrics(y_true, y_pred, num_classes: int, class_names: Sequence[str] | None = None) -> dict:
    """Accuracy, macro F1, per-class precision / recall / F1 / support and the confusion matrix.

    ``confusion[i][j]`` counts samples of true class i predicted as j. The macro F1 averages
    the classes that occur in ``y_true`` or ``y_pred`` (a class absent from both says nothing).
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    k = int(num_classes)
    if k < 1:
        raise MetricError(f"num_classes must be >= 1, got {num_classes}")
    if y_true.size != y_pred.size:
        raise MetricError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    if y_true.size == 0:
        raise MetricError("no samples to score")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= k:
            raise MetricError(f"{name} must hold class indices in [0, {k - 1}]")
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise MetricError(f"class_names has {len(names)} names for {k} classes")
    conf = np.bincount(y_true.astype(np.int64) * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(conf).astype(np.float64)
    support = conf.sum(axis=1)
    predicted = conf.sum(axis=0)
    per_class = {}
    f1s = []
    for i, name in enumerate(names):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / support[i] if support[i] else 0.0
        f = _f1(p, r)
        per_class[name] = {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(support[i])}
        if support[i] or predicted[i]:
            f1s.append(f)
    return {
        "accuracy": float(tp.sum() / y_true.size),
        "macro_f1": float(np.mean(f1s)),
        "per_class": per_class,
        "confusion": conf.tolist(),
        "class_names": names,
    }
