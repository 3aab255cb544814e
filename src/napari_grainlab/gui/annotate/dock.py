"""The *Annotate* dock: label grains by hand, helped by proposals, and never lose the work.

Pick an image layer; the dock attaches a grain Labels layer ``NAME annotation`` (0 = not
annotated, ignored by training), reloading the labels saved for ``NAME`` in the dataset folder
or the autosave folder.  The dock remembers (per user, by a fingerprint of the pixels) the
dataset folders each image's labels were saved in, so an image opened again gets its labels and
folder back; a saved label file holding more than the annotation is never replaced without
asking, and a replaced one is kept in ``labels/.backup/``.  The dock's layers carry their role
in ``layer.metadata["grainlab"]`` (see :mod:`napari_grainlab.gui._layers`); a Labels layer of
the user's, picked under *Grains*, is annotated as it is.

The panels: :mod:`.tools` (napari's paint / fill / erase / pick modes plus Merge, Split, Delete,
the model-backed Grain / Box / Stroke tools and Fill holes, each edit one step of napari's Labels
history), :mod:`.proposals` (classical pipeline or a trained model; Apply puts a proposal into the
annotation), :mod:`.prompts` (the model's maps for the Grain and Box tools, predicted once per
image; the uncertainty layer and *Next uncertain region*), :mod:`.retrain` (fine-tune the current
model on the annotations, one kept round at a time), :mod:`.classes`
(image class and class regions) and :mod:`.saving` (dataset folder, atomic saves, autosave every
N seconds and when the image is switched; closing the dock or the viewer with unsaved changes
asks Save / Discard / Cancel).  The save state machine is the Qt-free
:class:`~napari_grainlab.core.annotation_store.AnnotationStore`.

The dialogs are methods (:meth:`AnnotateWidget.ask_directory`, :meth:`~AnnotateWidget.ask_unsaved`,
:meth:`~AnnotateWidget.ask_overwrite`, :meth:`~AnnotateWidget.ask_checkpoint`) that scripts and
tests may replace.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QVBoxLayout, QWidget

from ...core import annotate as core
from ...core.annotation_store import AnnotationStore, SavedLabelsConflict, labels_differ
from ...core.errors import USER_ERRORS, DataError, GrainLabError
from ...core.models.registry import is_registry_name
from .._engine import start_background_loading
from .._layers import layer_pixel_size, layers_with_role, role_metadata, role_name, spatial_of
from .._napari_compat import (
    hook_dock_close,
    labels_layer_ready,
    unwrap_proxy,
    watch_main_window_close,
)
from .._settings import dataset_folders, remember_dataset_folder
from .._widgets import ask_folder, confirm, hline, scroll_area, section, single_shot_timer
from ..workers import LatestOnlyRunner, report_error, shutdown_on_destroy
from ._common import guarded, live, source_stem
from .classes import ClassesPanel
from .layers import LayerPicker, image_plane
from .prompts import PromptsPanel
from .proposals import ClassicalSettings, ProposalsPanel
from .retrain import RetrainPanel
from .saving import SavePanel
from .tools import TOOLS, ToolsPanel

if TYPE_CHECKING:
    import napari

__all__ = ["AnnotateWidget", "ClassicalSettings", "TOOLS"]

STATS_DELAY_MS = 150
#: above this many pixels the grain count is computed in a worker thread
SYNC_STATS_PIXELS = 2**20


def stats_job(data: np.ndarray, saved: np.ndarray | None) -> tuple[int, float, bool]:
    """Grain count, annotated fraction and whether ``data`` differs from ``saved``."""
    n, frac = core.annotation_stats(data)
    return n, frac, labels_differ(data, saved)


class AnnotateWidget(QWidget):
    """Dock for annotating grains (segmentation) and classes (classification).

    Public methods drive the dock from scripts and tests: :meth:`attach`, :meth:`set_tool`,
    :meth:`merge`, :meth:`split`, :meth:`delete`, :meth:`fill_holes`, :meth:`propose`,
    :meth:`apply_proposal`, :meth:`save`, :meth:`autosave`, :meth:`reload`.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # what napari's first Labels layer needs (the annotation layer), then torch & co., in the background
        # once the dock is shown: not on the GUI thread at the attach or at From model
        start_background_loading(self, napari_viewer, engine=True, layers=True)
        # the dock keeps weak references to and identities of layers: it needs the real objects,
        # not the proxies napari hands plugin docks
        self.viewer = unwrap_proxy(napari_viewer)
        self.setMinimumWidth(340)
        self._image_ref: weakref.ref | None = None
        self._labels_ref: weakref.ref | None = None
        self._base_name = ""  # the image layer's name when attached (the source of the dock's layers)
        self._rejected: tuple[weakref.ref, str] | None = None  # the image that could not be attached, and why
        self._gray: np.ndarray | None = None  # float32 [0, 1] for the proposals: (H, W) grey or (H, W, 3) colour
        self.store = AnnotationStore(warn=lambda message: show_warning(f"Annotate: {message}"))
        self._torn_down = False
        self._dock_hooked = False
        self._docked = False
        self._unwatch_close = None  # removes the close filter from napari's main window
        self._attach_pending = False  # the image chosen at opening is attached once pandas is imported

        self._stats_timer = single_shot_timer(self, STATS_DELAY_MS, self._refresh_stats)
        self._stats_runner = LatestOnlyRunner(self)
        self._stats_runner.result.connect(self._show_stats)
        self._build()
        self.classes.set_classes([])

        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layer_removed)
        self.destroyed.connect(shutdown_on_destroy(self._stats_runner, self.proposals.runner))

        self._watch_names()
        self._refresh_layer_choices()
        self._show_stats((0, 0.0, False))
        self._attach_when_ready()

    @property
    def attach_pending(self) -> bool:
        """Whether the image chosen when the dock opened is still waiting for its annotation layer."""
        return self._attach_pending

    def _attach_when_ready(self) -> None:
        """Annotate the image chosen when the dock opens.  The annotation layer is napari's first Labels
        layer of the session, as a rule, and napari imports pandas for it (seconds on a cold start): that
        import runs in a background thread, started once the dock has been shown
        (:func:`~napari_grainlab.gui._engine.start_background_loading`, from the constructor), and the layer is
        made when it is done (polled every 25 ms)."""
        if self.picker.chosen_image() is None:
            return
        if labels_layer_ready():
            self._on_image_chosen()
            return
        self.state_label.setText("preparing…")
        self._attach_pending = True
        timer = QTimer(self)
        timer.setInterval(25)

        def poll() -> None:
            if not labels_layer_ready():
                return
            timer.stop()
            timer.deleteLater()
            self._attach_pending = False
            if self.state_label.text() == "preparing…":
                self.state_label.setText("")
            if self.image_layer is None and not self._torn_down:  # the user may have attached one meanwhile
                self._on_image_chosen()

        timer.timeout.connect(poll)
        timer.start()

    # ===================================================================== layout
    def _build(self) -> None:
        self.picker = LayerPicker(self.viewer)
        self.image_combo, self.labels_combo = self.picker.image_combo, self.picker.labels_combo
        self.image_combo.activated.connect(self._on_image_chosen)
        self.labels_combo.activated.connect(self._on_labels_chosen)
        self.stats_label = QLabel()
        self.stats_label.setToolTip("grains in the annotation and the share of annotated (nonzero) pixels")
        font = self.stats_label.font()
        font.setBold(True)
        self.stats_label.setFont(font)
        self.state_label = QLabel()
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        stats_row = QHBoxLayout()
        stats_row.addWidget(self.stats_label, 1)
        stats_row.addWidget(self.state_label)

        self.tools = ToolsPanel(self)
        self.proposals = ProposalsPanel(self)
        self.prompts = PromptsPanel(self)
        self.retrain_panel = RetrainPanel(self)
        self.classes = ClassesPanel(self)
        self.saving = SavePanel(self)
        # the panels' controls, as the dock's attributes (scripts and tests drive them)
        t, p, c, s = self.tools, self.proposals, self.classes, self.saving
        self.tool_buttons, self.tool_help, self.brush_spin = t.tool_buttons, t.tool_help, t.brush_spin
        self.new_id_button, self.holes_button = t.new_id_button, t.holes_button
        self.sliders, self.polarity_combo, self.live_check = p.sliders, p.polarity_combo, p.live_check
        self.propose_button, self.model_edit, self.model_button = p.propose_button, p.model_edit, p.model_button
        self.apply_mode, self.apply_button, self.proposal_label = p.apply_mode, p.apply_button, p.proposal_label
        self.classes_edit, self.image_class_combo, self.tile_spin = c.classes_edit, c.image_class_combo, c.tile_spin
        self.region_class_combo, self.regions_button = c.region_class_combo, c.regions_button
        self.folder_label, self.folder_button, self.save_status = s.folder_label, s.folder_button, s.save_status
        self.save_button, self.reload_button = s.save_button, s.reload_button
        self.autosave_check, self.autosave_spin, self._autosave_timer = s.autosave_check, s.autosave_spin, s.autosave_timer

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(2)
        self.sections = {
            "tools": section("Tools", self.tools, True),
            "propose": section("Propose grains", self.proposals, True),
            "prompts": section("Click grains (model)", self.prompts, True),
            "retrain": section("Retrain from corrections", self.retrain_panel, False),
            "classes": section("Classification", self.classes, False),
            "save": section("Save", self.saving, True),
        }
        for box in self.sections.values():
            content_layout.addWidget(box)
        content_layout.addStretch(1)
        self.scroll_area = scroll_area(content)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.picker)
        layout.addLayout(stats_row)
        layout.addWidget(hline())
        layout.addWidget(self.scroll_area, 1)

    # ================================================================ layer choices
    @property
    def image_layer(self) -> Image | None:
        return live(self.viewer, self._image_ref)

    @property
    def labels_layer(self) -> Labels | None:
        return live(self.viewer, self._labels_ref)

    @property
    def name(self) -> str:
        """The file stem of the current image's annotation."""
        return self.store.name

    @property
    def folder(self) -> Path | None:
        return self.store.folder

    @property
    def last_saved(self) -> Path | None:
        return self.store.last_saved

    def _refresh_layer_choices(self, *_: Any) -> None:
        image = self.image_layer
        self.picker.refresh(image if image is not None else self._rejected_layer(), self.labels_layer)

    def _rejected_layer(self) -> Image | None:
        """The image that was chosen but could not be attached (while it is in the viewer)."""
        return live(self.viewer, self._rejected[0]) if self._rejected is not None else None

    def no_image_error(self) -> GrainLabError:
        """The error for an action that needs an image: why the chosen image could not be
        attached (e.g. NaN pixels), else that none is chosen."""
        if self.image_layer is None and self._rejected is not None and self._rejected_layer() is not None:
            return DataError(self._rejected[1])
        return GrainLabError("no image layer chosen; open a micrograph and pick it under Image")

    def _watch_names(self) -> None:
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_choices)  # connecting twice is a no-op

    def _on_layers_changed(self, event=None) -> None:
        if self._torn_down:
            return
        self._watch_names()
        self._refresh_layer_choices()
        if self.image_layer is None and event is not None and getattr(event, "type", "") == "inserted":
            if isinstance(event.value, Image):  # the first image: attach to it
                self.picker.choose_image(event.value)
                QTimer.singleShot(0, self._on_image_chosen)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if self._image_ref is not None and layer is self._image_ref():
            self._leave_current(autosave=True, labels=self.labels_layer)
        elif self._labels_ref is not None and layer is self._labels_ref():
            self._leave_current(autosave=True, labels=layer)
        else:
            self.tools.forget_line(layer)

    @guarded("Annotate")
    def _on_image_chosen(self, *_: Any) -> None:
        if self.picker.syncing:
            return
        layer = self.picker.chosen_image()
        if layer is not None and layer is not self.image_layer:
            self.attach(layer)

    @guarded("Annotate")
    def _on_labels_chosen(self, *_: Any) -> None:
        if self.picker.syncing:
            return
        image = self.image_layer
        if image is None:
            show_error(f"Annotate: {self.no_image_error()}")
            return
        labels = self.picker.chosen_labels()
        if labels is not self.labels_layer:
            self.attach(image, labels)

    # ======================================================================= attach
    def attach(self, image: Image, labels: Labels | None = None) -> bool:
        """Annotate ``image`` in ``labels`` (None: the image's annotation layer, created as
        ``NAME annotation`` when missing, with the saved labels).  Problems become
        notifications; returns success."""
        if self._attach(image, labels):
            self._rejected = None
            return True
        self._refresh_layer_choices()
        return False

    @guarded("Annotate")
    def _attach(self, image: Image, labels: Labels | None) -> bool:
        if not isinstance(image, Image):
            raise GrainLabError("choose an image layer")
        try:
            stored, gray = image_plane(image)
        except USER_ERRORS as exc:
            self._rejected = (weakref.ref(image), str(exc))
            raise
        if labels is not None:
            if not isinstance(labels, Labels):
                raise DataError(f"{labels.name!r} is not a Labels layer")
            if getattr(labels, "multiscale", False) or labels.data.shape != stored.shape[:2]:
                raise DataError(f"the labels {labels.name!r} ({' x '.join(map(str, labels.data.shape))} px) do not "
                                f"match the image {image.name!r} ({stored.shape[0]} x {stored.shape[1]} px)")
        # leave the current image (autosave on switching)
        if self.labels_layer is not None:
            self._leave_current(autosave=True, labels=self.labels_layer)
        self._gray, self._base_name = gray, image.name
        self.store.open(core.safe_name(source_stem(image) or image.name), stored, layer_pixel_size(image)[0])
        self._image_ref = weakref.ref(image)
        saved, where = self.store.find_saved(remembered=dataset_folders(self.store.fingerprint))
        recalled = self.store.recalled
        if recalled is not None:
            self.saving.show_folder()
        if labels is None:
            existing = [x for x in layers_with_role(self.viewer, "annotation", source=image.name)
                        if isinstance(x, Labels) and x.data.shape == stored.shape[:2]]
            if existing:
                labels = existing[0]
            else:
                data = saved if saved is not None else np.zeros(stored.shape[:2], dtype=np.uint32)
                labels = self.viewer.add_labels(data, name=role_name(image.name, "annotation"), opacity=0.5,
                                                metadata=role_metadata("annotation", source=image.name),
                                                **spatial_of(image))
                if saved is not None:
                    show_info(f"Annotate: reloaded the labels of {self.name!r} from {where}"
                              + (" (the dataset folder they were saved in)" if where == recalled else ""))
        self._labels_ref = weakref.ref(labels)
        derived = saved is None or labels.data is saved or np.array_equal(labels.data, saved)
        self.store.adopt(saved, where, derived=derived)
        if not derived:
            self.save_status.setText(f"{labels.name!r} differs from the labels saved in {where}; Reload loads those")
        elif recalled is not None:
            self.saving.set_status(f"Dataset folder {recalled} (remembered for this image)")
        if saved is not None and where == self.store.folder:
            remember_dataset_folder(self.store.fingerprint, where)
        self._connect_labels(labels)
        self._load_classes(where)
        self._refresh_layer_choices()
        self.set_tool(self.tool)
        self.viewer.layers.selection.active = labels
        self.retrain_panel.refresh_rounds()
        self._schedule_stats()
        return True

    def _load_classes(self, where: Path | None) -> None:
        self.classes.show_saved(self.store.find_classes(where))
        self.store.saved_classes = self.classes.state()

    def _connect_labels(self, labels: Labels) -> None:
        for ev in (labels.events.paint, labels.events.data, labels.events.set_data):
            ev.connect(self._on_labels_changed)
        self.tools.connect_layer(labels)

    def _disconnect_labels(self, labels: Labels) -> None:
        for ev in (labels.events.paint, labels.events.data, labels.events.set_data):
            ev.disconnect(self._on_labels_changed)
        self.tools.disconnect_layer(labels)

    def _leave_current(self, autosave: bool, labels: Labels | None) -> None:
        if autosave and labels is not None and self.store.is_open:
            try:
                if self.has_unsaved_changes(labels):
                    self.autosave(wait=True, labels=labels)
            except Exception as exc:  # noqa: BLE001 - leaving must not fail
                report_error(exc, "Autosave")
        if labels is not None:
            self._disconnect_labels(labels)
        self.proposals.reset()
        self.prompts.reset()
        self.retrain_panel.reset()
        self.tools.reset()
        self.classes.reset()
        self._image_ref = self._labels_ref = None
        self.store.close()
        self._gray = None
        self._show_stats((0, 0.0, False))

    def _require(self) -> Labels:
        labels = self.labels_layer
        if labels is None or not self.store.is_open:
            raise self.no_image_error()
        return labels

    # ======================================================================== edits
    def _apply_edit(self, edit: core.LabelEdit, labels: Labels | None = None) -> bool:
        """Apply ``edit`` to the annotation as one step of napari's undo history."""
        labels = labels or self._require()
        if not edit:
            return False
        with labels.block_history():
            labels.data_setitem(edit.indices, edit.values)
        self._mark_changed()
        return True

    def _on_labels_changed(self, *_: Any) -> None:
        self._mark_changed()

    def _mark_changed(self) -> None:
        self.store.mark_changed()
        self._schedule_stats()

    # ================================================================== statistics
    def _schedule_stats(self) -> None:
        if not self._stats_timer.isActive():
            self._stats_timer.start()

    def _refresh_stats(self) -> None:
        labels = self.labels_layer
        if labels is None:
            return
        data = labels.data
        if data.size <= SYNC_STATS_PIXELS:
            self._show_stats(stats_job(data, self.store.saved))
        else:
            self._stats_runner.submit(stats_job, np.array(data, copy=True), self.store.saved)  # the user may paint on

    def _show_stats(self, stats: tuple[int, float, bool]) -> None:
        n, frac, changed = stats
        self.grain_count, self.annotated_fraction = n, frac
        if self.labels_layer is None:
            self.stats_label.setText("No image chosen")
            self.state_label.setText("")
            return
        self.stats_label.setText(f"{n} grain{'s' if n != 1 else ''} · {100 * frac:.1f} % annotated")
        dirty = self.store.update_dirty(changed, self.classes.state())
        in_dataset = self.store.in_dataset
        unsaved = dirty or not in_dataset and n
        self.state_label.setText("● unsaved" if unsaved else "saved")
        self.state_label.setStyleSheet("color: #e8a33d;" if unsaved else "")
        self.state_label.setToolTip("changes not yet in the dataset folder" if dirty or not in_dataset
                                    else "everything is saved in the dataset folder")

    def stats(self) -> tuple[int, float]:
        """Grain count and annotated fraction now (computed synchronously)."""
        return core.annotation_stats(self._require().data)

    # ===================================================== the panels' public methods
    @property
    def tool(self) -> str:
        return self.tools.tool

    def set_tool(self, key: str, *_: Any) -> None:
        """Switch to a tool of :data:`TOOLS`."""
        self.tools.set_tool(key)

    def select_new_id(self, *_: Any) -> int | None:
        return self.tools.select_new_id()

    def merge(self, ids) -> bool | None:
        return self.tools.merge(ids)

    def split(self, points: np.ndarray) -> bool | None:
        return self.tools.split(points)

    def delete(self, ids) -> bool | None:
        return self.tools.delete(ids)

    def fill_holes(self, *_: Any) -> bool | None:
        return self.tools.fill_holes()

    def undo(self) -> None:
        self.tools.undo()

    def redo(self) -> None:
        self.tools.redo()

    @property
    def _on_mouse(self):
        """The mouse callback the dock puts on its annotation layer."""
        return self.tools.on_mouse

    @property
    def proposal_layer(self) -> Labels | None:
        return self.proposals.proposal_layer

    @property
    def proposal_busy(self) -> bool:
        return self.proposals.busy

    @property
    def proposals_shown(self) -> int:
        return self.proposals.proposals_shown

    def settings(self) -> ClassicalSettings:
        return self.proposals.settings()

    def set_settings(self, settings: ClassicalSettings) -> None:
        self.proposals.set_settings(settings)

    def propose(self, *_: Any) -> None:
        self.proposals.propose()

    def propose_from_model(self, checkpoint: str | Path | None = None):
        return self.proposals.propose_from_model(checkpoint)

    def _show_proposal(self, result: tuple[np.ndarray, float], source: str = "classical") -> None:
        self.proposals.show_proposal(result, source=source)

    def apply_proposal(self, *_: Any, mode: str | None = None) -> bool | None:
        return self.proposals.apply_proposal(mode=mode)

    @property
    def classes_layer(self) -> Labels | None:
        return self.classes.classes_layer

    def class_names(self) -> list[str]:
        return self.classes.class_names()

    def set_image_class(self, name: str | None) -> None:
        self.classes.set_image_class(name)

    def image_class(self) -> str | None:
        return self.classes.image_class()

    def paint_regions(self, *_: Any) -> Labels | None:
        return self.classes.paint_regions()

    def class_annotation(self) -> core.ClassAnnotation | None:
        return self.classes.class_annotation()

    def set_folder(self, folder: str | Path | None) -> None:
        self.saving.set_folder(folder)

    def save(self, folder: str | Path | None = None) -> Path | None:
        return self.saving.save(folder)

    def autosave(self, wait: bool = False, labels: Labels | None = None) -> bool:
        return self.saving.autosave(wait=wait, labels=labels)

    @property
    def autosave_busy(self) -> bool:
        return self.saving.busy

    def reload(self, quiet: bool = False) -> bool | None:
        return self.saving.reload(quiet=quiet)

    def has_unsaved_changes(self, labels: Labels | None = None) -> bool:
        return self.saving.has_unsaved_changes(labels)

    def confirm_close(self) -> bool:
        return self.saving.confirm_close()

    # ====================================================================== dialogs
    def ask_directory(self) -> Path | None:
        return ask_folder(self, "Dataset folder for the annotation", self.folder or Path.home())

    def ask_checkpoint(self) -> Path | None:
        text = self.model_edit.text().strip()
        return ask_folder(self, "Model folder (model.safetensors + model.json)",
                          text if text and not is_registry_name(text) else Path.home())

    def ask_overwrite(self, conflict: SavedLabelsConflict) -> bool:
        """Ask whether a saved label file holding more than the annotation may be replaced (a
        backup of it is kept)."""
        (n_saved, px_saved), (n_now, px_now) = conflict.saved, conflict.current
        return confirm(self, "Replace saved labels?",
                       f"{conflict.path} holds {n_saved} grains ({px_saved} labelled px); the annotation of "
                       f"{self.name!r} has {n_now} ({px_now} px).",
                       f"Replace the saved labels? The file replaced is kept in {conflict.path.parent / '.backup'}.",
                       "Replace")

    def ask_unsaved(self) -> str:
        """Ask what to do with unsaved changes: ``"save"``, ``"discard"`` or ``"cancel"``."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Unsaved annotation")
        box.setText(f"The annotation of {self.name!r} has unsaved changes.")
        box.setInformativeText("Save them into the dataset folder?")
        save = box.addButton(QMessageBox.StandardButton.Save)
        discard = box.addButton(QMessageBox.StandardButton.Discard)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(save)
        box.exec_()
        clicked = box.clickedButton()
        return "save" if clicked is save else "discard" if clicked is discard else "cancel"

    # ================================================================ dock closing
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._dock_hooked or self._unwatch_close is None:
            self._hook_dock_close()

    def event(self, ev) -> bool:
        # docked: hook the dock's close button; taken out of its dock (napari's remove_dock_widget
        # only unparents the widget): let go of the layers
        if ev.type() == QEvent.Type.ParentChange and not self._torn_down:
            if self.parent() is None:
                if self._docked:
                    self.teardown()
            else:
                self._docked = True
                self._hook_dock_close()
        return super().event(ev)

    def _hook_dock_close(self) -> None:
        """Ask before napari's dock close button (or the main window) closes with unsaved work.

        Called when the widget is docked and when it is shown, until both hooks are in place
        (the main window is an ancestor only once the dock is added to it)."""
        if self._unwatch_close is None:
            self._unwatch_close = watch_main_window_close(self, self.confirm_close)
        if not self._dock_hooked:
            self._dock_hooked = hook_dock_close(self, self._close_from_dock)

    def _close_from_dock(self) -> bool:
        if not self.confirm_close():
            return False
        self.teardown()
        return True

    def teardown(self) -> None:
        """The dock is closing (its work was saved or discarded): let go of the layers, stop the
        timers and the workers, and stop listening to the viewer, so that nothing of the closed
        dock acts on a layer any more."""
        if self._torn_down:
            return
        self._torn_down = True
        self.saving.autosave_timer.stop()
        self._stats_timer.stop()
        self._leave_current(autosave=False, labels=self.labels_layer)
        layers = self.viewer.layers
        for handler, emitter in ((self._on_layers_changed, layers.events.inserted),
                                 (self._on_layers_changed, layers.events.removed),
                                 (self._on_layer_removed, layers.events.removed)):
            emitter.disconnect(handler)
        for layer in layers:
            layer.events.name.disconnect(self._refresh_layer_choices)
        if self._unwatch_close is not None:
            self._unwatch_close()
        self._stats_runner.close()
        self.proposals.runner.close()
