"""The strip-parallel flood gives exactly scikit-image's watershed labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from napari_grainlab.core.inference import _flood
from napari_grainlab.core.inference._flood import flood


def _maps(size: int, spacing: int, seed: int = 0):
    """Elevation of a random tessellation (low inside grains, high on borders) and its markers."""
    rng = np.random.default_rng(seed)
    n = max(2, size * size // spacing**2)
    seeds = np.zeros((size, size), dtype=np.int32)
    seeds[rng.integers(0, size, n), rng.integers(0, size, n)] = 1
    dist = ndi.distance_transform_edt(seeds == 0).astype(np.float32)
    elev = ndi.gaussian_filter(dist / dist.max() + rng.normal(0, 0.02, dist.shape), 1.0).astype(np.float32)
    elev = elev.max() - elev  # domes -> basins: seeds at the bottom
    markers, count = ndi.label(dist < 2)
    return elev, markers.astype(np.int32), count


@pytest.mark.parametrize("threads", [2, 3])
def test_strips_give_the_whole_image_labels(threads):
    elev, markers, n = _maps(640, 24)
    ref = watershed(elev, markers)
    got = flood(elev, markers, n_markers=n, threads=threads, min_pixels=0)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref)


def test_ties_on_plateaus_are_broken_as_in_the_whole_image():
    elev, markers, n = _maps(600, 30, seed=1)
    coarse = np.round(elev * 6) / 6  # wide flat terraces: many equal elevations
    np.testing.assert_array_equal(flood(coarse, markers, n_markers=n, threads=2, min_pixels=0),
                                  watershed(coarse, markers))


def test_mask_and_compactness_are_passed_on():
    elev, markers, n = _maps(600, 30, seed=2)
    mask = elev < np.quantile(elev, 0.8)
    np.testing.assert_array_equal(flood(elev, markers, mask=mask, n_markers=n, threads=2, min_pixels=0),
                                  watershed(elev, markers, mask=mask))
    np.testing.assert_array_equal(flood(elev, markers, compactness=0.01, n_markers=n, threads=2, min_pixels=0),
                                  watershed(elev, markers, compactness=0.01))


def test_too_narrow_a_margin_is_detected_and_widened(monkeypatch):
    """Two markers in a tall image: a strip without a marker floods nothing; the seam check sees it."""
    elev, _, _ = _maps(1024, 40, seed=3)
    markers = np.zeros(elev.shape, dtype=np.int32)
    markers[5, 5], markers[1000, 1000] = 1, 2
    monkeypatch.setattr(_flood, "_initial_margin", lambda m, n: 64)
    checks = []
    real = _flood._bands_agree

    def spy(*args):
        checks.append(real(*args))
        return checks[-1]

    monkeypatch.setattr(_flood, "_bands_agree", spy)
    got = flood(elev, markers, n_markers=2, threads=2, min_pixels=0)
    np.testing.assert_array_equal(got, watershed(elev, markers))
    assert checks and checks[0] is False  # the first, 64-row margin was caught as too narrow


def test_small_images_take_the_plain_flood(monkeypatch):
    elev, markers, n = _maps(200, 20)
    monkeypatch.setattr(_flood, "in_strips", lambda *a, **k: pytest.fail("a small image was cut into strips"))
    np.testing.assert_array_equal(flood(elev, markers, n_markers=n, threads=2), watershed(elev, markers))


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(_flood.THREADS_ENV, "3")
    assert _flood.flood_threads() == 3
    monkeypatch.setenv(_flood.THREADS_ENV, "zero")
    assert 1 <= _flood.flood_threads() <= 8


def test_h_maxima_in_strips_are_the_whole_image_maxima():
    from skimage.morphology import h_maxima

    elev, _, _ = _maps(700, 28, seed=4)
    dist = (elev.max() - elev).astype(np.float32)
    got = _flood.h_maxima_strips(dist, 0.05, margin=32, threads=2, min_pixels=0)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, h_maxima(dist, 0.05).astype(bool))


def test_strip_results_are_stitched_from_each_strips_core():
    """fn sees each strip's rows; the result rows come from the strip whose core holds them."""
    seen = []

    def fn(y0, y1):
        seen.append((y0, y1))
        return np.repeat(np.arange(y0, y1, dtype=np.int64)[:, None], 5, axis=1)

    out = _flood.in_strips(fn, (600, 5), 16, np.int64, threads=3, max_strip_pixels=10**9)
    np.testing.assert_array_equal(out[:, 0], np.arange(600))
    assert len(seen) == 3 and seen[0][0] == 0 and seen[-1][1] == 600


def test_without_the_private_kernel_the_public_watershed_is_used(monkeypatch):
    elev, markers, n = _maps(400, 20, seed=5)
    monkeypatch.setattr(_flood, "_kernel", lambda: None)
    np.testing.assert_array_equal(flood(elev, markers, n_markers=n, threads=2, min_pixels=0),
                                  watershed(elev, markers))
