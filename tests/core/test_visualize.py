"""Label overlays and preview grids (napari_grainlab.core.visualize)."""

import numpy as np
import pytest

from napari_grainlab.core.visualize import (
    boundary_mask,
    image_to_unit,
    label_colors,
    overlay_rgb,
    preview_grid,
)


def two_grains(h=6, w=8):
    labels = np.zeros((h, w), np.uint32)
    labels[:, : w // 2] = 1
    labels[:, w // 2 :] = 2
    return labels


def test_image_to_unit_scales_by_dtype_range():
    assert image_to_unit(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    u16 = image_to_unit(np.array([[0, 65535, 32768]], np.uint16))
    assert u16.dtype == np.float32
    np.testing.assert_allclose(u16, [[0.0, 1.0, 32768 / 65535]], rtol=1e-6)
    np.testing.assert_allclose(image_to_unit(np.array([[-1.0, 0.5, 2.0]])), [[0.0, 0.5, 1.0]])


def test_image_to_unit_percentile_stretch_and_flat_image():
    a = np.arange(100, dtype=np.uint16).reshape(10, 10) + 1000
    s = image_to_unit(a, percentiles=(0, 100))
    assert s.min() == 0.0 and s.max() == 1.0
    assert not np.any(image_to_unit(np.full((3, 3), 7, np.uint16), percentiles=(1, 99)))


def test_image_to_unit_rejects_what_is_neither_grey_nor_rgb():
    assert image_to_unit(np.zeros((2, 2, 3))).shape == (2, 2, 3)  # colour (H, W, 3) is an image
    for shape in ((2, 2, 4), (2, 2, 2, 3), (5,)):
        with pytest.raises(ValueError, match=r"grey \(H, W\) or colour \(H, W, 3\)"):
            image_to_unit(np.zeros(shape))


def test_label_colors_deterministic_distinct_and_in_range():
    c = label_colors(np.arange(1, 50))
    assert c.shape == (49, 3) and c.min() >= 0.0 and c.max() <= 1.0
    np.testing.assert_array_equal(c, label_colors(np.arange(1, 50)))
    # consecutive ids differ clearly
    assert np.all(np.abs(np.diff(c, axis=0)).sum(axis=1) > 0.2)


def test_boundary_mask_marks_label_changes_only():
    m = boundary_mask(two_grains())
    assert m.dtype == bool
    assert m[:, 3].all()  # last column of grain 1 touches grain 2
    assert m.sum() == 6


def test_overlay_tints_grains_leaves_background_and_draws_boundaries():
    image = np.full((6, 8), 128, np.uint8)
    labels = two_grains()
    labels[0, 0] = 0  # an unlabelled pixel
    rgb = overlay_rgb(image, labels, alpha=0.5, boundary_color=(1.0, 0.0, 0.0))
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[2, 3]) == (255, 0, 0)  # boundary between the grains drawn
    assert tuple(rgb[0, 0]) == (255, 0, 0)  # the unlabelled pixel borders grain 1
    no_edges = overlay_rgb(image, labels, np.zeros(labels.shape, bool), alpha=0.5)
    assert tuple(no_edges[0, 0]) == (128, 128, 128)  # label 0 stays grey
    a, b = rgb[2, 1], rgb[2, 6]  # interiors of the two grains
    assert not np.array_equal(a, b)
    assert len(set(a.tolist())) > 1  # tinted, no longer grey


def test_overlay_uses_given_boundary_mask():
    image = np.zeros((6, 8), np.uint16)
    labels = two_grains()
    bnd = np.zeros((6, 8), bool)
    bnd[0, 0] = True
    rgb = overlay_rgb(image, labels, bnd, boundary_color=(0.0, 1.0, 0.0))
    assert tuple(rgb[0, 0]) == (0, 255, 0)
    assert tuple(rgb[2, 3]) != (0, 255, 0)  # the label change is not drawn when a mask is given


def test_overlay_checks_shapes_and_alpha():
    with pytest.raises(ValueError, match="differ"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 5), np.uint32))
    with pytest.raises(ValueError, match="boundaries"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 4), np.uint32), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="alpha"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 4), np.uint32), alpha=1.5)


def test_preview_grid_layout():
    big = (np.zeros((20, 30), np.uint8), np.ones((20, 30), np.uint32))
    small = (np.full((10, 12), 255, np.uint8), np.ones((10, 12), np.uint32), np.zeros((10, 12), bool))
    grid = preview_grid([big, small, big], columns=2, gap=4, background=255)
    cell_h, cell_w = 20, 30 + 4 + 30
    assert grid.shape == (2 * cell_h + 4, 2 * cell_w + 4, 3)
    assert grid.dtype == np.uint8
    assert np.all(grid[0:20, 0:30] == 0)  # first tile, left half: the black image
    assert np.all(grid[0:20, 30:34] == 255)  # gap between image and overlay
    assert np.all(grid[0:10, cell_w + 4 : cell_w + 4 + 12] == 255)  # second tile's white image
    assert np.all(grid[10:20, cell_w + 4 : cell_w + 4 + 12] == 255)  # padding below the small tile
    assert np.all(grid[cell_h + 4 :, cell_w + 4 :] == 255)  # empty fourth cell


def test_preview_grid_rejects_bad_input():
    with pytest.raises(ValueError):
        preview_grid([])
    with pytest.raises(ValueError):
        preview_grid([(np.zeros((2, 2)),)])
    with pytest.raises(ValueError):
        preview_grid([(np.zeros((2, 2)), np.zeros((2, 2), np.uint32))], columns=0)
