"""The napari reader and writer of the plugin (npe2 contributions; no viewer: see tests/gui/test_reader_layers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

npe2 = pytest.importorskip("npe2")

from napari_grainlab._reader import get_reader  # noqa: E402
from napari_grainlab._writer import layer_meta_pixel_size, write_labels  # noqa: E402
from napari_grainlab.core.data.io import read_pixel_size  # noqa: E402
from napari_grainlab.core.synthetic import SynthParams, generate  # noqa: E402

FEI = ("[User]\r\nDate=03/14/2024\r\n\r\n[Scan]\r\nPixelWidth=4.5e-09\r\nPixelHeight=4.5e-09\r\n\r\n"
       "[Image]\r\nResolutionX=256\r\nResolutionY=192\r\n")


def fei_file(path, rgb=False):
    """A FEI-style TIFF of 256 x 192 px of specimen over a 40-row data bar."""
    import cv2

    image = generate(SynthParams(height=192, width=256), seed=0).image
    bar = np.zeros((40, 256), np.uint8)
    cv2.putText(bar, "HV 10 kV  WD 5 mm  2 um", (4, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1)
    stored = np.vstack([image, bar])
    if rgb:
        stored = np.dstack([stored] * 3)
    tifffile.imwrite(path, stored, photometric="rgb" if rgb else "minisblack",
                     extratags=[(34682, "s", 0, FEI, True)])
    return image, bar


def test_manifest_declares_the_reader_and_the_writer():
    pm = npe2.PluginManifest.from_distribution("napari-grainlab")
    (reader,) = pm.contributions.readers
    assert reader.command == "napari-grainlab.get_reader" and not reader.accepts_directories
    assert set(reader.filename_patterns) == {"*.tif", "*.tiff"}
    (writer,) = pm.contributions.writers
    assert writer.command == "napari-grainlab.write_labels"
    assert [str(t) for t in writer.layer_types] == ["labels"] and set(writer.filename_extensions) == {".tif", ".tiff"}
    ids = {c.id for c in pm.contributions.commands}
    assert {reader.command, writer.command} <= ids


def test_upper_case_extensions_reach_the_reader(tmp_path):
    manager = npe2.PluginManager.instance()
    manager.discover()
    names = {r.plugin_name for r in manager.iter_compatible_readers([str(tmp_path / "IMG_001.TIF")])}
    assert "napari-grainlab" in names


def test_reader_gives_a_calibrated_layer_without_the_data_bar(tmp_path):
    image, bar = fei_file(tmp_path / "fei.tif")
    reader = get_reader(str(tmp_path / "fei.tif"))
    assert callable(reader)
    ((data, kwargs, kind),) = reader(str(tmp_path / "fei.tif"))
    assert kind == "image" and kwargs["name"] == "fei" and "rgb" not in kwargs
    np.testing.assert_array_equal(data, image)
    assert kwargs["scale"] == pytest.approx((0.0045, 0.0045))
    assert kwargs.get("units", ("µm", "µm")) == ("µm", "µm")
    own = kwargs["metadata"]["grainlab"]
    assert own["pixel_size_um"] == pytest.approx(0.0045) and own["pixel_size_source"] == "FEI Scan.PixelWidth"
    assert own["data_bar_rows"] == 40 and "role" not in own and "source" not in own
    np.testing.assert_array_equal(own["data_bar"], bar)
    assert own["vendor_metadata"]["Image"]["ResolutionY"] == 192


def test_reader_keeps_colour(tmp_path):
    image, _ = fei_file(tmp_path / "c.tif", rgb=True)
    ((data, kwargs, _),) = get_reader(str(tmp_path / "c.tif"))(str(tmp_path / "c.tif"))
    assert kwargs["rgb"] is True and data.shape == (192, 256, 3)


def test_reader_opens_a_plain_tiff_and_declines_what_is_not_one_micrograph(tmp_path):
    image = generate(SynthParams(height=64, width=64), seed=0).image
    tifffile.imwrite(tmp_path / "plain.tif", image)
    ((data, kwargs, kind),) = get_reader(str(tmp_path / "plain.tif"))(str(tmp_path / "plain.tif"))
    # nothing to add: the layer napari's own reader would give (no scale), so a remembered choice always works
    assert kind == "image" and "scale" not in kwargs and np.array_equal(data, image)
    assert kwargs["metadata"]["grainlab"]["data_bar_rows"] == 0
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    assert get_reader(str(tmp_path / "broken.tif")) is None
    fei_file(tmp_path / "fei.tif")
    assert get_reader([str(tmp_path / "fei.tif")] * 2) is None  # a stack: napari's own reader
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader(str(tmp_path)) is None
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 32, 32), np.uint8))
    assert get_reader(str(tmp_path / "stack.tif")) is None


def test_npe2_reads_with_the_plugin(tmp_path):
    fei_file(tmp_path / "fei.tif")
    layers = npe2.read([str(tmp_path / "fei.tif")], stack=False, plugin_name="napari-grainlab")
    assert layers[0][1]["scale"] == pytest.approx((0.0045, 0.0045))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((32, 32), np.uint8))
    (layer,) = npe2.read([str(plain)], stack=False, plugin_name="napari-grainlab")
    assert layer[0].shape == (32, 32) and "scale" not in layer[1]


def test_writer_round_trip(tmp_path):
    labels = generate(SynthParams(height=128, width=160), seed=2).labels.astype(np.int32)
    meta = {"scale": (0.05, 0.05), "units": ("micrometer", "micrometer"), "metadata": {}}
    written = write_labels(str(tmp_path / "grains.tif"), labels, meta)
    assert written == [str(tmp_path / "grains.tif"), str(tmp_path / "grains_grains.csv")]
    assert read_pixel_size(tmp_path / "grains.tif") == pytest.approx(0.05, rel=1e-6)
    ((data, kwargs, kind),) = get_reader(str(tmp_path / "grains.tif"))(str(tmp_path / "grains.tif"))
    assert kind == "labels" and kwargs["scale"] == pytest.approx((0.05, 0.05), rel=1e-6)
    np.testing.assert_array_equal(data, labels)
    rows = (tmp_path / "grains_grains.csv").read_text().splitlines()
    assert len(rows) == 1 + len(np.unique(labels[labels > 0])) and "equivalent_diameter [um]" in rows[0]
    # the same through npe2, as napari's File > Save does with this writer chosen
    out = npe2.write(str(tmp_path / "again.tiff"), [(labels, meta, "labels")], plugin_name="napari-grainlab")
    assert str(tmp_path / "again.tiff") in out and (tmp_path / "again_grains.csv").exists()


def test_writer_adds_the_extension_and_takes_multiscale(tmp_path):
    labels = np.zeros((16, 16), np.uint8)
    labels[4:8, 4:8] = 1
    written = write_labels(str(tmp_path / "g"), [labels, labels[::2, ::2]], {"scale": (1.0, 1.0)})
    assert written[0] == str(tmp_path / "g.tif") and read_pixel_size(tmp_path / "g.tif") is None


@pytest.mark.parametrize("meta, expected", [
    ({"scale": (2.0, 2.0), "units": ("nanometer", "nanometer")}, 0.002),
    ({"scale": (0.5, 0.5), "units": ("µm", "µm")}, 0.5),
    ({"scale": (1.0, 1.0), "units": ("pixel", "pixel"), "metadata": {"grainlab": {"pixel_size_um": 0.3}}}, 0.3),
    ({"scale": (0.25, 0.25), "units": ("pixel", "pixel")}, 0.25),
    ({"scale": (1.0, 1.0), "units": ("pixel", "pixel")}, None),
    ({"scale": (1.0, 1.0), "units": ("second", "second")}, None),
])
def test_pixel_size_of_layer_attributes(meta, expected):
    value = layer_meta_pixel_size(meta)
    assert value == (pytest.approx(expected) if expected is not None else None)
