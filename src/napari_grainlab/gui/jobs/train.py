"""The training job the docks share (Train, and later Annotate's *Retrain*).

:class:`TrainJob` holds copies of the layer data taken on the main thread; :func:`run_training`
is the worker body (no Qt, no viewer): it reads dataset folders, then yields the events of
:func:`~napari_grainlab.core.training.fit` (or ``cross_validate``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core.data import DataError, DataWarning, load_dataset_folders
from ...core.training import Step, TrainConfig, TrainWarning
from ..workers import TaskProgress

__all__ = ["PROGRESS_INTERVAL_S", "DataStatus", "StepProgress", "TrainJob", "run_training"]

PROGRESS_INTERVAL_S = 1.0  # progress-bar value (every repaint recomposes the window, in software on VMs)


@dataclass(frozen=True)
class DataStatus:
    """What the training job is doing before ``fit()`` starts (shown in the dock's status line)."""

    message: str


@dataclass
class TrainJob:
    """Everything a training run needs, detached from the viewer (copies of the layer data)."""

    config: TrainConfig
    images: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    pixel_sizes: list[float | None] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    kfold: int = 0


def run_training(job: TrainJob, stop) -> Iterator[Any]:
    """Worker body: read the data (layers, then folders), then ``yield from fit(...)``.

    Yields :class:`DataStatus`, ``TrainWarning`` for skipped data, then the events of
    :func:`~napari_grainlab.core.training.fit` (or ``cross_validate`` when ``job.kfold`` ≥ 2).
    """
    from ...core.data import samples_from_arrays
    from ...core.training import cross_validate, fit

    cfg = job.config
    samples: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        if job.images:
            yield DataStatus(f"Reading {len(job.images)} annotated layer(s)…")
            samples += samples_from_arrays(job.images, job.labels, names=job.names, pixel_sizes=job.pixel_sizes)
        if job.folders:
            yield DataStatus(f"Reading {len(job.folders)} dataset folder(s)…")
            _task, more, classes = load_dataset_folders(job.folders, cfg.task)
            samples += more
            if classes:
                cfg = cfg.replace(classes=tuple(classes))
    for w in caught:
        if issubclass(w.category, DataWarning):
            yield TrainWarning(message=" ".join(str(w.message).split()))
    if stop.is_set():
        return None
    what = f"{len(samples)} image(s)" if samples else "synthetic images only"
    yield DataStatus(f"Building the model; training on {what}…")
    if job.kfold >= 2:
        if not samples:
            raise DataError("K-fold cross-validation needs annotated images (layers or dataset folders)")
        yield from cross_validate(cfg, samples, job.kfold, stop=stop)
        return None
    return (yield from fit(cfg, samples, None, stop=stop))


class StepProgress:
    """``progress_of`` for training: global steps (over all folds when cross-validating), at most
    every :data:`PROGRESS_INTERVAL_S` (and always for the first and the last step of a fold)."""

    def __init__(self, folds: int, interval: float = PROGRESS_INTERVAL_S) -> None:
        self.folds = max(1, folds)
        self.interval = interval
        self._last = -math.inf

    def __call__(self, ev: Any) -> TaskProgress | None:
        if not isinstance(ev, Step):
            return None
        now = time.perf_counter()
        if now - self._last < self.interval and 1 < ev.step < ev.total_steps:
            return None
        self._last = now
        fold = ev.fold or 0
        return TaskProgress(fold * ev.total_steps + ev.step, self.folds * ev.total_steps)
