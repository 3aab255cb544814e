"""The model chooser of the Predict dock: a checkpoint path (typed, *Browse…* or the model list:
the built-in models of the registry first, e.g. ``generalist (built-in)``, then the models used
recently) and one line describing the model.

When the dock opens it chooses the model used last, or, when none was ever chosen, the first
built-in model (the generalist), so that *Predict* works right after installing the plugin.  A
registry name is kept as a name (``generalist``) and resolved by the core
(:func:`~napari_grainlab.core.models.registry.resolve_model`); a built-in model whose weights are
not installed is refused like a broken folder, in one line.

A chosen model is checked at once, off the GUI thread, from its files' headers
(:func:`~napari_grainlab.core.models.inspect.check_model`: ``model.json`` and the safetensors
header; a pickle is never unpickled): a broken folder shows what is wrong in red and *Predict*
stays disabled until another model is chosen or the path is edited.  Scripts use the synchronous
:meth:`ModelPanel.set_checkpoint`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QMenu, QToolButton, QWidget

from ...core.errors import USER_ERRORS
from ...core.inference._rescale import model_grain_diameter
from ...core.models.inspect import check_model
from ...core.models.registry import ModelNotInstalledError, installed, is_registry_name, list_models
from .._settings import recent_checkpoints, remember_checkpoint
from .._widgets import ERROR_STYLE, HINT_STYLE, make_form, status_label
from ..workers import LatestOnlyRunner, report_error

if TYPE_CHECKING:
    from .dock import PredictWidget

__all__ = ["BUILTIN", "ModelPanel", "builtin_models", "describe_model", "model_ref"]

#: how a built-in model is named in the model list
BUILTIN = "{name} (built-in)"


def model_ref(value: str | Path) -> str | Path:
    """A model as the core takes it: a registry name stays a name (``"generalist"``), anything else
    is a path."""
    if isinstance(value, str):
        text = value.strip()
        if is_registry_name(text):
            return text
        return Path(text).expanduser()
    return Path(value).expanduser()


def builtin_models() -> list:
    """The registry's models (:class:`~napari_grainlab.core.models.registry.ModelEntry`); none when the
    registry cannot be read (the reason is logged by the caller's check later)."""
    try:
        return list_models()
    except USER_ERRORS:
        return []


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
    spec, inputs = meta.get("spec"), meta.get("input")
    channels = (inputs.get("channels") if isinstance(inputs, dict) else None) or \
        (spec.get("in_chans") if isinstance(spec, dict) else None)
    if channels == 3:
        parts.append("colour")
    if task == "segment" and "twin_boundary" in (meta.get("outputs") or []):
        parts.append("twin boundaries")
    scale = model_grain_diameter(meta)
    if scale is not None:
        parts.append(f"trained at ⌀ {scale:.0f} px")
    return " · ".join(parts)


class ModelPanel(QWidget):
    """Checkpoint path, *Browse…*, the model list and the model's description.

    :meth:`choose` (*Browse…*, the model list, a typed path) checks a model in a worker thread;
    :meth:`set_checkpoint` checks it at once.  ``model_changed()`` is emitted when a check starts
    and when it ends (:attr:`checkpoint` is None unless the chosen model passed), ``state_changed()``
    whenever :attr:`blocks_run` may have changed.  The file dialogs are the dock's methods.
    :attr:`checkpoint` is a ``Path``, or the name (``str``) of a built-in model.
    """

    model_changed = Signal()
    state_changed = Signal()

    def __init__(self, dock: PredictWidget, preselect: bool = True) -> None:
        super().__init__()
        self._dock = dock
        self.checkpoint: Path | str | None = None
        self.metadata: dict | None = None
        #: the chosen model that failed its check and its one-line reason (None: no such model)
        self.problem: tuple[Path | str, str] | None = None
        self._pending: Path | str | None = None  # being checked in the worker
        self._quiet = False  # the pending check is the dock's own choice: a failure shows in the model line only
        self._runner = LatestOnlyRunner(self)
        self._runner.result.connect(self._on_checked)
        self._runner.failed.connect(self._on_check_failed)

        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("model folder (model.safetensors + model.json) or built-in name")
        self.checkpoint_edit.setToolTip("<p>A GrainLab model: a folder with <tt>model.safetensors</tt> and "
                                        "<tt>model.json</tt> (a training run folder uses its <tt>best/</tt> "
                                        "model), or the name of a built-in model such as <tt>generalist</tt>. "
                                        "Press Enter to check it.</p>")
        self.checkpoint_edit.editingFinished.connect(self._on_edit_finished)
        self.checkpoint_edit.returnPressed.connect(self._on_return_pressed)
        self.checkpoint_edit.textEdited.connect(lambda _text: self.state_changed.emit())
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
        self.recent_combo.setToolTip("the built-in models, then the models used recently")
        self.recent_combo.activated.connect(self.choose_recent)
        self.model_info = status_label("No model chosen.")
        self.model_info.setStyleSheet(HINT_STYLE)

        form = make_form(self)
        form.addRow(path_row)
        form.addRow("Models", self.recent_combo)
        form.addRow(self.model_info)
        self.fill_recent()
        if preselect:
            self.preselect()

    # ----------------------------------------------------------------- choosing
    def _browse_folder(self) -> None:
        path = self._dock.ask_checkpoint_folder()
        if path is not None:
            self.choose(path)

    def _browse_file(self) -> None:
        path = self._dock.ask_checkpoint_file()
        if path is not None:
            self.choose(path)

    def _shown(self) -> Path | str | None:
        """The model named in the path field (None: empty)."""
        text = self.checkpoint_edit.text().strip()
        return model_ref(text) if text else None

    def _typed_new_path(self) -> str | None:
        """The typed text when it is not the checked (or being checked) model's, else None."""
        shown = self._shown()
        if shown is not None and shown not in (self.checkpoint, self._pending):
            return self.checkpoint_edit.text().strip()
        return None

    def _on_edit_finished(self) -> None:
        text = self._typed_new_path()
        if text and not (self.problem is not None and model_ref(text) == self.problem[0]):
            self.choose(text)

    def _on_return_pressed(self) -> None:
        """Enter on the path of a model that failed: check it again (the user may have fixed it)."""
        if self.blocks_run:
            self.choose(self.problem[0])

    def choose_recent(self, index: int) -> None:
        path = self.recent_combo.itemData(index)
        if path:
            self.choose(path)

    def preselect(self) -> None:
        """Choose the model used last or, when none was chosen before, the first built-in model (the
        generalist); checked in the worker, a failure shows in the model line (no notification)."""
        for item in recent_checkpoints()[:1]:
            ref = model_ref(item)
            if isinstance(ref, str) or ref.exists():
                self.choose(ref, quiet=True)
                return
        models = builtin_models()
        if models:
            self.choose(models[0].name, quiet=True)

    @property
    def is_checking(self) -> bool:
        """A chosen model is being checked in the worker."""
        return self._pending is not None

    @property
    def is_builtin(self) -> bool:
        """The chosen (checked) model is a built-in one (a registry name)."""
        return isinstance(self.checkpoint, str)

    @property
    def blocks_run(self) -> bool:
        """The model shown is one that failed its check (*Predict* is disabled until it changes)."""
        if self.problem is None:
            return False
        return self._shown() == self.problem[0]

    def ready(self) -> bool:
        """Check a newly typed path (or the one still being checked) now; False (with a notification)
        when there is no usable model."""
        pending, text = self._pending, self._typed_new_path()
        if pending is not None:
            self._runner.discard()
            self._pending = None
            if not self.set_checkpoint(pending):
                return False
        elif text and not self.set_checkpoint(text):
            return False
        if self.checkpoint is None:
            show_error(f"Cannot use this model: {self.problem[1]}" if self.blocks_run else
                       "Choose a model first: a folder with model.safetensors and model.json")
            return False
        return True

    def fill_recent(self) -> None:
        """The model list: the built-in models, then the recent ones (newest first)."""
        builtin = builtin_models()
        names = {m.name for m in builtin}
        recent = [p for p in recent_checkpoints() if p not in names]
        self.recent_combo.blockSignals(True)
        self.recent_combo.clear()
        for entry in builtin:
            self.recent_combo.addItem(BUILTIN.format(name=entry.name), entry.name)
            tip = entry.description or "a model that comes with napari-grainlab"
            if installed(entry) == "not installed":
                tip += " (not installed)"
            self.recent_combo.setItemData(self.recent_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        if builtin and recent:
            self.recent_combo.insertSeparator(self.recent_combo.count())
        for p in recent:
            path = Path(p)
            label = f"{path.parent.name}/{path.name}" if path.name in ("best", "last") else path.name
            self.recent_combo.addItem(label, p)
            self.recent_combo.setItemData(self.recent_combo.count() - 1, p, Qt.ItemDataRole.ToolTipRole)
        if not builtin and not recent:
            self.recent_combo.addItem("(none yet)")
        self.recent_combo.setEnabled(bool(builtin or recent))
        current = self.checkpoint if self.checkpoint is not None else self._pending
        key = current if isinstance(current, str) else str(Path(current).resolve()) if current else None
        index = self.recent_combo.findData(key) if key else -1
        self.recent_combo.setCurrentIndex(max(index, 0))
        self.recent_combo.blockSignals(False)

    def choose(self, path: str | Path, quiet: bool = False) -> None:
        """Choose a model (a path or a built-in model's name) and check it in a worker thread (the result
        shows when it is known); ``quiet``: a failure is shown in the model line only."""
        ref = model_ref(path)
        self.checkpoint_edit.setText(str(ref))
        self.checkpoint, self.metadata, self.problem = None, None, None
        self._pending, self._quiet = ref, quiet
        self.model_info.setStyleSheet(HINT_STYLE)
        self.model_info.setText(f"Checking {self._title(ref)}…")
        self.model_info.setToolTip(str(ref))
        self.model_changed.emit()
        self.state_changed.emit()
        self._runner.submit(check_model, ref)

    @staticmethod
    def _title(ref: Path | str) -> str:
        return BUILTIN.format(name=ref) if isinstance(ref, str) else (ref.name or str(ref))

    def _on_checked(self, meta: dict) -> None:
        path, self._pending = self._pending, None
        if path is not None:
            self._accept(path, meta)

    def _on_check_failed(self, error: BaseException) -> None:
        path, self._pending = self._pending, None
        if path is None:
            return
        if isinstance(error, USER_ERRORS):
            self._refuse(path, error, notify=not self._quiet)
        else:  # a bug: its traceback
            self._refuse(path, error, notify=False)
            report_error(error, "Checking the model")

    def set_checkpoint(self, path: str | Path) -> bool:
        """Choose and check a model now (its ``model.json`` and weights header); False with a
        notification when it is no usable GrainLab model (a corrupt description or weights file,
        a pickle, missing files, a built-in model that is not installed)."""
        ref = model_ref(path)
        if self._pending is not None:
            self._runner.discard()
            self._pending = None
        self.checkpoint_edit.setText(str(ref))
        try:
            meta = check_model(ref)
        except USER_ERRORS as exc:
            self._refuse(ref, exc)
            return False
        self._accept(ref, meta)
        return True

    def _refuse(self, path: Path | str, error: BaseException, notify: bool = True) -> None:
        reason = " ".join((str(error) or type(error).__name__).split())  # one line
        self.checkpoint, self.metadata, self.problem = None, None, (path, reason)
        self.model_info.setStyleSheet(ERROR_STYLE)
        if isinstance(path, str) and isinstance(error, ModelNotInstalledError):
            self.model_info.setText(f"Built-in model {path!r} not installed: {reason}")
        else:
            self.model_info.setText(f"Not a usable model: {reason}")
        self.model_info.setToolTip(str(path))
        self.model_changed.emit()
        self.state_changed.emit()
        if notify:
            show_error(f"Cannot use this model: {reason}")

    def _accept(self, path: Path | str, meta: dict) -> None:
        self.checkpoint, self.metadata, self.problem = path, meta, None
        self.model_info.setStyleSheet(HINT_STYLE)
        text = describe_model(meta)
        self.model_info.setText(f"{BUILTIN.format(name=path)}: {text}" if isinstance(path, str) else text)
        self.model_info.setToolTip(str(path))
        remember_checkpoint(path)
        self.fill_recent()
        self.model_changed.emit()
        self.state_changed.emit()
