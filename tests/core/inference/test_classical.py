"""The classical ridge + watershed baseline on synthetic micrographs."""

import numpy as np
import pytest

from napari_grainlab.core.inference.classical import classical_grains, ridge_map
from napari_grainlab.core.metrics import boundary_f1, grain_matching
from napari_grainlab.core.synthetic import SEMParams, SynthParams, TessellationParams, generate


def sample(style, seed, **kw):
    params = SynthParams(height=256, width=256, style=style, tessellation=TessellationParams(grains=60), **kw)
    return generate(params, seed=seed)


@pytest.mark.parametrize("style", ["sem", "optical"])
def test_finds_grains_on_synthetic_images(style):
    s = sample(style, seed=7)
    labels, ridge = classical_grains(s.image_float())
    assert labels.dtype == np.uint32 and labels.shape == s.labels.shape
    assert labels.min() == 1  # every pixel belongs to a grain
    assert ridge.dtype == np.float32 and 0.0 <= ridge.min() and ridge.max() <= 1.0
    bf = boundary_f1(labels, s.labels, tolerance=2)["f1"]
    gm = grain_matching(labels, s.labels)["f1"]
    assert bf > 0.85 and gm > 0.6
    # far better than not segmenting, or than a grid of the right number of squares
    grid = (np.arange(256)[:, None] // 32 * 8 + np.arange(256)[None, :] // 32 + 1).astype(np.uint32)
    assert bf > boundary_f1(grid, s.labels, tolerance=2)["f1"] + 0.4


def test_ridge_map_polarity():
    s = sample("optical", seed=3)  # dark etched boundary lines
    img = s.image_float()
    _, pol = ridge_map(img)
    _, pol_inverted = ridge_map(1.0 - img)
    assert (pol, pol_inverted) == ("dark", "bright")
    bright_edges = sample("sem", seed=3, sem=SEMParams(edge_mode="bright"))
    assert ridge_map(bright_edges.image_float())[1] == "bright"
    # the ridge map is high on the true boundaries
    ridge, _ = ridge_map(img)
    assert ridge[s.boundaries].mean() > 3 * ridge[~s.boundaries].mean()


def test_forced_wrong_polarity_is_worse():
    s = sample("optical", seed=4)
    right, _ = classical_grains(s.image_float(), polarity="dark")
    wrong, _ = classical_grains(s.image_float(), polarity="bright", edge_weight=0.0)
    assert boundary_f1(right, s.labels)["f1"] > boundary_f1(wrong, s.labels)["f1"] + 0.3


def test_min_size_is_respected():
    s = sample("sem", seed=5)
    labels, _ = classical_grains(s.image_float(), min_size=200)
    assert np.bincount(labels.ravel())[1:].min() >= 200


def test_flat_and_tiny_images():
    flat, ridge = classical_grains(np.full((40, 50), 0.5, np.float32))
    assert (flat == 1).all() and ridge.shape == (40, 50)
    tiny, _ = classical_grains(np.random.default_rng(0).random((3, 4)).astype(np.float32))
    assert tiny.shape == (3, 4) and tiny.min() >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(polarity="up"), "polarity"), (dict(ridge_sigma=(0.0,)), "ridge_sigma"), (dict(h=0), "h must")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        classical_grains(np.zeros((32, 32), np.float32), **kwargs)


def test_bad_image():
    with pytest.raises(ValueError, match="2-D"):  # (H, W, 3) is a colour image; 4 channels are not
        classical_grains(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        classical_grains(np.full((8, 8), np.inf, np.float32))
