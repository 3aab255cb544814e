"""Tiled prediction for images of any size in bounded memory.

The image is treated as if reflect-padded to a canvas whose sides are multiples of 32 (the
padding is never materialised: border tiles gather their pixels through reflected indices).
Tiles of the canvas overlap by ``overlap`` px and are blended with a separable window that is
flat at the canvas borders and rises as a raised cosine across the overlap with the next
tile, after a quarter of the overlap where it is exactly zero (the tile's outermost pixels,
spoilt by the network's zero padding, never leak into the result when another tile covers
them). Because every tile weight is a product ``wy(y) * wx(x)`` of the weights of its row
and column positions, the sum of all weights is the product of two 1-D sums: the output is
normalised in place by them and no weight image is ever allocated. Memory: the float32
output (C x H x W) plus ``batch_size`` tiles of input and output.

A network whose receptive field reaches no further than ``overlap // 4`` px gives exactly the
result of one pass over the whole (padded) image.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from ._grid import (  # noqa: F401
    _FLIPS,
    MIN_TILE,
    MULTIPLE,
    Cancelled,
    ClassMap,
    _axis_weights,
    _blend_tiles,
    _check_image,
    _check_output,
    _check_tiling,
    _class_map,
    _Grid,
    _normalise,
    _reflect_index,
    _round_up,
    tile_positions,
    tile_window,
)
from .options import DEFAULTS as _D

__all__ = [
    "Cancelled",
    "ClassMap",
    "classify_image",
    "classify_tiled",
    "predict_tiled",
    "resolve_device",
    "model_channels",
    "model_multiple",
    "tile_positions",
    "tile_window",
]

# ----------------------------------------------------------------------------- geometry
def model_multiple(model: torch.nn.Module) -> int:
    """Input sides the model accepts are multiples of this: 32, or a multiple of ``model.stride`` when larger."""
    stride = getattr(model, "stride", None)
    if isinstance(stride, int) and stride > 0:
        return math.lcm(MULTIPLE, stride)
    return MULTIPLE


def model_channels(model, meta: dict | None = None) -> int:
    """Input channels the model takes (1 or 3): ``model.spec.in_chans``, else the checkpoint metadata's,
    else 1 (older, grey checkpoints and plain modules)."""
    n = getattr(getattr(model, "spec", None), "in_chans", None)
    if not isinstance(n, int):
        n = getattr(model, "in_chans", None)
    if not isinstance(n, int) and isinstance(meta, dict):
        spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
        inp = meta.get("input") if isinstance(meta.get("input"), dict) else {}
        n = spec.get("in_chans", inp.get("channels"))
    return n if isinstance(n, int) and n in (1, 3) else 1


def as_model_input(image: np.ndarray, channels: int) -> np.ndarray:
    """float32 (C, H, W) of an (H, W) / (H, W, 3) image for a model of ``channels`` inputs: grey is
    replicated for a 3-channel model, colour becomes luminance for a 1-channel one
    (:func:`~napari_grainlab.core.data.channels.to_chw`)."""
    from ..data.channels import to_chw

    return to_chw(image, int(channels))


# ----------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; other names must be available on this machine.

    An unknown or unavailable device raises :class:`~napari_grainlab.core.errors.ConfigError`
    (a ``ValueError``) with a one-line message. Training uses this function too.
    """
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"device: unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: unsupported device {device!r} (use auto, cpu, cuda, cuda:N or mps)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} requested but no CUDA GPU is available (use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {device!r} requested but this machine has {torch.cuda.device_count()} "
                              "CUDA GPU(s)")
    if dev.type == "mps" and not mps_ok:
        raise ConfigError(f"device: {device!r} requested but MPS is not available (use cpu or auto)")
    return dev


def _activation(name: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    if name is None or name == "none":
        return lambda t: t
    if name == "sigmoid":
        return torch.sigmoid
    if name == "softmax":
        return lambda t: torch.softmax(t, dim=1)
    raise ConfigError(f"activation must be 'sigmoid', 'softmax' or 'none', got {name!r}")


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class _EvalMode:
    """Puts every module in eval mode and restores each module's own previous mode."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode
        return False


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return torch.autocast(device_type=device.type, enabled=False)
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif device.type == "mps":
        dtype = torch.float16
    else:
        dtype = torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _forward(model, x: torch.Tensor, act, tta: bool, device: torch.device, amp: bool) -> torch.Tensor:
    """Activated float32 output of one batch; with ``tta`` the mean over the four flips."""
    with _autocast(device, amp):
        if not tta:
            return act(model(x).float())
        acc = None
        for dims in _FLIPS:
            xin = torch.flip(x, dims) if dims else x
            y = act(model(xin).float())
            if dims and y.ndim == 4:
                y = torch.flip(y, dims)
            acc = y if acc is None else acc + y  # not in place: y may alias the input
        return acc / len(_FLIPS)


class _OOM(Exception):
    """Out of memory while running a batch of ``n`` tiles at batch size ``batch_size``."""

    def __init__(self, batch_size: int, n: int, exc: BaseException):
        super().__init__(str(exc))
        self.batch_size = batch_size
        self.n = n


def _input_view(image: np.ndarray, channels: int) -> np.ndarray:
    """The model input of :func:`as_model_input` as a (1 or C, H, W) view of ``image`` where one exists.

    Tiles are copied out of it one by one (:meth:`_Grid.extract` broadcasts one grey plane to the
    model's C channels), so a grey image for a colour model and a colour image for a colour model cost no
    full-size copy (a replicated grey image would be 12 bytes per pixel). A colour image for a grey model
    needs its luminance computed: that is :func:`as_model_input`.
    """
    channels = int(channels)
    if image.dtype == np.float32:
        if image.ndim == 2 and channels in (1, 3):
            return image[None]
        if image.ndim == 3 and image.shape[-1] == channels == 3:
            return np.moveaxis(image, -1, 0)
    return as_model_input(image, channels)


def _run_batches(model, image: np.ndarray, grid: _Grid, state: dict, batch_size: int, act, tta: bool,
                 device: torch.device, amp: bool, progress, stop, consume, channels_last: bool = False,
                 channels: int | None = None) -> None:
    """Feed the grid's tiles, from ``state["done"]`` on, in batches to the model.

    ``model`` is any callable of a batch tensor (a module, or a :mod:`.backend` runner); with
    ``channels_last`` the batches are given to it in that memory format.
    ``consume(tiles, output)`` receives each batch's activated output as a numpy array.
    Out-of-memory errors become :class:`_OOM`; ``state["done"]`` then tells where to resume.
    """
    tiles = list(grid.tiles())
    total = len(tiles)
    th, tw = grid.tile
    buf = np.empty((batch_size, image.shape[0] if channels is None else int(channels), th, tw), dtype=np.float32)
    while state["done"] < total:
        if stop is not None and stop():
            raise Cancelled("prediction stopped")
        done = state["done"]
        chunk = tiles[done:done + batch_size]
        for k, (i, j) in enumerate(chunk):
            grid.extract(image, i, j, buf[k])
        try:
            x = torch.from_numpy(buf[:len(chunk)]).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                y = _forward(model, x, act, tta, device, amp)
            y = np.ascontiguousarray(y.cpu().numpy())
        except Exception as exc:
            if not _is_oom(exc):
                raise
            x = y = None
            raise _OOM(batch_size, len(chunk), exc) from exc
        consume(chunk, y)
        state["done"] = done + len(chunk)
        if progress is not None:
            progress(state["done"], total)


def _with_oom_retries(run: Callable[[int, int, dict], object], tile: int, batch_size: int,
                      device: torch.device, warn, shrink_tile: bool = True):
    """Call ``run(tile, batch_size, state)``; on out-of-memory halve the batch, then the tile (not below 64).

    With a smaller batch ``run`` resumes from ``state``; a smaller tile changes the grid, so
    ``state`` is cleared and ``run`` starts over.
    """
    if warn is None:
        def warn(msg: str) -> None:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
    state: dict = {}
    retry = False
    while True:
        if retry:  # the failed batch's tensors died with the exception: give their memory back
            _free_cache(device)
        try:
            return run(tile, batch_size, state)
        except _OOM as oom:
            retry = True
            if oom.batch_size > 1:
                batch_size = max(1, min(oom.n, oom.batch_size) // 2)
                warn(f"out of memory on {device}: retrying with batch size {batch_size}")
            elif shrink_tile and state.get("tile", tile) > state.get("min_tile", MIN_TILE):
                tile = max(state.get("min_tile", MIN_TILE), state.get("tile", tile) // 2)
                state.clear()
                warn(f"out of memory on {device} with batch size 1: retrying with {tile} px tiles")
            else:
                what = f"batch size 1 and {state.get('tile', tile)} px tiles" if shrink_tile else "batch size 1"
                raise MemoryError(
                    f"out of memory on {device} even with {what}; free memory, "
                    "use a smaller model or run on the cpu device"
                ) from oom


def _select_runner(model, device: torch.device, backend: str, amp: bool, in_chans: int, multiple: int, pixels: int,
                   warn, on_backend) -> tuple[Callable[[torch.Tensor], torch.Tensor], bool]:
    """The callable that runs the batches (see :mod:`.backend`) and whether it takes channels-last input."""
    from .backend import choose_backend, model_runner

    chosen = choose_backend(model, device, backend, amp=amp, pixels=pixels, in_chans=in_chans)
    call, used, channels_last = model_runner(model, chosen, in_chans, multiple, warn)
    if on_backend is not None:
        on_backend(used)
    return call, channels_last


def _prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model.to(device)


# ----------------------------------------------------------------------------- segmentation maps
def predict_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    tile: int = 512,
    overlap: int = _D.overlap,
    batch_size: int = _D.batch_size,
    tta: bool = False,
    device: str | torch.device = "cpu",
    amp: bool = False,
    activation: str | None = "sigmoid",
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    out_channels: int | None = None,
    warn: Callable[[str], None] | None = None,
    in_chans: int | None = None,
    backend: str = "auto",
    on_backend: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Dense prediction of a fully convolutional model over an image of any size.

    Parameters
    ----------
    model : torch.nn.Module
        Maps N x c x h x w float32 in [0, 1] (h, w multiples of 32; c = ``in_chans``) to N x C x h x w.
        It is moved to ``device`` (in place, as ``Module.to`` does) and run in eval mode;
        every submodule's previous train / eval mode is restored afterwards.
    image : (H, W) or (H, W, 3) array
        Grey or colour image, float in [0, 1] (other dtypes are converted to float32 as they are); it
        is given to the model as :func:`as_model_input` makes it.
    tile : int
        Tile side in px, rounded down to a multiple of 32 (of ``model.stride`` when that is
        larger) and capped at the padded image.
    overlap : int
        Overlap of neighbouring tiles in px (capped at half the tile).
    batch_size : int
        Tiles per forward pass.
    tta : bool
        Average the outputs over the four flips (identity, horizontal, vertical, both).
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"`` ...
    amp : bool
        Mixed precision (bfloat16 where supported, else float16); outputs stay float32.
    activation : {"sigmoid", "softmax", "none"}
        Applied to the logits of every tile before blending.
    progress : callable(done, total), optional
        Called after every batch.
    stop : callable() -> bool, optional
        Checked before every batch; True raises :class:`Cancelled`.
    out_channels : int, optional
        Expected number of output channels (default: ``model.out_channels`` when present).
    warn : callable(str), optional
        Receives out-of-memory retry messages (default: ``warnings.warn``).
    in_chans : int, optional
        Input channels of the model (default :func:`model_channels`).
    backend : {"auto", "onnxruntime", "torch", "torch-eager"}
        What runs the network (see :mod:`~napari_grainlab.core.inference.backend`): on the CPU
        ``"auto"`` runs napari-grainlab's networks on onnxruntime (exported once, cached) when that pays
        off, else on PyTorch in channels-last format; the outputs agree to ~1e-6.
    on_backend : callable(str), optional
        Called with the backend actually used.

    Returns
    -------
    (C, H, W) float32 array.

    Notes
    -----
    On an out-of-memory error the batch size is halved and the batch retried; at batch size
    1 the tile is halved (down to 64 px) and the prediction starts over. When nothing fits,
    ``MemoryError`` is raised.
    """
    image = _check_image(image)
    _check_tiling(tile, overlap, batch_size)
    act = _activation(activation)
    device = resolve_device(device)
    model = _prepare_model(model, device)
    if out_channels is None:
        out_channels = getattr(model, "out_channels", None)
    h, w = image.shape[:2]
    in_chans = model_channels(model) if in_chans is None else int(in_chans)
    image = _input_view(image, in_chans)
    multiple = model_multiple(model)
    out: np.ndarray | None = None
    call, channels_last = model, False

    def run(tile_now: int, batch_now: int, state: dict) -> _Grid:
        nonlocal out
        if "grid" not in state:  # first call, or a smaller tile after out-of-memory: start over
            state["grid"] = _Grid((h, w), tile_now, int(overlap), multiple)
            state["tile"] = max(state["grid"].tile)
            state["min_tile"] = max(MIN_TILE, multiple)
            state["done"] = 0
            if out is not None:
                out.fill(0.0)
        grid = state["grid"]

        def consume(chunk, y):
            nonlocal out
            th, tw = grid.tile
            if y.ndim != 4 or y.shape[0] != len(chunk) or y.shape[2:] != (th, tw):
                raise ModelError(
                    f"model output has shape {tuple(y.shape)} for input {(len(chunk), in_chans, th, tw)}; "
                    "a segmentation model must return N x C x H x W"
                )
            if out is None:
                if out_channels is not None and y.shape[1] != int(out_channels):
                    raise ModelError(
                        f"model returned {y.shape[1]} channels, expected out_channels={out_channels}"
                    )
                out = np.zeros((y.shape[1], h, w), dtype=np.float32)
            _blend_tiles(out, grid, chunk, y)

        _run_batches(call, image, grid, state, batch_now, act, tta, device, amp, progress, stop, consume,
                     channels_last, in_chans)
        return grid

    with _EvalMode(model):
        probe = _Grid((h, w), int(tile), int(overlap), multiple)
        pixels = len(probe) * probe.tile[0] * probe.tile[1] * (len(_FLIPS) if tta else 1)
        call, channels_last = _select_runner(model, device, backend, amp, in_chans, multiple, pixels, warn,
                                             on_backend)
        grid = _with_oom_retries(run, int(tile), int(batch_size), device, warn)
    _normalise(out, grid)
    return _check_output(out)


# ----------------------------------------------------------------------------- classification
def _tile_probs(model, image: np.ndarray, grid: _Grid, batch_size: int, tta: bool, device: torch.device,
                amp: bool, activation: str | None, progress, stop, warn) -> np.ndarray:
    """Activated outputs (n_tiles, K) of every tile of ``grid`` in row-major order."""
    act = _activation(activation)
    probs: list[np.ndarray] = []

    def run(tile_now: int, batch_now: int, state: dict) -> None:
        state.setdefault("done", 0)
        state["tile"] = max(grid.tile)

        def consume(chunk, y):
            if y.ndim != 2 or y.shape[0] != len(chunk):
                raise ModelError(
                    f"model output has shape {tuple(y.shape)}; a classification model must return N x K logits"
                )
            probs.extend(y)

        _run_batches(model, image, grid, state, batch_now, act, tta, device, amp, progress, stop, consume)

    with _EvalMode(model):
        _with_oom_retries(run, max(grid.tile), int(batch_size), device, warn, shrink_tile=False)
    return _check_output(np.stack(probs).astype(np.float32))


def classify_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    tile: int = 224,
    stride: int | None = None,
    *,
    batch_size: int = 8,
    tta: bool = False,
    device: str | torch.device = "cpu",
    amp: bool = False,
    activation: str | None = "softmax",
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ClassMap:
    """Tile-wise classification blended into a smooth class map.

    Every tile's class probabilities are spread over the tile with the same separable window
    as :func:`predict_tiled` and normalised by the window sums, so probabilities vary smoothly
    across tile borders. The class map is the argmax of the blended probabilities and the
    confidence their maximum. Built in row blocks: memory is O(H * W), not O(K * H * W).

    Parameters
    ----------
    model : torch.nn.Module
        Maps N x c x t x t float32 in [0, 1] to N x K logits (c: :func:`model_channels`).
    image : (H, W) or (H, W, 3) array
        Grey or colour image in [0, 1].
    tile : int
        Tile side (rounded down to a multiple of 32, capped at the padded image).
    stride : int, optional
        Step between tiles (default ``tile // 2``); the overlap ``tile - stride`` is capped
        at half the tile.

    Returns
    -------
    ClassMap
        ``(class_map uint16 (H, W), confidence float32 (H, W), tile_probs float32 (n_tiles, K))``.
    """
    image = _check_image(image)
    stride = int(tile) // 2 if stride is None else int(stride)
    if stride < 1 or stride > int(tile):
        raise ConfigError(f"stride must be in [1, tile], got stride={stride} with tile={tile}")
    _check_tiling(tile, int(tile) - stride, batch_size)
    device = resolve_device(device)
    model = _prepare_model(model, device)
    grid = _Grid(image.shape[:2], int(tile), int(tile) - stride, model_multiple(model))
    image = as_model_input(image, model_channels(model))
    probs = _tile_probs(model, image, grid, batch_size, tta, device, amp, activation, progress, stop, warn)
    return _class_map(grid, probs)


def classify_image(
    model: torch.nn.Module,
    image: np.ndarray,
    size: int = 224,
    *,
    batch_size: int = 8,
    tta: bool = False,
    device: str | torch.device = "cpu",
    amp: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    warn: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Class probabilities (K,) of a whole micrograph: the mean softmax over non-overlapping tiles of ``size`` px."""
    image = _check_image(image)
    _check_tiling(size, 0, batch_size)
    device = resolve_device(device)
    model = _prepare_model(model, device)
    grid = _Grid(image.shape[:2], int(size), 0, model_multiple(model))
    image = as_model_input(image, model_channels(model))
    probs = _tile_probs(model, image, grid, batch_size, tta, device, amp, "softmax", progress, stop, warn)
    return probs.mean(axis=0).astype(np.float32)
