"""The Save panel of the Annotate dock: the dataset folder, Save / Reload, autosave.

The state machine behind it (numbered snapshots, ordered writes, the fallback to the per-user
folder, saved vs. current, saved files never replaced by less without asking) is
:class:`~napari_grainlab.core.annotation_store.AnnotationStore`; this panel adds the timer, the
worker thread, the dialogs, the notifications and the remembered dataset folders
(:mod:`napari_grainlab.gui._settings`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from ...core import annotate as core
from ...core.annotation_store import SavedLabelsConflict, SaveJob, WriteResult
from ...core.errors import USER_ERRORS
from .._forms import SpinBox
from .._settings import remember_dataset_folder
from .._widgets import show_status, status_label
from ..workers import report_error
from ._common import guarded

if TYPE_CHECKING:
    from .dock import AnnotateWidget

__all__ = ["SavePanel"]


class SavePanel(QWidget):
    """Folder, Save, Reload and the autosave controls; runs the writes of the dock's store."""

    def __init__(self, dock: AnnotateWidget) -> None:
        super().__init__()
        self._dock = dock
        self.store = dock.store
        self._worker = None
        self._fallback_warned = ""  # the last "autosave fell back" warning shown (not repeated every interval)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.folder_label = QLabel("no dataset folder")
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("the dataset folder: images/NAME.tif + labels/NAME.tif (and class folders)")
        self.folder_button.clicked.connect(self._on_folder_clicked)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_label, 1)
        folder_row.addWidget(self.folder_button)
        layout.addLayout(folder_row)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("write the annotation into the dataset folder (atomic)")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("replace the annotation by the saved one (undoable)")
        self.reload_button.clicked.connect(self._on_reload_clicked)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_button, 2)
        save_row.addWidget(self.reload_button, 1)
        layout.addLayout(save_row)
        self.autosave_check = QCheckBox("Autosave every")
        self.autosave_check.setChecked(True)
        self.autosave_check.setToolTip("save changes periodically and when switching images; without a dataset "
                                       f"folder into {core.autosave_dir()}")
        self.autosave_check.toggled.connect(self.restart_timer)
        self.autosave_spin = SpinBox()
        self.autosave_spin.setRange(5, 3600)
        self.autosave_spin.setValue(60)
        self.autosave_spin.setSuffix(" s")
        self.autosave_spin.setToolTip("autosave interval")
        self.autosave_spin.valueChanged.connect(self.restart_timer)
        autosave_row = QHBoxLayout()
        autosave_row.addWidget(self.autosave_check)
        autosave_row.addWidget(self.autosave_spin, 1)
        layout.addLayout(autosave_row)
        self.save_status = status_label()
        layout.addWidget(self.save_status)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self._on_timer)
        self.restart_timer()

    def set_status(self, text: str, error: bool = False) -> None:
        show_status(self.save_status, text, error)

    # ------------------------------------------------------------------ folder
    def set_folder(self, folder: str | Path | None) -> None:
        """Use ``folder`` as the dataset folder: an empty annotation gets the labels saved there;
        other labels saved there are pointed out (Reload loads them; they are not replaced by
        less without asking)."""
        self.store.set_folder(folder)
        self.show_folder()
        folder = self.store.folder
        labels = self._dock.labels_layer
        if folder is not None and labels is not None and self.store.is_open:
            if not np.any(labels.data):
                self.reload(quiet=True)
            elif self.store.saved_elsewhere(folder):
                text = (f"{folder} holds saved labels of {self.store.name!r}; Reload loads them (they are not "
                        "replaced by fewer grains without asking)")
                self.set_status(text, error=True)
                show_warning(f"Annotate: {text}")
        self._dock._schedule_stats()

    def show_folder(self) -> None:
        """Show the store's dataset folder."""
        folder = self.store.folder
        self.folder_label.setText("no dataset folder" if folder is None else f"{folder.name}/")
        self.folder_label.setToolTip("" if folder is None else str(folder))

    def _on_folder_clicked(self) -> None:
        folder = self._dock.ask_directory()
        if folder is not None:
            self.set_folder(folder)

    def _on_save_clicked(self) -> None:
        self.save()

    def _on_reload_clicked(self) -> None:
        self.reload()

    # ------------------------------------------------------------------ saved vs. current
    def has_unsaved_changes(self, labels: Labels | None = None) -> bool:
        """Changes not yet written to the dataset folder (or, without one, anywhere)."""
        labels = labels or self._dock.labels_layer
        if labels is None or not self.store.is_open:
            return False
        return self.store.has_unsaved_changes(labels.data, self._dock.classes.state())

    def confirm_close(self) -> bool:
        """Whether the dock (or the viewer) may close: asks when there are unsaved changes."""
        try:
            if not self.has_unsaved_changes():
                return True
        except Exception:  # noqa: BLE001 - a half-deleted viewer: never block closing
            return True
        answer = self._dock.ask_unsaved()
        if answer == "cancel":
            return False
        if answer == "save":
            return self.save() is not None
        labels = self._dock.labels_layer
        self.store.discard(None if labels is None else labels.data, self._dock.classes.state())  # and its autosave
        return True

    # ------------------------------------------------------------------ writing
    def _snapshot(self, labels: Labels, auto: bool) -> SaveJob:
        return self.store.snapshot(labels.data, self._dock.classes.class_annotation(), auto=auto,
                                   what=repr(labels.name))

    def _record(self, job: SaveJob, auto: bool) -> None:
        """On the GUI thread, after ``job`` was written."""
        if self._dock.labels_layer is None or not self.store.record(job):
            return  # switched image meanwhile, or a newer snapshot was recorded already
        what = "Autosaved" if auto else "Saved"
        self.set_status(f"{what} {time.strftime('%H:%M:%S')} to {job.folder}")
        if job.in_dataset:  # found again when the image is opened next time
            remember_dataset_folder(self.store.fingerprint, job.folder)
        self._dock._schedule_stats()

    def save(self, folder: str | Path | None = None) -> Path | None:
        """Write the annotation into the dataset folder (asked for when none is set); returns it."""
        try:
            labels = self._dock._require()
            if folder is not None:
                self.set_folder(folder)
            if self.store.folder is None:
                chosen = self._dock.ask_directory()
                if chosen is None:
                    return None
                self.set_folder(chosen)
            job = self._snapshot(labels, auto=False)
            try:
                result = self.store.write(job)
            except SavedLabelsConflict as conflict:
                if not self._dock.ask_overwrite(conflict):
                    self.set_status(f"Not saved: {conflict}", error=True)
                    return None
                result = self.store.write(job, replace_saved=True)
        except USER_ERRORS as exc:
            show_error(f"Saving the annotation failed: {exc}")
            self.set_status(f"Save failed: {exc}", error=True)
            return None
        except Exception as exc:  # noqa: BLE001 - a bug: shown with its traceback, never raised into Qt
            report_error(exc, "Saving the annotation")
            return None
        self._record(result.job, auto=False)
        return self.store.folder

    def autosave(self, wait: bool = False, labels: Labels | None = None) -> bool:
        """Save changes now (dataset folder, else :func:`~napari_grainlab.core.annotate.autosave_dir`)
        in a worker thread, or synchronously with ``wait``.  Returns whether a write started."""
        labels = labels or self._dock.labels_layer
        if labels is None or not self.store.is_open:
            return False
        if self._worker is not None and not wait:
            return False  # one at a time
        try:
            job = self._snapshot(labels, auto=True)
        except USER_ERRORS as exc:
            self.set_status(f"Autosave failed: {exc}", error=True)
            return False
        if wait:
            try:
                result = self.store.write(job, fallback=True)
            except USER_ERRORS as exc:
                return self._failed(exc)
            return self._written(result)
        worker = create_worker(self.store.write, job, fallback=True, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._written)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self._worker = worker
        worker.start()
        return True

    def _written(self, result: WriteResult) -> bool:
        """An autosave is on disk (in the dataset folder, or kept in the per-user folder)."""
        if result.fell_back:
            where = result.job.folder
            self.set_status(f"Autosave to the dataset folder failed ({result.error}); kept in {where}", error=True)
            message = f"Annotate: autosave to the dataset folder failed: {result.error}. The work is kept in {where}"
            if message != self._fallback_warned:
                show_warning(message)
                self._fallback_warned = message
        elif result.folder is not None:
            self._fallback_warned = ""
            self._record(result.job, auto=True)
        return True

    def _failed(self, exc: BaseException) -> bool:
        self.set_status(f"Autosave failed: {exc}", error=True)
        show_error(f"Autosave failed: {exc}")
        return False

    def _done(self) -> None:
        self._worker = None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def restart_timer(self, *_: Any) -> None:
        self.autosave_timer.stop()
        if self.autosave_check.isChecked():
            self.autosave_timer.start(int(self.autosave_spin.value()) * 1000)

    def _on_timer(self) -> None:
        if self._dock.labels_layer is not None:
            try:
                # the flag the layer's events and the (off-thread) statistics keep: no full
                # comparison of a large label image on the GUI thread every N seconds
                if self.store.dirty:
                    self.autosave()
            except Exception as exc:  # noqa: BLE001 - never raise from a timer
                report_error(exc, "Autosave")

    # ------------------------------------------------------------------ reload
    @guarded("Reload")
    def reload(self, quiet: bool = False) -> bool:
        """Replace the annotation by the newest saved one (an undoable step)."""
        dock = self._dock
        labels = dock._require()
        # labels in the dataset folder the work does not derive from: those are the ones asked for
        saved, where = self.store.find_saved(prefer_dataset=self.store.saved_elsewhere())
        if saved is None:
            if not quiet:
                show_info(f"Annotate: no saved labels for {self.store.name!r}")
            return False
        edit = core.LabelEdit.between(np.asarray(labels.data), saved.astype(labels.data.dtype, copy=False))
        dock._apply_edit(edit, labels)
        self.store.adopt(saved, where)
        dock._load_classes(where)
        self.set_status(f"Reloaded from {where}")
        dock._schedule_stats()
        return True
