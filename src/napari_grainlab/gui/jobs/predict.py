"""The prediction job the docks share (Predict, the Train dock's preview, and later Annotate).

The worker side (:func:`predict_jobs`, :func:`predict_folder_events`) runs in a worker thread
and touches neither Qt nor the viewer; it takes one
:class:`~napari_grainlab.core.inference.options.InferenceOptions`.  The main side
(:func:`job_from_layer`, :func:`show_prediction`) reads layers and adds result layers, tagged
with their roles (``grains``, ``boundary``, ``class_map``, ``confidence``) in
``layer.metadata["grainlab"]``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import USER_ERRORS
from ...core.inference.options import InferenceOptions
from ...core.measure import grain_features
from .._layers import layer_pixel_size, prediction_metadata, prediction_name, put_layer, role_name, spatial_of

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["FOLDER_WORKERS", "ImageDone", "ImageFailed", "PredictJob", "PredictStatus",
           "job_from_layer", "predict_folder_events", "predict_jobs", "show_prediction"]

#: most local Dask workers a folder prediction from the dock starts (napari keeps working meanwhile)
FOLDER_WORKERS = 2


# ============================================================================ worker side
@dataclass
class PredictJob:
    """One image to predict, read from its layer on the main thread."""

    name: str
    data: np.ndarray
    rgb: bool
    pixel_size: float | None
    spatial: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictStatus:
    """Progress of a run: ``message``, and ``done`` of ``total`` tiles of the current image."""

    message: str
    done: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class ImageDone:
    """One image predicted; ``table`` (segmentation) is its grain table, ``summary`` its ASTM numbers."""

    job: PredictJob
    result: Any  # core.inference.PredictionResult
    table: dict[str, np.ndarray] | None
    summary: dict[str, float]
    elapsed: float
    model_path: str


@dataclass(frozen=True)
class ImageFailed:
    job: PredictJob
    error: BaseException


_STAGE_TEXT = {"adapt": "adapting BatchNorm (AdaBN)…", "tiles": "predicting tiles…",
               "postprocess": "separating grains…"}


def _load_model(checkpoint: str | Path, device: str, cache: dict) -> tuple[Any, dict, Any]:
    """(model, metadata, torch device), reusing the model of the previous run when unchanged; ``checkpoint``
    is a path or a built-in model's name (``"generalist"``)."""
    from ...core.inference import resolve_device
    from ...core.models import load_checkpoint
    from ...core.models.checkpoint import checkpoint_files  # torch: imported in the worker, not with the dock

    dev = resolve_device(device)
    weights, meta_file = checkpoint_files(checkpoint)
    key = (str(weights.resolve()), weights.stat().st_mtime_ns, meta_file.stat().st_mtime_ns, str(dev))
    if cache.get("key") == key:
        return cache["model"], cache["meta"], dev
    cache.clear()
    model, meta = load_checkpoint(checkpoint, device=dev)
    cache.update(key=key, model=model, meta=meta)
    return model, meta, dev


def predict_jobs(jobs: list[PredictJob], checkpoint: str | Path, options: InferenceOptions,
                 cache: dict | None = None, *, stop: threading.Event) -> Generator[Any, None, int]:
    """Worker body: load the model once, then predict every job (no Qt, no viewer).

    Yields :class:`PredictStatus` (with tile progress), :class:`ImageDone` and
    :class:`ImageFailed` (an image the model cannot take; the others go on). Returns the number of
    images predicted. ``stop`` cancels within a batch of tiles.
    """
    from ...core.inference import Cancelled, histogram_reference, iter_predict, prepare_image
    from ...core.measure import astm_grain_size, grain_table, summarize

    yield PredictStatus("loading the model…")
    model, meta, device = _load_model(checkpoint if isinstance(checkpoint, str) else Path(checkpoint), options.device,
                                      {} if cache is None else cache)
    if options.histogram_match:
        histogram_reference(meta)  # a model without a reference: fail before any image
    done = 0
    n = len(jobs)
    for k, job in enumerate(jobs):
        if stop.is_set():
            break
        prefix = f"{job.name} ({k + 1}/{n})" if n > 1 else job.name
        yield PredictStatus(f"{prefix}: preparing the image…")
        t0 = time.perf_counter()
        try:
            image = prepare_image(job.data, job.name, rgb=job.rgb)
            events = iter_predict(model, meta, image, options, stop=stop.is_set, device=device)
            result = yield from _relay(events, prefix)
            table, summary = None, {}
            if result.task == "segment":
                table = grain_table(result.labels, job.pixel_size)
                summary = summarize(result.labels, job.pixel_size)
                summary.update(astm_grain_size(result.labels, job.pixel_size))
        except Cancelled:
            break
        except USER_ERRORS as exc:
            yield ImageFailed(job, exc)
            continue
        done += 1
        yield ImageDone(job, result, table, summary, time.perf_counter() - t0, str(checkpoint))
    return done


def _relay(events, prefix: str):
    """Turn :class:`~napari_grainlab.core.inference.PredictProgress` events into :class:`PredictStatus`."""
    while True:
        try:
            ev = next(events)
        except StopIteration as fin:
            return fin.value
        if ev.stage == "tiles" and ev.done is not None:
            yield PredictStatus(f"{prefix}: tile {ev.done} of {ev.total}", ev.done, ev.total)
        elif ev.stage == "warning":
            yield PredictStatus(f"{prefix}: {ev.message}")
        else:
            yield PredictStatus(f"{prefix}: {_STAGE_TEXT.get(ev.stage, ev.stage)}")


def predict_folder_events(checkpoint: str | Path, inputs: list[str | Path], out: str | Path,
                          options: InferenceOptions, *, pixel_size: float | None = None, workers: int | None = None,
                          scheduler: str | None = None, stop: threading.Event) -> Generator[Any, None, Any]:
    """Worker body of *Predict folder…*: :func:`~napari_grainlab.core.batch.run_batch` with the dock's
    options (no Qt, no viewer). Yields its events; returns its :class:`~napari_grainlab.core.batch.BatchFinished`."""
    from ...core.batch import BatchOptions, default_workers, run_batch

    batch = BatchOptions(**options.inference().to_dict(), pixel_size=pixel_size)
    if workers is None and not scheduler:
        workers = min(FOLDER_WORKERS, default_workers(options.device))
    return (yield from run_batch(checkpoint, inputs, out, scheduler=scheduler or None, workers=workers,
                                 device=options.device, options=batch, stop=stop))


# ============================================================================ main side
def job_from_layer(layer: Layer, pixel_size: float | None = None) -> PredictJob:
    """A copy of an image layer's data (call on the main thread) with its pixel size and placement;
    ``pixel_size`` (µm) overrides the one the layer or its file gives."""
    data = layer.data[0] if layer.multiscale else layer.data
    pixel = pixel_size if pixel_size else layer_pixel_size(layer)[0]
    return PredictJob(layer.name, np.array(data, copy=True), bool(layer.rgb), pixel, spatial_of(layer))


def show_prediction(viewer: napari.viewer.Viewer, done: ImageDone, source: str) -> Layer:
    """Add (or update) the layers of one prediction; returns the grains (or classes) layer.

    Segmentation: ``<image> boundary`` (probability), ``<image> twin boundary`` (a model with a twin
    class) and ``<image> grains`` (Labels with the per-grain table as features); classification: ``<image> confidence`` and ``<image> classes``
    (class names as features). A same-named layer that is not a prediction (the user's
    annotations) is never overwritten: the result goes to ``<name> (prediction)``.
    """
    job, res = done.job, done.result

    def common(role: str) -> dict[str, Any]:
        meta = prediction_metadata(job.name, done.model_path, role=role, made_by=source, pixel_size_um=job.pixel_size,
                                   scaling=getattr(res, "scaling", None))
        return {**job.spatial, "metadata": meta}

    def name(role: str) -> str:
        return prediction_name(viewer, role_name(job.name, role))

    if res.task == "segment":
        put_layer(viewer, "image", res.boundary, name("boundary"), colormap="inferno", blending="additive",
                  opacity=0.6, contrast_limits=(0.0, 1.0), **common("boundary"))
        if getattr(res, "twin_boundary", None) is not None:  # a model with a twin class
            put_layer(viewer, "image", res.twin_boundary, name("twin_boundary"), colormap="cyan",
                      blending="additive", opacity=0.6, contrast_limits=(0.0, 1.0), **common("twin_boundary"))
        main = put_layer(viewer, "labels", res.labels, name("grains"), features=grain_features(done.table),
                         opacity=0.45, **common("grains"))
    else:
        k = len(res.classes)
        probs = res.class_probabilities
        area = np.bincount(res.class_map.ravel(), minlength=k)[:k] / res.class_map.size
        features = {"index": np.arange(1, k + 1), "class": np.array(res.classes, dtype=object),
                    "image_probability": probs.astype(np.float64), "area_fraction": area}
        put_layer(viewer, "image", res.confidence, name("confidence"), colormap="viridis", opacity=0.5,
                  contrast_limits=(0.0, 1.0), **common("confidence"))
        main = put_layer(viewer, "labels", res.class_map.astype(np.uint32) + 1, name("class_map"),
                         features=features, opacity=0.45, **common("class_map"))
    viewer.layers.selection.active = main
    return main
