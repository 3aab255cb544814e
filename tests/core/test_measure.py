"""core.measure: grain table, ASTM E112 grain size number, per-image summary."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from napari_grainlab.core.measure import TABLE_COLUMNS, astm_grain_size, grain_table, summarize


def blocks(h=64, w=64, size=16):
    yy, xx = np.mgrid[:h, :w]
    return ((yy // size) * (w // size) + xx // size + 1).astype(np.uint32)


def test_sparse_label_ids_are_measured_in_memory_of_the_image_not_of_the_largest_id():
    dense = blocks()
    ids = np.unique(dense)
    sparse_ids = (ids.astype(np.int64) * 1_250_000).astype(np.uint32)  # largest id 20_000_000
    lut = np.zeros(int(ids.max()) + 1, np.uint32)
    lut[ids] = sparse_ids
    sparse = lut[dense]
    tracemalloc.start()
    try:
        table = grain_table(sparse, 0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # was ~2.6 GB (arrays of max id + 1)
    ref = grain_table(dense, 0.5)
    np.testing.assert_array_equal(table["label"], sparse_ids)  # the original ids are kept
    for col in TABLE_COLUMNS[1:]:
        np.testing.assert_allclose(table[col], ref[col])
    # periodic with a reference point per (original) id
    reference = np.zeros((int(sparse.max()) + 1, 2))
    t_per = grain_table(sparse, periodic=True, reference=reference)
    np.testing.assert_allclose(t_per["area"], grain_table(dense, periodic=True)["area"])
    assert summarize(sparse, 0.5) == summarize(dense, 0.5)
    assert astm_grain_size(sparse, 0.5) == astm_grain_size(dense, 0.5)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_label_arrays_give_empty_results(shape):
    empty = np.zeros(shape, np.uint32)
    table = grain_table(empty, 1.0)
    assert set(table) == set(TABLE_COLUMNS) and all(len(v) == 0 for v in table.values())
    astm = astm_grain_size(empty, 1.0)
    assert astm["grains"] == 0 and astm["grains_counted"] == 0 and math.isnan(astm["astm_g"])
    s = summarize(empty, 1.0)
    assert s["grains"] == 0 and math.isnan(s["mean_diameter"]) and math.isnan(s["astm_g"])


@pytest.mark.parametrize("pixel_size", [math.inf, 1e200, 1e-200, math.nan])
def test_astm_g_is_nan_for_absurd_pixel_sizes(pixel_size):
    r = astm_grain_size(blocks(), pixel_size)
    assert math.isnan(r["astm_g"]) and math.isnan(r["grains_per_mm2"]) and r["grains"] == 16
    assert math.isfinite(astm_grain_size(blocks(), 0.5)["astm_g"])


def test_summarize_uses_a_given_table(monkeypatch):
    import napari_grainlab.core.measure as measure

    labels = np.zeros((40, 40), dtype=np.uint32)
    labels[:20], labels[20:] = 1, 2
    table = measure.grain_table(labels, 0.5)
    expected = measure.summarize(labels, 0.5)
    monkeypatch.setattr(measure, "grain_table", lambda *a, **k: pytest.fail("the table was computed again"))
    assert measure.summarize(labels, 0.5, table=table) == expected
