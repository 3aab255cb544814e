"""Boundary / distance / valid targets from instance labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_grainlab.core.data.io import DataError
from napari_grainlab.core.data.targets import inner_edges, segmentation_targets
from napari_grainlab.core.synthetic import SynthParams, generate


def two_grains(h=12, w=14, cut=7) -> np.ndarray:
    lab = np.ones((h, w), np.uint32)
    lab[:, cut:] = 2
    return lab


@pytest.mark.parametrize("width, side", [(1, 1), (2, 1), (3, 2), (4, 2), (6, 3)])
def test_band_thickness_each_side(width, side):
    boundary, _, valid = segmentation_targets(two_grains(), boundary_width=width)
    cols = np.flatnonzero(boundary.any(axis=0))
    np.testing.assert_array_equal(cols, np.arange(7 - side, 7 + side))
    assert (boundary[:, cols] == 1).all()  # full height: the top and bottom border are no boundary ends
    assert valid.all()


def test_image_border_is_not_a_boundary():
    boundary, distance, valid = segmentation_targets(np.full((10, 10), 4, np.uint32))
    assert not boundary.any()
    assert valid.all() and (distance == 1).all()  # one grain, no edge in view: all interior
    boundary, _, _ = segmentation_targets(two_grains())
    assert not boundary[:, :5].any() and not boundary[:, 9:].any()


def test_edge_against_unannotated_is_a_boundary():
    lab = np.zeros((12, 12), np.uint32)
    lab[2:10, 2:10] = 1  # one painted grain surrounded by unannotated pixels
    boundary, distance, valid = segmentation_targets(lab)
    ring = np.zeros_like(valid)
    ring[2:10, 2:10] = True
    ring[3:9, 3:9] = False
    np.testing.assert_array_equal(boundary.astype(bool), ring)
    np.testing.assert_array_equal(valid, lab > 0)
    assert not distance[lab == 0].any() and not boundary[lab == 0].any()


def test_outside_pixels_are_like_the_border():
    lab = two_grains()
    outside = np.zeros(lab.shape, bool)
    outside[:, :3] = True  # e.g. padding
    outside[:4, :] = True
    boundary, distance, valid = segmentation_targets(lab, 2, outside)
    np.testing.assert_array_equal(valid, ~outside)
    assert not boundary[outside].any() and not distance[outside].any()
    # no boundary along the outside region, only the shared edge
    np.testing.assert_array_equal(np.flatnonzero(boundary.any(axis=0)), [6, 7])
    np.testing.assert_array_equal(np.flatnonzero(boundary.any(axis=1)), np.arange(4, 12))


def test_distance_zero_on_band_one_at_each_grain_maximum():
    p = SynthParams(height=96, width=128)
    p.tessellation.grains = 30
    lab = generate(p, seed=2).labels
    lab[:10, :30] = 0
    boundary, distance, valid = segmentation_targets(lab)
    assert distance.dtype == np.float32 and boundary.dtype == np.float32
    assert distance.min() == 0.0 and distance.max() == 1.0
    assert not distance[boundary > 0].any()
    ids = np.unique(lab[valid])
    interior = ndi.maximum(distance, lab, ids)
    has_interior = np.array([((lab == i) & (boundary == 0)).any() for i in ids])
    np.testing.assert_allclose(np.asarray(interior)[has_interior], 1.0)
    # the distance grows away from the edge: pixels next to the band are low
    next_to_band = ndi.binary_dilation(boundary > 0) & (boundary == 0) & valid
    assert distance[next_to_band].mean() < 0.3


def test_distance_is_the_normalised_distance_to_the_edge():
    lab = two_grains(h=5, w=12, cut=6)
    _, distance, _ = segmentation_targets(lab)
    # band columns 5 and 6; the border on the left / right is open
    np.testing.assert_allclose(distance[2], [1.0, 0.8, 0.6, 0.4, 0.2, 0, 0, 0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-6)


def test_matches_find_boundaries():
    from skimage.segmentation import find_boundaries

    p = SynthParams(height=64, width=80)
    p.tessellation.grains = 20
    lab = generate(p, seed=5).labels
    lab[lab == 3] = 0
    np.testing.assert_array_equal(inner_edges(lab) & (lab > 0), find_boundaries(lab, mode="inner") & (lab > 0))


def test_bad_input():
    with pytest.raises(DataError, match="2-D"):
        segmentation_targets(np.ones((2, 3, 4), np.uint32))
    with pytest.raises(DataError, match="integers"):
        segmentation_targets(np.ones((3, 4), np.float32))
    with pytest.raises(DataError, match="boundary_width"):
        segmentation_targets(np.ones((3, 4), np.uint32), boundary_width=0)
    with pytest.raises(DataError, match="outside"):
        segmentation_targets(np.ones((3, 4), np.uint32), 2, np.ones((4, 3), bool))
