"""The Measure dock's report part (real napari viewers, pytest-qt): Save report…, Export ROI zip…, the
distribution plot, the twin-boundary layer and the pixel size from the layer's scale."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from napari_grainlab.core.grainsize import grain_size

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 20_000


def voronoi_labels(seed: int = 0, size: int = 140, grains: int = 50) -> np.ndarray:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (grains, 2))
    rr, cc = np.mgrid[:size, :size]
    _, idx = cKDTree(seeds).query(np.stack([cc.ravel(), rr.ravel()], axis=1))
    return (idx + 1).reshape(size, size).astype(np.int32)


def twinned_squares() -> tuple[np.ndarray, np.ndarray]:
    """Square grains of 20 px, each cut in two by a twin band (a probability image)."""
    lab = np.zeros((120, 120), np.int32)
    prob = np.zeros(lab.shape, np.float32)
    k = 0
    for i in range(6):
        for j in range(6):
            k += 1
            lab[i * 20:i * 20 + 10, j * 20:(j + 1) * 20] = 2 * k - 1
            lab[i * 20 + 10:(i + 1) * 20, j * 20:(j + 1) * 20] = 2 * k
            prob[i * 20 + 9:i * 20 + 11, j * 20:(j + 1) * 20] = 0.8
    return lab, prob


@pytest.fixture
def dock(viewer):
    from napari_grainlab.gui.measure import MeasureWidget

    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Measure")
    return widget


def wait_measured(qtbot, dock, check=lambda m: True):
    qtbot.waitUntil(lambda: not dock.busy and dock.measurement is not None and bool(check(dock.measurement)),
                    timeout=WAIT_MS)
    return dock.measurement


def wait_task(qtbot, task):
    assert task is not None
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    return task.result


def save_dialog(monkeypatch, path: Path | None, choice: int = 0):
    """The save dialog answers ``path`` (None: cancelled) with its file type number ``choice`` and records
    what it was asked."""
    from qtpy.QtWidgets import QFileDialog

    asked = []

    def answer(parent, title, start, filters):
        asked.append((title, start, filters))
        return ("" if path is None else str(path)), filters.split(";;")[choice]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(answer))
    return asked


def test_save_report_through_the_dialog_uses_the_layer_scale(qtbot, viewer, dock, tmp_path, monkeypatch,
                                                             notifications):
    labels = voronoi_labels()
    image = (np.random.default_rng(1).random(labels.shape) * 255).astype(np.uint8)
    viewer.add_image(image, name="micrograph", scale=(0.25, 0.25))
    meta = {"grainlab": {"source": "micrograph", "role": "grains", "model": "generalist", "prediction": True}}
    viewer.add_labels(labels, name="grains", scale=(0.25, 0.25), metadata=meta)
    wait_measured(qtbot, dock)
    assert dock.pixel_size == pytest.approx(0.25)
    assert dock.report_panel.image_combo.current_layer().name == "micrograph"
    assert dock.report_panel.report_button.isEnabled()
    target = tmp_path / "grains report.html"
    asked = save_dialog(monkeypatch, target)
    dock.report_panel.report_button.click()
    result = wait_task(qtbot, dock.report_panel.task)
    assert result.ok and result.value == target and asked and "PDF" in asked[0][2]
    text = target.read_text(encoding="utf-8")
    for method in ("planimetric", "intercept", "circles"):
        g = float(re.search(rf'<tr data-method="{method}"><td>[^<]*</td><td class="num g" data-g="([^"]+)"',
                            text).group(1))
        assert g == grain_size(labels, 0.25, method).G
    assert 'alt="micrograph"' in text and "0.25 µm (from layer scale" in text
    from napari_grainlab.core.models.registry import list_models

    sha = next(e.sha256 for e in list_models() if e.name == "generalist")
    assert f"<th>model sha256</th><td>{sha}</td>" in text and "<td>generalist</td>" in text
    assert dock.report_panel.progress.value() == dock.report_panel.progress.maximum() > 0
    assert any("Wrote the report" in m for m in notifications.messages())
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_pdf_report_and_a_cancelled_dialog(qtbot, viewer, dock, tmp_path, monkeypatch):
    viewer.add_labels(voronoi_labels(2, 100, 25), name="grains")
    wait_measured(qtbot, dock)
    save_dialog(monkeypatch, None)  # cancelled: nothing happens
    assert dock.save_report() is None and dock.report_panel.task is None
    save_dialog(monkeypatch, tmp_path / "r", choice=1)  # no suffix, the PDF file type chosen
    result = wait_task(qtbot, dock.save_report())
    assert result.ok and result.value == tmp_path / "r.pdf"
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")


def test_a_report_error_is_a_notification(qtbot, viewer, dock, tmp_path, notifications):
    viewer.add_labels(voronoi_labels(3, 100, 25), name="grains")
    wait_measured(qtbot, dock)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    result = wait_task(qtbot, dock.save_report(blocker / "r.html"))
    assert result.status == "failed"
    assert any("Saving the report failed" in m and "file.txt" in m for m in notifications.messages("error"))
    assert blocker.read_text() == "not a folder" and dock.report_panel.report_button.isEnabled()


def test_export_roi_zip(qtbot, viewer, dock, tmp_path, monkeypatch):
    import roifile

    labels = voronoi_labels(4, 100, 30)
    viewer.add_labels(labels, name="grains")
    wait_measured(qtbot, dock)
    save_dialog(monkeypatch, tmp_path / "grains_rois")
    dock.report_panel.roi_button.click()
    result = wait_task(qtbot, dock.report_panel.task)
    assert result.ok and result.value == (tmp_path / "grains_rois.zip", 30)
    rois = roifile.roiread(tmp_path / "grains_rois.zip")
    assert sorted(int(r.name) for r in rois) == sorted(int(v) for v in np.unique(labels))


def test_twin_boundary_layer_gives_g_with_twins_excluded_and_counted(qtbot, viewer, dock):
    from napari_grainlab.gui._layers import role_metadata

    lab, prob = twinned_squares()
    viewer.add_labels(lab, name="grains", metadata={"grainlab": {"pixel_size_um": 1.0}})
    twins = viewer.add_image(prob, name="twins", metadata=role_metadata("twin_boundary", "img"))
    dock.set_labels_layer(viewer.layers["grains"])
    wait_measured(qtbot, dock)
    combo = dock.report_panel.twins_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["(none)", "twins"]
    assert dock.measurement.grain_size.get("twins") is None
    combo.set_current_layer(twins)
    m = wait_measured(qtbot, dock, lambda m: (m.grain_size or {}).get("twins"))
    expected = grain_size(lab, 1.0, "planimetric", twin_boundaries=prob > 0.5).twins
    assert m.grain_size["twins"]["G_twins_excluded"] == pytest.approx(expected["G_twins_excluded"])
    assert m.grain_size["G"] == pytest.approx(expected["G_twins_excluded"])
    text = dock.summary_label.text()
    assert "twins excluded" in text and "(36 grains)" in text and "(72 grains)" in text


def test_distribution_plot_follows_the_method_and_screenshot(qtbot, viewer, tmp_path):
    from napari_grainlab.gui.measure import MeasureWidget

    dock = MeasureWidget(viewer)  # shown on its own, at the size of a dock, for the screenshot
    qtbot.addWidget(dock)
    dock.resize(360, 980)
    dock.show()
    qtbot.waitExposed(dock)
    viewer.add_labels(voronoi_labels(5, 160, 60), name="grains", scale=(0.5, 0.5))
    wait_measured(qtbot, dock)
    assert set(dock.distribution.drawn) == {"grain area"} and dock.distribution.drawn["grain area"] > 3
    dock.set_method("intercept")
    wait_measured(qtbot, dock, lambda m: m.method == "intercept")
    assert set(dock.distribution.drawn) == {"grain area", "intercept length"}
    assert dock.distribution.drawn["intercept length"] > 3
    ax = dock.distribution.figure.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 1  # the log-normal fit
    dock.plots.setCurrentWidget(dock.distribution)
    qtbot.wait(300)
    canvas = dock.distribution.canvas
    assert canvas.height() >= canvas.minimumHeight() and canvas.width() > 250
    shots = Path(os.environ.get("GRAINLAB_SCREENSHOTS") or tmp_path)  # set it to keep the picture
    shots.mkdir(parents=True, exist_ok=True)
    assert dock.grab().save(str(shots / "measure_dock.png"))
