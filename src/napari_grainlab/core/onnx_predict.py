"""Prediction with an exported ONNX model on onnxruntime, without PyTorch.

An ONNX file written by :func:`napari_grainlab.core.export.export_onnx` carries everything a
prediction needs in its metadata (task, classes, input size multiple, default tile, histogram
reference, post-processing parameters), so the file alone is enough. The tiling, blending,
test-time augmentation and watershed post-processing are the ones of the PyTorch pipeline
(:func:`~napari_grainlab.core.inference.predict_array`), from the same torch-free code; only
the network runs on onnxruntime. Nothing here imports torch.

>>> model = OnnxModel("model.onnx")                          # doctest: +SKIP
>>> result = predict_onnx(model, prepare(raw_image))         # doctest: +SKIP
>>> result.labels.max()                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data.channels import to_chw
from .errors import OnnxModelError
from .inference._grid import (
    _FLIPS,
    MULTIPLE,
    Cancelled,
    _blend_tiles,
    _check_image,
    _check_output,
    _check_size,
    _check_tiling,
    _class_map,
    _Grid,
    _normalise,
    _unit_image,
    _warn_constant,
)
from .inference._histogram import _check_reference, match_histogram
from .inference._rescale import model_grain_diameter, plan_scale, resize_image, resize_maps, scaled_postprocess
from .inference._result import PredictionResult, _default_tile
from .inference.options import DEFAULTS as _D
from .inference.options import WATERSHED_FIELDS, InferenceOptions, resolve_options

__all__ = ["METADATA_KEY", "ONNX_FORMAT", "OnnxModel", "OnnxModelError", "default_providers", "predict_onnx"]

#: key of the napari-grainlab description (JSON) in the ONNX file's ``metadata_props``
METADATA_KEY = "napari_grainlab"
#: ``format`` of that description
ONNX_FORMAT = "napari-grainlab-onnx"
ONNX_FORMAT_VERSION = 1
#: post-processing parameters read from the metadata (see ``watershed_grains``)
_POSTPROCESS_KEYS = WATERSHED_FIELDS




def default_providers() -> list[str]:
    """onnxruntime execution providers to use: CUDA first when this onnxruntime has it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or list(available)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class OnnxModel:
    """An exported napari-grainlab ONNX model on an onnxruntime session.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    providers : list of str, optional
        onnxruntime execution providers (default :func:`default_providers`: CUDA when
        available, else CPU), e.g. ``["CPUExecutionProvider"]``.
    threads : int, optional
        Intra-op threads of the CPU provider (default: onnxruntime's choice).

    Attributes
    ----------
    meta : dict
        The napari-grainlab description stored in the file.
    task : str
        ``"segment"`` or ``"classify"``.
    classes : tuple of str
        Class names (classification).
    multiple : int
        Input sides must be multiples of this.
    in_chans : int
        Input channels (1: grey, 3: RGB; files of older exports say nothing and are grey).
    grain_diameter : float or None
        The training grain scale (px) the model records (None: none, no rescaling).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, *, threads: int | None = None):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise OnnxModelError(f"{path}: no such ONNX file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxModelError("onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        providers = list(providers) if providers is not None else default_providers()
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own, unrelated exception types
            raise OnnxModelError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise OnnxModelError(f"{path}: an ONNX model without a napari-grainlab description; export models "
                                 "with 'grainlab export MODEL --format onnx'")
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OnnxModelError(f"{path}: unreadable napari-grainlab description ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != ONNX_FORMAT:
            raise OnnxModelError(f"{path}: not a napari-grainlab ONNX model description")
        if int(meta.get("format_version", 0)) > ONNX_FORMAT_VERSION:
            raise OnnxModelError(f"{path}: written by a newer napari-grainlab (format {meta['format_version']})")
        self.meta = meta
        self.task = meta.get("task")
        if self.task not in ("segment", "classify"):
            raise OnnxModelError(f"{path}: unknown model task {self.task!r}")
        self.classes = tuple(str(c) for c in meta.get("classes") or ())
        multiple = (meta.get("input") or {}).get("size_multiple", MULTIPLE)
        if not isinstance(multiple, int) or multiple < 1:
            raise OnnxModelError(f"{path}: malformed input size multiple {multiple!r}")
        self.multiple = math.lcm(MULTIPLE, multiple)
        self.out_channels = len((meta.get("output") or {}).get("channels") or ()) or None
        chans = (meta.get("input") or {}).get("channels", 1)
        if chans not in (1, 3):
            raise OnnxModelError(f"{path}: malformed input channel count {chans!r} (1 or 3)")
        self.in_chans = int(chans)
        self.grain_diameter = model_grain_diameter(meta)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise OnnxModelError(f"{path}: expected one input, the model has {len(inputs)}")
        self.input_name = inputs[0].name

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses."""
        return list(self.session.get_providers())

    @property
    def histogram_reference(self) -> np.ndarray:
        """Training-intensity quantiles for histogram matching."""
        ref = self.meta.get("histogram_reference")
        if not ref:
            raise OnnxModelError("the model records no intensity reference of its training data, so histogram "
                                 "matching is not possible; turn histogram matching off")
        try:
            return _check_reference(ref).astype(np.float32)
        except (ValueError, TypeError):
            raise OnnxModelError("the model's intensity reference is malformed; turn histogram matching off") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Raw network output (logits) of a batch ``x`` (N x C x H x W float32 in [0, 1], C = ``in_chans``)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            msg = _first_line(exc)
            if "alloc" in msg.lower() or "out of memory" in msg.lower():
                raise MemoryError(f"onnxruntime ran out of memory on a batch of shape {x.shape}; use a smaller "
                                  "tile or batch size") from None
            raise OnnxModelError(f"{self.path.name}: onnxruntime failed on input {x.shape}: {msg}") from None

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, task={self.task!r}, providers={self.providers})"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x.astype(np.float32, copy=False))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _forward(model: OnnxModel, x: np.ndarray, act, tta: bool) -> np.ndarray:
    """Activated float32 output of one batch; with ``tta`` the mean over the four flips."""
    if not tta:
        return act(model(x)).astype(np.float32, copy=False)
    acc = None
    for dims in _FLIPS:
        xin = np.flip(x, dims) if dims else x
        y = act(model(xin)).astype(np.float32, copy=False)
        if dims and y.ndim == 4:
            y = np.flip(y, dims)
        acc = y.copy() if acc is None else acc + y
    return acc / np.float32(len(_FLIPS))


def _run_tiles(model: OnnxModel, image: np.ndarray, grid: _Grid, batch_size: int, act, tta: bool, progress, stop,
               consume) -> None:
    tiles = list(grid.tiles())
    total = len(tiles)
    th, tw = grid.tile
    buf = np.empty((batch_size, image.shape[0], th, tw), dtype=np.float32)
    for done in range(0, total, batch_size):
        if stop is not None and stop():
            raise Cancelled("prediction stopped")
        chunk = tiles[done:done + batch_size]
        for k, (i, j) in enumerate(chunk):
            grid.extract(image, i, j, buf[k])
        consume(chunk, np.ascontiguousarray(_forward(model, buf[:len(chunk)], act, tta)))
        if progress is not None:
            progress(done + len(chunk), total)


def predict_maps(model: OnnxModel, image: np.ndarray, *, tile: int = 512, overlap: int = _D.overlap,
                 batch_size: int = _D.batch_size,
                 tta: bool = False, progress: Callable[[int, int], None] | None = None,
                 stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Blended sigmoid outputs (C, H, W) float32 of a segmentation model, tiled as ``predict_tiled`` does
    (an (H, W) or (H, W, 3) image, given to the model with its ``in_chans``)."""
    image = _check_image(image)
    _check_tiling(tile, overlap, batch_size)
    h, w = image.shape[:2]
    image = to_chw(image, model.in_chans)
    grid = _Grid((h, w), int(tile), int(overlap), model.multiple)
    th, tw = grid.tile
    out: np.ndarray | None = None

    def consume(chunk, y):
        nonlocal out
        if y.ndim != 4 or y.shape[0] != len(chunk) or y.shape[2:] != (th, tw):
            raise OnnxModelError(f"model output has shape {tuple(y.shape)} for input {(len(chunk), image.shape[0], th, tw)}; "
                                 "a segmentation model must return N x C x H x W")
        if out is None:
            out = np.zeros((y.shape[1], h, w), dtype=np.float32)
        _blend_tiles(out, grid, chunk, y)

    _run_tiles(model, image, grid, int(batch_size), _sigmoid, tta, progress, stop, consume)
    _normalise(out, grid)
    return _check_output(out, OnnxModelError)


def _as_model(model) -> OnnxModel:
    if isinstance(model, OnnxModel):
        return model
    if isinstance(model, (str, Path)):
        return OnnxModel(model)
    raise TypeError(f"model must be an OnnxModel or the path of an .onnx file, got {type(model).__name__}")


def predict_onnx(
    model: OnnxModel | str | Path,
    image: np.ndarray,
    options: InferenceOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    warn: Callable[[str], None] | None = None,
    **overrides: Any,
) -> PredictionResult:
    """Segment or classify one grey or colour image in [0, 1] with an exported ONNX model.

    The counterpart of :func:`~napari_grainlab.core.inference.predict_array` (same channel
    conversion, grain-scale rescaling, tiles, blending, test-time augmentation, histogram matching
    and watershed), without AdaBN (the BatchNorm statistics are folded into the exported graph).

    Parameters
    ----------
    model : OnnxModel, or the path of an ``.onnx`` file
    image : (H, W) or (H, W, 3) array
        Float in [0, 1] is used as it is; anything else (8/16-bit pixel values, floats outside [0, 1]) is
        stretched to [0, 1] as :func:`~napari_grainlab.core.data.io.read_image` does.
    options : InferenceOptions, optional
        The settings of :func:`~napari_grainlab.core.inference.predict_array` (``**overrides``: the
        same as keywords): ``tile`` (default 512 for segmentation, the training patch size for
        classification), ``overlap`` (segmentation; classification tiles overlap by half),
        ``batch_size`` (tiles per onnxruntime call), ``tta``, ``histogram_match``, ``min_size`` and
        the watershed settings (default: those stored in the model). ``adabn`` is not available:
        the BatchNorm statistics are folded into the exported graph. ``device`` is ignored (the
        onnxruntime providers of the model decide).
    progress : called with (tiles done, tiles total) after every batch.
    stop : polled before every batch; True raises ``Cancelled``.
    warn : called with a message when the image is constant (default: ``warnings.warn``).

    Returns
    -------
    PredictionResult

    Raises :class:`~napari_grainlab.core.errors.DataError` for an image with a side shorter than
    ``model.multiple`` (at least 32 px).
    """
    opts = resolve_options(options, overrides)
    if opts.adabn:
        raise OnnxModelError("AdaBN is not available for ONNX models (their BatchNorm statistics are folded into "
                             "the graph); predict with the PyTorch model instead")
    tile, overlap, batch_size, tta, min_size = opts.tile, opts.overlap, opts.batch_size, opts.tta, opts.min_size
    model = _as_model(model)
    image = _unit_image(image)
    _check_size(image, model.multiple)
    _warn_constant(image, warn)
    tile = _default_tile(model.task, model.meta) if not tile else int(tile)
    if opts.histogram_match:
        image = match_histogram(image, model.histogram_reference)
    if model.task == "segment":
        input_shape = image.shape[:2]
        def probe(crop: np.ndarray) -> np.ndarray:  # the network on a crop, for the model-based scale refinement
            return predict_maps(model, crop, tile=tile, overlap=overlap, batch_size=batch_size)

        scaling = plan_scale(image, model.grain_diameter, opts.diameter, opts.rescale, model.multiple,
                             predict=probe, refine=opts.refine_scale)
        image = resize_image(image, scaling.factor, model.multiple)
        probs = predict_maps(model, image, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta,
                             progress=progress, stop=stop)
        if probs.shape[0] not in (2, 3):
            raise OnnxModelError(f"a segmentation model has 2 output channels (3 with the twin class), this one has "
                                 f"{probs.shape[0]}")
        from .inference.postprocess import watershed_grains

        scaled_shape = image.shape[:2]
        del image  # the network's input is not needed any more
        probs = resize_maps(probs, input_shape)
        boundary, distance = probs[0], probs[1]
        twin = probs[2] if probs.shape[0] == 3 else None
        del probs
        post = {k: v for k, v in (model.meta.get("postprocess") or {}).items() if k in _POSTPROCESS_KEYS}
        post.update(opts.watershed_changes())
        post.setdefault("smoothing", _D.smoothing)  # files of older exports may not say
        min_size, post = scaled_postprocess(min_size, post, scaling.factor, scaled_shape)
        labels = watershed_grains(boundary, distance, min_size=min_size, **post)
        return PredictionResult("segment", labels=labels, boundary=boundary, distance=distance, twin_boundary=twin,
                                scaling=scaling, backend="onnxruntime")

    stride = tile // 2
    _check_tiling(tile, tile - stride, batch_size)
    grid = _Grid(image.shape[:2], tile, tile - stride, model.multiple)
    image = to_chw(image, model.in_chans)
    probs: list[np.ndarray] = []

    def consume(chunk, y):
        if y.ndim != 2 or y.shape[0] != len(chunk):
            raise OnnxModelError(f"model output has shape {tuple(y.shape)}; a classification model must return "
                                 "N x K logits")
        probs.extend(y)

    _run_tiles(model, image, grid, int(batch_size), _softmax, tta, progress, stop, consume)
    tile_probs = _check_output(np.stack(probs).astype(np.float32), OnnxModelError)
    class_map, confidence, tile_probs = _class_map(grid, tile_probs)
    k = tile_probs.shape[1]
    names = list(model.classes)
    if len(names) != k:
        names = [str(i) for i in range(k)]
    return PredictionResult("classify", class_map=class_map, confidence=confidence, tile_probs=tile_probs,
                            classes=tuple(names), backend="onnxruntime")
