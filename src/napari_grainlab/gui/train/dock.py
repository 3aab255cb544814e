"""The *Train* dock: fine-tune a grain model on the annotations in the viewer.

Data come from three sources, in any mix (the data panel, :mod:`.data`):

* **layers**: every 2-D Labels layer paired with the Image layer it annotates (by its layer role
  and source, else the names ``<image> annotation`` (the Annotate dock's) / ``<image> grains`` /
  ``<image> labels``, else the only image of the same shape), shown as a checkable list;
* **dataset folders** (``images/`` + ``labels/``, or one sub-folder per class);
* **synthetic** micrographs drawn on the fly (domain randomisation or a generator preset),
  mixed in at a ratio, or alone for synthetic pre-training.

The option sections (:mod:`.options`) are generated from the :class:`TrainConfig` field metadata.
*Start* copies the layer data on the main thread (the user may keep painting), then runs the
training job (:func:`~napari_grainlab.gui.jobs.train.run_training`: ``fit()`` or ``cross_validate``)
in a napari ``thread_worker`` through :class:`~napari_grainlab.gui.workers.GeneratorTask`; dataset
folders are read inside the worker.  Events come back on the main thread and drive the run panel
(:mod:`.run`): progress bar, napari's activity progress, a throttled plot of the losses and the
monitored metric (:mod:`.plot`), and the ETA / device / speed labels.  *Stop* asks ``fit()`` to
finish its step: it then writes ``last/`` and keeps ``best/``.  Closing the dock (napari's close
button) while training runs asks first: *Stop training and close* stops the run in the same way
(it ends in the background, and its notification names the model), *Keep training* leaves the
dock open; a dock taken out of the window by other means stops its run.  Errors become
napari notifications.  After a run, the dock segments the current image with the best checkpoint
(*Preview on …*).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtWidgets import QMessageBox, QSplitter, QVBoxLayout, QWidget

from .._engine import avoid_triton_llvm_clash, ensure_engine, start_background_loading
from .._layers import is_prediction

avoid_triton_llvm_clash()  # again before timm / torchvision are first imported (see the module)

from ...core.errors import ConfigError, ModelError  # noqa: E402
from ...core.inference.options import InferenceOptions  # noqa: E402
from ...core.training.config import TrainConfig  # noqa: E402
from ...core.training.events import Checkpoint, Finished  # noqa: E402
from .._napari_compat import hook_dock_close, throttle_activity_animation, unwrap_proxy  # noqa: E402
from .._widgets import ask_folder, ask_open_file, confirm, napari_theme, scroll_area, section  # noqa: E402
from ..jobs.predict import ImageDone, ImageFailed, PredictStatus, job_from_layer, predict_jobs, show_prediction  # noqa: E402
from ..jobs.train import StepProgress, run_training  # noqa: E402
from ..workers import GeneratorTask, TaskResult, report_error  # noqa: E402
from .data import DataPanel, LayerPair, spatial_shape  # noqa: E402
from .options import OptionsPanel  # noqa: E402
from .run import RunPanel, fmt_duration, notify_failure  # noqa: E402

if TYPE_CHECKING:
    import napari

__all__ = ["SPINNER_SPEED", "TrainWidget"]

SPINNER_SPEED = 10  # % of normal speed of napari's activity animation while training (see _napari_compat)
#: docks closed while their run was stopping: kept until the run has ended (its last/ written, its
#: result notified), so that no training thread outlives the widget that handles its events
_CLOSED_WHILE_RUNNING: set[TrainWidget] = set()


class TrainWidget(QWidget):
    """Dock that trains a grain model from layers, dataset folders and synthetic data.

    Scripts and tests drive it with :meth:`set_config`, :meth:`start`, :meth:`stop` and
    :meth:`preview`; the dialogs are methods (:meth:`ask_dataset_folder`,
    :meth:`ask_output_folder`, :meth:`ask_weights_file`, :meth:`ask_model_folder`,
    :meth:`ask_overwrite`, :meth:`ask_stop_to_close`) that may be replaced.  ``editors`` holds the
    generated editor of every option field the dock shows (``editors["lr"].editor`` is the
    learning-rate box).

    Signals: ``event_received(object)`` for every training event (after the dock handled it),
    ``training_finished(TaskResult)`` and ``preview_finished(TaskResult)``.
    """

    event_received = Signal(object)
    training_finished = Signal(object)
    preview_finished = Signal(object)

    #: the configuration the option sections are generated from
    config_class: type = TrainConfig

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        start_background_loading(self, napari_viewer)  # import torch & co. in the background once shown, not at Start
        self.viewer = napari_viewer
        self.setMinimumWidth(330)
        self._task: GeneratorTask | None = None
        self._preview_task: GeneratorTask | None = None
        self._finished: Finished | None = None
        self._best_path: str | None = None
        self._preview_layer_ref: Any = None
        self._preview_done: Any = None
        self._docked = False
        self._dock_hooked = False

        fields = {f.name: f for f in dataclasses.fields(self.config_class)}
        self.data = DataPanel(napari_viewer, fields["synthetic"], ask_folder=lambda: self.ask_dataset_folder())
        self.options = OptionsPanel(self.config_class)
        self.editors = self.options.editors
        self.run_panel = RunPanel()
        self._alias_widgets()

        settings = QWidget()
        s_layout = QVBoxLayout(settings)
        s_layout.setContentsMargins(0, 0, 0, 0)
        s_layout.setSpacing(2)
        self.sections = {"data": section("Data", self.data, expanded=True), **self.options.sections}
        s_layout.addWidget(self.sections["data"])
        s_layout.addWidget(self.options)
        s_layout.addStretch(1)
        self.settings = settings
        self.scroll_area = scroll_area(settings)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.scroll_area)
        splitter.addWidget(self.run_panel)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(splitter)

        for form in self.options.forms.values():
            form.changed.connect(self._sync_enabled)
        self.data.changed.connect(self._sync_enabled)
        self.data.pairs_changed.connect(self._update_preview_button)
        self.options.holdout_radio.toggled.connect(self._sync_enabled)
        self.options.weights_combo.currentIndexChanged.connect(self._sync_enabled)
        self.options.weights_combo.activated.connect(self._on_weights_activated)
        self.options.weights_browse.clicked.connect(self._browse_weights)
        self.options.out_browse.clicked.connect(self._browse_out)
        self.start_button.clicked.connect(lambda: self.start())
        self.preview_button.clicked.connect(lambda: self.preview())
        self._sync_enabled()
        self._apply_theme()
        self.viewer.layers.selection.events.active.connect(self._update_preview_button)
        self.viewer.events.theme.connect(self._apply_theme)
        self.refresh_pairs()

    def _alias_widgets(self) -> None:
        """The widgets scripts and tests reach by name, as attributes of the dock."""
        run, data, ed = self.run_panel, self.data, self.editors
        for name in ("start_button", "stop_button", "progress_bar", "device_label", "eta_label", "best_label",
                     "status_label", "plot", "preview_button"):
            setattr(self, name, getattr(run, name))
        for name in ("pair_list", "folder_list", "synthetic_combo", "ratio_slider", "synthetic_only_check"):
            setattr(self, name, getattr(data, name))
        for name in ("weights_combo", "weights_edit", "out_edit", "holdout_radio", "kfold_radio", "k_spin"):
            setattr(self, name, getattr(self.options, name))
        for attr, field_name in (("task_combo", "task"), ("backbone_combo", "backbone"),
                                 ("strategy_combo", "strategy"), ("lr_spin", "lr"), ("stages_spin", "finetune_stages"),
                                 ("unfreeze_spin", "unfreeze_every"), ("device_combo", "device")):
            if field_name in ed:
                setattr(self, attr, ed[field_name].editor)

    def _apply_theme(self, *_: Any) -> None:
        self.plot.set_theme(napari_theme(self.viewer.theme))

    # ================================================================ dock closing
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._hook_dock_close()

    def event(self, ev) -> bool:
        # docked: hook the dock's close button; taken out of its dock (napari's remove_dock_widget
        # unparents the widget): stop the run
        if ev.type() == QEvent.Type.ParentChange and hasattr(self, "_docked"):
            if self.parent() is None:
                if self._docked:
                    self._docked = self._dock_hooked = False
                    self._on_undocked()
            else:
                self._docked = True
                self._hook_dock_close()
        return super().event(ev)

    def _hook_dock_close(self) -> None:
        if not self._dock_hooked:
            self._dock_hooked = hook_dock_close(self, self._close_from_dock)

    def ask_stop_to_close(self) -> bool:
        """Training runs and the dock is closing: True to stop the run and close, False to keep both."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Training is running")
        box.setText("Training is still running.")
        box.setInformativeText("Stop it and close the Train dock? The run stops after its current step, "
                               "writes last/ and keeps the best model in best/.")
        stop = box.addButton("Stop training and close", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.exec_()
        return box.clickedButton() is stop

    def _close_from_dock(self) -> bool:
        """napari's close button of the dock: close unless a training run should go on."""
        if self.is_running and not self.ask_stop_to_close():
            return False
        self._on_undocked()
        return True

    def _on_undocked(self) -> None:
        """The dock is closing: stop the training run (and the preview) after the current step;
        keep this widget until the run has ended."""
        if self._busy():
            _CLOSED_WHILE_RUNNING.add(self)
            self.stop()

    # ========================================================================= data
    @property
    def pairs(self) -> list[LayerPair]:
        """The Labels / Image pairs listed in the dock (as of the last refresh)."""
        return self.data.pairs

    def refresh_pairs(self) -> None:
        """Re-pair the Labels and Image layers of the viewer and list them."""
        self.data.refresh_pairs()

    def set_pair_checked(self, labels_name: str, checked: bool) -> None:
        """Include (or leave out) the pair of the Labels layer ``labels_name``."""
        self.data.set_pair_checked(labels_name, checked)

    def selected_pairs(self) -> list[LayerPair]:
        return self.data.selected_pairs()

    def add_dataset_folder(self, path: str | Path | None = None) -> bool:
        """Add a dataset folder (asked for when None); checks its layout, not its files."""
        return self.data.add_dataset_folder(path)

    @property
    def dataset_folders(self) -> list[str]:
        return self.data.dataset_folders

    def clear_dataset_folders(self) -> None:
        self.data.clear_dataset_folders()

    # ====================================================================== dialogs
    def ask_dataset_folder(self) -> Path | None:
        folders = self.data.dataset_folders
        return ask_folder(self, "Dataset folder (images/ + labels/, or class folders)",
                          folders[-1] if folders else Path.home())

    def ask_weights_file(self) -> Path | None:
        return ask_open_file(self, "Initial weights", Path.home(),
                             "Weights (*.safetensors *.pth *.pt *.bin);;All files (*)")

    def ask_model_folder(self) -> Path | None:
        return ask_folder(self, "GrainLab model folder (model.safetensors + model.json)", Path.home())

    def ask_output_folder(self) -> Path | None:
        return ask_folder(self, "Output folder of the training run", Path(self.out_edit.text()).expanduser().parent)

    def ask_overwrite(self, folder: Path) -> bool:
        return confirm(self, "Output folder is not empty", f"{folder} is not empty.",
                       "Train into it anyway? Its best/ and last/ models, config.json and history.json are replaced.",
                       "Train into it")

    def _on_weights_activated(self, _index: int) -> None:
        if self.weights_combo.currentData() in ("file", "model") and not self.options.weights_source():
            self._browse_weights()

    def _browse_weights(self) -> None:
        kind = self.weights_combo.currentData()
        path = self.ask_model_folder() if kind == "model" else self.ask_weights_file()
        if path is not None:
            self.options.set_weights_path(str(path))

    def _browse_out(self) -> None:
        path = self.ask_output_folder()
        if path is not None:
            self.options.auto_out = False
            self.out_edit.setText(str(path))

    def _sync_enabled(self, *_: Any) -> None:
        """Enable the options that apply to the current choices."""
        self.data.sync_enabled(self.options.value("task") == "segment")
        self.options.sync_enabled()

    # ======================================================================= config
    def weights_source(self) -> str:
        return self.options.weights_source()

    def config(self) -> TrainConfig:
        """The training configuration shown in the dock (raises ConfigError when invalid)."""
        values = self.options.values()
        values.update(self.data.synthetic_values(values.get("task", "segment") == "segment"))
        return self.config_class(**values)

    def set_config(self, cfg: TrainConfig | None = None, **changes: Any) -> None:
        """Show ``cfg`` (default: the dock's current configuration) with ``changes`` applied.

        Besides the :class:`TrainConfig` fields, ``kfold=K`` (0: hold-out validation) and
        ``synthetic_only=bool`` are accepted.
        """
        kfold = changes.pop("kfold", None)
        synth_only = changes.pop("synthetic_only", None)
        if cfg is None:
            try:
                cfg = self.config()
            except ConfigError:
                cfg = self.config_class()
        if changes:
            cfg = type(cfg).from_dict({**cfg.to_dict(), **changes})
        self.options.show_config(cfg, kfold)
        self.data.show_synthetic(cfg, synth_only)
        self._sync_enabled()

    @property
    def kfold(self) -> int:
        """K of K-fold cross-validation, 0 for hold-out validation."""
        return self.options.kfold

    # ======================================================================== start
    @property
    def is_running(self) -> bool:
        return self._task is not None and self._task.is_running

    @property
    def task(self) -> GeneratorTask | None:
        """The task of the current (or last) training run."""
        return self._task

    def _busy(self) -> bool:
        return self.is_running or (self._preview_task is not None and self._preview_task.is_running)

    def start(self) -> GeneratorTask | None:
        """Start training with the dock's settings; returns the task (None: not started, with a notification)."""
        if self._busy():
            return None
        if not ensure_engine(self.run_panel.set_status):  # waits for the warm-up with the event loop running
            return None
        try:
            cfg = self.config()
        except ConfigError as exc:
            show_error(f"Cannot train: {exc}")
            return None
        from ...core.models.networks import check_backbone

        try:
            check_backbone(cfg.backbone)
        except ModelError as exc:
            show_error(f"Cannot train: {exc}")
            return None
        if self.weights_combo.currentData() in ("file", "model") and not Path(cfg.weights).exists():
            show_error(f"Cannot train: the weights {cfg.weights} do not exist")
            return None
        collected = self.data.collect(cfg)
        if isinstance(collected, str):
            show_error(f"Cannot train: {collected}")
            self.run_panel.set_status(f"Cannot train: {collected}", error=True)
            return None
        job, notes = collected
        if cfg.task == "classify" and not job.folders:
            show_error("Cannot train: classification needs dataset folders with one sub-folder per class")
            return None
        job.kfold = self.kfold
        if job.kfold and self.data.synthetic_only:
            show_error("Cannot train: K-fold cross-validation needs annotated images, not synthetic-only data")
            return None
        out = self.options.output_folder(self.ask_overwrite)
        if out is None:
            return None
        job.config = cfg.replace(out=str(out))
        for note in notes:
            show_info(note)

        self._finished = None
        self._best_path = None
        self.run_panel.reset(job.config.monitor_metric, job.kfold, job.config.out)
        task = GeneratorTask(run_training, job, description="Training", progress_bar=self.progress_bar,
                             cancel_button=self.stop_button, progress_of=StepProgress(job.kfold),
                             notify_errors=False, parent=self)
        task.yielded.connect(self._on_event)
        task.finished.connect(self._on_training_finished)
        if self._task is not None:
            self._task.deleteLater()
        self._task = task
        self.settings.setEnabled(False)
        self.start_button.setEnabled(False)
        self.preview_button.setEnabled(False)
        task.start()
        self.stop_button.clicked.connect(self._on_stop_clicked)
        throttle_activity_animation(self.viewer, True, SPINNER_SPEED)
        return task

    def stop(self) -> None:
        """Stop training after the current step (``last/`` is written, ``best/`` kept)."""
        if self._task is not None and self._task.is_running:
            self._task.cancel()
            self._on_stop_clicked()
        if self._preview_task is not None and self._preview_task.is_running:
            self._preview_task.cancel()

    def _on_stop_clicked(self) -> None:
        if self._task is not None and self._task.is_running:
            self.stop_button.setText("Stopping…")
            self.run_panel.set_status("Stopping after the current step; writing last/ and keeping best/…")

    # ======================================================================= events
    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Checkpoint):
            if ev.kind == "best":
                self._best_path = ev.path
        elif isinstance(ev, Finished):
            self._finished = ev
            if ev.best_path:
                self._best_path = ev.best_path
            elif ev.last_path and not self._best_path:
                self._best_path = ev.last_path
        self.run_panel.show_event(ev)
        self.event_received.emit(ev)

    def _on_training_finished(self, result: TaskResult) -> None:
        self._release_if_closed()
        self.run_panel.finish()
        throttle_activity_animation(self.viewer, False)
        try:
            self.stop_button.clicked.disconnect(self._on_stop_clicked)
        except (TypeError, RuntimeError):
            pass
        self.settings.setEnabled(True)
        self.start_button.setEnabled(True)
        fin = self._finished
        self.run_panel.show_result(result, fin, self._best_path or (fin.last_path if fin else None))
        self._update_preview_button()
        self.training_finished.emit(result)

    # ====================================================================== preview
    @property
    def model_path(self) -> str | None:
        """The model of the last run (its best checkpoint, or ``last/`` when none improved)."""
        return self._best_path

    def _preview_target(self) -> Any | None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and not is_prediction(active):
            return active
        if isinstance(active, Labels):
            for pair in self.data.pairs:
                if unwrap_proxy(pair.labels) is unwrap_proxy(active) and pair.image is not None:
                    return pair.image
        pairs = self.selected_pairs()
        if pairs:
            return pairs[0].image
        images = [ly for ly in self.viewer.layers
                  if isinstance(ly, Image) and not is_prediction(ly) and len(spatial_shape(ly)) == 2]
        return images[-1] if images else None

    def _update_preview_button(self, *_: Any) -> None:
        target = self._preview_target()
        self.run_panel.show_preview_target(target.name if target is not None else None,
                                           bool(self._best_path) and not self._busy())

    def preview(self, layer: Any | None = None) -> GeneratorTask | None:
        """Segment ``layer`` (default: the current image) with the last run's model, in a worker."""
        if self._busy():
            return None
        if not self._best_path:
            show_error("Preview: train a model first")
            return None
        avoid_triton_llvm_clash()
        layer = self._preview_target() if layer is None else layer
        if layer is None or not isinstance(layer, Image):
            show_error("Preview: select an image layer")
            return None
        if len(spatial_shape(layer)) != 2:
            show_error(f"Preview: '{layer.name}' is not a 2-D image (shape {layer.data.shape})")
            return None
        job = job_from_layer(layer)
        self._preview_layer_ref = layer
        self._preview_done = None
        options = InferenceOptions(device=self.options.value("device") or "auto")
        task = GeneratorTask(predict_jobs, [job], self._best_path, options, description=f"Segmenting {layer.name}",
                             progress_bar=self.progress_bar, cancel_button=self.stop_button,
                             progress_of=lambda ev: None, notify_errors=False, parent=self)
        task.yielded.connect(self._on_preview_event)
        task.finished.connect(self._on_preview_finished)
        if self._preview_task is not None:
            self._preview_task.deleteLater()
        self._preview_task = task
        self.start_button.setEnabled(False)
        self.preview_button.setEnabled(False)
        task.start()
        return task

    def _on_preview_event(self, event: Any) -> None:
        if isinstance(event, PredictStatus):
            self.run_panel.set_status(event.message)
        elif isinstance(event, ImageDone):
            self._preview_done = event
        elif isinstance(event, ImageFailed):
            show_error(f"Preview of {event.job.name} failed: {event.error}")

    def _release_if_closed(self) -> None:
        """A dock closed while it ran is let go once nothing runs any more."""
        if self in _CLOSED_WHILE_RUNNING and not self._busy():
            _CLOSED_WHILE_RUNNING.discard(self)

    def _on_preview_finished(self, result: TaskResult) -> None:
        self._release_if_closed()
        self.start_button.setEnabled(True)
        layer, self._preview_layer_ref = self._preview_layer_ref, None
        done, self._preview_done = self._preview_done, None
        status = self.run_panel.set_status
        if result.status == "failed":
            status(f"Preview failed: {result.error}", error=True)
            notify_failure(result.error, "Preview")
        elif result.status == "completed" and done is not None and layer is not None:
            try:
                shown = show_prediction(self.viewer, done, source="Train dock preview")
            except Exception as exc:  # noqa: BLE001 - never let a layer problem escape into Qt
                report_error(exc, "Showing the preview")
            else:
                res = done.result
                what = f"{int(res.labels.max())} grains" if res.task == "segment" else "class map"
                status(f"Preview: {what} in '{shown.name}' ({fmt_duration(done.elapsed)}).")
        elif result.status == "completed":
            status("Preview failed: see the notification.", error=True)
        else:
            status("Preview cancelled.")
        self._update_preview_button()
        self.preview_finished.emit(result)
