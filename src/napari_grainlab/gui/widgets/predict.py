"""The *Predict* dock: segment (or classify) micrographs in the viewer with a trained model.

Pick a model checkpoint (a folder with ``model.safetensors`` + ``model.json``, chosen with
*Browse…* or from the recent list) and an image layer, or every open image. The prediction runs
in a worker thread (:class:`~napari_grainlab.gui.workers.GeneratorTask`) with a progress bar and
*Cancel*; the model is loaded once per run and kept for the next run. Results become layers:

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

*Predict folder…* runs the model on every image of a folder and writes the results into an output
folder (``NAME_labels.tif``, ``NAME_boundary.tif``, ``NAME_grains.csv``, ``summary.csv``), the same
batch as ``grainlab predict`` (:func:`~napari_grainlab.core.batch.run_batch`): on local Dask
workers (at most two) or the Dask scheduler named under *Advanced*, in a worker thread with a
progress bar and *Cancel*. Images whose outputs are already there are skipped, so running it again
continues a cancelled batch. No layers are added. Every
failure (a corrupt model, a pickle offered as a model, an image stack) becomes a napari
notification; a pickle file is never unpickled (only ``model.json`` is read to describe a model,
and weights are loaded with safetensors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...core.inference.options import InferenceOptions
from ...core.models.checkpoint import CheckpointError, checkpoint_files, read_metadata
from .._engine import ensure_engine
from .._layers import (
    LayerCombo,
    pixel_size_spin,
    is_prediction,
    layer_pixel_size,
)
from .._settings import recent_checkpoints, remember_checkpoint
from ..jobs.predict import (
    EXPECTED_ERRORS,
    FOLDER_WORKERS,
    ImageDone,
    ImageFailed,
    PredictJob,
    PredictStatus,
    job_from_layer,
    predict_folder_events,
    predict_jobs,
    show_prediction,
)
from ..workers import GeneratorTask, TaskResult, report_error

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["PredictWidget"]

ERROR_STYLE = "color: #f0524f;"
HINT_STYLE = "color: #999999;"
#: failures shown one by one as notifications; the rest are counted in the final message
FOLDER_FAILURES_SHOWN = 3


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 10 ** digits else f"{value:#.{digits}g}".rstrip(".")


def _hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def _section_title(text: str) -> QLabel:
    label = QLabel(f"<b>{text}</b>")
    label.setContentsMargins(0, 4, 0, 0)
    return label


def _devices() -> list[str]:
    out = ["auto", "cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            out.append("cuda")
            if torch.cuda.device_count() > 1:
                out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
    except Exception:  # noqa: BLE001 - torch import problems show up when predicting
        pass
    return out


class PredictWidget(QWidget):
    """Dock that runs a trained GrainLab model on image layers.

    Scripts and tests drive it with :meth:`set_checkpoint`, :meth:`set_image_layer`,
    :meth:`set_pixel_size` and :meth:`run`; the file dialogs are the methods
    :meth:`ask_checkpoint_folder` and :meth:`ask_checkpoint_file`, which may be replaced.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.setMinimumWidth(340)
        self._task: GeneratorTask | None = None
        self._checkpoint: Path | None = None
        self._meta: dict | None = None
        self._model_cache: dict = {}
        self._pixel_typed = False
        self._run_summaries: list[str] = []
        self._run_failures = 0
        self._run_total = 0
        self.last_results: list[ImageDone] = []
        self._folder_input: Path | None = None
        self._folder_output: Path | None = None
        self._folder_failures: list[Any] = []
        #: the end of the last folder prediction (a ``core.batch.BatchFinished``), or None
        self.last_batch: Any = None

        # ------------------------------------------------------------------ model
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
        self.recent_combo.activated.connect(self._on_recent)
        self.model_info = QLabel("No model chosen.")
        self.model_info.setWordWrap(True)
        self.model_info.setStyleSheet(HINT_STYLE)
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # ------------------------------------------------------------------ image
        self.image_combo = LayerCombo(self.viewer, Image, "(no image layer)")
        self.image_combo.setToolTip("the micrograph to segment (grayscale or RGB, any bit depth)")
        self.image_combo.layer_changed.connect(self._on_layer_changed)
        self.all_check = QCheckBox("All open images")
        self.all_check.setToolTip("predict every image layer in the viewer, one after the other")
        self.all_check.toggled.connect(self._on_all_toggled)
        self.pixel_spin = pixel_size_spin("<p>Size of one pixel in µm, for grain sizes in µm and ASTM G. Filled in from "
                                          "the layer (its metadata or scale) or the TIFF it came from (SEM vendor "
                                          "tags, ImageJ, resolution tags); a value typed here wins.</p>")
        self.pixel_spin.valueChanged.connect(self._on_pixel_typed)
        self.pixel_hint = QLabel("")
        self.pixel_hint.setStyleSheet(HINT_STYLE)

        # ---------------------------------------------------------------- options
        self.tta_check = QCheckBox("Test-time augmentation")
        self.tta_check.setToolTip("average the prediction over the four flips of the image: smoother "
                                  "boundaries, four times slower")
        self.adabn_check = QCheckBox("AdaBN")
        self.adabn_check.setToolTip("<p>Domain adaptation: re-estimate the network's BatchNorm statistics on "
                                    "each image before predicting. Helps when the micrographs look different "
                                    "from the training data (another microscope, detector or contrast).</p>")
        self.histogram_check = QCheckBox("Histogram match")
        self.histogram_check.setToolTip("<p>Domain adaptation: map the image's intensities onto those of the "
                                        "model's training data before predicting.</p>")
        adapt_row = QHBoxLayout()
        adapt_row.setContentsMargins(0, 0, 0, 0)
        adapt_row.addWidget(self.adabn_check)
        adapt_row.addWidget(self.histogram_check)
        adapt_row.addStretch(1)

        # --------------------------------------------------------------- advanced
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(64, 8192)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setValue(512)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("images are predicted in tiles of this size (multiples of 32); smaller "
                                  "tiles need less memory")
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 1024)
        self.overlap_spin.setSingleStep(16)
        self.overlap_spin.setValue(64)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip("overlap of neighbouring tiles, blended smoothly (no seams)")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        self.batch_spin.setToolTip("tiles per forward pass (halved automatically when memory runs out)")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 1_000_000)
        self.min_size_spin.setSpecialValueText("auto")
        self.min_size_spin.setSuffix(" px")
        self.min_size_spin.setToolTip("smallest grain area in pixels; smaller fragments join a neighbour "
                                      "(auto: 16 px, more on very large images)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(_devices())
        self.device_combo.setToolTip("auto: a CUDA or Apple GPU when there is one, else the CPU")
        self.scheduler_edit = QLineEdit()
        self.scheduler_edit.setPlaceholderText(f"local ({FOLDER_WORKERS} workers)")
        self.scheduler_edit.setToolTip("<p><i>Predict folder…</i> runs on local Dask workers, or on the Dask "
                                       "cluster whose scheduler address is given here "
                                       "(<tt>tcp://host:8786</tt>). Its workers must reach the model, the "
                                       "images and the output folder under the same paths.</p>")
        advanced = QWidget()
        adv_form = QFormLayout(advanced)
        adv_form.setContentsMargins(0, 0, 0, 0)
        adv_form.addRow("Tile size", self.tile_spin)
        adv_form.addRow("Tile overlap", self.overlap_spin)
        adv_form.addRow("Batch size", self.batch_spin)
        adv_form.addRow("Min. grain size", self.min_size_spin)
        adv_form.addRow("Device", self.device_combo)
        adv_form.addRow("Dask scheduler", self.scheduler_edit)
        self.advanced_section = QCollapsible("Advanced", expandedIcon="▼", collapsedIcon="▶")
        self.advanced_section.setDuration(120)
        self.advanced_section.addWidget(advanced)

        # ------------------------------------------------------------------- run
        self.run_button = QPushButton("Predict")
        self.run_button.setToolTip("run the model on the chosen image(s)")
        self.run_button.clicked.connect(self._on_run_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("stop after the current batch of tiles")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.folder_button = QPushButton("Predict folder…")
        self.folder_button.setToolTip("<p>Run the model on every image of a folder and write the results (label "
                                      "images, grain tables, <tt>summary.csv</tt>) into an output folder, on "
                                      "Dask workers. Images already done there are skipped, so running it again "
                                      "continues a cancelled batch.</p>")
        self.folder_button.clicked.connect(self._on_folder_clicked)
        run_row = QHBoxLayout()
        run_row.setContentsMargins(0, 0, 0, 0)
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.folder_button, 1)
        run_row.addWidget(self.cancel_button)

        # ----------------------------------------------------------------- layout
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow(_section_title("Model"))
        form.addRow(path_row)
        form.addRow("Recent", self.recent_combo)
        form.addRow(self.model_info)
        form.addRow(_section_title("Image"))
        form.addRow("Image", self.image_combo)
        form.addRow("", self.all_check)
        form.addRow("Pixel size", self.pixel_spin)
        form.addRow("", self.pixel_hint)
        form.addRow(_section_title("Options"))
        form.addRow(self.tta_check)
        form.addRow("Adaptation", adapt_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(form)
        layout.addWidget(self.advanced_section)
        layout.addWidget(_hline())
        layout.addLayout(run_row)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self._fill_recent()
        self._update_model_dependent()
        self._on_layer_changed(self.image_combo.current_layer())

    # ------------------------------------------------------------------ model
    def ask_checkpoint_folder(self) -> Path | None:
        start = str(self._checkpoint.parent if self._checkpoint else Path.home())
        path = QFileDialog.getExistingDirectory(self, "Model folder (model.safetensors + model.json)", start)
        return Path(path) if path else None

    def ask_checkpoint_file(self) -> Path | None:
        start = str(self._checkpoint if self._checkpoint else Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Model file", start,
                                              "GrainLab model (model.json *.safetensors *.json);;All files (*)")
        return Path(path) if path else None

    def _browse_folder(self) -> None:
        path = self.ask_checkpoint_folder()
        if path is not None:
            self.set_checkpoint(path)

    def _browse_file(self) -> None:
        path = self.ask_checkpoint_file()
        if path is not None:
            self.set_checkpoint(path)

    def _on_edit_finished(self) -> None:
        text = self.checkpoint_edit.text().strip()
        if text and (self._checkpoint is None or Path(text).expanduser() != self._checkpoint):
            self.set_checkpoint(text)

    def _on_recent(self, index: int) -> None:
        path = self.recent_combo.itemData(index)
        if path:
            self.set_checkpoint(path)

    def _fill_recent(self) -> None:
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

    @property
    def checkpoint(self) -> Path | None:
        """The validated model checkpoint, or None."""
        return self._checkpoint

    @property
    def model_metadata(self) -> dict | None:
        return self._meta

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
            self._checkpoint, self._meta = None, None
            self.model_info.setStyleSheet(ERROR_STYLE)
            self.model_info.setText(f"Not a usable model: {exc}")
            self._update_model_dependent()
            show_error(f"Cannot use this model: {exc}")
            return False
        self._checkpoint, self._meta = path, meta
        self.model_info.setStyleSheet(HINT_STYLE)
        self.model_info.setText(self._describe(meta))
        self.model_info.setToolTip(str(path))
        remember_checkpoint(path)
        self._fill_recent()
        self._update_model_dependent()
        return True

    @staticmethod
    def _describe(meta: dict) -> str:
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

    def _update_model_dependent(self) -> None:
        meta = self._meta or {}
        has_ref = bool(meta.get("histogram_reference"))
        self.histogram_check.setEnabled(has_ref or self._meta is None)
        if self._meta is not None and not has_ref:
            self.histogram_check.setChecked(False)
            self.histogram_check.setToolTip("this model records no intensity reference of its training data")
        segment = meta.get("task", "segment") == "segment"
        self.min_size_spin.setEnabled(segment)
        if self._meta is not None:
            patch = (meta.get("training") or {}).get("patch_size")
            if not segment and isinstance(patch, int) and patch >= 64:
                self.tile_spin.setValue(patch)
            elif segment and self.tile_spin.value() < 256:
                self.tile_spin.setValue(512)
        self._update_run_enabled()

    # ------------------------------------------------------------------ image
    def set_image_layer(self, layer: Layer) -> None:
        self.all_check.setChecked(False)
        self.image_combo.set_current_layer(layer)

    def _on_all_toggled(self, on: bool) -> None:
        self._on_layer_changed(self.image_combo.current_layer())

    def _on_layer_changed(self, layer: Layer | None) -> None:
        if self._pixel_typed:
            self._update_run_enabled()
            return
        value, source = layer_pixel_size(layer) if layer is not None else (None, "")
        self.pixel_spin.blockSignals(True)
        self.pixel_spin.setValue(value or 0.0)
        self.pixel_spin.blockSignals(False)
        if self.all_check.isChecked():
            self.pixel_hint.setText("each image's own pixel size (type one to use it for all)")
        elif value:
            self.pixel_hint.setText(f"from the {source}")
        elif layer is not None:
            self.pixel_hint.setText("not in the metadata: type it in for sizes in µm")
        else:
            self.pixel_hint.setText("")
        self._update_run_enabled()

    def _on_pixel_typed(self, value: float) -> None:
        self._pixel_typed = value > 0
        if self._pixel_typed:
            self.pixel_hint.setText("typed in")
        else:
            self._on_layer_changed(self.image_combo.current_layer())

    def set_pixel_size(self, value: float | None) -> None:
        """Type a pixel size in µm (None or 0: use each image's own)."""
        self.pixel_spin.setValue(float(value or 0.0))

    def _update_run_enabled(self) -> None:
        if not self.is_running:
            self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.folder_button.setEnabled(not busy)

    # -------------------------------------------------------------------- run
    @property
    def is_running(self) -> bool:
        return self._task is not None and self._task.is_running

    @property
    def task(self) -> GeneratorTask | None:
        return self._task

    def options(self) -> InferenceOptions:
        return InferenceOptions(
            tta=self.tta_check.isChecked(), adabn=self.adabn_check.isChecked(),
            histogram_match=self.histogram_check.isChecked() and self.histogram_check.isEnabled(),
            tile=int(self.tile_spin.value()), overlap=int(self.overlap_spin.value()),
            batch_size=int(self.batch_spin.value()), min_size=int(self.min_size_spin.value()) or None,
            device=self.device_combo.currentText())

    def _on_run_clicked(self) -> None:
        self.run()

    def _jobs(self) -> list[PredictJob]:
        if self.all_check.isChecked():  # every micrograph, not the maps predicted earlier
            layers = [ly for ly in self.image_combo.layers() if not is_prediction(ly)]
        else:
            layers = [self.image_combo.current_layer()]
        typed = float(self.pixel_spin.value()) if self._pixel_typed else None
        # bottom first, as listed in napari
        return [job_from_layer(layer, typed) for layer in reversed([ly for ly in layers if ly is not None])]

    def run(self) -> GeneratorTask | None:
        """Predict the chosen image(s) in a worker thread; None when nothing could start
        (the reason is shown as a notification)."""
        if self.is_running:
            return None
        text = self.checkpoint_edit.text().strip()
        if text and (self._checkpoint is None or Path(text).expanduser() != self._checkpoint):
            if not self.set_checkpoint(text):
                return None
        if self._checkpoint is None:
            show_error("Choose a model first: a folder with model.safetensors and model.json")
            return None
        try:
            jobs = self._jobs()
        except (MemoryError, ValueError, TypeError) as exc:
            show_error(f"Cannot read the image layer: {exc}")
            return None
        if not jobs:
            show_error("No image layer to predict: open a micrograph first")
            return None
        options = self.options()
        if not ensure_engine(self._set_status):
            return None
        self.last_results = []
        self._run_summaries, self._run_failures, self._run_total = [], 0, len(jobs)
        task = GeneratorTask(predict_jobs, jobs, self._checkpoint, options, self._model_cache,
                             description="Predicting grains", progress_bar=self.progress_bar,
                             cancel_button=self.cancel_button, notify_errors=False, parent=self)
        task.yielded.connect(self._on_event)
        task.finished.connect(self._on_finished)
        self._set_busy(True)
        self._set_status(f"Predicting {len(jobs)} image{'s' if len(jobs) > 1 else ''}…")
        if self._task is not None:
            self._task.deleteLater()
        self._task = task
        task.start()
        return task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, PredictStatus):
            self._set_status(event.message)
        elif isinstance(event, ImageDone):
            try:
                self._show_result(event)
            except Exception as exc:  # noqa: BLE001 - never let a layer problem escape into Qt
                report_error(exc, f"Showing the prediction of {event.job.name}")
                return
            self.last_results.append(event)
            self._run_summaries.append(self._summary_text(event))
        elif isinstance(event, ImageFailed):
            self._run_failures += 1
            show_error(f"Cannot predict {event.job.name}: {event.error}")

    def _summary_text(self, done: ImageDone) -> str:
        res = done.result
        if res.task != "segment":
            probs = res.class_probabilities
            return f"{done.job.name}: {res.image_class} ({float(probs.max()):.0%})"
        s = done.summary
        unit = "µm" if done.job.pixel_size else "px"
        n = int(s.get("grains", 0))
        text = f"{done.job.name}: {n} grain{'' if n == 1 else 's'}, mean ⌀ {_fmt(s.get('mean_diameter'))} {unit}"
        if done.job.pixel_size:
            text += f", ASTM G {_fmt(s.get('astm_g'), 3)}"
        return text

    def _show_result(self, done: ImageDone) -> None:
        show_prediction(self.viewer, done, source="Predict dock")

    def _on_finished(self, result: TaskResult) -> None:
        self._set_busy(False)
        n_done, total = len(self.last_results), self._run_total
        lines = list(self._run_summaries)
        if result.status == "completed":
            head = f"Predicted {n_done} of {total} images in {result.elapsed:.1f} s" if total > 1 else \
                f"Done in {result.elapsed:.1f} s"
            if self._run_failures:
                head += f" ({self._run_failures} failed)"
            self._set_status("\n".join([head, *lines]), error=n_done == 0)
        elif result.status == "cancelled":
            self._set_status("\n".join([f"Cancelled: {n_done} of {total} images predicted", *lines]))
            show_info(f"Prediction cancelled: {n_done} of {total} images done")
        else:
            error = result.error
            self._set_status(f"Prediction failed: {error}", error=True)
            if isinstance(error, EXPECTED_ERRORS):
                show_error(f"Prediction failed: {error}")
            else:
                report_error(error, "Prediction")

    # --------------------------------------------------------- folder batch
    def ask_input_folder(self) -> Path | None:
        start = str(self._folder_input or Path.home())
        path = QFileDialog.getExistingDirectory(self, "Folder of micrographs to predict", start)
        return Path(path) if path else None

    def ask_output_folder(self, input_folder: Path) -> Path | None:
        start = str(self._folder_output or input_folder)
        path = QFileDialog.getExistingDirectory(self, "Output folder (label images, grain tables, summary.csv)",
                                                start)
        return Path(path) if path else None

    def _on_folder_clicked(self) -> None:
        self.predict_folder()

    def _ready_model(self) -> bool:
        text = self.checkpoint_edit.text().strip()
        if text and (self._checkpoint is None or Path(text).expanduser() != self._checkpoint):
            if not self.set_checkpoint(text):
                return False
        if self._checkpoint is None:
            show_error("Choose a model first: a folder with model.safetensors and model.json")
            return False
        return True

    def predict_folder(self, input_folder: str | Path | None = None,
                       output_folder: str | Path | None = None) -> GeneratorTask | None:
        """Predict every image of ``input_folder`` into ``output_folder`` (asked for when None) in a
        worker thread; None when nothing started (the reason is a notification)."""
        if self.is_running or not self._ready_model():
            return None
        source = Path(input_folder) if input_folder is not None else self.ask_input_folder()
        if source is None:
            return None
        if not source.is_dir():
            show_error(f"Not a folder: {source}")
            return None
        out = Path(output_folder) if output_folder is not None else self.ask_output_folder(source)
        if out is None:
            return None
        if out.exists() and not out.is_dir():
            show_error(f"The output {out} exists and is not a folder")
            return None
        if not ensure_engine(self._set_status):
            return None
        self._folder_input, self._folder_output = source, out
        self._folder_failures = []
        self.last_batch = None
        typed = float(self.pixel_spin.value()) if self._pixel_typed else None
        scheduler = self.scheduler_edit.text().strip() or None
        task = GeneratorTask(predict_folder_events, self._checkpoint, [source], out, self.options(),
                             pixel_size=typed, scheduler=scheduler, description="Predicting a folder",
                             progress_bar=self.progress_bar, cancel_button=self.cancel_button,
                             notify_errors=False, parent=self)
        task.yielded.connect(self._on_folder_event)
        task.finished.connect(self._on_folder_finished)
        self._set_busy(True)
        where = scheduler or "local Dask workers"
        self._set_status(f"Predicting the images of {source} into {out} ({where}): starting…")
        if self._task is not None:
            self._task.deleteLater()
        self._task = task
        task.start()
        return task

    def _on_folder_event(self, event: Any) -> None:
        from ...core.batch import BatchFinished, BatchImageDone, BatchImageFailed, BatchStarted

        if isinstance(event, BatchStarted):
            self._set_status(str(event))
        elif isinstance(event, BatchImageDone):
            self._set_status(f"{Path(event.path).name} done ({event.done} of {event.total})")
        elif isinstance(event, BatchImageFailed):
            self._folder_failures.append(event)
            if len(self._folder_failures) <= FOLDER_FAILURES_SHOWN:
                show_error(f"Cannot predict {event.path}: {event.error}")
        elif isinstance(event, BatchFinished):
            self.last_batch = event

    def _on_folder_finished(self, result: TaskResult) -> None:
        self._set_busy(False)
        end = self.last_batch
        out = self._folder_output
        if result.status == "failed" or end is None:
            error = result.error
            if error is None:  # cancelled before the batch started
                self._set_status("Cancelled before any image was predicted")
                return
            self._set_status(f"Folder prediction failed: {error}", error=True)
            if isinstance(error, EXPECTED_ERRORS):
                show_error(f"Folder prediction failed: {error}")
            else:
                report_error(error, "Folder prediction")
            return
        text = f"{end.ok} of {end.total} images done"
        extra = [f"{end.skipped} already done"] if end.skipped else []
        if end.failed:
            extra.append(f"{end.failed} failed")
        text += (f" ({', '.join(extra)})" if extra else "") + f". Results and summary.csv in {out}"
        more = len(self._folder_failures) - FOLDER_FAILURES_SHOWN
        if more > 0:
            text += f"; {more} more failures are listed in summary.csv"
        if end.cancelled:
            self._set_status(f"Cancelled: {text}. Predict the folder again to continue.")
            show_info(f"Folder prediction cancelled: {end.ok} of {end.total} images done")
        else:
            self._set_status(text, error=end.ok == 0 and end.failed > 0)
            show_info(f"Folder prediction: {end.ok} of {end.total} images done"
                      + (f", {end.failed} failed" if end.failed else "") + f" ({out})")

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet(ERROR_STYLE if error else "")
        self.status_label.setText(text)
