"""Metrics on hand-made cases whose answers follow from the definitions."""

import math

import numpy as np
import pytest

from napari_grainlab.core.metrics import (
    MetricError,
    boundary_f1,
    classification_metrics,
    grain_matching,
    grain_size_error,
    rand_vi,
    segmentation_metrics,
)


def split(shape, col):
    """Two grains side by side, the second starting at column ``col``."""
    labels = np.ones(shape, np.uint32)
    labels[:, col:] = 2
    return labels


def blocks(n_rows, n_cols, size, start=1):
    """A grid of square grains of ``size`` px, numbered from ``start``."""
    r = np.arange(n_rows * size) // size
    c = np.arange(n_cols * size) // size
    return (r[:, None] * n_cols + c[None, :] + start).astype(np.uint32)


# ----------------------------------------------------------------------------- boundary F1
def test_boundary_f1_identical_and_renumbered():
    truth = blocks(3, 4, 10)
    assert boundary_f1(truth, truth) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    renumbered = (truth.max() + 1 - truth) * 7
    assert boundary_f1(renumbered, truth, tolerance=0)["f1"] == 1.0


@pytest.mark.parametrize("shift", [1, 2])
def test_boundary_f1_shifted_boundary(shift):
    truth = split((20, 40), 20)
    pred = split((20, 40), 20 + shift)
    assert boundary_f1(pred, truth, tolerance=2)["f1"] == 1.0
    assert boundary_f1(pred, truth, tolerance=shift)["f1"] == 1.0
    assert boundary_f1(pred, truth, tolerance=shift - 0.5)["f1"] == 0.0


def test_boundary_f1_missing_and_extra_boundaries():
    truth = split((20, 40), 20)  # one boundary column of 20 px
    pred = blocks(1, 4, 10)[[k // 2 for k in range(20)]]  # that boundary plus two more
    r = boundary_f1(pred, truth, tolerance=1)
    assert r["recall"] == 1.0
    assert r["precision"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    r2 = boundary_f1(truth, pred, tolerance=1)  # roles swapped
    assert r2["precision"] == pytest.approx(r["recall"]) and r2["recall"] == pytest.approx(r["precision"])


def test_boundary_f1_valid_mask_and_empty_cases():
    truth = split((20, 40), 20)
    pred = blocks(1, 4, 10)[[k // 2 for k in range(20)]]
    valid = np.zeros(truth.shape, bool)
    valid[:, 15:25] = True  # only around the shared boundary
    assert boundary_f1(pred, truth, tolerance=1, valid=valid)["f1"] == 1.0
    one = np.ones((10, 10), np.uint32)
    assert boundary_f1(one, one)["f1"] == 1.0  # nothing to find, nothing found
    assert boundary_f1(one, split((10, 10), 5))["f1"] == 0.0


def test_boundary_f1_bool_masks_are_thinned():
    truth = split((30, 40), 20)
    band = np.zeros(truth.shape, bool)
    band[:, 17:22] = True  # a 5 px wide thresholded boundary probability around the true line (column 19)
    thinned = boundary_f1(band, truth, tolerance=1)
    assert thinned["precision"] == 1.0 and thinned["recall"] >= 26 / 30  # the skeleton's ends shrink a little
    # unthinned, only the 3 of 5 band columns within 1 px of the line count
    assert boundary_f1(band, truth, tolerance=1, thin=False)["precision"] == pytest.approx(3 / 5)


def test_boundary_f1_errors():
    with pytest.raises(MetricError, match="shape"):
        boundary_f1(np.ones((5, 5), np.uint8), np.ones((5, 6), np.uint8))
    with pytest.raises(MetricError, match="integer"):
        boundary_f1(np.ones((5, 5), np.float32), np.ones((5, 5), np.uint8))
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(np.ones((5, 5), np.uint8), np.ones((5, 5), np.uint8), tolerance=-1)


# ----------------------------------------------------------------------------- Rand / VI
def test_rand_vi_identical_split_merge():
    truth = blocks(2, 2, 16)
    same = rand_vi(truth * 3, truth)
    assert same["adapted_rand_error"] == pytest.approx(0.0, abs=1e-12)
    assert same["vi"] == pytest.approx(0.0, abs=1e-12)

    split_pred = truth.copy()
    split_pred[:8, :16] = 9  # grain 1 cut in two halves
    s = rand_vi(split_pred, truth)
    # a quarter of the pixels (grain 1) is split 50/50: H(pred | true) = 1/4 bit
    assert s["vi_split"] == pytest.approx(0.25)
    assert s["vi_merge"] == pytest.approx(0.0, abs=1e-12)

    merged = truth.copy()
    merged[merged == 2] = 1  # grains 1 and 2 merged
    m = rand_vi(merged, truth)
    assert m["vi_merge"] == pytest.approx(0.5)  # half the pixels lose 1 bit
    assert m["vi_split"] == pytest.approx(0.0, abs=1e-12)
    assert m["vi"] == pytest.approx(m["vi_split"] + m["vi_merge"])
    assert m["adapted_rand_error"] > 0


def test_rand_vi_ignores_unannotated():
    truth = blocks(2, 2, 16)
    truth[:16, :16] = 0  # grain 1 not annotated
    pred = blocks(2, 2, 16)
    pred[:16, :16] = 7 + (np.arange(16)[:, None] + np.arange(16)[None, :]) % 3  # garbage there
    assert rand_vi(pred, truth)["vi"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(MetricError, match="annotated"):
        rand_vi(pred, np.zeros_like(truth))


# ----------------------------------------------------------------------------- grain matching
def test_grain_matching_identical():
    truth = blocks(3, 3, 10)
    r = grain_matching(truth + 5, truth)
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    assert r["n_matched"] == r["n_true"] == r["n_pred"] == 9
    assert r["mean_iou"] == 1.0


def test_grain_matching_merge_is_one_to_one():
    truth = blocks(2, 2, 10)
    pred = truth.copy()
    pred[pred == 2] = 1  # two equal grains merged: IoU exactly 0.5 with both
    r = grain_matching(pred, truth, iou=0.5)
    assert r["n_pred"] == 3 and r["n_true"] == 4
    assert r["n_matched"] == 3  # the merged grain matches only one of the two
    assert r["precision"] == 1.0 and r["recall"] == 0.75
    assert grain_matching(pred, truth, iou=0.51)["n_matched"] == 2


def test_grain_matching_iou_threshold():
    truth = split((10, 20), 10)
    pred = split((10, 20), 13)  # grain 1 grows by 3 columns: IoU 10/13 and 7/10
    assert grain_matching(pred, truth, iou=0.5)["n_matched"] == 2
    assert grain_matching(pred, truth, iou=0.75)["n_matched"] == 1
    assert grain_matching(pred, truth, iou=0.8)["n_matched"] == 0


def test_grain_matching_partial_annotation():
    truth = blocks(2, 2, 10)
    truth[truth >= 3] = 0  # only the top row annotated
    pred = blocks(2, 2, 10)
    r = grain_matching(pred, truth)
    # the bottom grains lie outside the annotation and are not counted as false positives
    assert r["n_pred"] == 2 and r["precision"] == 1.0 and r["recall"] == 1.0
    spill = pred.copy()
    spill[spill == 3] = 1  # grain 1 spills over an unannotated grain: IoU 0.5 still matches
    assert grain_matching(spill, truth)["mean_iou"] == pytest.approx(0.75)


# ----------------------------------------------------------------------------- grain size
def test_grain_size_error():
    truth = np.zeros((60, 60), np.uint32)
    truth[10:30, 10:30] = 1
    truth[30:50, 10:30] = 2
    truth[10:50, 30:50] = 3
    assert grain_size_error(truth, truth)["relative_error"] == 0.0
    d_true = np.mean([math.sqrt(4 * a / math.pi) for a in (400, 400, 800)])
    r = grain_size_error(truth, truth, pixel_size=0.5)
    assert r["mean_diameter_true"] == pytest.approx(0.5 * d_true)
    halves = truth.copy()
    halves[10:50, 40:50] = 4  # every grain halved
    halves[10:20, 10:30] = 5
    halves[30:40, 10:30] = 6
    d_pred = np.mean([math.sqrt(4 * a / math.pi) for a in (200, 200, 200, 200, 400, 400)])
    r = grain_size_error(halves, truth)
    assert r["mean_diameter_pred"] == pytest.approx(d_pred)
    assert r["relative_error"] == pytest.approx(d_pred / d_true - 1) and r["relative_error"] < 0


def test_grain_size_border_grains():
    truth = blocks(3, 3, 10)  # only the centre grain does not touch the border
    r = grain_size_error(truth, truth)
    assert r["n_true"] == 1 and r["mean_diameter_true"] == pytest.approx(math.sqrt(400 / math.pi))
    assert grain_size_error(truth, truth, exclude_border=False)["n_true"] == 9
    assert math.isnan(grain_size_error(blocks(1, 2, 10), blocks(1, 2, 10))["relative_error"])


# ----------------------------------------------------------------------------- combined
def test_segmentation_metrics_combines_and_defaults_valid():
    truth = blocks(3, 3, 12)
    pred = truth.copy()
    pred[pred == 5] = 4  # one merge
    m = segmentation_metrics(pred, truth, tolerance=1)
    assert m["boundary_f1"] == boundary_f1(pred, truth, 1)["f1"] < 1.0
    assert m["vi_merge"] == rand_vi(pred, truth)["vi_merge"] > 0
    assert m["grain_f1"] == grain_matching(pred, truth)["f1"]
    assert m["n_true"] == 9 and m["n_pred"] == 8
    # unannotated region: predicted boundaries there are not false positives
    partial = truth.copy()
    partial[:, 24:] = 0
    noisy = truth.copy()
    noisy[:, 30:] = blocks(18, 3, 2, start=100)[:36, :6]
    assert segmentation_metrics(noisy, partial, tolerance=1)["boundary_precision"] == 1.0


# ----------------------------------------------------------------------------- classification
def test_classification_metrics():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    r = classification_metrics(y_true, y_pred, 3, ["ferrite", "pearlite", "martensite"])
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert r["accuracy"] == pytest.approx(5 / 8)
    f1 = []
    for i, name in enumerate(["ferrite", "pearlite", "martensite"]):
        conf = np.array(r["confusion"])
        p, rec = conf[i, i] / conf[:, i].sum(), conf[i, i] / conf[i].sum()
        f1.append(2 * p * rec / (p + rec))
        assert r["per_class"][name]["f1"] == pytest.approx(f1[-1])
        assert r["per_class"][name]["support"] == conf[i].sum()
    assert r["macro_f1"] == pytest.approx(np.mean(f1))


def test_classification_metrics_absent_class_and_errors():
    r = classification_metrics([0, 1, 0], [0, 1, 0], 3)
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0  # class 2 absent from both: not averaged
    with pytest.raises(MetricError, match="y_pred"):
        classification_metrics([0, 1], [0, 3], 3)
    with pytest.raises(MetricError, match="length"):
        classification_metrics([0, 1], [0], 3)
    with pytest.raises(MetricError, match="class_names"):
        classification_metrics([0, 1], [0, 1], 2, ["a"])
