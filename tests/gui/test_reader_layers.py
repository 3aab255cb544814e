"""Micrographs opened with the plugin's reader in a real viewer: napari's reader choice, the layer's scale
in µm, and the docks taking their pixel size from it (gui/_layers.layer_pixel_size)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from napari_grainlab.core.data.labels_tiff import write_labels_tiff
from napari_grainlab.core.synthetic import SynthParams, generate

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

FEI = "[Scan]\r\nPixelWidth=4.5e-09\r\n\r\n[Image]\r\nResolutionX=192\r\nResolutionY=160\r\n"


@pytest.fixture
def fei(tmp_path):
    import cv2

    image = generate(SynthParams(height=160, width=192), seed=0).image
    bar = np.zeros((32, 192), np.uint8)
    cv2.putText(bar, "HV 10 kV  WD 5 mm", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, np.vstack([image, bar]), extratags=[(34682, "s", 0, FEI, True)])
    return path


@pytest.fixture
def reader_preference():
    """Set napari's remembered reader for ``*.tif`` for one test, never written to the settings file."""
    from napari.settings import get_settings

    settings = get_settings()
    saving, before = settings._save_on_change, dict(settings.plugins.extension2reader)
    settings._save_on_change = False

    def prefer(plugin):
        settings.plugins.extension2reader = {**before, "*.tif": plugin}

    try:
        yield prefer
    finally:
        settings.plugins.extension2reader = before
        settings._save_on_change = saving


def test_the_plugins_reader_gives_the_layer_its_scale_in_um(viewer, fei):
    from napari_grainlab.gui._layers import layer_pixel_size

    (layer,) = viewer.open(fei, plugin="napari-grainlab")
    assert layer.data.shape == (160, 192)  # the data bar is cut off
    assert tuple(layer.scale) == pytest.approx((0.0045, 0.0045))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["grainlab"]["data_bar"].shape == (32, 192)
    assert layer_pixel_size(layer) == (pytest.approx(0.0045), "layer scale")


def test_napari_asks_which_reader_unless_one_is_remembered(viewer, fei, tmp_path, reader_preference):
    from napari.errors import MultipleReaderError

    # plugin=None is what drag and drop and File > Open do: both napari's reader and the plugin's can read
    # a .tif, so napari asks (in the GUI: the "Choose reader" dialog)
    with pytest.raises(MultipleReaderError):
        viewer.open(fei, plugin=None)
    # "remember this choice for files with a .tif extension" makes the plugin's reader the one used
    reader_preference("napari-grainlab")
    (layer,) = viewer.open(fei, plugin=None)
    assert tuple(layer.scale) == pytest.approx((0.0045, 0.0045))
    # a TIFF without calibration or data bar still opens with the remembered reader, as a plain layer
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((32, 32), np.uint8))
    (plain_layer,) = viewer.open(tmp_path / "plain.tif", plugin=None)
    assert tuple(plain_layer.scale) == (1.0, 1.0) and plain_layer.data.shape == (32, 32)
    # viewer.open's default in scripts is napari's own reader: no scale, the data bar stays
    (plain,) = viewer.open(fei)
    assert tuple(plain.scale) == (1.0, 1.0) and plain.data.shape == (192, 192)


def test_scale_in_length_units_wins_over_stale_metadata(viewer):
    from napari_grainlab.gui._layers import layer_pixel_size

    layer = viewer.add_image(np.zeros((8, 8)), scale=(0.5, 0.5), units=("nm", "nm"),
                             metadata={"grainlab": {"pixel_size_um": 0.1}})
    assert layer_pixel_size(layer) == (pytest.approx(5e-4), "layer scale")
    layer.units = ("pixel", "pixel")
    assert layer_pixel_size(layer) == (pytest.approx(0.1), "layer metadata")


def test_annotate_dock_records_the_readers_pixel_size(qtbot, viewer, fei, tmp_path, monkeypatch):
    from napari_grainlab.core import annotate as core
    from napari_grainlab.gui.annotate import AnnotateWidget

    monkeypatch.setenv(core.AUTOSAVE_ENV, str(tmp_path / "autosave"))
    monkeypatch.setenv("GRAINLAB_CONFIG_DIR", str(tmp_path / "config"))
    (image,) = viewer.open(fei, plugin="napari-grainlab")
    widget = AnnotateWidget(viewer)
    widget.ask_unsaved = lambda: "discard"
    viewer.window.add_dock_widget(widget, name="Annotate", area="right")
    qtbot.waitUntil(lambda: not widget.attach_pending, timeout=20000)
    assert widget.labels_layer is not None and widget.labels_layer.data.shape == (160, 192)
    assert widget.store.pixel_size == pytest.approx(0.0045)
    assert tuple(widget.labels_layer.scale) == pytest.approx(tuple(image.scale))


def test_measure_dock_takes_the_scale_of_labels_opened_with_the_reader(qtbot, viewer, tmp_path):
    from napari_grainlab.gui.measure import MeasureWidget

    labels = generate(SynthParams(height=96, width=96), seed=1).labels
    write_labels_tiff(tmp_path / "grains.tif", labels, pixel_size_um=0.2)
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Measure")
    (layer,) = viewer.open(tmp_path / "grains.tif", plugin="napari-grainlab")
    assert layer._type_string == "labels"
    qtbot.waitUntil(lambda: widget.pixel_spin.value() > 0, timeout=15_000)
    assert widget.pixel_spin.value() == pytest.approx(0.2) and "layer scale" in widget.pixel_hint.text()
    qtbot.waitUntil(lambda: not widget.busy, timeout=15_000)
