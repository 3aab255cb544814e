"""The *Measure* dock: grain statistics of a Labels layer.

For the chosen Labels layer (grain instances, e.g. ``<image> grains`` from the Predict dock or
hand-annotated grains) the dock shows

* a summary: number of grains (inside the field / cut by its edge), mean and median equivalent
  diameter, and the ASTM E112 grain size number G by the planimetric (Jeffries) method, in which
  grains cut by the field edge count one half (G needs the pixel size);
* a histogram of the equivalent diameters (µm, or px without a pixel size);
* a sortable per-grain table (thousands of rows; a click selects the grain in the layer, a
  double click also centres the view on it);
* *Export CSV…* (written atomically, units in the header).

The pixel size comes from the layer (its metadata or scale), or from the TIFF it was opened
from (SEM vendor tags via tifffile), or is typed in. The measurement runs off the main thread
and follows edits of the layer (throttled) while *Auto* is on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..._sample_data import grain_features
from ...core.measure import astm_grain_size, grain_table, summarize, write_table_csv
from .._layers import LayerCombo, layer_pixel_size, pixel_size_spin
from ..workers import LatestOnlyRunner, report_error, shutdown_on_destroy

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["GrainTableModel", "Measurement", "MeasureWidget", "measure_labels"]

ERROR_STYLE = "color: #f0524f;"
HINT_STYLE = "color: #999999;"
THROTTLE_MS = 400
MAX_BINS = 60

#: table columns shown, with their headers ({u}: the length unit)
COLUMNS = (
    ("label", "label"),
    ("equivalent_diameter", "⌀ eq. [{u}]"),
    ("area", "area [{u}²]"),
    ("aspect_ratio", "aspect"),
    ("orientation", "orient. [°]"),
    ("major_axis_length", "major [{u}]"),
    ("minor_axis_length", "minor [{u}]"),
    ("centroid_y", "y [{u}]"),
    ("centroid_x", "x [{u}]"),
    ("touches_border", "edge"),
)


# ============================================================================ worker side
@dataclass(frozen=True)
class Measurement:
    """Everything the dock shows for one labels array."""

    table: dict[str, np.ndarray]
    summary: dict[str, Any]
    astm: dict[str, float]
    pixel_size: float | None
    shape: tuple[int, int]
    elapsed: float
    layer_id: int = 0

    @property
    def unit(self) -> str:
        return "µm" if self.pixel_size else "px"


def measure_labels(labels: np.ndarray, pixel_size: float | None, layer_id: int = 0) -> Measurement:
    """Grain table, summary and ASTM E112 numbers of ``labels`` (runs in a worker thread)."""
    t0 = time.perf_counter()
    labels = np.asarray(labels)
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    table = grain_table(labels, pixel_size)
    summary = summarize(labels, pixel_size)
    astm = astm_grain_size(labels, pixel_size)
    return Measurement(table, summary, astm, pixel_size, tuple(labels.shape), time.perf_counter() - t0, layer_id)


# ============================================================================ table model
class GrainTableModel(QAbstractTableModel):
    """A grain table (dict of equal-length arrays) for a QTableView; sorts with numpy."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cols: list[tuple[str, str]] = []
        self._table: dict[str, np.ndarray] = {}
        self._order = np.zeros(0, dtype=np.int64)
        self._sort: tuple[int, Qt.SortOrder] | None = None

    def set_table(self, table: dict[str, np.ndarray], unit: str) -> None:
        self.beginResetModel()
        self._table = table
        self._cols = [(key, head.format(u=unit)) for key, head in COLUMNS if key in table]
        n = len(table["label"]) if "label" in table else 0
        self._order = np.arange(n)
        self.endResetModel()
        if self._sort is not None:
            self.sort(*self._sort)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 (Qt)
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 (Qt)
        return 0 if parent.isValid() else len(self._cols)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        key = self._cols[index.column()][0]
        value = self._table[key][self._order[index.row()]]
        if role == Qt.ItemDataRole.DisplayRole:
            if key == "label":
                return str(int(value))
            if key == "touches_border":
                return "yes" if value else ""
            return f"{float(value):.4g}"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 (Qt)
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self._cols[section][1] if section < len(self._cols) else None
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal:
            return {"touches_border": "the grain is cut by the image edge (counts ½ for ASTM G)",
                    "orientation": "major-axis direction, counter-clockwise from +x",
                    "aspect_ratio": "major / minor axis of the equivalent ellipse"}.get(self._cols[section][0])
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self._cols):
            return
        self._sort = (column, order)
        values = np.asarray(self._table[self._cols[column][0]])
        self.layoutAboutToBeChanged.emit()
        order_idx = np.argsort(values, kind="stable")
        if order == Qt.SortOrder.DescendingOrder:
            order_idx = order_idx[::-1]
        self._order = order_idx
        self.layoutChanged.emit()

    def label_at(self, row: int) -> int | None:
        if 0 <= row < len(self._order):
            return int(self._table["label"][self._order[row]])
        return None

    def row_of(self, label: int) -> int | None:
        hits = np.nonzero(self._table["label"][self._order] == label)[0] if len(self._order) else []
        return int(hits[0]) if len(hits) else None


# ============================================================================ histogram
class SizeHistogram(QWidget):
    """Matplotlib histogram of equivalent diameters, in the colours of napari's theme."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 2.0), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(150)
        self.axes = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.colors = {"bg": "#262930", "fg": "#f0f1f2", "bar": "#6c9bd2", "mean": "#f0a63c"}
        self.n_bars = 0

    def set_theme(self, theme_name: str) -> None:
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(theme_name)
            self.colors.update(bg=theme.background.as_hex(), fg=theme.text.as_hex())
        except Exception:  # noqa: BLE001 - unknown theme: keep the defaults
            pass

    def plot(self, diameters: np.ndarray | None, unit: str = "px") -> None:
        ax, c = self.axes, self.colors
        ax.clear()
        self.figure.set_facecolor(c["bg"])
        ax.set_facecolor(c["bg"])
        for spine in ax.spines.values():
            spine.set_color(c["fg"])
        ax.tick_params(colors=c["fg"], labelsize=8)
        ax.set_xlabel(f"equivalent diameter ({unit})", color=c["fg"], fontsize=9)
        ax.set_ylabel("grains", color=c["fg"], fontsize=9)
        self.n_bars = 0
        d = np.asarray(diameters if diameters is not None else [], dtype=float)
        d = d[np.isfinite(d)]
        if d.size:
            edges = np.histogram_bin_edges(d, bins="auto")
            if len(edges) - 1 > MAX_BINS:
                edges = np.linspace(d.min(), d.max(), MAX_BINS + 1)
            if len(edges) < 2 or edges[-1] <= edges[0]:
                edges = np.array([d.min() - 0.5, d.max() + 0.5])
            counts, _, patches = ax.hist(d, bins=edges, color=c["bar"], edgecolor=c["bg"], linewidth=0.5)
            self.n_bars = len(patches)
            mean = float(d.mean())
            ax.axvline(mean, color=c["mean"], linewidth=1.5)
            ax.text(mean, max(counts) * 0.97, f" mean {_fmt(mean)}", color=c["mean"], fontsize=8, va="top")
        else:
            ax.text(0.5, 0.5, "no grains", transform=ax.transAxes, ha="center", va="center", color=c["fg"])
        self.canvas.draw_idle()


# ============================================================================ widget
def _fmt(value: Any, digits: int = 3) -> str:
    """A measurement for reading: ``digits`` significant digits (trailing zeros kept), no exponent."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    if abs(v) >= 10 ** digits:
        return f"{v:,.0f}"
    return f"{v:#.{digits}g}".rstrip(".")


class MeasureWidget(QWidget):
    """Dock with the grain table, size histogram and ASTM E112 grain size of a Labels layer.

    Scripts and tests drive it with :meth:`set_labels_layer`, :meth:`set_pixel_size`,
    :meth:`refresh` and :meth:`export_csv`; the save dialog is :meth:`ask_csv_path`.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.setMinimumWidth(340)
        self.measurement: Measurement | None = None
        self._pixel_typed = False
        self._watched: Layer | None = None
        self._last_csv: Path | None = None

        self.labels_combo = LayerCombo(self.viewer, Labels, "(no labels layer)")
        self.labels_combo.setToolTip("grain instances to measure (each grain one label, 0 = background)")
        self.labels_combo.layer_changed.connect(self._on_layer_changed)
        self.pixel_spin = pixel_size_spin("<p>Size of one pixel in µm. Filled in from the layer (metadata or scale) "
                                          "or its source TIFF (SEM vendor tags, ImageJ, resolution tags); a typed "
                                          "value wins. Needed for µm and ASTM G.</p>")
        self.pixel_spin.valueChanged.connect(self._on_pixel_typed)
        self.pixel_hint = QLabel("")
        self.pixel_hint.setStyleSheet(HINT_STYLE)

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
        buttons.addWidget(self.export_button)

        self.summary_label = QLabel("No labels layer.")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_label.setToolTip(
            "<p>ASTM E112 planimetric (Jeffries) method: grains inside the field count 1, grains cut by the "
            "field edge count ½; N<sub>A</sub> = counted grains per mm² at 1×, "
            "G = 3.321928 log<sub>10</sub> N<sub>A</sub> − 2.954.</p>")

        self.histogram = SizeHistogram()
        self.histogram.set_theme(getattr(self.viewer, "theme", "dark"))
        self.table_model = GrainTableModel(self)
        self.table_view = QTableView()
        self.table_view.setModel(self.table_model)
        self.table_view.setSortingEnabled(True)
        self.table_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table_view.verticalHeader().setVisible(False)
        self.table_view.verticalHeader().setDefaultSectionSize(20)
        self.table_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table_view.horizontalHeader().setDefaultSectionSize(72)
        self.table_view.horizontalHeader().setStretchLastSection(True)
        self.table_view.selectionModel().currentRowChanged.connect(self._on_row_changed)
        self.table_view.doubleClicked.connect(self._on_row_double_clicked)
        self.table_view.setToolTip("click a grain to select it in the layer, double-click to centre the view on it")
        self.only_selected = QCheckBox("Show only the selected grain")
        self.only_selected.setToolTip("hide every other grain in the labels layer")
        self.only_selected.toggled.connect(self._on_only_selected)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Labels", self.labels_combo)
        form.addRow("Pixel size", self.pixel_spin)
        form.addRow("", self.pixel_hint)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.histogram)
        splitter.addWidget(self.table_view)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.summary_label)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.only_selected)

        self._throttle = QTimer(self)
        self._throttle.setSingleShot(True)
        self._throttle.setInterval(THROTTLE_MS)
        self._throttle.timeout.connect(self.refresh)
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
        self.pixel_spin.setValue(float(value or 0.0))

    @property
    def pixel_size(self) -> float | None:
        v = float(self.pixel_spin.value())
        return v if v > 0 else None

    def refresh(self) -> None:
        """Measure the chosen layer now (off the main thread)."""
        self._throttle.stop()
        layer = self.current_layer()
        if layer is None:
            self._runner.discard()
            self._clear("No labels layer: predict grains or open a label image.")
            return
        data = layer.data[0] if layer.multiscale else layer.data
        try:
            labels = np.array(data, copy=True)
        except (MemoryError, ValueError, TypeError) as exc:
            self._clear(f"Cannot read {layer.name}: {exc}", error=True)
            return
        if labels.ndim != 2:
            self._runner.discard()
            self._clear(f"{layer.name} has {labels.ndim} dimensions; measuring needs one 2-D label image.",
                        error=True)
            return
        self._runner.submit(measure_labels, labels, self.pixel_size, id(layer))

    def schedule_refresh(self) -> None:
        """Measure again soon (edits in bursts cost one measurement per ``THROTTLE_MS``)."""
        if self.auto_check.isChecked() and not self._throttle.isActive():
            self._throttle.start()

    def ask_csv_path(self) -> Path | None:
        layer = self.current_layer()
        name = (layer.name if layer is not None else "grains").replace("/", "_").replace(" ", "_")
        start = self._last_csv.parent / f"{name}.csv" if self._last_csv else Path.home() / f"{name}.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export the grain table", str(start), "CSV (*.csv)")
        if not path:
            return None
        path = Path(path)
        return path if path.suffix else path.with_suffix(".csv")

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

    # ------------------------------------------------------------------ layer
    def _on_layer_changed(self, layer: Layer | None) -> None:
        self._watch(layer)
        if not self._pixel_typed:
            value, source = layer_pixel_size(layer) if layer is not None else (None, "")
            self.pixel_spin.blockSignals(True)
            self.pixel_spin.setValue(value or 0.0)
            self.pixel_spin.blockSignals(False)
            self.pixel_hint.setText(f"from the {source}" if value else
                                    ("not in the metadata: type it in for µm and ASTM G" if layer else ""))
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

    def _on_pixel_typed(self, value: float) -> None:
        self._pixel_typed = value > 0
        if self._pixel_typed:
            self.pixel_hint.setText("typed in")
            self.refresh()
        else:
            self._on_layer_changed(self.current_layer())

    def _on_theme(self, *_: Any) -> None:
        self.histogram.set_theme(self.viewer.theme)
        m = self.measurement
        self.histogram.plot(m.table["equivalent_diameter"] if m else None, m.unit if m else "px")

    # ---------------------------------------------------------------- results
    def _clear(self, text: str, error: bool = False) -> None:
        self.measurement = None
        self.summary_label.setStyleSheet(ERROR_STYLE if error else "")
        self.summary_label.setText(text)
        self.table_model.set_table({}, "px")
        self.histogram.plot(None)
        self.export_button.setEnabled(False)

    def _failed(self, error: BaseException) -> None:
        self._clear(f"Measuring failed: {error}", error=True)
        if not isinstance(error, ValueError):
            report_error(error, "Measuring grains")

    def _show(self, m: Measurement) -> None:
        layer = self.current_layer()
        if layer is None or id(layer) != m.layer_id:
            return
        self.measurement = m
        unit = m.unit
        s, a = m.summary, m.astm
        n = int(a["grains"])
        lines = [f"<b>{n}</b> grain{'' if n == 1 else 's'} ({int(a['grains_inside'])} inside, "
                 f"{int(a['grains_on_edge'])} on the edge)",
                 f"mean ⌀ <b>{_fmt(s['mean_diameter'])}</b> {unit} · median {_fmt(s['median_diameter'])} {unit}"]
        if m.pixel_size:
            lines.append(f"ASTM E112 G = <b>{_fmt(a['astm_g'], 3)}</b> "
                         f"({_fmt(a['grains_per_mm2'], 4)} grains/mm², planimetric)")
        else:
            lines.append("ASTM E112 G = — <span style='color:#999999'>(needs the pixel size)</span>")
        self.summary_label.setStyleSheet("")
        self.summary_label.setText("<br>".join(lines))
        self.table_model.set_table(m.table, unit)
        self._fit_columns()
        self.histogram.plot(m.table["equivalent_diameter"], unit)
        self.export_button.setEnabled(n > 0)
        self._update_features(layer, m)

    def _fit_columns(self) -> None:
        """Columns as wide as their headers (measuring every cell would be slow for large tables)."""
        header = self.table_view.horizontalHeader()
        metrics = header.fontMetrics()
        for col in range(self.table_model.columnCount()):
            text = str(self.table_model.headerData(col, Qt.Orientation.Horizontal) or "")
            header.resizeSection(col, max(56, metrics.horizontalAdvance(text) + 36))

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
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; viewer.camera before
        camera = scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera
        camera.center = tuple(world[-2:])

    def _on_only_selected(self, on: bool) -> None:
        layer = self.current_layer()
        if layer is not None:
            layer.show_selected_label = on

    def _on_export_clicked(self) -> None:
        self.export_csv()
