"""Which runtime runs the network of a CPU prediction: onnxruntime or a tuned PyTorch.

On a laptop CPU the same efficientnet_lite0 U-Net runs about 3–4× faster on onnxruntime than in eager
PyTorch (``benchmarks/bench_cpu_predict.py``), with the same outputs to ~1e-7. So a CPU prediction of one
of the project's networks (:class:`~napari_grainlab.core.models.networks.GrainUNet` /
``GrainClassifier``) exports the model on the fly to an in-memory ONNX session (the tracing exporter,
checked against PyTorch on an input of another size before use) and runs its tiles there. The session
is cached, keyed by a hash of the weights, the input channels and the thread count: in memory (a few
sessions) and as an ``.onnx`` file in the cache folder (``$GRAINLAB_CACHE/onnx``, else the user cache
folder), so a second run of the same checkpoint, in this process or the next, does not export again.

Backends (``backend=`` of :func:`~napari_grainlab.core.inference.predict_array` /
:func:`~napari_grainlab.core.inference.tiling.predict_tiled`):

- ``"auto"`` (default): on the CPU ``"onnxruntime"`` when it can run the model and either a session
  for these weights is cached or the job is big enough to pay for the export (a few seconds, once),
  else ``"torch"``; on a GPU ``"torch-eager"``. ``$GRAINLAB_CPU_BACKEND`` names another CPU choice.
- ``"onnxruntime"``: always (raises :class:`~napari_grainlab.core.errors.ConfigError` when it cannot).
- ``"torch"``: PyTorch, on the CPU in channels-last memory format (about 1.5× faster than NCHW for
  the depthwise convolutions of EfficientNet), on a copy of the model (the caller's stays as it is).
- ``"torch-eager"``: the model exactly as given (the path of every prediction before the choice
  existed; GPUs use it).

When the export or its check fails, ``"auto"`` falls back to ``"torch"`` (with a warning).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import os
import tempfile
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["BACKENDS", "CPU_BACKEND_ENV", "OnnxRunner", "choose_backend", "clear_cache", "model_runner",
           "onnx_cache_dir"]

BACKENDS = ("auto", "onnxruntime", "torch", "torch-eager")
#: environment variable naming the backend ``"auto"`` uses on the CPU
CPU_BACKEND_ENV = "GRAINLAB_CPU_BACKEND"
#: ``"auto"`` exports a model without a cached session only for jobs of at least this many network
#: input pixels (tiles x tile area x TTA flips): about 8 tiles of 512 px, where onnxruntime saves more
#: time than the export (~3–5 s on two cores) costs
EXPORT_MIN_PIXELS = 2_000_000
#: sessions kept in memory
_MAX_SESSIONS = 4
#: ``.onnx`` files kept in the cache folder (the oldest are removed)
_MAX_FILES = 8
_OPSET = 17
#: largest accepted difference between the exported model and PyTorch on the check input (logits)
_CHECK_ATOL = 1e-3

_lock = threading.Lock()
_sessions: OrderedDict[str, OnnxRunner] = OrderedDict()
#: per model (held weakly): the weights' signature and the hashes / channels-last copy made for it, so
#: that the many small predictions of one image (the scale probes, the tiles of a grid) neither hash the
#: weights nor copy the model again while the weights stay the same
_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tuned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def onnx_cache_dir() -> Path:
    """Where exported sessions are kept: ``$GRAINLAB_CACHE/onnx``, else the user cache folder's ``onnx``."""
    env = os.environ.get("GRAINLAB_CACHE")
    if env:
        return Path(env).expanduser() / "onnx"
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-grainlab")) / "onnx"


def clear_cache(files: bool = False) -> None:
    """Forget the sessions kept in memory (and with ``files`` the cached ``.onnx`` files)."""
    with _lock:
        _sessions.clear()
        _keys.clear()
        _tuned.clear()
    if files:
        for path in onnx_cache_dir().glob("*.onnx"):
            path.unlink(missing_ok=True)


def _exportable(model) -> bool:
    from ..models.networks import _GrainNet

    return isinstance(model, _GrainNet) and getattr(model, "task", None) in ("segment", "classify")


def _onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _threads() -> int:
    return max(1, int(torch.get_num_threads()))


def weights_signature(model: torch.nn.Module) -> tuple:
    """What changes whenever a weight or buffer of ``model`` changes: per tensor its identity, storage,
    shape, dtype, device and PyTorch's in-place version counter (an optimiser step, ``load_state_dict``,
    ``p.add_(...)`` under ``no_grad`` each bump it). Cheap: no values are read."""
    return tuple((name, id(t), t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.device.type)
                 for name, t in model.state_dict(keep_vars=True).items() if t is not None)


def model_key(model: torch.nn.Module, in_chans: int) -> str:
    """Hash of the weights and buffers (names, dtypes, shapes, values), class, input channels and threads.

    Remembered per model while :func:`weights_signature` stays the same."""
    sig = (weights_signature(model), int(in_chans), _threads())
    with _lock:
        try:
            known = _keys.get(model)
        except TypeError:  # not weak-referenceable: hash every time
            known = None
    if known is not None and known[0] == sig:
        return known[1]
    key = _hash_weights(model, in_chans)
    with _lock:
        try:
            _keys[model] = (sig, key)
        except TypeError:
            pass
    return key


def _hash_weights(model: torch.nn.Module, in_chans: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(model).__qualname__}|{getattr(model, 'task', '')}|{int(in_chans)}|{_threads()}|"
             f"{_OPSET}|{torch.__version__}".encode())
    for name, value in model.state_dict().items():
        t = value.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def choose_backend(model, device: torch.device, backend: str = "auto", *, amp: bool = False,
                   pixels: int | None = None, in_chans: int = 1) -> str:
    """The backend (``"onnxruntime"``, ``"torch"`` or ``"torch-eager"``) that runs ``model`` on ``device``.

    ``pixels``: the network input pixels of the job (for ``"auto"``'s export-pays-off rule; None: large).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    cpu = torch.device(device).type == "cpu"
    if backend == "auto":
        if not cpu:
            return "torch-eager"
        env = os.environ.get(CPU_BACKEND_ENV, "").strip().lower()
        if env and env != "auto":
            if env not in BACKENDS:
                raise ConfigError(f"{CPU_BACKEND_ENV} must be one of {', '.join(BACKENDS)}, got {env!r}")
            return choose_backend(model, device, env, amp=amp, pixels=pixels, in_chans=in_chans)
    if backend == "onnxruntime" or backend == "auto":
        why = None
        if not cpu:
            why = "onnxruntime runs here on the CPU only (use device cpu)"
        elif amp:
            why = "onnxruntime does not run mixed precision (turn amp off)"
        elif not _exportable(model):
            why = f"a {type(model).__name__} is not one of napari-grainlab's networks, which onnxruntime runs"
        elif not _onnxruntime_available():
            why = "onnxruntime is not installed (pip install onnxruntime)"
        if backend == "onnxruntime":
            if why:
                raise ConfigError(f"backend onnxruntime: {why}")
            return "onnxruntime"
        if why is None and (pixels is None or pixels >= EXPORT_MIN_PIXELS or _cached(model, in_chans)):
            return "onnxruntime"
        return "torch" if _exportable(model) else "torch-eager"
    if backend == "torch" and not (cpu and _exportable(model)):
        return "torch-eager"
    return backend


def _cached(model, in_chans: int) -> bool:
    key = model_key(model, in_chans)
    with _lock:
        if key in _sessions:
            return True
    return (onnx_cache_dir() / f"{key}.onnx").is_file()


class OnnxRunner:
    """An onnxruntime session called like the PyTorch model: N x C x H x W tensor in, logits tensor out."""

    def __init__(self, data: bytes, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        # no busy-waiting threads between the operators: on a CPU shared with other work (a GUI, another
        # job) spinning costs more than it saves (bench_cpu_predict: 447 vs 595 ms a tile under load)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # no pre-planned buffers per input shape: the same speed, and less memory held between calls
        opts.enable_mem_pattern = False
        self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """The outputs of a batch, computed one item at a time: on the CPU a tile a call is as fast as a batch
        (bench_cpu_predict), and onnxruntime's memory arena, which keeps its largest size until the session
        goes, then holds one tile's activations instead of a batch's (0.2 instead of 0.75 GB for 4 tiles of
        512 px of the built-in model)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[0] <= 1:
            return self.session.run(None, {self.input_name: x})[0]
        first = self.session.run(None, {self.input_name: x[:1]})[0]
        out = np.empty((x.shape[0], *first.shape[1:]), dtype=first.dtype)
        out[0] = first[0]
        for i in range(1, x.shape[0]):
            out[i] = self.session.run(None, {self.input_name: x[i:i + 1]})[0][0]
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = self.run(x.detach().cpu().numpy())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "alloc" in text.lower() or "out of memory" in text.lower():
                raise RuntimeError(f"out of memory in onnxruntime: {text}") from None
            raise RuntimeError(f"onnxruntime failed on input {tuple(x.shape)}: {text}") from None
        return torch.from_numpy(y)


def _quiet_export():
    """The exporters' prints, warnings and logging silenced (the ONNX export's own context manager)."""
    from ..export import _quiet  # imported here: export imports the inference package

    return _quiet()


def _export(model, in_chans: int, multiple: int) -> bytes:
    """The model (in eval mode) as ONNX bytes, dynamic batch and sides (the tracing exporter)."""
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes["logits"] = {0: "batch", 2: "height", 3: "width"} if model.task == "segment" else {0: "batch"}
    sample = torch.zeros(1, int(in_chans), 2 * multiple, 3 * multiple)
    buf = io.BytesIO()
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(model, (sample,), buf, dynamo=False, input_names=["image"], output_names=["logits"],
                          dynamic_axes=axes, opset_version=_OPSET)
    return buf.getvalue()


def _check(model, runner: OnnxRunner, in_chans: int, multiple: int) -> None:
    """Raise ``RuntimeError`` unless the session matches PyTorch on an input of other sides than the sample's."""
    x = np.random.default_rng(0).random((2, int(in_chans), 3 * multiple, 2 * multiple), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).float().numpy()
    got = runner.run(x)
    if got.shape != ref.shape:
        raise RuntimeError(f"the exported model returns shape {got.shape}, PyTorch {ref.shape}")
    diff = float(np.abs(got - ref).max())
    if not diff <= _CHECK_ATOL:
        raise RuntimeError(f"the exported model differs from PyTorch by {diff:.3g}")


def _write_cache(path: Path, data: bytes) -> None:
    """Store ``data`` atomically at ``path``, keeping at most :data:`_MAX_FILES` files; errors are ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        files = sorted(path.parent.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[_MAX_FILES:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def onnx_runner(model, in_chans: int, multiple: int) -> OnnxRunner:
    """The cached session of ``model`` (exported, checked and cached on first use). ``model`` must be in eval mode."""
    key = model_key(model, in_chans)
    with _lock:
        runner = _sessions.get(key)
        if runner is not None:
            _sessions.move_to_end(key)
            return runner
    path = onnx_cache_dir() / f"{key}.onnx"
    data = None
    if path.is_file():
        try:
            data = path.read_bytes()
            runner = OnnxRunner(data, _threads())
            _check(model, runner, in_chans, multiple)
            os.utime(path)
        except Exception:  # noqa: BLE001 - a damaged cache file: export again
            data = runner = None
    if runner is None:
        data = _export(model, in_chans, multiple)
        runner = OnnxRunner(data, _threads())
        _check(model, runner, in_chans, multiple)
        _write_cache(path, data)
    with _lock:
        _sessions[key] = runner
        while len(_sessions) > _MAX_SESSIONS:
            _sessions.popitem(last=False)
    return runner


def model_runner(model, backend: str, in_chans: int, multiple: int,
                 warn: Callable[[str], None] | None = None) -> tuple[Callable[[torch.Tensor], torch.Tensor], str, bool]:
    """What runs the batches of a prediction with ``backend`` (a choice of :func:`choose_backend`).

    Returns ``(call, backend used, channels_last)``: ``call`` maps an N x C x H x W float32 tensor to
    the logits; with ``channels_last`` its input should be in that memory format. ``model`` must be in
    eval mode. A failed export falls back to ``"torch"`` with a warning through ``warn``.
    """
    if backend == "onnxruntime":
        try:
            return onnx_runner(model, in_chans, multiple), "onnxruntime", False
        except Exception as exc:  # noqa: BLE001 - any exporter / onnxruntime failure: PyTorch still works
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = f"onnxruntime could not run this model ({text}); predicting with PyTorch"
            if warn is not None:
                warn(message)
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=3)
            backend = "torch"
    if backend == "torch":
        return _channels_last_copy(model), "torch", True
    return model, "torch-eager", False


def _channels_last_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A channels-last copy of ``model`` in eval mode (the caller's model stays as it is), made once per
    model and weights: the copy is remade when :func:`weights_signature` changes or the model is
    switched to training mode."""
    sig = (weights_signature(model), model.training)
    with _lock:
        try:
            known = _tuned.get(model)
        except TypeError:
            known = None
    if known is not None and known[0] == sig:
        return known[1]
    tuned = copy.deepcopy(model).to(memory_format=torch.channels_last)
    tuned.eval()
    with _lock:
        try:
            _tuned[model] = (sig, tuned)
        except TypeError:
            pass
    return tuned
