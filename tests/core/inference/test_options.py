"""InferenceOptions: one dataclass for every prediction setting."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from napari_grainlab.core.batch import BatchOptions
from napari_grainlab.core.errors import ConfigError
from napari_grainlab.core.inference import predict_array, segment_image
from napari_grainlab.core.inference.options import DEFAULTS, InferenceOptions, resolve_options
from napari_grainlab.core.inference.postprocess import watershed_grains
from napari_grainlab.core.inference.tiling import predict_tiled


class LineModel(torch.nn.Module):
    """A 'segmentation model' whose boundary map is dark image lines (as in test_pipeline)."""

    task = "segment"
    out_channels = 2

    def forward(self, x):
        boundary = (0.5 - x) * 20.0
        distance = (x - 0.5) * 20.0
        return torch.cat([boundary, distance], dim=1)


def _image() -> np.ndarray:
    img = np.ones((96, 96), np.float32)
    img[:, 47:49] = 0.0
    img[47:49, :] = 0.0
    return img


def test_ranges_are_checked_when_made():
    with pytest.raises(ConfigError, match="tile: must be >= 32"):
        InferenceOptions(tile=16)
    with pytest.raises(ConfigError, match="overlap"):
        InferenceOptions(overlap=-1)
    with pytest.raises(ConfigError, match="marker_threshold"):
        InferenceOptions(marker_threshold=1.5)
    with pytest.raises(TypeError, match="unknown prediction option"):
        InferenceOptions().replace(tilesize=64)


def test_lower_level_defaults_are_the_options_defaults():
    """The defaults exist once: the tiling, segmentation and watershed functions take theirs from DEFAULTS."""
    for fn in (segment_image, predict_tiled):
        sig = inspect.signature(fn).parameters
        assert sig["overlap"].default == DEFAULTS.overlap
        assert sig["batch_size"].default == DEFAULTS.batch_size
    sig = inspect.signature(watershed_grains).parameters
    for name, value in DEFAULTS.watershed().items():
        assert sig[name].default == value, name
    sig = inspect.signature(segment_image).parameters
    for name, value in DEFAULTS.watershed().items():
        assert name not in sig or sig[name].default == value, name


def test_every_watershed_option_reaches_the_watershed(monkeypatch):
    """A "Grains" option declared in InferenceOptions arrives in watershed_grains with no other edit."""
    import napari_grainlab.core.inference.pipeline as pipeline

    seen = {}
    real = pipeline.watershed_grains

    def spy(boundary, distance, **kwargs):
        seen.update(kwargs)
        return real(boundary, distance, **kwargs)

    monkeypatch.setattr(pipeline, "watershed_grains", spy)
    opts = InferenceOptions(tile=64, compactness=0.5, h=0.2, smoothing=1.0)
    predict_array(LineModel(), {}, _image(), opts, device="cpu")
    assert {k: seen[k] for k in opts.watershed()} == opts.watershed()


def test_options_and_keywords_give_the_same_prediction():
    image = _image()
    opts = InferenceOptions(tile=64, overlap=16, min_size=4)
    a = predict_array(LineModel(), {}, image, opts, device="cpu")
    b = predict_array(LineModel(), {}, image, tile=64, overlap=16, min_size=4, device="cpu")
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.labels.max() == 4


def test_keyword_overrides_win_over_options():
    assert resolve_options(InferenceOptions(tta=True), {"tta": False}).tta is False
    assert resolve_options(None, {}) == DEFAULTS


def test_watershed_options_reach_the_watershed():
    image = _image()
    merged = predict_array(LineModel(), {}, image, InferenceOptions(tile=64, min_size=4, merge_threshold=1.0),
                           device="cpu")
    kept = predict_array(LineModel(), {}, image, InferenceOptions(tile=64, min_size=4, merge_threshold=None),
                         device="cpu")
    assert kept.labels.max() == 4 and merged.labels.max() < kept.labels.max()


def test_batch_options_extend_inference_options():
    b = BatchOptions(tta=True, pixel_size=0.5)
    assert isinstance(b, InferenceOptions)
    assert b.inference() == InferenceOptions(tta=True)
    assert "batch_size" not in b.result_key() and "device" not in b.result_key()
    assert b.result_key()["pixel_size"] == 0.5
