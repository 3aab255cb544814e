"""The model chooser of the Predict dock: a checkpoint path (typed, *Browse…* or the recent
list) checked by reading only its ``model.json`` (a pickle is never unpickled), and one line
describing the model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QMenu, QToolButton, QWidget

from ...core.models.checkpoint import CheckpointError, checkpoint_files, read_metadata
from .._settings import recent_checkpoints, remember_checkpoint
from .._widgets import ERROR_STYLE, HINT_STYLE, make_form, status_label

if TYPE_CHECKING:
    from .dock import PredictWidget

__all__ = ["ModelPanel", "describe_model"]


def describe_model(meta: dict) -> str:
    """One line about a model: its task, backbone, classes, best metric and epoch."""
    task = meta.get("task", "segment")
    parts = ["Segmentation" if task == "segment" else "Classification", str(meta.get("backbone", "?"))]
    classes = meta.get("classes") or []
    if task == "classify" and classes:
        parts.append(f"{len(classes)} classes: {', '.join(map(str, classes))}")
    metrics = meta.get("metrics") or {}
    for key, label in (("boundary_f1", "boundary F1"), ("macro_f1", "macro F1"), ("accuracy", "accuracy")):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            parts.append(f"{label} {value:.3f}")
            break
    epoch = meta.get("epoch")
    if isinstance(epoch, int):
        parts.append(f"epoch {epoch}")
    return " · ".join(parts)


class ModelPanel(QWidget):
    """Checkpoint path, *Browse…*, the recent list and the model's description.

    ``model_changed()`` is emitted after every :meth:`set_checkpoint` (the model may be gone:
    :attr:`checkpoint` is then None).  The file dialogs are the dock's methods.
    """

    model_changed = Signal()

    def __init__(self, dock: PredictWidget) -> None:
        super().__init__()
        self._dock = dock
        self.checkpoint: Path | None = None
        self.metadata: dict | None = None

        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("model folder (model.safetensors + model.json)")
        self.checkpoint_edit.setToolTip("<p>A GrainLab model: a folder with <tt>model.safetensors</tt> and "
                                        "<tt>model.json</tt> (a training run folder uses its <tt>best/</tt> "
                                        "model). Press Enter to check it.</p>")
        self.checkpoint_edit.editingFinished.connect(self._on_edit_finished)
        self.browse_button = QToolButton()
        self.browse_button.setText("Browse…")
        self.browse_button.setToolTip("choose a model folder (the arrow: choose model.json or model.safetensors)")
        self.browse_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        menu = QMenu(self.browse_button)
        menu.addAction("Model folder…", self._browse_folder)
        menu.addAction("Model file (model.json / .safetensors)…", self._browse_file)
        self.browse_button.setMenu(menu)
        self.browse_button.clicked.connect(self._browse_folder)
        metrics = self.browse_button.fontMetrics()
        self.browse_button.setMinimumWidth(metrics.horizontalAdvance("Browse…") + 34)  # text + menu arrow
        path_row = QHBoxLayout()
        path_row.setContentsMargins(0, 0, 0, 0)
        path_row.addWidget(self.checkpoint_edit, 1)
        path_row.addWidget(self.browse_button)

        self.recent_combo = QComboBox()
        self.recent_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.recent_combo.setMinimumContentsLength(10)
        self.recent_combo.setToolTip("models used recently")
        self.recent_combo.activated.connect(self.choose_recent)
        self.model_info = status_label("No model chosen.")
        self.model_info.setStyleSheet(HINT_STYLE)

        form = make_form(self)
        form.addRow(path_row)
        form.addRow("Recent", self.recent_combo)
        form.addRow(self.model_info)
        self.fill_recent()

    # ----------------------------------------------------------------- choosing
    def _browse_folder(self) -> None:
        path = self._dock.ask_checkpoint_folder()
        if path is not None:
            self.set_checkpoint(path)

    def _browse_file(self) -> None:
        path = self._dock.ask_checkpoint_file()
        if path is not None:
            self.set_checkpoint(path)

    def _typed_new_path(self) -> str | None:
        """The typed path when it is not the checked model's, else None."""
        text = self.checkpoint_edit.text().strip()
        if text and (self.checkpoint is None or Path(text).expanduser() != self.checkpoint):
            return text
        return None

    def _on_edit_finished(self) -> None:
        text = self._typed_new_path()
        if text:
            self.set_checkpoint(text)

    def choose_recent(self, index: int) -> None:
        path = self.recent_combo.itemData(index)
        if path:
            self.set_checkpoint(path)

    def ready(self) -> bool:
        """Check a newly typed path; False (with a notification) when there is no usable model."""
        text = self._typed_new_path()
        if text and not self.set_checkpoint(text):
            return False
        if self.checkpoint is None:
            show_error("Choose a model first: a folder with model.safetensors and model.json")
            return False
        return True

    def fill_recent(self) -> None:
        recent = recent_checkpoints()
        self.recent_combo.blockSignals(True)
        self.recent_combo.clear()
        if not recent:
            self.recent_combo.addItem("(none yet)")
        for p in recent:
            path = Path(p)
            label = f"{path.parent.name}/{path.name}" if path.name in ("best", "last") else path.name
            self.recent_combo.addItem(label, p)
            self.recent_combo.setItemData(self.recent_combo.count() - 1, p, Qt.ItemDataRole.ToolTipRole)
        self.recent_combo.setEnabled(bool(recent))
        self.recent_combo.setCurrentIndex(0)
        self.recent_combo.blockSignals(False)

    def set_checkpoint(self, path: str | Path) -> bool:
        """Choose and check a model (reads only ``model.json``); False with a notification when it is no
        GrainLab model (a corrupt description, a pickle, missing weights)."""
        path = Path(path).expanduser()
        self.checkpoint_edit.setText(str(path))
        try:
            weights, _ = checkpoint_files(path)
            meta = read_metadata(path)
            if not weights.stat().st_size:
                raise CheckpointError(f"{weights}: the weights file is empty")
        except (CheckpointError, OSError) as exc:
            self.checkpoint, self.metadata = None, None
            self.model_info.setStyleSheet(ERROR_STYLE)
            self.model_info.setText(f"Not a usable model: {exc}")
            self.model_changed.emit()
            show_error(f"Cannot use this model: {exc}")
            return False
        self.checkpoint, self.metadata = path, meta
        self.model_info.setStyleSheet(HINT_STYLE)
        self.model_info.setText(describe_model(meta))
        self.model_info.setToolTip(str(path))
        remember_checkpoint(path)
        self.fill_recent()
        self.model_changed.emit()
        return True
