"""The Retrain panel of the Annotate dock: fine-tune the current model on the annotations, round by round.

*Retrain* gathers every annotated image open in napari (its ``NAME annotation`` layer, unsaved edits
included) and the annotated images of the dataset folder, and runs one
:func:`~napari_grainlab.core.retrain.retrain` round in a worker (the Train dock's engine, few-shot defaults,
progress, *Stop*).  The round's model is kept (``models/round-NN`` in the dataset folder, else in the cache
folder) and becomes the current model: the Propose grains row shows it, and the Grain / Box tools' maps and a
model proposal are predicted again with it.  *Round* lists the rounds with their validation score; choosing
one (or the starting model) goes back to it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...core.errors import ConfigError, DataError, GrainLabError
from ...core.retrain import RetrainOptions, RoundStore
from .._engine import ensure_engine
from .._forms import ComboBox, ParamsForm
from .._layers import layers_with_role
from .._widgets import progress_bar, show_status
from ..workers import GeneratorTask, TaskProgress, TaskResult
from ._common import guarded
from .layers import image_plane
from .proposals import first_line

if TYPE_CHECKING:
    from .dock import AnnotateWidget

__all__ = ["RetrainPanel", "retrain_job"]

#: the options shown in the panel (the rest keep their few-shot defaults)
SHOWN = ("epochs", "steps_per_epoch")


def _progress(event: Any) -> TaskProgress | None:
    if isinstance(event, TaskProgress):
        return event
    step, total = getattr(event, "step", None), getattr(event, "total_steps", None)
    if step is not None and total:
        return TaskProgress(int(step), int(total), f"step {step}/{total}")
    return None


def retrain_job(pairs: list, model: str, folder: str, options: RetrainOptions, *, stop) -> Any:
    """Worker body: one retraining round (yields progress, returns the :class:`~napari_grainlab.core.retrain.Round`)."""
    from ...core.retrain import retrain, retrain_samples

    yield TaskProgress(0, None, "preparing the annotated images")
    samples = retrain_samples(pairs)
    result = yield from retrain(samples, model, folder, options, stop=stop)
    return result


class RetrainPanel(QWidget):
    """Retrain / Stop, the round chooser and the status line."""

    def __init__(self, dock: AnnotateWidget) -> None:
        super().__init__()
        self._dock = dock
        self._task: GeneratorTask | None = None
        self._start_model: str | None = None  # the model the first round started from (to go back to)
        self.rounds_shown: list = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.form = ParamsForm(RetrainOptions(), fields=list(SHOWN), compact=True, error=ConfigError)
        self.form.form.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form)
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setToolTip("fine-tune the current model on every annotated image (open here or in the "
                                       "dataset folder) in the background; the new model becomes the current one")
        self.retrain_button.clicked.connect(self._on_retrain)
        self.progress = progress_bar()
        self.progress.setMaximumHeight(14)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.retrain_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.round_combo = ComboBox()
        self.round_combo.setToolTip("the model of an earlier round (or the one the rounds started from)")
        self.round_combo.activated.connect(self._on_round_chosen)
        round_row = QHBoxLayout()
        round_row.addWidget(QLabel("Round"))
        round_row.addWidget(self.round_combo, 1)
        layout.addLayout(round_row)
        self.status_label = QLabel("Retrain fine-tunes the model of 'Propose grains' on your annotations.")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.refresh_rounds()

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.is_running

    def rounds_folder(self) -> Path:
        """``models/`` of the dataset folder; without one, a folder per image name in the cache folder."""
        dock = self._dock
        if dock.folder is not None:
            return Path(dock.folder) / "models"
        from ...core.models.registry import cache_dir

        return cache_dir() / "retrain" / (dock.name or "untitled")

    def refresh_rounds(self) -> None:
        """Fill the Round chooser: the starting model, then every kept round (newest last)."""
        combo = self.round_combo
        combo.blockSignals(True)
        combo.clear()
        current = str(self._dock.proposals.model_edit.text()).strip()
        start = self._start_model or current
        combo.addItem(f"start: {Path(start).name or start}" if start else "start: (no model)", start)
        rounds = RoundStore(self.rounds_folder()).rounds() if self._dock.store.is_open else []
        self.rounds_shown = rounds
        for r in rounds:
            score = "n/a" if r.score is None else f"{r.score:.3f}"
            combo.addItem(f"round {r.number} · F1 {score}", r.path)
        for i in range(combo.count()):
            if combo.itemData(i) == current:
                combo.setCurrentIndex(i)
        combo.blockSignals(False)

    def reset(self) -> None:
        """The dock leaves its image (a running round goes on and is kept; its result is not applied)."""
        self._start_model = None
        self.refresh_rounds()

    # ------------------------------------------------------------------ gathering
    def annotated_pairs(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(name, image, labels)`` of every annotated image open in the viewer (unsaved edits included),
        then of the dataset folder's annotated images not open."""
        viewer = self._dock.viewer
        pairs, names = [], set()
        for layer in viewer.layers:
            if not isinstance(layer, Image):
                continue
            for ann in layers_with_role(viewer, "annotation", source=layer.name):
                if not isinstance(ann, Labels) or not np.asarray(ann.data).any():
                    continue
                try:
                    stored, _ = image_plane(layer)
                except DataError:
                    continue
                if stored.shape[:2] != ann.data.shape:
                    continue
                name = self._dock.name if layer is self._dock.image_layer else layer.name
                pairs.append((name, stored, np.array(ann.data, copy=True)))
                names.add(name)
                break
        folder = self._dock.folder
        if folder is not None and (Path(folder) / "images").is_dir():
            from ...core.data.datasets import load_segmentation_folder

            try:
                saved = load_segmentation_folder(folder)
            except DataError:
                saved = []
            pairs += [(s.name, s.image, s.labels) for s in saved if s.name not in names]
        return pairs

    # ------------------------------------------------------------------ retrain
    def _on_retrain(self, *_: Any) -> None:
        self.retrain()

    @guarded("Retrain")
    def retrain(self) -> GeneratorTask | None:
        """Start one round in a worker; returns the task (None when one is running or nothing can start)."""
        dock = self._dock
        dock._require()
        if self.busy:
            return None
        model = str(dock.proposals.model_edit.text()).strip()
        if not model:
            raise GrainLabError("no model to retrain: type a model folder or 'generalist' under Propose grains")
        pairs = self.annotated_pairs()
        if not pairs:
            raise DataError("nothing to retrain on: annotate at least one grain first")
        options = RetrainOptions(**{**RetrainOptions().__dict__, **self.form.values()}).validate()
        if not ensure_engine(lambda text, error=False: show_status(self.status_label, text, error=error)):
            return None
        folder = self.rounds_folder()
        task = GeneratorTask(retrain_job, pairs, model, str(folder), options, description="Retrain from corrections",
                             progress_bar=self.progress, cancel_button=self.stop_button, progress_of=_progress,
                             parent=self)
        started = time.perf_counter()
        image = dock.image_layer
        task.finished.connect(lambda result: self._finished(result, model, started, image))
        self._task = task
        self.retrain_button.setEnabled(False)
        self.status_label.setText(f"Retraining {Path(model).name or model} on {len(pairs)} annotated image(s)…")
        task.start()
        return task

    def _finished(self, result: TaskResult, model: str, started: float, image: Any) -> None:
        self.retrain_button.setEnabled(True)
        if result.status == "failed":
            show_status(self.status_label, f"Retrain failed: {first_line(result.error)}", error=True)
            return
        if result.status == "cancelled" or result.value is None:
            self.status_label.setText("Retrain stopped; no round was kept" if result.value is None else
                                      "Retrain stopped")
            if result.value is None:
                return
        r = result.value
        if self._start_model is None:
            self._start_model = model
        self.status_label.setText(f"{r.text()} in {time.perf_counter() - started:.0f} s; it is the current model now")
        if image is self._dock.image_layer:
            self.use_model(r.path)
        else:
            self.refresh_rounds()

    def _on_round_chosen(self, index: int) -> None:
        path = self.round_combo.itemData(index)
        if path:
            self.use_model(str(path))

    def use_model(self, path: str) -> None:
        """Make ``path`` the current model: the Propose row shows it, the maps and a model proposal follow."""
        dock = self._dock
        dock.proposals.model_edit.setText(path)
        self.refresh_rounds()
        tools = dock.tools
        if dock.prompts.segmenter is None and (tools.tool in ("grain", "box") or dock.prompts.uncertainty_layer):
            dock.prompts.ensure_maps()
        if dock.proposal_layer is not None and dock.proposals.last_source == "model":
            dock.proposals.propose_from_model(path)
