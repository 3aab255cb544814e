"""Sample data through napari's File ▸ Open Sample (npe2 manifest, real viewer)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]


@pytest.mark.parametrize(
    ("key", "name", "style", "pixel_size"),
    [("sem_grains", "SEM grains", "sem", 0.05), ("optical_grains", "Optical grains", "optical", 0.5)],
)
def test_open_sample(viewer, key, name, style, pixel_size):
    from napari.layers import Image, Labels

    viewer.open_sample("napari-grainlab", key)
    assert [layer.name for layer in viewer.layers] == [name, f"{name} labels"]
    image, labels = viewer.layers
    assert isinstance(image, Image) and isinstance(labels, Labels)
    assert image.data.shape == labels.data.shape == (768, 768)
    assert image.data.dtype == np.uint8 and labels.data.dtype == np.uint32
    assert image.colormap.name == "gray" and tuple(image.contrast_limits) == (0, 255)
    assert tuple(image.scale) == tuple(labels.scale) == (pixel_size, pixel_size)
    meta = image.metadata["grainlab"]
    assert meta["params"]["style"] == style and meta["pixel_size_um"] == pixel_size
    assert labels.metadata == image.metadata

    # features: one row per grain, matched to label values through the "index" column
    features = labels.features
    ids = np.unique(labels.data)
    assert sorted(features["index"]) == ids[ids > 0].tolist()
    assert {"area", "equivalent_diameter", "orientation", "aspect_ratio", "phase"} <= set(features.columns)
    assert "label" not in features.columns
    # rows are aligned: the area of a grain is its pixel count in µm²
    grain = int(labels.data[384, 384])
    row = features.loc[features["index"] == grain].iloc[0]
    assert row["area"] == pytest.approx(np.count_nonzero(labels.data == grain) * pixel_size**2)


def test_hovering_a_grain_shows_its_measurements(viewer):
    import re

    viewer.open_sample("napari-grainlab", "sem_grains")
    labels = viewer.layers["SEM grains labels"]
    world = (100 * 0.05, 200 * 0.05)
    grain = int(labels.data[100, 200])
    row = labels.features.loc[labels.features["index"] == grain].iloc[0]
    status = labels.get_status(world, world=True)
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert f": {grain};" in text
    for name in ("area", "equivalent_diameter"):  # the number as napari formats it (its rounding varies)
        shown = re.search(rf"\b{name}: ([-+0-9.eE]+)", text)
        assert shown is not None, (name, text)
        assert float(shown[1]) == pytest.approx(row[name], rel=1e-2), (name, text)


def test_sample_data_is_deterministic():
    from napari_grainlab._sample_data import sample_optical_grains, sample_sem_grains

    a, b = sample_sem_grains(), sample_sem_grains()
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert a[0][2] == "image" and a[1][2] == "labels"
    optical = sample_optical_grains()
    assert not np.array_equal(optical[0][0], a[0][0])
