"""The per-grain table of the Measure dock: a Qt model over a grain table (dict of arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

__all__ = ["COLUMNS", "GrainTableModel", "fit_columns", "grain_table_view"]

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

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
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

    def headerData(self, section: int, orientation: Qt.Orientation,
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


def grain_table_view(model: GrainTableModel) -> QTableView:
    """A sortable, single-row-selection view of ``model`` with compact rows."""
    view = QTableView()
    view.setModel(model)
    view.setSortingEnabled(True)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(20)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.horizontalHeader().setDefaultSectionSize(72)
    view.horizontalHeader().setStretchLastSection(True)
    return view


def fit_columns(view: QTableView) -> None:
    """Columns as wide as their headers (measuring every cell would be slow for large tables)."""
    model = view.model()
    header = view.horizontalHeader()
    metrics = header.fontMetrics()
    for col in range(model.columnCount()):
        text = str(model.headerData(col, Qt.Orientation.Horizontal) or "")
        header.resizeSection(col, max(56, metrics.horizontalAdvance(text) + 36))
