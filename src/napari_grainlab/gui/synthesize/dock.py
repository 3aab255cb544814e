"""The *Synthesize* dock: tune the synthetic-micrograph generator with a live preview and
write training datasets.

The parameter sections (:mod:`.parameters`) are generated from the generator's dataclasses;
the dock adds the live preview (:mod:`.preview`), the dataset writer (:mod:`.dataset`) and
parameter files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...core.synthetic import ParameterError, SynthParams
from .._engine import start_background_loading
from .._napari_compat import labels_layer_ready
from .._widgets import (
    ask_folder,
    ask_open_file,
    ask_save_file,
    confirm,
    docking_change,
    hline,
    show_status,
    single_shot_timer,
    status_label,
)
from ..workers import GeneratorTask, LatestOnlyRunner, report_error, shutdown_on_destroy
from .dataset import DatasetPanel
from .parameters import ParametersPanel
from .preview import PreviewLayers, PreviewResult, make_preview, preview_params

if TYPE_CHECKING:
    import napari

__all__ = ["SynthesizeWidget"]

DEBOUNCE_MS = 150


class SynthesizeWidget(QWidget):
    """Dock for the synthetic micrograph generator.

    * parameters in collapsible sections, built from the generator's dataclasses;
    * a live preview (debounced, generated off the main thread) in the layers
      ``synthetic preview`` and ``synthetic preview labels`` (found by their roles
      ``synthetic_image`` / ``synthetic_labels``, so they may be renamed);
    * *Generate dataset…* writes a dataset folder in a worker thread with progress and Cancel;
    * parameters to and from JSON.

    The dialogs are methods (:meth:`ask_directory`, :meth:`ask_overwrite`,
    :meth:`ask_save_path`, :meth:`ask_open_path`) that scripts and tests may replace.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # the previews' Labels layers need pandas: import it in the background once the dock is shown
        start_background_loading(self, napari_viewer, engine=False, layers=True)
        self.viewer = napari_viewer
        self.setMinimumWidth(380)
        self._last_param_file: Path | None = None
        self._preview_layers = PreviewLayers(self.viewer)

        self.parameters = ParametersPanel()
        self.parameters.changed.connect(self._schedule_preview)
        self.forms = self.parameters.forms
        self.sections = self.parameters.sections
        self.seed_spin = self.parameters.seed_spin
        self.dice_button = self.parameters.dice_button
        self.scroll_area = self.parameters

        # preview controls
        self.live_check = QCheckBox("Live preview")
        self.live_check.setChecked(True)
        self.live_check.setToolTip("regenerate the preview layers whenever a parameter changes")
        self.live_check.toggled.connect(self._on_live_toggled)
        self.preview_button = QPushButton("Update preview")
        self.preview_button.clicked.connect(self.refresh_preview)
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.live_check)
        preview_row.addStretch(1)
        preview_row.addWidget(self.preview_button)
        self.status_label = status_label()

        # dataset
        self.dataset = DatasetPanel(self)
        self.count_spin = self.dataset.count_spin
        self.generate_button = self.dataset.generate_button
        self.cancel_button = self.dataset.cancel_button
        self.progress_bar = self.dataset.progress_bar
        self.dataset_label = self.dataset.dataset_label

        # parameter files
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("save the parameters as JSON")
        self.save_button.clicked.connect(lambda: self.save_parameters())
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("load parameters from JSON (also a dataset's dataset.json)")
        self.load_button.clicked.connect(lambda: self.load_parameters())
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("reset every parameter to its default")
        self.reset_button.clicked.connect(self.reset_parameters)
        files_row = QHBoxLayout()
        files_row.addWidget(QLabel("Parameters"))
        files_row.addWidget(self.save_button)
        files_row.addWidget(self.load_button)
        files_row.addWidget(self.reset_button)

        bottom = QVBoxLayout()
        bottom.setSpacing(4)
        bottom.addLayout(preview_row)
        bottom.addWidget(self.status_label)
        bottom.addWidget(hline())
        bottom.addWidget(self.dataset)
        bottom.addWidget(hline())
        bottom.addLayout(files_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.parameters, 1)
        layout.addWidget(hline())
        layout.addLayout(bottom)

        # preview machinery
        self._debounce = single_shot_timer(self, DEBOUNCE_MS, self.refresh_preview)
        self._busy_hint = single_shot_timer(self, 300, self._show_busy_hint)
        self._waiting_preview: PreviewResult | None = None
        self._layers_poll: QTimer | None = None
        self._runner = LatestOnlyRunner(self)
        self._runner.result.connect(self._show_preview)
        self._runner.failed.connect(self._preview_failed)
        self._runner.busy_changed.connect(self._on_busy_changed)
        self.destroyed.connect(shutdown_on_destroy(self._runner))

        self._schedule_preview()

    # ---------------------------------------------------------------------- layout
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.parameters.align_labels()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.StyleChange, QEvent.Type.FontChange) and self.isVisible():
            QTimer.singleShot(0, self.parameters.align_labels)

    def event(self, ev) -> bool:
        if docking_change(self, ev) == "undocked":  # stop the dataset run and the previews now
            self._on_undocked()
        return super().event(ev)

    def _on_undocked(self) -> None:
        """The dock was removed: cancel the dataset being written (the images written so far stay) and
        drop the pending preview; the widget works again if it is docked anew."""
        self._debounce.stop()
        self._runner.discard()
        self._waiting_preview = None
        if self._layers_poll is not None:
            self._layers_poll.stop()
        self.dataset.cancel()

    # ------------------------------------------------------------------ parameters
    def params(self) -> SynthParams:
        """The parameters shown in the dock (raises ParameterError if they are invalid)."""
        return self.parameters.params()

    def set_params(self, params: SynthParams) -> None:
        """Show ``params`` in the dock (one preview update)."""
        self.parameters.set_params(params)
        self._schedule_preview()

    @property
    def seed(self) -> int:
        return self.parameters.seed

    def set_seed(self, seed: int) -> None:
        self.seed_spin.setValue(int(seed))

    def randomize_seed(self) -> None:
        self.parameters.randomize_seed()

    def reset_parameters(self) -> None:
        self.set_params(SynthParams())

    # --------------------------------------------------------------------- preview
    def _on_live_toggled(self, on: bool) -> None:
        if on:
            self.refresh_preview()

    def _schedule_preview(self) -> None:
        if self.live_check.isChecked():
            self._debounce.start()

    def refresh_preview(self) -> None:
        """Regenerate the preview now (in a worker; only the newest request is shown)."""
        self._debounce.stop()
        try:
            params = self.params()
        except ParameterError as exc:
            self._runner.discard()
            self.set_status(str(exc), error=True)
            return
        self.parameters.valid_params = params
        self._runner.submit(make_preview, *preview_params(params), seed=self.seed)

    @property
    def preview_busy(self) -> bool:
        """A preview is being generated, waits for the debounce timer or for its layers to be ready."""
        return self._runner.is_busy or self._debounce.isActive() or self._waiting_preview is not None

    def _on_busy_changed(self, busy: bool) -> None:
        if busy:
            self._busy_hint.start()
        else:
            self._busy_hint.stop()

    def _show_busy_hint(self) -> None:
        if self._runner.is_busy:
            self.set_status("Updating preview…")

    def _preview_failed(self, error: BaseException) -> None:
        self.set_status(f"Preview failed: {error}", error=True)
        if not isinstance(error, ParameterError):
            report_error(error, "Preview")

    def _show_preview(self, result: PreviewResult) -> None:
        if not labels_layer_ready():
            # the preview's Labels layer is napari's first, as a rule, and what it imports (pandas) is still
            # being imported in the background (start_background_loading): show the newest preview once that
            # is done (polled every 25 ms), not by importing it on the GUI thread now
            self._waiting_preview = result
            if self._layers_poll is None:
                self._layers_poll = QTimer(self)
                self._layers_poll.setInterval(25)
                self._layers_poll.timeout.connect(self._show_waiting_preview)
            self._layers_poll.start()
            self.set_status("Preparing the preview layers…")
            return
        self._preview_layers.show(result)
        p = result.params
        text = f"Preview {p.height} × {p.width} px, {result.n_grains} grains, {result.elapsed:.2f} s"
        if result.note:
            text += f" ({result.note})"
        self.set_status(text)

    def _show_waiting_preview(self) -> None:
        if not labels_layer_ready():
            return
        self._layers_poll.stop()
        result, self._waiting_preview = self._waiting_preview, None
        if result is not None:
            self._show_preview(result)

    def set_status(self, text: str, error: bool = False) -> None:
        self._busy_hint.stop()
        show_status(self.status_label, text, error)

    # --------------------------------------------------------------------- dataset
    def ask_directory(self) -> Path | None:
        """Ask for the dataset folder (None: cancelled)."""
        last = self.dataset.last_folder
        return ask_folder(self, "Folder for the synthetic dataset", last.parent if last else Path.home())

    def ask_overwrite(self, folder: Path) -> bool:
        """Ask whether to replace the dataset files in the non-empty ``folder``."""
        return confirm(self, "Folder is not empty", f"{folder} is not empty.",
                       "Replace the dataset in it? Files in images/, labels/, boundaries/, tables/ and dataset.json "
                       "are deleted first; other files stay.", "Replace")

    @property
    def dataset_running(self) -> bool:
        return self.dataset.running

    @property
    def _task(self) -> GeneratorTask | None:
        """The last dataset task (for tests)."""
        return self.dataset.task

    def generate_dataset(self, folder: str | Path | None = None) -> GeneratorTask | None:
        """Write ``count`` images into ``folder`` (asked for when None) in a worker thread."""
        return self.dataset.generate(folder)

    def cancel_dataset(self) -> None:
        self.dataset.cancel()

    # ------------------------------------------------------------- parameter files
    def ask_save_path(self) -> Path | None:
        start = self._last_param_file or Path.home() / "synth_params.json"
        return ask_save_file(self, "Save generator parameters", start, "JSON (*.json)", ".json")

    def ask_open_path(self) -> Path | None:
        start = self._last_param_file.parent if self._last_param_file else Path.home()
        return ask_open_file(self, "Load generator parameters", start, "JSON (*.json);;All files (*)")

    def save_parameters(self, path: str | Path | None = None) -> Path | None:
        try:
            params = self.params()
        except ParameterError as exc:
            show_error(f"Cannot save invalid parameters: {exc}")
            return None
        path = self.ask_save_path() if path is None else Path(path)
        if path is None:
            return None
        try:
            params.save(path)
        except OSError as exc:
            show_error(f"Cannot save parameters to {path}: {exc}")
            return None
        self._last_param_file = path
        show_info(f"Saved generator parameters to {path}")
        return path

    def load_parameters(self, path: str | Path | None = None) -> SynthParams | None:
        path = self.ask_open_path() if path is None else Path(path)
        if path is None:
            return None
        try:
            params = SynthParams.load(path)
            params.validate()
            self.set_params(params)
        except (ParameterError, ValueError, TypeError) as exc:
            show_error(f"Cannot load parameters from {path}: {exc}")
            return None
        self._last_param_file = path
        return params
