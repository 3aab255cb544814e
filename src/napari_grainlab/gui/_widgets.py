"""The styles and small widgets every dock uses, so that the docks look and behave alike.

Styles: :data:`ERROR_STYLE` (a status line after a failure) and :data:`HINT_STYLE` (a grey note
under an editor).  Widgets: :func:`hline`, :func:`section` (a collapsible group),
:func:`scroll_area`, :func:`make_form`, :func:`status_label` (with :func:`show_status`),
:func:`progress_bar`, :func:`single_shot_timer` and :class:`PixelSizeInput` (the pixel size typed
in or read from a layer).  The dialogs docks offer as replaceable methods are built on
:func:`ask_folder`, :func:`ask_open_file`, :func:`ask_save_file` and :func:`confirm`.  Text:
:func:`fmt_number`; napari's colours: :func:`napari_theme`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QFrame,
    QLabel,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QWidget,
)
from superqt import QCollapsible

from ._layers import layer_pixel_size, pixel_size_spin

if TYPE_CHECKING:
    from napari.layers import Layer

__all__ = ["ERROR_STYLE", "HINT_STYLE", "PixelSizeInput", "ask_folder", "ask_open_file", "ask_save_file", "confirm",
           "fmt_number", "hline", "make_form", "napari_theme", "progress_bar", "scroll_area", "section", "show_status",
           "single_shot_timer", "status_label"]

ERROR_STYLE = "color: #f0524f;"
HINT_STYLE = "color: #999999;"


# ------------------------------------------------------------------------------------------- layout
def hline() -> QFrame:
    """A sunken horizontal line between the parts of a dock."""
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def section(title: str, widget: QWidget, expanded: bool = False) -> QCollapsible:
    """``widget`` in a collapsible section (▼ / ▶), collapsed unless ``expanded``."""
    box = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
    box.setDuration(120)
    box.addWidget(widget)
    if expanded:
        box.expand(animate=False)
    return box


def scroll_area(widget: QWidget, area: QScrollArea | None = None) -> QScrollArea:
    """``area`` (default: a new scroll area) scrolling ``widget`` vertically: no frame, no
    horizontal scroll bar, the widget as wide as the dock."""
    area = QScrollArea() if area is None else area
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area


def make_form(parent: QWidget | None = None) -> QFormLayout:
    """A form layout (on ``parent``, if given) without margins whose editors take the width left."""
    form = QFormLayout() if parent is None else QFormLayout(parent)
    form.setContentsMargins(0, 0, 0, 0)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


def status_label(text: str = "") -> QLabel:
    """A word-wrapped status line whose text can be selected (and copied)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def show_status(label: QLabel, text: str, error: bool = False) -> None:
    """Show ``text`` in ``label``, in the error colour when ``error``."""
    label.setStyleSheet(ERROR_STYLE if error else "")
    label.setText(text)


def progress_bar() -> QProgressBar:
    """An idle progress bar without text, for a :class:`~napari_grainlab.gui.workers.GeneratorTask` to drive."""
    bar = QProgressBar()
    bar.setRange(0, 1)
    bar.setValue(0)
    bar.setFormat("")
    bar.setTextVisible(True)
    return bar


def single_shot_timer(parent: QObject, interval_ms: int, slot: Callable[[], Any]) -> QTimer:
    """A single-shot timer of ``parent`` calling ``slot`` (debouncing and throttling: ``start()``
    restarts it, ``if not timer.isActive(): timer.start()`` lets the first request wait)."""
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(interval_ms)
    timer.timeout.connect(slot)
    return timer


def docking_change(widget: QWidget, event: QEvent) -> str | None:
    """What ``event`` did to a dock ``widget``: ``"docked"`` (a ``ParentChange`` that gave it a parent),
    ``"undocked"`` (one that took a docked widget out: napari's ``remove_dock_widget`` only unparents the
    widget, and whether it is then destroyed depends on the Qt binding), else None. The widget's ``_docked``
    attribute keeps the state."""
    if event.type() != QEvent.Type.ParentChange:
        return None
    if widget.parent() is not None:
        widget._docked = True
        return "docked"
    if getattr(widget, "_docked", False):
        widget._docked = False
        return "undocked"
    return None


class PixelSizeInput(QObject):
    """The pixel size (µm) of a dock: a spin box filled in from the chosen layer (its metadata,
    scale or source TIFF) until the user types a value, and a grey hint saying where the value
    came from.  ``missing`` is the hint for a layer that records none.

    ``typed_changed()`` is emitted whenever the user (or :meth:`set_value`) changes the value:
    :attr:`typed` is then whether a value is typed in (0 clears it)."""

    typed_changed = Signal()

    def __init__(self, tooltip: str, missing: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._missing = missing
        self.typed = False
        self.spin = pixel_size_spin(tooltip)
        self.spin.valueChanged.connect(self._on_value_changed)
        self.hint = QLabel("")
        self.hint.setStyleSheet(HINT_STYLE)
        self.hint.setWordWrap(True)

    @property
    def value(self) -> float | None:
        """The pixel size shown, None when it is unknown."""
        v = float(self.spin.value())
        return v if v > 0 else None

    def set_value(self, value: float | None) -> None:
        """Type in ``value`` (None or 0: use the layer's own)."""
        self.spin.setValue(float(value or 0.0))

    def show_layer(self, layer: Layer | None, note: str | None = None) -> None:
        """Show the pixel size of ``layer`` (None: no layer) unless one is typed in; ``note``, if
        given, is the hint instead of where the value came from."""
        if self.typed:
            return
        value, source = layer_pixel_size(layer) if layer is not None else (None, "")
        self.spin.blockSignals(True)
        self.spin.setValue(value or 0.0)
        self.spin.blockSignals(False)
        if note is not None:
            self.hint.setText(note)
        elif value:
            self.hint.setText(f"from the {source}")
        else:
            self.hint.setText(self._missing if layer is not None else "")

    def _on_value_changed(self, value: float) -> None:
        self.typed = value > 0
        if self.typed:
            self.hint.setText("typed in")
        self.typed_changed.emit()


# ------------------------------------------------------------------------------------------ dialogs
def ask_folder(parent: QWidget, title: str, start: str | Path) -> Path | None:
    """An existing folder chosen in a dialog (None: cancelled)."""
    path = QFileDialog.getExistingDirectory(parent, title, str(start))
    return Path(path) if path else None


def ask_open_file(parent: QWidget, title: str, start: str | Path, filters: str) -> Path | None:
    """A file to open, chosen in a dialog (None: cancelled)."""
    path, _ = QFileDialog.getOpenFileName(parent, title, str(start), filters)
    return Path(path) if path else None


def ask_save_file(parent: QWidget, title: str, start: str | Path, filters: str, suffix: str) -> Path | None:
    """A file to write, chosen in a dialog (None: cancelled); a name without a suffix gets ``suffix``."""
    path, _ = QFileDialog.getSaveFileName(parent, title, str(start), filters)
    if not path:
        return None
    path = Path(path)
    return path if path.suffix else path.with_suffix(suffix)


def confirm(parent: QWidget, title: str, text: str, detail: str, action: str) -> bool:
    """Ask before something that replaces files: the button ``action`` or Cancel; whether ``action`` was chosen."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    box.setInformativeText(detail)
    chosen = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec_()
    return box.clickedButton() is chosen


# --------------------------------------------------------------------------------------------- text
def fmt_number(value: Any, digits: int = 3) -> str:
    """A number for reading: ``digits`` significant digits (trailing zeros kept), no exponent,
    thousands separated from ``10 ** digits`` on; ``—`` for None, NaN, infinity or no number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    if abs(v) >= 10 ** digits:
        return f"{v:,.0f}"
    return f"{v:#.{digits}g}".rstrip(".")


# ------------------------------------------------------------------------------------------- colours
def napari_theme(name: str) -> Any | None:
    """napari's theme ``name`` (``"system"``: the one the desktop uses), or None when it cannot be had."""
    try:
        from napari.utils.theme import get_theme

        if name == "system":
            from napari.utils.theme import get_system_theme

            name = get_system_theme()
        return get_theme(name)
    except Exception:  # noqa: BLE001 - an unknown or broken theme: the caller keeps its default colours
        return None
