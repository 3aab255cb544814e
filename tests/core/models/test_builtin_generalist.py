"""The built-in ``generalist`` model that ships in the package: registered, intact, and working."""

from __future__ import annotations

import hashlib
import json

import pytest

from napari_grainlab.core.models.registry import is_registry_name, list_models, registry_file, resolve_model


@pytest.fixture(autouse=True)
def _package_registry(monkeypatch):
    monkeypatch.delenv("GRAINLAB_REGISTRY", raising=False)


def test_the_generalist_is_bundled_with_its_hash_and_description():
    entry = next(e for e in list_models() if e.name == "generalist")
    folder = resolve_model("generalist")
    weights = folder / "model.safetensors"
    assert is_registry_name("generalist")
    assert entry.file and entry.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert weights.stat().st_size <= 25e6  # the budget for a bundled model
    meta = json.loads((folder / "model.json").read_text())
    assert meta["spec"]["in_chans"] == entry.channels == 3
    assert meta["grain_diameter"] == entry.grain_diameter
    assert (registry_file().parent / entry.recipe).is_file()
    # what model.json records of the run names no folder of the machine it was trained on
    assert meta["training"]["out"] == "models/generalist"


def test_the_generalist_segments_grey_and_colour_synthetic_micrographs():
    from napari_grainlab.core.data.channels import normalize_image, to_planes
    from napari_grainlab.core.inference import predict_array
    from napari_grainlab.core.metrics import boundary_f1
    from napari_grainlab.core.models import load_checkpoint
    from napari_grainlab.core.synthetic import SynthParams, generate

    model, meta = load_checkpoint("generalist")
    # bounds below what the shipped model scores on these images (tint: 0.78), to catch broken weights
    for look, grains, least in (("sem", 40, 0.85), ("tint", 30, 0.7)):
        params = SynthParams.preset(look, height=256, width=256)
        params.tessellation.grains = grains
        sample = generate(params, seed=5)
        image = normalize_image(to_planes(sample.image))
        assert image.ndim == (3 if look == "tint" else 2)
        result = predict_array(model, meta, image, device="cpu")
        assert result.labels.shape == image.shape[:2]
        assert result.scaling.diameter is not None  # the scale was estimated and used
        f1 = boundary_f1(result.labels, sample.labels, tolerance=2)["f1"]
        assert f1 > least, (look, f1)
        assert 0.5 * grains <= result.labels.max() <= 2 * grains, (look, int(result.labels.max()))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float-255"])
def test_raw_pixel_values_are_stretched_not_taken_for_the_unit_range(dtype):
    """predict_array / predict_onnx take what a user's array holds: raw 8-bit values (0-255) once gave a single
    grain; they are now stretched as the file readers do, so the result equals that of the prepared image."""
    import numpy as np

    from napari_grainlab.core.inference import predict_array, prepare_image
    from napari_grainlab.core.models import load_checkpoint
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    model, meta = load_checkpoint("generalist")
    sample = generate(SynthParams(height=192, width=192, tessellation=TessellationParams(grains=30)), seed=2)
    raw = sample.image  # uint8
    if dtype == "uint16":
        raw = raw.astype(np.uint16) * 257
    elif dtype == "float-255":
        raw = raw.astype(np.float32)
    ref = predict_array(model, meta, prepare_image(sample.image), device="cpu")
    got = predict_array(model, meta, raw, device="cpu")
    assert ref.labels.max() >= 15
    assert got.labels.max() == ref.labels.max()
    assert np.mean(got.labels == ref.labels) > 0.99
