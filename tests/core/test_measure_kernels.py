"""grain_table's compiled moment passes: the moments straight from the pixel coordinates, any label dtype and
strides, periodic unwrapping, and no full-image temporaries."""

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_grainlab.core import measure


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    lab, _ = ndi.label(ndi.gaussian_filter(rng.random((300, 250)), 2) > 0.5)
    return lab.astype(np.uint32)


def direct_moments(labels):
    """Centroid and second central moments of every grain, straight from the pixel coordinates."""
    out = {}
    for g in np.unique(labels):
        if g == 0:
            continue
        yy, xx = np.nonzero(labels == g)
        out[int(g)] = (yy.size, yy.mean(), xx.mean(), ((yy - yy.mean()) ** 2).mean() + 1 / 12,
                       ((xx - xx.mean()) ** 2).mean() + 1 / 12, ((yy - yy.mean()) * (xx - xx.mean())).mean())
    return out


def check_against_direct(t, labels):
    ref = direct_moments(labels)
    assert sorted(int(g) for g in t["label"]) == sorted(ref)
    for i, g in enumerate(t["label"]):
        n, my, mx, myy, mxx, _ = ref[int(g)]
        assert t["area"][i] == n
        assert t["centroid_y"][i] == pytest.approx(my) and t["centroid_x"][i] == pytest.approx(mx)
        l1 = t["major_axis_length"][i] ** 2 / 16
        l2 = t["minor_axis_length"][i] ** 2 / 16
        assert l1 + l2 == pytest.approx(myy + mxx)  # the trace of the moment matrix


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_table_matches_direct_moments(labels, dtype):
    lab = (labels % 250).astype(dtype) if np.iinfo(dtype).max < labels.max() else labels.astype(dtype)
    check_against_direct(measure.grain_table(lab), lab)


def test_strided_and_fortran_labels_give_the_same_table(labels):
    big = np.zeros((600, 500), np.uint32)
    big[::2, ::2] = labels
    view = big[::2, ::2]  # not contiguous
    for lab in (view, np.asfortranarray(labels)):
        t = measure.grain_table(lab)
        ref = measure.grain_table(np.ascontiguousarray(labels))
        for key in ref:
            np.testing.assert_array_equal(t[key], ref[key], err_msg=key)


def test_orientation_of_a_tilted_bar():
    lab = np.zeros((80, 80), np.uint16)
    yy, xx = np.mgrid[:80, :80]
    lab[(np.abs((yy - 40) + (xx - 40)) < 3) & (np.abs(xx - 40) < 25)] = 7  # a bar rising to the right (y down)
    t = measure.grain_table(lab)
    assert t["label"].tolist() == [7]
    assert t["orientation"][0] == pytest.approx(45.0, abs=1.0)
    assert t["aspect_ratio"][0] > 4


def test_periodic_grain_across_the_edges_is_one_piece():
    lab = np.zeros((64, 64), np.uint16)
    lab[:5, :5] = 1
    lab[-5:, :5] = 1
    lab[:5, -5:] = 1
    lab[-5:, -5:] = 1  # one 10 x 10 square split over the four corners
    lab[20:30, 30:34] = 2
    t = measure.grain_table(lab, periodic=True)
    i = list(t["label"]).index(1)
    assert t["area"][i] == 100
    assert t["major_axis_length"][i] == pytest.approx(t["minor_axis_length"][i])
    assert t["major_axis_length"][i] == pytest.approx(4 * np.sqrt((100 - 1) / 12 + 1 / 12))  # a 10 px square
    assert t["centroid_y"][i] == pytest.approx(63.5) and t["centroid_x"][i] == pytest.approx(63.5)
    flat = measure.grain_table(lab, periodic=False)
    assert flat["major_axis_length"][list(flat["label"]).index(1)] > 40  # not unwrapped: spread over the image
    # a reference point outside the image unwraps around it just the same
    ref = np.array([[0.0, 0.0], [-64.0 - 2.0, 66.0], [25.0, 32.0]])
    t2 = measure.grain_table(lab, periodic=True, reference=ref)
    assert t2["area"][i] == 100
    assert t2["major_axis_length"][i] == pytest.approx(t["major_axis_length"][i])


def test_a_reference_with_too_few_points_is_refused():
    lab = np.zeros((16, 16), np.uint8)
    lab[2:5, 2:5] = 3
    with pytest.raises(measure.DataError, match="reference"):
        measure.grain_table(lab, periodic=True, reference=np.zeros((2, 2)))


def test_no_full_image_temporaries():
    labels = (np.arange(1000 * 1000, dtype=np.uint32).reshape(1000, 1000) // 5000) + 1
    measure.grain_table(labels[:10, :10])  # compile outside the measurement
    tracemalloc.start()
    try:
        measure.grain_table(labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the labels are 4 bytes a pixel; the numpy formulation took ~48 bytes a pixel of float64 temporaries
    assert peak < 0.1 * labels.size
