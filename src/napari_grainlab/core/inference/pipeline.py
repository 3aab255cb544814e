"""The whole prediction of one micrograph array, shared by the CLI, the napari dock and scripts.

:func:`prepare_image` turns any image array (8/16-bit, float, RGB) into the engine's input, a
float32 image in [0, 1]: ``(H, W)`` grey or ``(H, W, 3)`` colour. :func:`predict_array` runs a loaded
checkpoint on it (converted to the model's input channels: luminance for a grey model, grey replicated
for a colour one), at the model's training grain scale when the model records one (the input is
resized, the maps come back at the input's resolution), with the optional domain adaptation
(histogram matching to the training intensities, AdaBN) and returns a :class:`PredictionResult`: grain labels with the boundary and distance maps for a segmentation
model (and the twin-boundary map for a model with a twin class), a class map with its confidence for a classification model. :func:`iter_predict` is the
same call as a generator of :class:`PredictProgress` events, for callers that must not block
(the prediction runs in a helper thread; closing the generator stops it).

>>> model, meta = load_checkpoint("models/sem")                           # doctest: +SKIP
>>> result = predict_array(model, meta, prepare_image(raw), adabn=True)    # doctest: +SKIP
>>> result.labels.max()                                                    # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.channels import normalize_image, to_planes
from ..errors import CheckpointError, DataError
from ._grid import _check_size, _unit_image, _warn_constant
from ._rescale import model_grain_diameter, plan_scale, resize_image, resize_maps, scaled_postprocess
from ._result import CLASSIFY_TILE, SEGMENT_TILE, PredictionResult, ScaleInfo, _default_tile  # noqa: F401
from .adapt import adapt_batchnorm, match_histogram
from .options import InferenceOptions, resolve_options
from .postprocess import watershed_grains
from .segment import check_segmentation_model
from .tiling import Cancelled, classify_tiled, model_multiple, predict_tiled, resolve_device

__all__ = ["PredictProgress", "PredictionResult", "histogram_reference", "iter_predict", "predict_array",
           "prepare_image"]

@dataclass(frozen=True)
class PredictProgress:
    """An event of :func:`iter_predict`.

    ``stage`` is ``"adapt"`` (AdaBN), ``"tiles"`` (``done`` of ``total`` tiles predicted),
    ``"postprocess"`` (watershed / class map) or ``"warning"`` (``message`` says what).
    """

    stage: str
    done: int | None = None
    total: int | None = None
    message: str = ""


def prepare_image(array: Any, source: str = "image", *, rgb: bool | None = None) -> np.ndarray:
    """Any 2-D image array (8/16/32-bit, float, bool, RGB(A)) as float32 in [0, 1]: ``(H, W)`` grey or
    ``(H, W, 3)`` colour.

    Colour stays colour (``rgb=True`` names the last axis as colour; None detects an RGB(A) last
    axis; alpha is dropped; RGB with three equal channels is grey), then the 0.1–99.9 percentile
    range (one range for all channels) is stretched to [0, 1], as
    :func:`~napari_grainlab.core.data.io.read_image` does for files
    (:func:`~napari_grainlab.core.data.channels.to_planes`,
    :func:`~napari_grainlab.core.data.channels.normalize_image`). Stacks and NaN / infinite pixels
    raise :class:`~napari_grainlab.core.errors.DataError`.
    """
    arr = np.asarray(array)
    planes = to_planes(arr, source, -1 if rgb else None)
    if planes.dtype.kind == "f" and not np.isfinite(planes).all():
        raise DataError(f"{source}: the image contains NaN or infinite values")
    return normalize_image(planes)


def histogram_reference(meta: dict) -> np.ndarray:
    """The training-intensity quantiles stored in a checkpoint's metadata (for histogram matching)."""
    ref = (meta or {}).get("histogram_reference")
    if not ref:
        raise CheckpointError("the model records no intensity reference of its training data, so histogram "
                              "matching is not possible; turn histogram matching off")
    ref = np.asarray(ref, dtype=np.float32)
    if ref.ndim != 1 or ref.size < 2 or not np.isfinite(ref).all() or np.any(np.diff(ref) < 0):
        raise CheckpointError("the model's intensity reference is malformed; turn histogram matching off")
    return ref


def predict_array(
    model: torch.nn.Module,
    meta: dict,
    image: np.ndarray,
    options: InferenceOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    warn: Callable[[str], None] | None = None,
    stage: Callable[[str], None] | None = None,
    keep_distance: bool = True,
    **overrides: Any,
) -> PredictionResult:
    """Run a loaded checkpoint on one grey or colour image in [0, 1] (see :func:`prepare_image`).

    The model gets the image with its own number of input channels (``spec.in_chans``): a grey
    (1-channel) model the luminance of a colour image, a colour model a grey image replicated. A
    segmentation model that records its training grain scale (``grain_diameter``) gets the image
    resized so that its grains have that size (the input's diameter: ``diameter``, else estimated;
    ``rescale=False`` turns this off); the maps are resized back, so every output is at the input's
    resolution, and ``result.scaling`` tells the diameter and the factor.

    Parameters
    ----------
    model, meta
        From :func:`~napari_grainlab.core.models.load_checkpoint`.
    image : (H, W) or (H, W, 3) array
        Float in [0, 1] is used as it is; anything else (8/16-bit pixel values, floats outside [0, 1]) is
        stretched to [0, 1] as :func:`prepare_image` does.
    options : InferenceOptions, optional
        Tiling, test-time augmentation, domain adaptation, watershed and device (see
        :class:`~napari_grainlab.core.inference.options.InferenceOptions`; default: its defaults).
    **overrides
        The same settings as keywords (``tta=True``, ``tile=256``, ...), applied on top of
        ``options``. ``device`` may also be a ``torch.device``.

        - ``diameter``: the image's mean grain diameter in px (None: estimated when needed);
          ``rescale``: resize to the model's training scale (default on);
        - ``backend``: what runs the network, ``"auto"`` (default: onnxruntime on the CPU when it
          pays off, see :mod:`~napari_grainlab.core.inference.backend`), ``"onnxruntime"``,
          ``"torch"`` or ``"torch-eager"``; ``result.backend`` tells the one used;
        - ``tta``: average over the four flips (slower, smoother);
        - ``adabn``: re-estimate the BatchNorm statistics on this image first (a copy of the model);
        - ``histogram_match``: map the intensities onto the model's training intensities first; a
          model without a recorded reference raises :class:`~napari_grainlab.core.models.CheckpointError`;
        - ``tile``: tile side in px (default 512 for segmentation, the training patch size for
          classification); ``overlap``, ``batch_size``, ``device``, ``amp``: see
          :func:`~napari_grainlab.core.inference.tiling.predict_tiled`;
        - ``min_size``: smallest grain area in px (default
          :func:`~napari_grainlab.core.inference.segment.default_min_size`); ``marker_threshold``,
          ``boundary_threshold``, ``smoothing``, ``h``, ``merge_threshold``: the watershed.
    progress : called with (tiles done, tiles total) after every batch.
    stop : polled before every batch; when it returns True,
        :class:`~napari_grainlab.core.inference.tiling.Cancelled` is raised.
    warn : called with a message when the prediction falls back (smaller batches on out-of-memory) or the
        image is constant (default: ``warnings.warn``).
    stage : called with ``"adapt"``, ``"tiles"`` and ``"postprocess"`` as the work proceeds.
    keep_distance : False: ``result.distance`` is None, and the watershed smooths the distance map in its
        own memory instead of a copy (4 bytes per pixel less at the peak, for callers that only write the
        labels and the boundary map).

    Raises :class:`~napari_grainlab.core.errors.DataError` for an image with a side shorter than the
    model's input multiple (32 px).
    """
    device = overrides.pop("device", None)
    backend = overrides.pop("backend", "auto")
    opts = resolve_options(options, {**overrides, **({"device": device} if isinstance(device, str) else {})})
    if device is None or isinstance(device, str):
        device = resolve_device(opts.device)
    tta, tile, overlap, batch_size, amp = opts.tta, opts.tile, opts.overlap, opts.batch_size, opts.amp
    task = getattr(model, "task", None) or (meta or {}).get("task", "segment")
    if task not in ("segment", "classify"):
        raise CheckpointError(f"unknown model task {task!r}")
    image = _unit_image(image)
    _check_size(image, model_multiple(model))
    _warn_constant(image, warn)
    tile = _default_tile(task, meta) if not tile else int(tile)

    def at(name: str) -> None:
        if stop is not None and stop():
            raise Cancelled("prediction stopped")
        if stage is not None:
            stage(name)

    channels = check_segmentation_model(model) if task == "segment" else 0
    if opts.histogram_match:
        image = match_histogram(image, histogram_reference(meta))
    scaling = ScaleInfo()
    input_shape = image.shape[:2]
    if task == "segment":
        multiple = model_multiple(model)

        def probe(crop: np.ndarray) -> np.ndarray:  # the network on a crop, for the model-based scale refinement
            return predict_tiled(model, crop, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                                 amp=amp, activation="sigmoid", stop=stop, out_channels=channels, warn=warn,
                                 backend=backend)

        scaling = plan_scale(image, model_grain_diameter(meta, model), opts.diameter, opts.rescale, multiple,
                             predict=probe, refine=opts.refine_scale)
        image = resize_image(image, scaling.factor, multiple)
    if opts.adabn:
        at("adapt")
        model = adapt_batchnorm(model, [image], device=device)
        if backend == "auto":  # new weights for every image: an export would not pay off
            backend = "torch"
    at("tiles")

    def tiles_done(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if done == total and stage is not None:
            stage("postprocess")

    used: list[str] = []
    if task == "segment":
        probs = predict_tiled(model, image, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta,
                              device=device, amp=amp, activation="sigmoid", progress=tiles_done, stop=stop,
                              out_channels=channels, warn=warn, backend=backend, on_backend=used.append)
        scaled_shape = image.shape[:2]
        del image  # the network's input is not needed any more (on a large image: 4-12 bytes per pixel)
        probs = resize_maps(probs, input_shape)
        min_size, post = scaled_postprocess(opts.min_size, opts.watershed(), scaling.factor, scaled_shape)
        boundary, distance = probs[0], probs[1]
        twin = probs[2] if channels == 3 else None
        del probs
        labels = watershed_grains(boundary, distance, min_size=min_size, consume_distance=not keep_distance, **post)
        if not keep_distance:
            distance = None
        return PredictionResult("segment", labels=labels, boundary=boundary, distance=distance, twin_boundary=twin,
                                scaling=scaling, backend=used[-1] if used else "")
    class_map, confidence, tile_probs = classify_tiled(model, image, tile=tile, batch_size=batch_size, tta=tta,
                                                       device=device, amp=amp, progress=tiles_done, stop=stop,
                                                       warn=warn)
    k = tile_probs.shape[1]
    names = [str(c) for c in ((meta or {}).get("classes") or [])]
    if len(names) != k:
        names = [str(i) for i in range(k)]
    return PredictionResult("classify", class_map=class_map, confidence=confidence, tile_probs=tile_probs,
                            classes=tuple(names), backend="torch-eager")


_DONE = object()


def iter_predict(model: torch.nn.Module, meta: dict, image: np.ndarray, options: InferenceOptions | None = None, *,
                 stop: Callable[[], bool] | None = None,
                 **kwargs: Any) -> Generator[PredictProgress, None, PredictionResult]:
    """:func:`predict_array` as a generator: yields :class:`PredictProgress`, returns the result.

    ``options`` and the keyword settings are those of :func:`predict_array`.

    The prediction runs in a helper thread; its callbacks become events here. ``stop`` is polled
    before every batch of tiles (``Cancelled`` is then raised here). Closing the generator early
    stops the prediction after its current batch. Exceptions of the prediction are re-raised.
    """
    for name in ("progress", "stage", "warn"):
        if name in kwargs:
            raise TypeError(f"iter_predict reports {name} as events; do not pass {name}=")
    device = kwargs.pop("device", None)
    backend = kwargs.pop("backend", "auto")
    opts = resolve_options(options, {**kwargs, **({"device": device} if isinstance(device, str) else {})})
    kwargs = {"backend": backend} if device is None or isinstance(device, str) else {"device": device,
                                                                                    "backend": backend}
    options = opts  # checked here, in the caller's thread
    events: queue.SimpleQueue = queue.SimpleQueue()
    abandoned = threading.Event()
    outcome: dict[str, Any] = {}

    def should_stop() -> bool:
        return abandoned.is_set() or (stop is not None and bool(stop()))

    def body() -> None:
        try:
            outcome["value"] = predict_array(
                model, meta, image, options, stop=should_stop,
                progress=lambda d, t: events.put(PredictProgress("tiles", int(d), int(t))),
                stage=lambda s: events.put(PredictProgress(s)),
                warn=lambda m: events.put(PredictProgress("warning", message=str(m))),
                **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=body, name="grainlab-predict", daemon=True)
    thread.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                break
            yield item
    finally:
        abandoned.set()
        thread.join()
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["value"]
