"""grain_table sums its moments over blocks of rows: the same table, without full-image float64 temporaries."""

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
    for g in range(1, int(labels.max()) + 1):
        yy, xx = np.nonzero(labels == g)
        out[g] = (yy.mean(), xx.mean(), ((yy - yy.mean()) ** 2).mean() + 1 / 12, ((xx - xx.mean()) ** 2).mean() + 1 / 12)
    return out


@pytest.mark.parametrize("periodic", [False, True])
def test_blocks_give_the_table_of_one_block(labels, monkeypatch, periodic):
    whole = measure.grain_table(labels, periodic=periodic)
    monkeypatch.setattr(measure, "_BLOCK_PIXELS", 1000)  # 4 rows a block
    blocks = measure.grain_table(labels, periodic=periodic)
    assert list(blocks) == list(whole)
    for key in whole:
        np.testing.assert_allclose(blocks[key], whole[key], rtol=1e-12, atol=1e-9, err_msg=key)


def test_block_table_matches_direct_moments(labels, monkeypatch):
    monkeypatch.setattr(measure, "_BLOCK_PIXELS", 777)  # blocks that cut grains
    t = measure.grain_table(labels)
    ref = direct_moments(labels)
    for i, g in enumerate(t["label"]):
        my, mx, myy, mxx = ref[int(g)]
        assert t["centroid_y"][i] == pytest.approx(my) and t["centroid_x"][i] == pytest.approx(mx)
        l1 = t["major_axis_length"][i] ** 2 / 16
        l2 = t["minor_axis_length"][i] ** 2 / 16
        assert l1 + l2 == pytest.approx(myy + mxx)  # the trace of the moment matrix


def test_no_full_image_temporaries(monkeypatch):
    labels = (np.arange(1000 * 1000, dtype=np.uint32).reshape(1000, 1000) // 5000) + 1
    monkeypatch.setattr(measure, "_BLOCK_PIXELS", 1 << 14)
    tracemalloc.start()
    try:
        measure.grain_table(labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the labels are 4 bytes a pixel; before the blocks the table took ~48 bytes a pixel of float64 temporaries
    assert peak < 1.0 * labels.size
