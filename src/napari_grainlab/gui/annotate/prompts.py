"""The Click grains panel of the Annotate dock: prompted segmentation backed by a model.

The model of the Propose grains row (the built-in ``generalist`` unless the user chose another) predicts
the image's maps **once**, in a worker, at the row's grain diameter (``auto``: estimated); the
:class:`~napari_grainlab.core.interactive.ClickSegmenter` that holds them then answers the Tools panel's
*Grain* clicks and *Box* drags on the GUI thread in milliseconds.  The maps are kept per image, model and
diameter, and predicted again only when one of those changes.  The panel also shows where the model is
unsure (an ``NAME uncertainty`` Image layer: the entropy of its boundary probability) and centres the view
on the most uncertain area that is not annotated yet.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...core.errors import DataError, GrainLabError
from ...core.models.registry import is_registry_name
from .._engine import ensure_engine
from .._layers import role_metadata, role_name, spatial_of
from .._napari_compat import center_camera
from .._widgets import progress_bar, show_status
from ..workers import GeneratorTask, TaskProgress, TaskResult
from ._common import guarded, live
from .proposals import first_line

if TYPE_CHECKING:
    from ...core.interactive import ClickSegmenter
    from .dock import AnnotateWidget

__all__ = ["PromptsPanel", "maps_job"]


def maps_job(checkpoint: str, image: np.ndarray, diameter: float | None = None, *, stop) -> Any:
    """Worker body: a :class:`~napari_grainlab.core.interactive.ClickSegmenter` of ``image`` (None when stopped)."""
    from ...core.inference.tiling import Cancelled
    from ...core.interactive import ClickSegmenter

    yield TaskProgress(0, None, "predicting the model's maps")
    try:
        seg = ClickSegmenter(image, model=checkpoint, diameter=diameter, stop=stop.is_set)
    except Cancelled:
        return None
    seg.uncertainty  # noqa: B018 - computed here, off the GUI thread (a few hundred ms on a large image)
    return seg


class PromptsPanel(QWidget):
    """Maps for the Grain / Box tools, the uncertainty layer and *Next uncertain*."""

    def __init__(self, dock: AnnotateWidget) -> None:
        super().__init__()
        self._dock = dock
        self._segmenter: ClickSegmenter | None = None
        self._key: tuple | None = None
        self._task: GeneratorTask | None = None
        self._task_key: tuple | None = None
        self._uncertainty_ref: weakref.ref | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.prepare_button = QPushButton("Predict maps")
        self.prepare_button.setToolTip("run the model of 'Propose grains' once on this image, so that the Grain "
                                       "and Box tools answer at once (starts by itself when you pick those tools)")
        self.prepare_button.clicked.connect(self._on_prepare)
        self.progress = progress_bar()
        self.progress.setMaximumHeight(14)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.prepare_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.uncertainty_button = QPushButton("Show uncertainty")
        self.uncertainty_button.setToolTip("an image layer of where the model is unsure of the boundaries")
        self.uncertainty_button.clicked.connect(self._on_uncertainty)
        self.next_button = QPushButton("Next uncertain region")
        self.next_button.setToolTip("centre the view on the most uncertain area that is not annotated yet")
        self.next_button.clicked.connect(self._on_next)
        row = QHBoxLayout()
        row.addWidget(self.uncertainty_button)
        row.addWidget(self.next_button)
        layout.addLayout(row)
        self.status_label = QLabel("Grain / Box tools: the model predicts this image's maps once, then every "
                                   "click answers at once.")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

    # ------------------------------------------------------------------ state
    def _current_key(self) -> tuple | None:
        dock = self._dock
        gray = dock._gray
        if gray is None:
            return None
        model = str(dock.proposals.model_edit.text()).strip()
        return (id(gray), gray.shape, model, dock.proposals.diameter())

    @property
    def segmenter(self) -> ClickSegmenter | None:
        """The maps of the current image, model and diameter (None until they are predicted)."""
        key = self._current_key()
        return self._segmenter if key is not None and key == self._key else None

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.is_running

    @property
    def uncertainty_layer(self) -> Image | None:
        return live(self._dock.viewer, self._uncertainty_ref)

    def reset(self) -> None:
        """The dock leaves its image: forget its maps, stop a running prediction, remove the uncertainty layer."""
        if self._task is not None and self._task.is_running:
            self._task.cancel()
        self._segmenter = self._key = None
        layer = self.uncertainty_layer
        if layer is not None:
            self._dock.viewer.layers.remove(layer)
        self._uncertainty_ref = None

    # ------------------------------------------------------------------ maps
    def _on_prepare(self, *_: Any) -> None:
        self.ensure_maps()

    @guarded("Click grains")
    def ensure_maps(self) -> GeneratorTask | None:
        """Start predicting the maps unless they exist (or are being predicted) for the current key."""
        dock = self._dock
        key = self._current_key()
        if key is None:
            raise dock.no_image_error()
        if key == self._key and self._segmenter is not None:
            return None
        if self.busy:
            if self._task_key == key:
                return self._task
            self._task.cancel()
        model = key[2]
        if not model:
            raise GrainLabError("no model for the Grain / Box tools: type a model folder or 'generalist' under "
                                "Propose grains")
        if not is_registry_name(model):
            from pathlib import Path

            if not Path(model).exists():
                raise DataError(f"no model at {model}")
        if not ensure_engine(lambda text, error=False: show_status(self.status_label, text, error=error)):
            return None
        task = GeneratorTask(maps_job, model, dock._gray, key[3], description="Maps for clicking grains",
                             progress_bar=self.progress, cancel_button=self.cancel_button, parent=self)
        started = time.perf_counter()
        task.finished.connect(lambda result: self._finished(result, key, started))
        self._task, self._task_key = task, key
        self.prepare_button.setEnabled(False)
        self.status_label.setText(f"Predicting the maps with {model}…")
        task.start()
        return task

    def _finished(self, result: TaskResult, key: tuple, started: float) -> None:
        self.prepare_button.setEnabled(True)
        if result.status == "failed":
            show_status(self.status_label, f"Maps failed: {first_line(result.error)}", error=True)
            return
        if result.status == "cancelled" or result.value is None:
            self.status_label.setText("Maps cancelled")
            return
        if key != self._current_key():
            self.status_label.setText("Maps dropped: the image, model or diameter changed meanwhile")
            return
        self._segmenter, self._key = result.value, key
        d = self._segmenter.diameter
        src = getattr(self._segmenter.scaling, "source", "") or ""
        scale = f"grain diameter ≈ {d:.0f} px{f' ({src})' if src else ''}; " if d else ""
        self.status_label.setText(f"Maps ready in {time.perf_counter() - started:.1f} s ({scale}"
                                  f"{int(self._segmenter.labels.max())} grains found). Grain: click a grain, "
                                  "shift-click removes; Box: drag around grains.")
        self._dock.tools.update_help()

    def require(self) -> ClickSegmenter | None:
        """The maps, or None after starting their prediction (the tool says to wait)."""
        seg = self.segmenter
        if seg is None:
            self.ensure_maps()
        return seg

    # ------------------------------------------------------------------ uncertainty
    @guarded("Uncertainty")
    def _on_uncertainty(self, *_: Any) -> Image | None:
        return self.show_uncertainty()

    def _maps_or_say(self) -> ClickSegmenter | None:
        seg = self.require()
        if seg is None:
            self.status_label.setText("Predicting the maps first; press again when they are ready.")
        return seg

    def show_uncertainty(self) -> Image | None:
        """Add (or update) the ``NAME uncertainty`` layer; None while the maps are being predicted."""
        dock = self._dock
        seg = self._maps_or_say()
        if seg is None:
            return None
        labels = dock._require()
        layer = self.uncertainty_layer
        if layer is None:
            layer = dock.viewer.add_image(seg.uncertainty, name=role_name(dock._base_name, "uncertainty"),
                                          colormap="magma", opacity=0.5, blending="additive",
                                          contrast_limits=(0.0, 1.0),
                                          metadata=role_metadata("uncertainty", source=dock._base_name),
                                          **spatial_of(labels))
            self._uncertainty_ref = weakref.ref(layer)
        else:
            layer.data = seg.uncertainty
            layer.visible = True
        dock.viewer.layers.selection.active = labels
        return layer

    @guarded("Next uncertain region")
    def _on_next(self, *_: Any) -> tuple[int, int] | None:
        return self.next_uncertain()

    def next_uncertain(self) -> tuple[int, int] | None:
        """Centre the view on the most uncertain unannotated area; returns its (row, column) in pixels."""
        dock = self._dock
        seg = self._maps_or_say()
        if seg is None:
            return None
        labels = dock._require()
        where = seg.next_uncertain(np.asarray(labels.data) > 0)
        if where is None:
            self.status_label.setText("Every pixel is annotated.")
            return None
        world = labels.data_to_world(np.asarray(where, dtype=float))
        center_camera(dock.viewer, world)
        self.status_label.setText(f"Most uncertain unannotated area: row {where[0]}, column {where[1]}")
        return where
