"""The Propose grains panel of the Annotate dock: the classical pipeline (sliders with a live,
debounced preview computed off the GUI thread) or a trained model (in a worker: a model folder or
a built-in model's name such as ``generalist``, with the image's grain diameter, ``auto`` =
estimated).  Both work on the image as it is, grey or colour (the classical pipeline then uses the
colour gradient).  A proposal is shown as contours in the layer ``NAME proposal`` and put into the
annotation only on *Apply*, by default into the unannotated pixels only, as one undoable step."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from ...core import annotate as core
from ...core.errors import USER_ERRORS, ConfigError, DataError, GrainLabError
from ...core.inference.options import InferenceOptions
from ...core.models.registry import installed, is_registry_name, list_models
from .._engine import ensure_engine
from .._forms import ComboBox, ParamsForm
from .._layers import role_metadata, role_name, spatial_of
from .._widgets import make_form, progress_bar, show_status, single_shot_timer
from ..workers import GeneratorTask, LatestOnlyRunner, TaskProgress, TaskResult, report_error
from ._common import guarded, live

if TYPE_CHECKING:
    from .dock import AnnotateWidget

__all__ = ["SLIDERS", "ClassicalSettings", "ProposalsPanel", "classical_job", "model_job"]

DEBOUNCE_MS = 200


@dataclass(frozen=True)
class ClassicalSettings:
    """Slider values of the classical proposal (see :func:`~napari_grainlab.core.inference.classical_grains`)."""

    smoothing: float = 1.5
    ridge_scale: float = 1.0
    edge_weight: float = 0.5
    threshold: float = 0.8
    h: float = 2.0
    min_size: int = 30
    polarity: str = "auto"

    def kwargs(self) -> dict[str, Any]:
        s = float(self.ridge_scale)
        return dict(smoothing=float(self.smoothing), ridge_sigma=(s, 2 * s), polarity=self.polarity,
                    edge_weight=float(self.edge_weight), threshold=float(self.threshold), h=float(self.h),
                    min_size=int(self.min_size))


#: (field, label, minimum, maximum, decimals, tooltip)
SLIDERS = (
    ("smoothing", "Smoothing", 0.0, 5.0, 1, "Gaussian pre-smoothing (px); raise it for noisy images"),
    ("ridge_scale", "Line width", 0.5, 6.0, 1,
     "scale (px) of the ridge filter: about half the width of the boundary lines (also twice this)"),
    ("edge_weight", "Edge weight", 0.0, 2.0, 2,
     "share of the intensity step (gradient) in the boundary map; raise it when grains differ in "
     "brightness but boundaries show no line"),
    ("threshold", "Threshold", 0.2, 2.0, 2,
     "grain interiors are where the boundary map is below this times its Otsu level; lower it when "
     "grains leak into each other"),
    ("h", "Marker depth", 0.5, 10.0, 1,
     "depth (px) of the distance maxima that seed grains; raise it when large grains are split, lower "
     "it when touching grains merge"),
    ("min_size", "Min. size", 0, 500, 0, "grains smaller than this (px) join their neighbour"),
)


def classical_job(gray: np.ndarray, settings: ClassicalSettings) -> tuple[np.ndarray, float]:
    """Worker body of the classical proposal (``gray``: the image, grey or colour): labels and seconds taken."""
    from ...core.inference import classical_grains

    t0 = time.perf_counter()
    labels, _ridge = classical_grains(gray, **settings.kwargs())
    return labels, time.perf_counter() - t0


def first_line(error: BaseException | None, limit: int = 200) -> str:
    """The first line of an error's message, at most ``limit`` characters (for a status line)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_job(checkpoint: str, image: np.ndarray, diameter: float | None = None, *, stop) -> Any:
    """Worker body of the model proposal (a generator for :class:`GeneratorTask`): ``image`` grey or colour,
    ``diameter`` its mean grain diameter in px (None: estimated when the model records its scale)."""
    from ...core.inference.tiling import Cancelled

    yield TaskProgress(0, None, "loading the model")
    try:
        return core.propose_from_model(checkpoint, image, stop=stop.is_set, diameter=diameter, with_scaling=True)
    except Cancelled:
        return None


def default_model() -> str:
    """The first installed built-in model's name ('' when there is none)."""
    try:
        return next((m.name for m in list_models() if installed(m) != "not installed"), "")
    except USER_ERRORS:
        return ""


class ProposalsPanel(QWidget):
    """Sliders, the model row, Apply; the proposal layer of the dock's current image."""

    def __init__(self, dock: AnnotateWidget) -> None:
        super().__init__()
        self._dock = dock
        self._proposal_ref: weakref.ref | None = None
        self._model_task: GeneratorTask | None = None
        self._generation = 0  # bumped when the image changes: older model proposals are dropped
        self.proposals_shown = 0
        self.last_source = ""  # "classical" or "model": what made the proposal shown
        self._build()
        self._debounce = single_shot_timer(self, DEBOUNCE_MS, self.propose)
        self.runner = LatestOnlyRunner(self)
        self.runner.result.connect(self.show_proposal)
        self.runner.failed.connect(self._failed)
        self.runner.busy_changed.connect(self._on_busy)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        form = make_form()
        self.sliders: dict[str, QLabeledDoubleSlider | QLabeledSlider] = {}
        defaults = ClassicalSettings()
        for key, text, lo, hi, decimals, tip in SLIDERS:
            if decimals == 0:
                slider = QLabeledSlider(Qt.Orientation.Horizontal)
            else:
                slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
                slider.setDecimals(decimals)
            slider.setRange(lo, hi)
            slider.setValue(getattr(defaults, key))
            slider.setToolTip(tip)
            slider.valueChanged.connect(self.schedule)
            label = QLabel(text)
            label.setToolTip(tip)
            form.addRow(label, slider)
            self.sliders[key] = slider
        self.polarity_combo = ComboBox()
        self.polarity_combo.addItems(["auto", "bright", "dark"])
        self.polarity_combo.setToolTip("boundaries brighter (SEM edge effect) or darker (etched grooves) than grains")
        self.polarity_combo.currentIndexChanged.connect(self.schedule)
        form.addRow("Boundaries", self.polarity_combo)
        layout.addLayout(form)
        self.live_check = QCheckBox("Live")
        self.live_check.setChecked(True)
        self.live_check.setToolTip("update the classical proposal whenever a slider moves")
        self.propose_button = QPushButton("Propose grains")
        self.propose_button.setToolTip("run the classical pipeline (smoothing, ridge filter, marker watershed)")
        self.propose_button.clicked.connect(self.propose)
        row = QHBoxLayout()
        row.addWidget(self.live_check)
        row.addWidget(self.propose_button, 1)
        layout.addLayout(row)
        self.model_edit = QLineEdit(default_model())
        self.model_edit.setPlaceholderText("model folder or built-in name")
        self.model_edit.setToolTip("<p>a segmentation model trained with GrainLab (its folder), or a built-in "
                                   "model's name: <tt>generalist</tt></p>")
        self.model_browse = QToolButton()
        self.model_browse.setText("…")
        self.model_browse.setToolTip("choose a model folder")
        self.model_browse.clicked.connect(self._on_browse_model)
        self.model_button = QPushButton("From model")
        self.model_button.setToolTip("propose grains with the model (runs in the background)")
        self.model_button.clicked.connect(self._on_model_clicked)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(self.model_browse)
        model_row.addWidget(self.model_button)
        layout.addLayout(model_row)
        self.diameter_form = ParamsForm(InferenceOptions(), fields=["diameter"], compact=True, error=ConfigError)
        self.diameter_form.form.setContentsMargins(0, 0, 0, 0)
        diameter = self.diameter_form.editors["diameter"]
        if diameter.label is not None:
            diameter.label.setText("Grain diameter ≈")
        self.diameter_spin = diameter.editor
        layout.addWidget(self.diameter_form)
        self.model_progress = progress_bar()
        self.model_progress.setMaximumHeight(14)
        self.model_cancel = QPushButton("Cancel")
        self.model_cancel.setEnabled(False)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.model_progress, 1)
        progress_row.addWidget(self.model_cancel)
        layout.addLayout(progress_row)
        self.apply_mode = ComboBox()
        self.apply_mode.addItem("into unannotated pixels", "unannotated")
        self.apply_mode.addItem("replacing everything", "replace")
        self.apply_mode.setToolTip("unannotated: your grains stay as they are; replacing: the proposal "
                                   "becomes the annotation (one undoable step either way)")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("put the proposal into the annotation (Ctrl+Z undoes it)")
        self.apply_button.clicked.connect(self.apply_proposal)
        apply_row = QHBoxLayout()
        apply_row.addWidget(self.apply_button)
        apply_row.addWidget(self.apply_mode, 1)
        layout.addLayout(apply_row)
        self.proposal_label = QLabel()
        self.proposal_label.setWordWrap(True)
        layout.addWidget(self.proposal_label)

    # ------------------------------------------------------------------ state
    @property
    def proposal_layer(self) -> Labels | None:
        return live(self._dock.viewer, self._proposal_ref)

    @property
    def busy(self) -> bool:
        return self.runner.is_busy or self._debounce.isActive() or (
            self._model_task is not None and self._model_task.is_running)

    def reset(self) -> None:
        """The dock leaves its image: remove the proposal, drop running and queued proposals."""
        layer = self.proposal_layer
        if layer is not None:
            self._dock.viewer.layers.remove(layer)
        self._proposal_ref = None
        self.runner.discard()
        self._generation += 1
        if self._model_task is not None and self._model_task.is_running:
            self._model_task.cancel()

    def settings(self) -> ClassicalSettings:
        values = {k: s.value() for k, s in self.sliders.items()}
        values["min_size"] = int(values["min_size"])
        return ClassicalSettings(polarity=self.polarity_combo.currentText(), **values)

    def set_settings(self, settings: ClassicalSettings) -> None:
        for key, slider in self.sliders.items():
            slider.setValue(getattr(settings, key))
        self.polarity_combo.setCurrentText(settings.polarity)

    # ------------------------------------------------------------------ classical
    def schedule(self, *_: Any) -> None:
        if self.live_check.isChecked() and self._dock._gray is not None:
            self._debounce.start()

    @guarded("Propose grains")
    def propose(self, *_: Any) -> None:
        """Run the classical proposal in a worker (only the newest request is shown)."""
        self._debounce.stop()
        if self._dock._gray is None:
            raise self._dock.no_image_error()
        self.runner.submit(classical_job, self._dock._gray, self.settings())

    def _on_busy(self, busy: bool) -> None:
        if busy:
            show_status(self.proposal_label, "Proposing grains…")

    def _failed(self, error: BaseException) -> None:
        show_status(self.proposal_label, f"Proposal failed: {error}", error=True)
        report_error(error, "Propose grains")

    def show_proposal(self, result: tuple[np.ndarray, float], source: str = "classical", scale: str = "",
                      how: str = "") -> None:
        """Show a proposal; ``scale``: the grain-scale report of a model's proposal (the diameter used);
        ``how``: where it came from, instead of the time it took."""
        labels_data, elapsed = result
        dock = self._dock
        labels = dock.labels_layer
        if labels is None or labels_data.shape != labels.data.shape:
            return  # the image changed meanwhile
        layer = self.proposal_layer
        if layer is None:
            layer = dock.viewer.add_labels(labels_data, name=role_name(dock._base_name, "proposal"), opacity=0.8,
                                           metadata=role_metadata("proposal", source=dock._base_name),
                                           **spatial_of(labels))
            layer.contour = 1
            layer.editable = False
            self._proposal_ref = weakref.ref(layer)
            dock.viewer.layers.selection.active = labels
            dock._refresh_layer_choices()
        else:
            layer.data = labels_data
            layer.visible = True
        self.proposals_shown += 1
        self.last_source = source
        n = int(labels_data.max())
        show_status(self.proposal_label,
                    f"Proposal ({source}): {n} grains {how or f'in {elapsed:.2f} s'}{f'; {scale}' if scale else ''}; "
                    "Apply puts them into the annotation")

    # ------------------------------------------------------------------ model
    def _on_browse_model(self) -> None:
        path = self._dock.ask_checkpoint()
        if path is not None:
            self.model_edit.setText(str(path))

    def _on_model_clicked(self) -> None:
        self.propose_from_model()

    def diameter(self) -> float | None:
        """The grain diameter (px) for the model proposal; None: ``auto`` (estimated)."""
        return self.diameter_form.editors["diameter"].value()

    @guarded("Proposal from model")
    def propose_from_model(self, checkpoint: str | Path | None = None) -> GeneratorTask | None:
        """Segment the image with a trained model (a folder, or a built-in model's name) in a worker; the
        result becomes the proposal. When the Grain tool's maps of this image, model and diameter exist, their
        grains are the proposal at once (the same prediction) and None is returned."""
        gray = self._dock._gray
        if gray is None:
            raise self._dock.no_image_error()
        if self._model_task is not None and self._model_task.is_running:
            return None
        checkpoint = str(checkpoint or self.model_edit.text()).strip()
        if not checkpoint:
            path = self._dock.ask_checkpoint()
            if path is None:
                return None
            checkpoint = str(path)
            self.model_edit.setText(checkpoint)
        if not is_registry_name(checkpoint) and not Path(checkpoint).exists():
            raise DataError(f"no model at {checkpoint}")
        seg = self._dock.prompts.segmenter  # the Grain tool's maps of this image, model and diameter
        if seg is not None and checkpoint == str(self.model_edit.text()).strip():
            # the same prediction (predict_array with the same image, model, diameter and defaults): no second run
            scale = seg.scaling.text() if seg.scaling is not None else ""
            self.show_proposal((seg.labels.copy(), 0.0), source="model", scale=scale,
                               how="from the Grain tool's maps (no second prediction)")
            return None
        if not ensure_engine(lambda text, error=False: self.proposal_label.setText(text)):
            return None
        task = GeneratorTask(model_job, checkpoint, gray, self.diameter(), description="Grain proposal from model",
                             progress_bar=self.model_progress, cancel_button=self.model_cancel, parent=self)
        started = time.perf_counter()
        shape = gray.shape[:2]
        generation = self._generation
        task.finished.connect(lambda result: self._model_finished(result, shape, started, generation))
        self._model_task = task
        self.model_button.setEnabled(False)
        self.proposal_label.setText("Running the model…")
        task.start()
        return task

    def _model_finished(self, result: TaskResult, shape: tuple[int, int], started: float, generation: int) -> None:
        """The model's worker ended.  A failure was reported by the task already (one line for a
        user's error, the traceback for a bug); the status line gets its first line."""
        self.model_button.setEnabled(True)
        if generation != self._generation:
            self.proposal_label.setText("Model proposal dropped: the image changed while it ran")
        elif result.status == "failed":
            show_status(self.proposal_label, f"Model proposal failed: {first_line(result.error)}", error=True)
        elif result.status == "cancelled":
            self.proposal_label.setText("Model proposal cancelled")
        elif not isinstance(result.value, tuple) or np.shape(result.value[0]) != shape:
            show_status(self.proposal_label, "Model proposal failed: the model gave no labels of the image's size",
                        error=True)
        else:
            labels, scaling = result.value
            self.show_proposal((labels, time.perf_counter() - started), source="model",
                               scale=scaling.text() if scaling is not None else "")

    # ------------------------------------------------------------------ apply
    @guarded("Apply proposal")
    def apply_proposal(self, *_: Any, mode: str | None = None) -> bool:
        """Put the proposal into the annotation (one undoable step): ``"unannotated"`` pixels
        only (default) or ``"replace"`` everything."""
        dock = self._dock
        labels = dock._require()
        proposal = self.proposal_layer
        if proposal is None:
            raise GrainLabError("no proposal yet; press Propose grains first")
        mode = mode or self.apply_mode.currentData()
        data = np.asarray(labels.data)
        if mode == "replace":
            top = int(proposal.data.max(initial=0))
            if data.dtype.kind in "iu" and top > np.iinfo(data.dtype).max:
                raise DataError(f"the proposal has grain ids up to {top}, more than the {data.dtype} labels layer "
                                f"{labels.name!r} can hold; choose 'New layer' under Grains for a uint32 layer")
            new = proposal.data.astype(data.dtype, copy=False)
            edit = core.LabelEdit.between(data, new)
        else:
            edit = core.fill_unannotated(data, proposal.data, min_fraction=0.5, min_size=4)
        changed = dock._apply_edit(edit, labels)
        dock.viewer.layers.remove(proposal)
        self._proposal_ref = None
        dock._refresh_layer_choices()
        self.proposal_label.setText("Applied: Ctrl+Z undoes it" if changed else "Nothing to apply: every pixel "
                                    "is annotated already")
        dock.viewer.layers.selection.active = labels
        return changed
