"""The *Measure* dock: grain statistics of a Labels layer.

For the chosen Labels layer (grain instances, e.g. ``<image> grains`` from the Predict dock or
hand-annotated grains) the dock shows

* a summary: number of grains (inside the field / cut by its edge), mean and median equivalent
  diameter, and the ASTM E112 grain size number G by the planimetric (Jeffries) method, in which
  grains cut by the field edge count one half (G needs the pixel size);
* a histogram of the equivalent diameters (µm, or px without a pixel size), and the distribution plot:
  the grain-area histogram on a log axis with its log-normal fit (and the intercept-length histogram for
  the intercept method);
* a sortable per-grain table (thousands of rows; a click selects the grain in the layer, a
  double click also centres the view on it);
* *Export CSV…* (written atomically, units in the header), *Save report…* (HTML or PDF, see
  :mod:`napari_grainlab.core.report`) and *Export ROI zip…* (ImageJ / Fiji ROIs);
* with a twin-boundary layer chosen (role ``twin_boundary``, or a Labels mask), G with twins excluded
  next to G with twins counted.

The pixel size comes from the layer (its metadata or scale), or from the TIFF it was opened
from (SEM vendor tags via tifffile), or is typed in. The measurement runs off the main thread
and follows edits of the layer (throttled) while *Auto* is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QModelIndex, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...core.measure import grain_features, write_table_csv
from .._layers import LayerCombo, layers_with_role, role_metadata
from .._napari_compat import center_camera
from .._widgets import (
    PixelSizeInput,
    ask_save_file,
    docking_change,
    make_form,
    show_status,
    single_shot_timer,
    status_label,
)
from ..workers import LatestOnlyRunner, report_error, shutdown_on_destroy
from .distribution import DistributionPlot
from .histogram import SizeHistogram
from .measurement import METHODS, Measurement, measure_layer_data, summary_html
from .report import ReportPanel
from .table import GrainTableModel, fit_columns, grain_table_view

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["MeasureWidget"]

THROTTLE_MS = 400


class MeasureWidget(QWidget):
    """Dock with the grain table, size histogram and ASTM E112 grain size of a Labels layer.

    Scripts and tests drive it with :meth:`set_labels_layer`, :meth:`set_pixel_size`,
    :meth:`refresh`, :meth:`export_csv`, :meth:`save_report` and :meth:`export_rois`; the save dialog is
    :meth:`ask_csv_path` (the report's and the ROI zip's are those of :attr:`report_panel`).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.setMinimumWidth(340)
        self.measurement: Measurement | None = None
        self._watched: Layer | None = None
        self._last_csv: Path | None = None

        self.labels_combo = LayerCombo(self.viewer, Labels, "(no labels layer)")
        self.labels_combo.setToolTip("grain instances to measure (each grain one label, 0 = background)")
        self.labels_combo.layer_changed.connect(self._on_layer_changed)
        self.pixel = PixelSizeInput("<p>Size of one pixel in µm. Filled in from the layer (metadata or scale) or "
                                    "its source TIFF (SEM vendor tags, ImageJ, resolution tags); a typed value wins. "
                                    "Needed for µm and ASTM G.</p>",
                                    missing="not in the metadata: type it in for µm and ASTM G", parent=self)
        self.pixel.typed_changed.connect(self._on_pixel_typed)
        self.pixel_spin, self.pixel_hint = self.pixel.spin, self.pixel.hint

        self.method_combo = QComboBox()
        for label, name in METHODS:
            self.method_combo.addItem(label, name)
        self.method_combo.setToolTip(
            "<p>ASTM E112 method for G and its 95 % confidence interval: planimetric over 3 × 3 sub-fields, "
            "lineal intercept on test lines in four directions (0°, 45°, 90°, 135°), or Abrams' three "
            "concentric circles at several placements (see docs/measure.md).</p>")
        self.method_combo.currentIndexChanged.connect(lambda *_: self.refresh())
        self.pattern_button = QPushButton("Show test pattern")
        self.pattern_button.setToolTip("add the method's sub-fields, test lines or circles as a Shapes layer")
        self.pattern_button.clicked.connect(self.show_test_pattern)
        self.pattern_button.setEnabled(False)

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("measure the layer again")
        self.refresh_button.clicked.connect(self.refresh)
        self.auto_check = QCheckBox("Auto")
        self.auto_check.setChecked(True)
        self.auto_check.setToolTip("measure again whenever the labels change (e.g. while painting)")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("save the per-grain table as CSV (units in the header)")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.export_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.auto_check)
        buttons.addStretch(1)
        buttons.addWidget(self.pattern_button)

        self.summary_label = status_label("No labels layer.")
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setToolTip(
            "<p>ASTM E112 planimetric (Jeffries) method: grains inside the field count 1, grains cut by the "
            "field edge count ½; N<sub>A</sub> = counted grains per mm² at 1×, "
            "G = 3.321928 log<sub>10</sub> N<sub>A</sub> − 2.954.</p>")

        self.histogram = SizeHistogram()
        self.histogram.set_theme(getattr(self.viewer, "theme", "dark"))
        self.distribution = DistributionPlot()
        self.distribution.set_theme(getattr(self.viewer, "theme", "dark"))
        self.report_panel = ReportPanel(self.viewer, self)
        self.report_panel.twins_changed.connect(self.refresh)
        self.report_panel.add_button(self.export_button)
        self.plots = QTabWidget()
        self.plots.setDocumentMode(True)
        self.plots.addTab(self.histogram, "Diameters")
        self.plots.addTab(self.distribution, "Area, intercepts")
        self.plots.setTabToolTip(1, "grain-area histogram (log axis) with its log-normal fit; with the intercept "
                                    "method also the intercept lengths")
        self.table_model = GrainTableModel(self)
        self.table_view = grain_table_view(self.table_model)
        self.table_view.selectionModel().currentRowChanged.connect(self._on_row_changed)
        self.table_view.doubleClicked.connect(self._on_row_double_clicked)
        self.table_view.setToolTip("click a grain to select it in the layer, double-click to centre the view on it")
        self.only_selected = QCheckBox("Show only the selected grain")
        self.only_selected.setToolTip("hide every other grain in the labels layer")
        self.only_selected.toggled.connect(self._on_only_selected)

        form = make_form()
        form.addRow("Labels", self.labels_combo)
        form.addRow("Pixel size", self.pixel_spin)
        form.addRow("", self.pixel_hint)
        form.addRow("Method", self.method_combo)
        form.addRow("Twins", self.report_panel.twins_combo)
        form.addRow("Image", self.report_panel.image_combo)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.plots)
        splitter.addWidget(self.table_view)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.report_panel)
        layout.addWidget(self.summary_label)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.only_selected)

        self._throttle = single_shot_timer(self, THROTTLE_MS, self.refresh)
        self._runner = LatestOnlyRunner(self)
        self._runner.result.connect(self._show)
        self._runner.failed.connect(self._failed)
        self.destroyed.connect(shutdown_on_destroy(self._runner))
        self.viewer.events.theme.connect(self._on_theme)

        self._on_layer_changed(self.labels_combo.current_layer())

    # ---------------------------------------------------------------- public
    @property
    def busy(self) -> bool:
        """A measurement is running or scheduled."""
        return self._runner.is_busy or self._throttle.isActive()

    def current_layer(self) -> Layer | None:
        return self.labels_combo.current_layer()

    def set_labels_layer(self, layer: Layer) -> None:
        self.labels_combo.set_current_layer(layer)

    def set_pixel_size(self, value: float | None) -> None:
        """Type a pixel size in µm (None or 0: the layer's own)."""
        self.pixel.set_value(value)

    @property
    def pixel_size(self) -> float | None:
        return self.pixel.value

    @property
    def method(self) -> str:
        """The ASTM E112 method chosen (``planimetric``, ``intercept`` or ``circles``)."""
        return self.method_combo.currentData()

    def set_method(self, name: str) -> None:
        index = self.method_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown method {name!r}")
        self.method_combo.setCurrentIndex(index)

    def show_test_pattern(self) -> Layer | None:
        """Add (or update) a Shapes layer with the current method's test pattern over the labels layer."""
        from ...core.errors import GrainLabError
        from ...core.grainsize import test_pattern

        layer = self.current_layer()
        if layer is None or self.measurement is None:
            return None
        data = layer.data[0] if layer.multiscale else layer.data
        try:
            pattern = test_pattern(tuple(self.measurement.shape), self.method, labels=np.asarray(data))
        except GrainLabError as exc:
            show_error(f"Test pattern: {exc}")
            return None
        if pattern["kind"] == "lines":
            shapes, kind = [np.asarray(seg, dtype=float) for seg in pattern["lines"]], "line"
        elif pattern["kind"] == "circles":
            shapes = [np.array([[y, x], [r, r]], dtype=float) for y, x, r in pattern["circles"]]
            kind = "ellipse"
        else:
            shapes = [np.asarray(rect, dtype=float) for rect in pattern["rectangles"]]
            kind = "rectangle"
        meta = role_metadata("measurement", layer.name, pattern=self.method)
        for old in layers_with_role(self.viewer, "measurement", layer.name):
            if old.metadata.get("grainlab", {}).get("pattern"):
                self.viewer.layers.remove(old)
        return self.viewer.add_shapes(shapes, shape_type=kind, name=f"{layer.name} {self.method} pattern",
                                      edge_color="yellow", face_color="transparent", edge_width=1.5,
                                      scale=tuple(layer.scale)[-2:], translate=tuple(layer.translate)[-2:],
                                      metadata=meta)

    def save_report(self, path: str | Path | None = None):
        """Save the report on the chosen layer (HTML or PDF by the suffix; None: ask); the running task."""
        return self.report_panel.save_report(path)

    def export_rois(self, path: str | Path | None = None):
        """Save the grains of the chosen layer as an ImageJ ROI zip (None: ask); the running task."""
        return self.report_panel.export_rois(path)

    def refresh(self) -> None:
        """Measure the chosen layer now (off the main thread)."""
        self._throttle.stop()
        layer = self.current_layer()
        if layer is None:
            self._runner.discard()
            self._clear("No labels layer: predict grains or open a label image.")
            return
        data = layer.data[0] if layer.multiscale else layer.data
        ndim = len(getattr(data, "shape", ()))
        if ndim != 2:
            self._runner.discard()
            self._clear(f"{layer.name} has {ndim} dimensions; measuring needs one 2-D label image.", error=True)
            return
        # the snapshot of the labels (and twin boundaries) is taken in the worker: copying a large label
        # image here would stall the viewer (see measure_layer_data)
        self._runner.submit(measure_layer_data, data, repr(layer.name), self.pixel_size, id(layer), self.method,
                            self.report_panel.twin_source())

    def schedule_refresh(self) -> None:
        """Measure again soon (edits in bursts cost one measurement per ``THROTTLE_MS``)."""
        if self.auto_check.isChecked() and not self._throttle.isActive():
            self._throttle.start()

    def ask_csv_path(self) -> Path | None:
        layer = self.current_layer()
        name = (layer.name if layer is not None else "grains").replace("/", "_").replace(" ", "_")
        start = self._last_csv.parent / f"{name}.csv" if self._last_csv else Path.home() / f"{name}.csv"
        return ask_save_file(self, "Export the grain table", start, "CSV (*.csv)", ".csv")

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the shown grain table as CSV (atomically); None when there is none or it failed."""
        m = self.measurement
        if m is None:
            show_error("Nothing to export: measure a labels layer first")
            return None
        path = self.ask_csv_path() if path is None else Path(path)
        if path is None:
            return None
        try:
            write_table_csv(path, m.table, m.pixel_size)
        except OSError as exc:
            show_error(f"Cannot write {path}: {exc.strerror or exc}")
            return None
        self._last_csv = path
        show_info(f"Wrote {len(m.table['label'])} grains to {path}")
        return path

    # ------------------------------------------------------------------ docking
    def event(self, ev) -> bool:
        change = docking_change(self, ev)
        if change == "undocked":  # stop measuring the layer now
            self._on_undocked()
        elif change == "docked" and hasattr(self, "labels_combo"):  # (not while being built with a parent)
            self._watch(self.labels_combo.current_layer())  # docked anew: follow the layer (else: no change)
        return super().event(ev)

    def _on_undocked(self) -> None:
        """The dock was removed: no more measurements of its layer (pending or on its edits)."""
        self._throttle.stop()
        self._runner.discard()
        self._watch(None)

    # ------------------------------------------------------------------ layer
    def _on_layer_changed(self, layer: Layer | None) -> None:
        self._watch(layer)
        self.pixel.show_layer(layer)
        self.report_panel.follow_labels(layer)
        self.measurement = None
        self.refresh()

    def _watch(self, layer: Layer | None) -> None:
        old, self._watched = self._watched, layer
        for lay, connect in ((old, False), (layer, True)):
            if lay is None:
                continue
            for name in ("data", "paint", "labels_update"):
                emitter = getattr(lay.events, name, None)
                if emitter is None:
                    continue
                if connect:
                    emitter.connect(self._on_data_changed)
                else:
                    emitter.disconnect(self._on_data_changed)

    def _on_data_changed(self, *_: Any) -> None:
        try:
            self.schedule_refresh()
        except RuntimeError:  # the dock is gone
            pass

    def _on_pixel_typed(self) -> None:
        if self.pixel.typed:
            self.refresh()
        else:
            self._on_layer_changed(self.current_layer())

    def _on_theme(self, *_: Any) -> None:
        self.histogram.set_theme(self.viewer.theme)
        self.distribution.set_theme(self.viewer.theme)
        m = self.measurement
        self.histogram.plot(m.table["equivalent_diameter"] if m else None, m.unit if m else "px")

    # ---------------------------------------------------------------- results
    def _clear(self, text: str, error: bool = False) -> None:
        self.measurement = None
        show_status(self.summary_label, text, error)
        self.table_model.set_table({}, "px")
        self.histogram.plot(None)
        self.distribution.plot(None)
        self.export_button.setEnabled(False)
        self.report_panel.set_enabled(False)

    def _failed(self, error: BaseException) -> None:
        self._clear(f"Measuring failed: {error}", error=True)
        if not isinstance(error, ValueError):
            report_error(error, "Measuring grains")

    def _show(self, m: Measurement) -> None:
        layer = self.current_layer()
        if layer is None or id(layer) != m.layer_id:
            return
        self.measurement = m
        show_status(self.summary_label, summary_html(m))
        self.table_model.set_table(m.table, m.unit)
        fit_columns(self.table_view)
        self.histogram.plot(m.table["equivalent_diameter"], m.unit)
        self.distribution.plot((m.grain_size or {}).get("distributions"), m.method)
        self.export_button.setEnabled(int(m.astm["grains"]) > 0)
        self.report_panel.set_enabled(int(m.astm["grains"]) > 0)
        self.pattern_button.setEnabled(int(m.astm["grains"]) > 0)
        self._update_features(layer, m)

    @staticmethod
    def _update_features(layer: Layer, m: Measurement) -> None:
        """Give the layer the measured table as features (hovering shows a grain's numbers), unless it
        carries other features of its own."""
        current = layer.features
        ours = len(current.columns) == 0 or {"index", "equivalent_diameter", "area"} <= set(current.columns)
        if ours and len(m.table["label"]):
            layer.features = grain_features(m.table)

    # -------------------------------------------------------------- selection
    def _on_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        layer = self.current_layer()
        label = self.table_model.label_at(current.row())
        if layer is None or label is None:
            return
        layer.selected_label = label

    def _on_row_double_clicked(self, index: QModelIndex) -> None:
        layer, m = self.current_layer(), self.measurement
        label = self.table_model.label_at(index.row())
        if layer is None or m is None or label is None:
            return
        row = int(np.nonzero(m.table["label"] == label)[0][0])
        scale = m.pixel_size or 1.0
        yx = (float(m.table["centroid_y"][row]) / scale, float(m.table["centroid_x"][row]) / scale)
        world = layer.data_to_world(yx)
        center_camera(self.viewer, world)

    def _on_only_selected(self, on: bool) -> None:
        layer = self.current_layer()
        if layer is not None:
            layer.show_selected_label = on

    def _on_export_clicked(self) -> None:
        self.export_csv()
