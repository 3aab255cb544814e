"""The report part of the Measure dock: the twin-boundary layer and the micrograph to use, *Save report…*
(HTML or PDF, :mod:`napari_grainlab.core.report`) and *Export ROI zip…* (ImageJ / Fiji ROIs,
:mod:`napari_grainlab.core.rois`).

Reports and ROI zips are made off the main thread (:class:`~napari_grainlab.gui.workers.GeneratorTask`),
with a progress bar; errors become napari notifications. The twin-boundary layer is one with the role
``twin_boundary`` (a model's twin-boundary probability, taken where it is above the threshold) or a
Labels / bool mask layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from .._layers import LayerCombo, grainlab_metadata, layer_pixel_size, role_of
from .._widgets import ask_save_file, progress_bar
from ..workers import GeneratorTask
from .measurement import snapshot

if TYPE_CHECKING:
    import napari

__all__ = ["LayerChoice", "ReportPanel", "report_job", "roi_job"]


def _labels_snapshot(labels: Any) -> np.ndarray:
    """:func:`~.measurement.snapshot` of a layer's labels, a bool mask as uint8 labels."""
    labels = snapshot(labels, "the labels layer")
    return labels.astype(np.uint8) if labels.dtype.kind == "b" else labels


def report_job(path: Path, labels: Any, info: dict[str, Any], stop: Any = None):
    """Worker side of *Save report…*: the snapshot of the labels (and twin boundaries), the model's hash, then
    :func:`~napari_grainlab.core.report.iter_write_report`."""
    from ...core.report import ReportInput, ReportOptions, iter_write_report, model_info

    labels = _labels_snapshot(labels)
    if info.get("twins") is not None:
        info = {**info, "twins": snapshot(info["twins"], "the twin-boundary layer")}
    model, sha = model_info(info.get("model")) if info.get("model") else (None, None)
    image = info.get("image")
    image = None if image is None else np.asarray(image)  # a lazy (dask, zarr) layer is read here, not in the GUI
    inp = ReportInput(labels, info["name"], info.get("pixel_size"), info.get("pixel_size_source", ""),
                      image, info.get("image_note", ""), info.get("twins"), info.get("twins_source", ""),
                      model, sha, labels_path=info.get("labels_path", ""), image_path=info.get("image_path", ""))
    return (yield from iter_write_report(path, [inp], None, ReportOptions(), stop=stop))


def roi_job(path: Path, labels: Any, pixel_size: float | None, stop: Any = None):
    """Worker side of *Export ROI zip…*: one ImageJ polygon ROI per grain; returns ``(path, count)``."""
    from ...core.report import ReportProgress
    from ...core.rois import labels_to_roi_zip

    yield ReportProgress(0, 1, "tracing the grains")
    labels = _labels_snapshot(labels)
    count = labels_to_roi_zip(labels, path, pixel_size)
    yield ReportProgress(1, 1, f"wrote {path.name}")
    return path, count


def _data(layer: Layer) -> Any:
    """The layer's full-resolution data as it is (a lazy array stays lazy)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


class LayerChoice(LayerCombo):
    """``(none)`` and the viewer's layers that ``accept``, in the order ``key`` gives (an optional input);
    follows insertions, removals and renames. ``layer_changed(layer or None)`` when the choice changes."""

    def __init__(self, viewer: napari.viewer.Viewer, accept, key=None, parent: QWidget | None = None) -> None:
        super().__init__(viewer, Layer, "", parent, accept=accept, key=key, none_label="(none)")


class ReportPanel(QWidget):
    """The twin-boundary and image choices and the report / ROI buttons of the Measure dock ``dock``
    (which gives the labels layer, the pixel size and the measurement)."""

    twins_changed = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, dock: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.dock = dock
        self.task: GeneratorTask | None = None
        self._last_dir: Path | None = None
        self.twins_combo = LayerChoice(viewer, self._twin_candidate, key=lambda ly: role_of(ly) != "twin_boundary")
        self.twins_combo.setToolTip(
            "<p>Twin boundaries: a layer with the role <i>twin boundary</i> (a model's twin-boundary probability, "
            "taken where it is above 0.5) or a Labels / bool mask. G is then shown with twins excluded (merged into "
            "their parent grain) and counted.</p>")
        self.twins_combo.layer_changed.connect(lambda *_: self.twins_changed.emit())
        self.image_combo = LayerChoice(viewer, lambda ly: isinstance(ly, Image) and role_of(ly) not in
                                       ("boundary", "twin_boundary", "confidence"))
        self.image_combo.setToolTip("the micrograph the report draws the grain boundaries on")
        self.report_button = QPushButton("Save report…")
        self.report_button.setToolTip("save a report (HTML or PDF): the image, the grain overlay, the size "
                                      "distributions and G ± 95 % CI by each ASTM E112 method")
        self.report_button.clicked.connect(lambda: self.save_report())
        self.roi_button = QPushButton("Export ROI zip…")
        self.roi_button.setToolTip("save one ImageJ / Fiji polygon ROI per grain (RoiSet zip for the ROI Manager)")
        self.roi_button.clicked.connect(lambda: self.export_rois())
        self.progress = progress_bar()
        self.progress.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.buttons = QHBoxLayout()
        self.buttons.setContentsMargins(0, 0, 0, 0)
        self.buttons.addWidget(self.report_button)
        self.buttons.addWidget(self.roi_button)
        self.buttons.addStretch(1)
        layout.addLayout(self.buttons)
        layout.addWidget(self.progress)
        self.set_enabled(False)

    def add_button(self, button: QPushButton) -> None:
        """Put another export button of the dock first in the row of buttons."""
        self.buttons.insertWidget(0, button)

    # ---------------------------------------------------------------- choices
    def _twin_candidate(self, layer: Layer) -> bool:
        if role_of(layer) == "twin_boundary":
            return isinstance(layer, (Image, Labels))
        return isinstance(layer, Labels) and layer is not self.dock.current_layer() and role_of(layer) not in (
            "grains", "annotation", "proposal", "synthetic_labels", "class_map", "classes")

    def follow_labels(self, labels: Layer | None) -> None:
        """Choose the image of the labels layer ``labels`` (its ``source``, else one of its shape) and offer
        the layers that can be its twin boundaries."""
        self.twins_combo.refresh()
        self.image_combo.refresh()
        image = None
        if labels is not None:
            shape = tuple(_data(labels).shape[-2:])
            source = grainlab_metadata(labels).get("source")
            candidates = self.image_combo._layers[1:]
            image = next((ly for ly in candidates if ly.name == source), None) or next(
                (ly for ly in candidates if tuple(_data(ly).shape[:2]) == shape), None)
        self.image_combo.set_current_layer(image)
        self.set_enabled(False)

    def twin_layer(self) -> Layer | None:
        return self.twins_combo.current_layer()

    def twin_source(self) -> Any:
        """The twin-boundary layer's full-resolution data as it is, not copied or read (None: no layer
        chosen): for a worker to copy off the GUI thread."""
        layer = self.twin_layer()
        return None if layer is None else _data(layer)

    def set_enabled(self, on: bool) -> None:
        busy = self.task is not None and self.task.is_running
        self.report_button.setEnabled(on and not busy)
        self.roi_button.setEnabled(on and not busy)

    # ---------------------------------------------------------------- dialogs
    def _start(self, layer: Layer, suffix: str) -> Path:
        name = layer.name.replace("/", "_").replace(" ", "_")
        folder = self._last_dir or Path.home()
        return folder / f"{name}{suffix}"

    def ask_report_path(self) -> Path | None:
        """The report file chosen in a save dialog (None: cancelled); a name without a suffix gets that of
        the chosen file type."""
        from qtpy.QtWidgets import QFileDialog

        layer = self.dock.current_layer()
        if layer is None:
            return None
        path, chosen = QFileDialog.getSaveFileName(self, "Save the measurement report",
                                                   str(self._start(layer, "_report.html")),
                                                   "HTML report (*.html);;PDF report (*.pdf)")
        if not path:
            return None
        path = Path(path)
        return path if path.suffix else path.with_suffix(".pdf" if "pdf" in (chosen or "").lower() else ".html")

    def ask_roi_path(self) -> Path | None:
        layer = self.dock.current_layer()
        return ask_save_file(self, "Export the grains as ImageJ ROIs", self._start(layer, "_rois.zip"),
                             "ImageJ ROI zip (*.zip)", ".zip") if layer is not None else None

    # ------------------------------------------------------------------- jobs
    def _labels(self) -> tuple[Layer, Any] | None:
        layer, m = self.dock.current_layer(), self.dock.measurement
        if layer is None or m is None or not int(m.astm["grains"]):
            show_error("Nothing to save: measure a labels layer with grains first")
            return None
        return layer, _data(layer)  # copied by the job, in its worker thread (_labels_snapshot)

    def _run(self, func, path: Path, *args: Any, description: str, done) -> GeneratorTask | None:
        if self.task is not None and self.task.is_running:
            show_error("A report or ROI export is running; wait for it to finish")
            return None
        self._last_dir = path.parent
        self.progress.setVisible(True)
        task = GeneratorTask(func, path, *args, description=description, progress_bar=self.progress, parent=self)

        def finished(result) -> None:
            self.set_enabled(self.dock.measurement is not None)
            if result.ok and result.value is not None:
                done(result.value)

        task.finished.connect(finished)
        self.task = task
        task.start()
        self.set_enabled(False)
        return task

    def save_report(self, path: str | Path | None = None) -> GeneratorTask | None:
        """Write the report on the current labels layer (off the main thread); the task, or None."""
        picked = self._labels()
        if picked is None:
            return None
        path = self.ask_report_path() if path is None else Path(path)
        if path is None:
            return None
        if path.suffix.lower() not in (".html", ".htm", ".pdf"):
            path = path.with_suffix(".html")
        layer, labels = picked
        px = self.dock.pixel_size
        source = "typed in" if self.dock.pixel.typed else (layer_pixel_size(layer)[1] if px else "")
        info: dict[str, Any] = {"name": layer.name, "pixel_size": px, "pixel_size_source": source,
                                "model": grainlab_metadata(layer).get("model"),
                                "labels_path": str(getattr(getattr(layer, "source", None), "path", "") or "")}
        image = self.image_combo.current_layer()
        if image is not None:
            info["image"] = _data(image)
            info["image_path"] = str(getattr(image.source, "path", "") or "") or f"layer {image.name}"
        else:
            info["image_note"] = "no image layer was chosen: the overlay shows the grains alone"
        twins = self.twin_layer()
        if twins is not None:
            info["twins"] = self.twin_source()  # copied by the job
            info["twins_source"] = f"layer {twins.name}"
        return self._run(report_job, path, labels, info, description="Saving the report",
                         done=lambda p: show_info(f"Wrote the report {p}"))

    def export_rois(self, path: str | Path | None = None) -> GeneratorTask | None:
        """Write one ImageJ ROI per grain of the current labels layer (off the main thread); the task, or None."""
        picked = self._labels()
        if picked is None:
            return None
        path = self.ask_roi_path() if path is None else Path(path)
        if path is None:
            return None
        _, labels = picked
        return self._run(roi_job, path, labels, self.dock.pixel_size, description="Exporting ROIs",
                         done=lambda v: show_info(f"Wrote {v[1]} grain ROIs to {v[0]}"))
