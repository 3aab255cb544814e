"""The *Predict* dock: segment (or classify) micrographs in the viewer with a trained model.

Pick a model checkpoint (:mod:`.model`: a folder with ``model.safetensors`` + ``model.json``,
chosen with *Browse…* or from the model list, which offers the built-in models first, and checked
at once from its files' headers: a broken folder, or a built-in model that is not installed, is
named in red and disables *Predict*; when the dock opens, the model used last, else the built-in
generalist, is chosen) and an image layer, or every open image (:mod:`.image`; an RGB layer is
predicted in colour); the options (:mod:`.options`) are generated from
:class:`~napari_grainlab.core.inference.options.InferenceOptions`, with the grain diameter
(``auto``: estimated) shown first.  The status line tells each image's grain diameter and the
factor it was resized by for the model, and the result layers' metadata records them.  The prediction runs in a
worker thread (:mod:`napari_grainlab.gui.jobs.predict`) with a progress bar and *Cancel*; the
model is loaded once per run and kept for the next run.  Results become layers tagged with their
roles (``layer.metadata["grainlab"]["role"]``):

``<image> grains``
    Labels, one label per grain, with the per-grain table as ``features`` (area, equivalent
    diameter, aspect ratio, orientation, … in µm when the pixel size is known), so hovering over
    a grain shows its numbers;
``<image> boundary``
    Image, the boundary probability (``inferno``, additive blending);
``<image> classes`` / ``<image> confidence``
    for a classification model: the class map (Labels whose features name the classes) and the
    probability of the chosen class.

Running again replaces the data of these layers and keeps their display settings.
*Predict folder…* (:mod:`.folder`) writes the results of a whole folder into files instead.
Every failure (a corrupt model, a pickle offered as a model, an image stack) becomes a napari
notification; a pickle file is never unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QPoint, QTimer
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from ...core.errors import USER_ERRORS
from ...core.inference.options import InferenceOptions
from .._engine import ensure_engine, start_background_loading
from .._widgets import ask_folder, ask_open_file, fmt_number, hline, progress_bar, show_status, status_label
from ..jobs.predict import ImageDone, ImageFailed, PredictStatus, predict_jobs, show_prediction
from ..workers import GeneratorTask, TaskResult, report_error
from .folder import FolderPrediction
from .image import ImagePanel
from .model import ModelPanel
from .options import OptionsPanel

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["PredictWidget"]

#: the dock's names for the editors of some options (scripts and tests use them)
EDITOR_ATTRIBUTES = {"tile_spin": "tile", "overlap_spin": "overlap", "batch_spin": "batch_size",
                     "min_size_spin": "min_size", "tta_check": "tta", "adabn_check": "adabn",
                     "histogram_check": "histogram_match", "device_combo": "device"}
#: the options section that also holds the Dask scheduler of *Predict folder…*
SCHEDULER_GROUP = "Device"
FOLDER_TIP = ("<p>Run the model on every image of a folder and write the results (label images, grain tables, "
              "<tt>summary.csv</tt>) into an output folder, on Dask workers. Images already done there are "
              "skipped, so running it again continues a cancelled batch.</p>")


def _title(text: str) -> QLabel:
    label = QLabel(f"<b>{text}</b>")
    label.setContentsMargins(0, 4, 0, 0)
    return label


def _align_form_labels(root: QWidget) -> None:
    """Give every form label under ``root`` the width that puts all editors of the dock on one
    column (labels in indented sections get less)."""
    labels = []
    for form in root.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if item is not None and item.widget() is not None:
                labels.append(item.widget())
    if not labels:
        return
    for label in labels:
        label.setMinimumWidth(0)
    left = {label: label.mapTo(root, QPoint(0, 0)).x() for label in labels}
    right = max(left[label] + label.sizeHint().width() for label in labels)
    for label in labels:
        label.setMinimumWidth(right - left[label])


def scale_text(result: Any) -> str:
    """The grain scale of a prediction for the status line (``grain diameter ≈ 23 px (estimated), scaled
    ×1.39``); '' when nothing is known (a model without a training scale and no diameter given)."""
    scaling = getattr(result, "scaling", None)
    return scaling.text() if scaling is not None else ""


class PredictWidget(QWidget):
    """Dock that runs a trained GrainLab model on image layers.

    Scripts and tests drive it with :meth:`set_checkpoint`, :meth:`set_image_layer`,
    :meth:`set_pixel_size`, :meth:`set_options` and :meth:`run`; the file dialogs are the methods
    :meth:`ask_checkpoint_folder`, :meth:`ask_checkpoint_file`, :meth:`ask_input_folder` and
    :meth:`ask_output_folder`, which may be replaced.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # import torch & co. in the background once the dock is shown, not on the GUI thread at the first run,
        # and what napari's first Labels layer needs (pandas)
        start_background_loading(self, napari_viewer, engine=True, layers=True)
        self.viewer = napari_viewer
        self.setMinimumWidth(340)
        self._task: GeneratorTask | None = None
        self._model_cache: dict = {}
        self._run_summaries: list[str] = []
        self._run_failures = 0
        self._run_total = 0
        self.last_results: list[ImageDone] = []

        self.model_panel = ModelPanel(self)
        self.model_panel.model_changed.connect(self._on_model_changed)
        self.model_panel.state_changed.connect(self._sync_run_buttons)
        self._busy = False
        self.checkpoint_edit = self.model_panel.checkpoint_edit
        self.browse_button = self.model_panel.browse_button
        self.recent_combo = self.model_panel.recent_combo
        self.model_info = self.model_panel.model_info
        self.image_panel = ImagePanel(self.viewer)
        self.image_combo = self.image_panel.image_combo
        self.all_check = self.image_panel.all_check
        self.pixel_spin = self.image_panel.pixel_spin
        self.pixel_hint = self.image_panel.pixel_hint
        self.options_panel = OptionsPanel()
        for attr, name in EDITOR_ATTRIBUTES.items():
            setattr(self, attr, self.options_panel.editors[name].editor)
        self.folder = FolderPrediction(self)
        self.scheduler_edit = self.folder.scheduler_edit
        self.options_panel.forms[SCHEDULER_GROUP].add_row("Dask scheduler", self.scheduler_edit)

        self.run_button = QPushButton("Predict")
        self.run_button.setToolTip("run the model on the chosen image(s)")
        self.run_button.clicked.connect(lambda: self.run())
        self.folder_button = QPushButton("Predict folder…")
        self.folder_button.setToolTip(FOLDER_TIP)
        self.folder_button.clicked.connect(lambda: self.predict_folder())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("stop after the current batch of tiles")
        self.progress_bar = progress_bar()
        self.status_label = status_label()
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        run_row = QHBoxLayout()
        run_row.setContentsMargins(0, 0, 0, 0)
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.folder_button, 1)
        run_row.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        for title, panel in (("Model", self.model_panel), ("Image", self.image_panel),
                             ("Options", self.options_panel)):
            layout.addWidget(_title(title))
            layout.addWidget(panel)
        layout.addWidget(hline())
        layout.addLayout(run_row)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._on_model_changed()
        self._sync_run_buttons()

    # ----------------------------------------------------------------- layout
    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self._align_labels)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.StyleChange, QEvent.Type.FontChange) and self.isVisible():
            QTimer.singleShot(0, self._align_labels)

    def _align_labels(self) -> None:
        try:
            _align_form_labels(self)
        except RuntimeError:  # the dock is gone
            pass

    # ------------------------------------------------------------------ model
    def ask_checkpoint_folder(self) -> Path | None:
        current = self.checkpoint
        return ask_folder(self, "Model folder (model.safetensors + model.json)",
                          current.parent if current else Path.home())

    def ask_checkpoint_file(self) -> Path | None:
        return ask_open_file(self, "Model file", self.checkpoint or Path.home(),
                             "GrainLab model (model.json *.safetensors *.json);;All files (*)")

    @property
    def checkpoint(self) -> Path | None:
        """The validated model checkpoint, or None."""
        return self.model_panel.checkpoint

    @property
    def model_metadata(self) -> dict | None:
        return self.model_panel.metadata

    def set_checkpoint(self, path: str | Path) -> bool:
        """Choose and check a model (see :meth:`ModelPanel.set_checkpoint`)."""
        return self.model_panel.set_checkpoint(path)

    def _on_recent(self, index: int) -> None:
        self.model_panel.choose_recent(index)

    def _on_model_changed(self) -> None:
        self.options_panel.apply_model(self.model_metadata)

    # ----------------------------------------------------------- image, options
    def set_image_layer(self, layer: Layer) -> None:
        self.image_panel.set_image_layer(layer)

    def set_pixel_size(self, value: float | None) -> None:
        """Type a pixel size in µm (None or 0: use each image's own)."""
        self.image_panel.set_pixel_size(value)

    def options(self) -> InferenceOptions:
        """The prediction options shown in the dock."""
        return self.options_panel.options()

    def set_options(self, options: InferenceOptions) -> None:
        self.options_panel.set_options(options)

    def run_options(self) -> InferenceOptions | None:
        """The options of a run about to start, with the engine loaded; None (the reason shown)
        when an option is out of range or PyTorch cannot be loaded."""
        try:
            options = self.options()
        except USER_ERRORS as exc:
            show_error(f"Cannot predict: {exc}")
            return None
        return options if ensure_engine(self.set_status) else None

    # -------------------------------------------------------------------- run
    @property
    def is_running(self) -> bool:
        return self._task is not None and self._task.is_running

    @property
    def task(self) -> GeneratorTask | None:
        return self._task

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._sync_run_buttons()

    def _sync_run_buttons(self) -> None:
        """*Predict* and *Predict folder…* are enabled unless a run is on or the chosen model failed
        its check (the reason is in the model line)."""
        broken = self.model_panel.blocks_run
        for button, tip in ((self.run_button, "run the model on the chosen image(s)"),
                            (self.folder_button, FOLDER_TIP)):
            button.setEnabled(not self._busy and not broken)
            button.setToolTip("choose a usable model first (see the model line above)" if broken else tip)

    def start_task(self, task: GeneratorTask, status: str) -> None:
        """Start ``task`` as the dock's run (the previous one is released)."""
        self.set_busy(True)
        self.set_status(status)
        if self._task is not None:
            self._task.deleteLater()
        self._task = task
        task.start()

    def run(self) -> GeneratorTask | None:
        """Predict the chosen image(s) in a worker thread; None when nothing could start
        (the reason is shown as a notification)."""
        if self.is_running or not self.model_panel.ready():
            return None
        try:
            jobs = self.image_panel.jobs()
        except (MemoryError, ValueError, TypeError) as exc:
            show_error(f"Cannot read the image layer: {exc}")
            return None
        if not jobs:
            show_error("No image layer to predict: open a micrograph first")
            return None
        options = self.run_options()
        if options is None:
            return None
        self.last_results = []
        self._run_summaries, self._run_failures, self._run_total = [], 0, len(jobs)
        task = GeneratorTask(predict_jobs, jobs, self.checkpoint, options, self._model_cache,
                             description="Predicting grains", progress_bar=self.progress_bar,
                             cancel_button=self.cancel_button, notify_errors=False, parent=self)
        task.yielded.connect(self._on_event)
        task.finished.connect(self._on_finished)
        self.start_task(task, f"Predicting {len(jobs)} image{'s' if len(jobs) > 1 else ''}…")
        return task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, PredictStatus):
            self.set_status(event.message)
        elif isinstance(event, ImageDone):
            try:
                show_prediction(self.viewer, event, source="Predict dock")
            except Exception as exc:  # noqa: BLE001 - never let a layer problem escape into Qt
                report_error(exc, f"Showing the prediction of {event.job.name}")
                return
            self.last_results.append(event)
            self._run_summaries.append(self._summary_text(event))
        elif isinstance(event, ImageFailed):
            self._run_failures += 1
            show_error(f"Cannot predict {event.job.name}: {event.error}")

    @staticmethod
    def _summary_text(done: ImageDone) -> str:
        res = done.result
        if res.task != "segment":
            probs = res.class_probabilities
            return f"{done.job.name}: {res.image_class} ({float(probs.max()):.0%})"
        s = done.summary
        unit = "µm" if done.job.pixel_size else "px"
        n = int(s.get("grains", 0))
        mean = fmt_number(s.get("mean_diameter"))
        text = f"{done.job.name}: {n} grain{'' if n == 1 else 's'}, mean ⌀ {mean} {unit}"
        if done.job.pixel_size:
            text += f", ASTM G {fmt_number(s.get('astm_g'), 3)}"
        scale = scale_text(res)
        return f"{text}; {scale}" if scale else text

    def _on_finished(self, result: TaskResult) -> None:
        self.set_busy(False)
        n_done, total = len(self.last_results), self._run_total
        lines = list(self._run_summaries)
        if result.status == "completed":
            head = f"Predicted {n_done} of {total} images in {result.elapsed:.1f} s" if total > 1 else \
                f"Done in {result.elapsed:.1f} s"
            if self._run_failures:
                head += f" ({self._run_failures} failed)"
            self.set_status("\n".join([head, *lines]), error=n_done == 0)
        elif result.status == "cancelled":
            self.set_status("\n".join([f"Cancelled: {n_done} of {total} images predicted", *lines]))
            show_info(f"Prediction cancelled: {n_done} of {total} images done")
        else:
            self.set_status(f"Prediction failed: {result.error}", error=True)
            report_error(result.error, "Prediction")

    # --------------------------------------------------------- folder batch
    def ask_input_folder(self) -> Path | None:
        return ask_folder(self, "Folder of micrographs to predict", self.folder.input or Path.home())

    def ask_output_folder(self, input_folder: Path) -> Path | None:
        return ask_folder(self, "Output folder (label images, grain tables, summary.csv)",
                          self.folder.output or input_folder)

    def predict_folder(self, input_folder: str | Path | None = None,
                       output_folder: str | Path | None = None) -> GeneratorTask | None:
        """Predict every image of ``input_folder`` into ``output_folder`` (asked for when None) in a
        worker thread; None when nothing started (the reason is a notification)."""
        return self.folder.start(input_folder, output_folder)

    @property
    def last_batch(self) -> Any:
        """The end of the last folder prediction (a ``core.batch.BatchFinished``), or None."""
        return self.folder.last_batch

    def set_status(self, text: str, error: bool = False) -> None:
        show_status(self.status_label, text, error)
