"""The Measure dock (real napari viewers, pytest-qt): table, histogram, ASTM G, CSV, auto-refresh."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from napari_grainlab.core.measure import astm_grain_size, grain_table

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 15_000


@pytest.fixture(scope="module")
def sample():
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    return generate(SynthParams(height=160, width=160, tessellation=TessellationParams(grains=40)), seed=5)


@pytest.fixture
def dock(viewer):
    from napari_grainlab.gui.measure import MeasureWidget

    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Measure")
    return widget


def wait_measured(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.busy and dock.measurement is not None, timeout=WAIT_MS)
    return dock.measurement


def test_table_histogram_and_astm_g(qtbot, viewer, dock, sample, notifications):
    labels = viewer.add_labels(sample.labels, name="grains", metadata={"grainlab": {"pixel_size_um": 0.1}})
    m = wait_measured(qtbot, dock)
    assert dock.pixel_spin.value() == pytest.approx(0.1) and "metadata" in dock.pixel_hint.text()
    n = len(np.unique(sample.labels[sample.labels > 0]))
    assert dock.table_model.rowCount() == n and len(m.table["label"]) == n
    expected = astm_grain_size(sample.labels, 0.1)
    assert m.astm["astm_g"] == pytest.approx(expected["astm_g"])
    text = dock.summary_label.text()
    assert f"<b>{n}</b> grains" in text and f"{expected['astm_g']:#.3g}".rstrip(".") in text and "µm" in text
    assert dock.histogram.n_bars > 1
    from qtpy.QtCore import Qt

    headers = [dock.table_model.headerData(i, Qt.Orientation.Horizontal)
               for i in range(dock.table_model.columnCount())]
    assert "⌀ eq. [µm]" in headers
    # the measured table became the layer's features (hovering shows a grain's numbers)
    assert {"index", "equivalent_diameter", "area"} <= set(labels.features.columns)
    assert not notifications.messages("error")


def test_without_pixel_size_g_is_a_dash_until_typed_in(qtbot, viewer, dock, sample):
    viewer.add_labels(sample.labels, name="grains")
    m = wait_measured(qtbot, dock)
    assert m.pixel_size is None and "G = —" in dock.summary_label.text()
    assert "needs the pixel size" in dock.summary_label.text()
    assert "type it in" in dock.pixel_hint.text()
    dock.set_pixel_size(0.2)
    qtbot.waitUntil(lambda: not dock.busy and dock.measurement is not None and dock.measurement.pixel_size == 0.2,
                    timeout=WAIT_MS)
    assert dock.measurement.astm["astm_g"] == pytest.approx(astm_grain_size(sample.labels, 0.2)["astm_g"])
    assert "typed" in dock.pixel_hint.text()


def test_export_csv(qtbot, viewer, dock, sample, tmp_path):
    viewer.add_labels(sample.labels, name="grains", scale=(0.1, 0.1))
    m = wait_measured(qtbot, dock)
    dock.ask_csv_path = lambda: tmp_path / "out.csv"
    path = dock.export_csv()
    assert path == tmp_path / "out.csv"
    lines = path.read_text().splitlines()
    assert "equivalent_diameter [um]" in lines[0] and len(lines) == 1 + len(m.table["label"])
    assert not list(tmp_path.glob(".*.part"))  # atomic: no temporaries left


def test_auto_refresh_follows_edits(qtbot, viewer, dock, sample):
    layer = viewer.add_labels(sample.labels.copy(), name="grains")
    before = len(wait_measured(qtbot, dock).table["label"])
    merged = sample.labels.copy()
    merged[merged == 2] = 1  # merge two grains
    layer.data = merged
    qtbot.waitUntil(lambda: not dock.busy and dock.measurement is not None
                    and len(dock.measurement.table["label"]) == before - 1, timeout=WAIT_MS)
    # painting (in place, as the brush does) is followed too
    ys, xs = np.nonzero(merged == 3)
    layer.paint((ys[0], xs[0]), 1, refresh=True)
    layer.brush_size = 400
    layer.paint((ys[0], xs[0]), 7, refresh=True)  # one brush stroke over the whole image: one grain
    qtbot.waitUntil(lambda: not dock.busy and len(dock.measurement.table["label"]) == 1, timeout=WAIT_MS)
    dock.auto_check.setChecked(False)
    layer.data = sample.labels.copy()
    qtbot.wait(600)
    assert len(dock.measurement.table["label"]) == 1  # auto off: unchanged until Refresh
    dock.refresh_button.click()
    qtbot.waitUntil(lambda: not dock.busy and len(dock.measurement.table["label"]) == before, timeout=WAIT_MS)


def test_sorting_and_selecting_a_grain(qtbot, viewer, dock, sample):
    from qtpy.QtCore import Qt

    layer = viewer.add_labels(sample.labels, name="grains")
    m = wait_measured(qtbot, dock)
    col = [c for c in range(dock.table_model.columnCount())
           if dock.table_model.headerData(c, Qt.Orientation.Horizontal).startswith("⌀")][0]
    dock.table_view.sortByColumn(col, Qt.SortOrder.DescendingOrder)
    largest = int(m.table["label"][np.argmax(m.table["equivalent_diameter"])])
    assert dock.table_model.label_at(0) == largest
    dock.table_view.selectRow(0)
    assert layer.selected_label == largest
    dock.only_selected.setChecked(True)
    assert layer.show_selected_label
    dock._on_row_double_clicked(dock.table_model.index(0, 0))
    t = grain_table(sample.labels)
    row = int(np.nonzero(t["label"] == largest)[0][0])
    scene = getattr(viewer, "scene", None)
    camera = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
    assert camera.center[-2:] == pytest.approx((t["centroid_y"][row], t["centroid_x"][row]))


def test_switching_layers_and_bad_layers(qtbot, viewer, dock, sample, notifications):
    viewer.add_labels(sample.labels, name="grains")
    wait_measured(qtbot, dock)
    viewer.add_labels(np.zeros((3, 32, 32), np.uint16), name="stack")
    dock.set_labels_layer(viewer.layers["stack"])
    qtbot.waitUntil(lambda: not dock.busy, timeout=WAIT_MS)
    assert dock.measurement is None and "2-D" in dock.summary_label.text()
    assert not dock.export_button.isEnabled()
    assert dock.export_csv("/nonexistent/x.csv") is None
    assert any("Nothing to export" in m for m in notifications.messages("error"))
    empty = viewer.add_labels(np.zeros((32, 32), np.uint16), name="empty")
    dock.set_labels_layer(empty)
    m = wait_measured(qtbot, dock)
    assert len(m.table["label"]) == 0 and "no grains" in dock.histogram.axes.texts[0].get_text()
    viewer.layers.clear()
    qtbot.waitUntil(lambda: not dock.busy, timeout=WAIT_MS)
    assert dock.current_layer() is None and "No labels layer" in dock.summary_label.text()


def test_pixel_size_from_the_source_tiff(qtbot, viewer, dock, sample, tmp_path):
    from napari_grainlab.core._io import write_tiff

    path = tmp_path / "grains.tif"
    write_tiff(path, sample.labels.astype(np.uint16), pixel_size_um=0.4)
    layer = viewer.open(str(path), plugin="napari", layer_type="labels")[0]
    dock.set_labels_layer(layer)
    m = wait_measured(qtbot, dock)
    assert m.pixel_size == pytest.approx(0.4) and "TIFF" in dock.pixel_hint.text()


@pytest.mark.parametrize("method", ["intercept", "circles", "planimetric"])
def test_method_choice_gives_g_with_a_confidence_interval_and_a_test_pattern(qtbot, viewer, dock, sample, method):
    from napari.layers import Shapes

    from napari_grainlab.core.grainsize import grain_size
    from napari_grainlab.gui._layers import role_of

    viewer.add_labels(sample.labels, name="grains", metadata={"grainlab": {"pixel_size_um": 0.1}})
    wait_measured(qtbot, dock)
    dock.set_method(method)
    qtbot.waitUntil(lambda: not dock.busy and dock.measurement.method == method, timeout=WAIT_MS)
    expected = grain_size(sample.labels, 0.1, method=method)
    got = dock.measurement.grain_size
    assert got["G"] == pytest.approx(expected.G) and got["G_ci95"][0] < got["G"] < got["G_ci95"][1]
    text = dock.summary_label.text()
    assert "±" in text and "95 % CI" in text and f"{expected.G:.3g}"[:4] in text
    shapes = dock.show_test_pattern()
    assert isinstance(shapes, Shapes) and len(shapes.data) > 0 and role_of(shapes) == "measurement"
    assert shapes.shape_type[0] == {"intercept": "line", "circles": "ellipse", "planimetric": "rectangle"}[method]
    again = dock.show_test_pattern()  # replaces the pattern layer instead of stacking another one
    assert sum(isinstance(ly, Shapes) for ly in viewer.layers) == 1 and again in viewer.layers


def test_the_labels_are_copied_in_the_worker_not_on_the_gui_thread(qtbot, viewer, dock, sample, monkeypatch):
    """The snapshot of the labels a measurement works on (hundreds of MB for a large image, or the read of a
    lazy array) is taken in the worker thread; an unreadable layer is reported in the dock."""
    import threading

    from napari_grainlab.gui.measure import dock as dock_module

    class LazyLabels:  # an array-like, as a dask or zarr layer's data: converted by __array__
        shape, ndim, dtype = sample.labels.shape, 2, sample.labels.dtype

        def __init__(self, error=None):
            self.error, self.threads = error, []

        def __array__(self, dtype=None, copy=None):
            self.threads.append(threading.current_thread() is threading.main_thread())
            if self.error:
                raise self.error
            return sample.labels.copy()

    def fake_layer(data):
        import pandas as pd

        return type("FakeLabels", (), {"name": "grains", "multiscale": False, "data": data,
                                       "features": pd.DataFrame()})()

    lazy = LazyLabels()
    layer = fake_layer(lazy)
    monkeypatch.setattr(dock_module.MeasureWidget, "current_layer", lambda self: layer)
    dock.refresh()
    m = wait_measured(qtbot, dock)
    assert len(m.table["label"]) == len(np.unique(sample.labels[sample.labels > 0]))
    assert lazy.threads and not any(lazy.threads), "the labels were read on the GUI thread"

    broken = LazyLabels(MemoryError("no room for the copy"))
    layer = fake_layer(broken)
    dock.refresh()
    qtbot.waitUntil(lambda: not dock.busy and "cannot read" in dock.summary_label.text(), timeout=WAIT_MS)
    assert "'grains'" in dock.summary_label.text() and "no room" in dock.summary_label.text()
    assert broken.threads == [False]


def test_a_removed_dock_stops_measuring_and_resumes_when_docked_again(qtbot, viewer, sample):
    """napari's remove_dock_widget only unparents the widget (PySide6 keeps it alive while Python holds it): its
    layer's edits must not start measurements any more; docked anew it follows the layer again."""
    from napari_grainlab.gui.measure import MeasureWidget

    widget = MeasureWidget(viewer)
    dw = viewer.window.add_dock_widget(widget, name="Measure")
    layer = viewer.add_labels(sample.labels.copy(), name="grains")
    before = len(wait_measured(qtbot, widget).table["label"])
    viewer.window.remove_dock_widget(dw)
    merged = sample.labels.copy()
    merged[merged == 2] = 1
    layer.data = merged
    qtbot.wait(600)  # longer than the refresh throttle
    assert not widget.busy and len(widget.measurement.table["label"]) == before
    viewer.window.add_dock_widget(widget, name="Measure")
    layer.data = sample.labels.copy()
    layer.data = merged
    qtbot.waitUntil(lambda: not widget.busy and len(widget.measurement.table["label"]) == before - 1,
                    timeout=WAIT_MS)
