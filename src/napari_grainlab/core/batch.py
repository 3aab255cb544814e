"""Batch prediction over files, folders and glob patterns, on Dask distributed.

>>> from napari_grainlab.core.batch import BatchOptions, run_batch
>>> for event in run_batch("models/sem", ["data/*.tif"], "out", workers=4):   # doctest: +SKIP
...     print(event)

:func:`run_batch` expands the inputs (:func:`expand_inputs`), skips the images whose outputs are
already complete (resumable; ``overwrite=True`` redoes them), sends one task per image to Dask
workers (a :class:`distributed.LocalCluster` it starts, or an existing scheduler at
``scheduler="tcp://host:port"``, which it never shuts down), and yields typed progress events.
Each worker loads the model once (:func:`cached_model`), predicts the image it is given, writes
that image's outputs atomically and returns its summary row; a corrupt image becomes an error row
and the batch goes on. ``summary.csv`` (one row per image, in input order) is written at the end,
also when the batch is stopped. With one worker, or one image to predict, and no scheduler, the
images are predicted in this process without starting a cluster.

Per image ``NAME`` (the file stem, ``NAME_2``... for repeated stems) the output folder gets
``NAME_labels.tif``, ``NAME_boundary.tif``, ``NAME_grains.csv``, ``NAME_twin_boundary.tif`` (a model
with a twin class; its twin statistics go into the summary row) and optionally
``NAME_overlay.png`` (segmentation), or ``NAME_classes.tif`` and ``NAME_confidence.tif``
(classification), and last the hidden ``.NAME.grainlab.json``: the record that the image is
complete, with its summary row. An image counts as done when its record names the same image file
(path, size, modification time), the same model and the same result-changing settings, and every
output it lists exists.

Only the standard library is imported at module level (the command line imports this module).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._schema import option
from .errors import USER_ERRORS, BatchError, CheckpointError
from .inference.options import InferenceOptions

__all__ = ["IMAGE_EXTENSIONS", "OUTPUT_SUFFIXES", "SUMMARY_NAME", "BatchError", "BatchFinished",
           "BatchImageDone", "BatchImageFailed", "BatchOptions", "BatchStarted", "cached_model",
           "default_workers", "expand_inputs", "is_output_name", "model_loads", "output_stem", "output_stems",
           "parse_scheduler_address", "predict_image_file", "predict_task", "read_for_prediction", "run_batch",
           "summary_columns", "with_bar_rows", "without_path", "write_rows_csv"]

IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: names of the files a prediction writes (never inputs when found in the output folder)
OUTPUT_SUFFIXES = ("_labels.tif", "_boundary.tif", "_twin_boundary.tif", "_classes.tif", "_confidence.tif",
                   "_overlay.png", "_grains.csv")
SUMMARY_NAME = "summary.csv"
RECORD_SUFFIX = ".grainlab.json"
RECORD_FORMAT = "napari-grainlab-batch-image"
RECORD_VERSION = 1
_GLOB_CHARS = frozenset("*?[")
_POLL_S = 0.05
#: how long the Dask client may take to greet a scheduler that accepted the connection
_CONNECT_TIMEOUT = "5s"
#: how long to wait for a scheduler's host to accept a TCP connection at all
_PROBE_TIMEOUT_S = 3.0
#: how long a tcp:// scheduler may take to greet a new connection (it speaks first; a dashboard or any
#: other server that waits for the client to speak would otherwise keep Dask waiting for good)
_GREETING_TIMEOUT_S = 5.0
#: Dask's network protocols (inproc: a scheduler in this process)
_SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")




# ============================================================================== options and events
@dataclass(frozen=True)
class BatchOptions(InferenceOptions):
    """Prediction settings of a batch: every :class:`~napari_grainlab.core.inference.options.InferenceOptions`
    field (see :func:`~napari_grainlab.core.inference.predict_array`) plus what a batch writes.

    ``pixel_size`` (µm) overrides the one read from each image; ``overlay`` also writes
    ``NAME_overlay.png`` (segmentation); ``data_bar`` cuts an SEM data bar off before prediction
    (:func:`~napari_grainlab.core.data.micrograph.read_specimen`).
    """

    pixel_size: float | None = option(None, min=1e-6, max=1e6, group="Output", metavar="UM",
                                      help="pixel size in µm (default: from the image metadata)")
    overlay: bool = option(False, group="Output", help="also write NAME_overlay.png")
    data_bar: str = option("cut", choices=("cut", "keep"), group="Output",
                           help="cut: predict on the specimen only, without an SEM data bar at the bottom "
                                "(stated by the metadata, else detected in the pixels); its rows are 0 in "
                                "the labels and maps, which keep the file's size. keep: predict every row")

    def result_key(self) -> dict:
        """The settings that change the outputs (the batch size and device do not)."""
        d = asdict(self)
        for name in ("batch_size", "device", "amp"):
            d.pop(name)
        return d


@dataclass(frozen=True)
class BatchStarted:
    """The inputs are known: ``total`` images, ``skipped`` of them already done, the rest goes to
    ``workers`` workers at ``where`` ("this process", "LocalCluster", or the scheduler address with
    ``workers`` 0: the cluster's own workers)."""

    total: int
    skipped: int
    workers: int
    where: str

    @property
    def done(self) -> int:
        return self.skipped

    @property
    def message(self) -> str:
        return str(self)

    def __str__(self) -> str:
        todo = self.total - self.skipped
        head = f"{self.total} image{'s' if self.total != 1 else ''}"
        if self.skipped:
            head += f" ({self.skipped} already done)"
        if not todo:
            return f"{head}: nothing to predict"
        if not self.workers:
            return f"{head}: predicting {todo} on the Dask cluster at {self.where}"
        return f"{head}: predicting {todo} on {self.workers} worker{'s' if self.workers != 1 else ''} " \
               f"({self.where})"


@dataclass(frozen=True)
class BatchImageDone:
    """One image predicted: its summary ``row``; ``done`` of ``total`` images are finished.

    ``worker`` names the process that predicted it and ``model_loads`` how often that process has
    loaded this model so far (1: loaded once, reused for every later image).
    """

    path: str
    row: dict
    done: int
    total: int
    warnings: tuple[str, ...] = ()
    worker: str = ""
    model_loads: int = 0
    seconds: float = 0.0

    @property
    def message(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class BatchImageFailed:
    """One image could not be predicted (``error``: one line); the others go on."""

    path: str
    error: str
    done: int
    total: int
    worker: str = ""

    @property
    def message(self) -> str:
        return f"{Path(self.path).name}: {self.error}"


@dataclass(frozen=True)
class BatchFinished:
    """The end: ``predicted`` new, ``skipped`` already done, ``failed`` images, and ``summary.csv``
    (None when there was nothing to write). ``cancelled``: stopped early."""

    summary: Path | None
    total: int
    predicted: int
    skipped: int
    failed: int
    cancelled: bool = False
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return self.predicted + self.skipped + self.failed

    @property
    def ok(self) -> int:
        return self.predicted + self.skipped

    @property
    def message(self) -> str:
        return str(self)

    def __str__(self) -> str:
        text = f"{'stopped: ' if self.cancelled else ''}{self.ok} of {self.total} images done"
        extra = [f"{self.skipped} already done"] if self.skipped else []
        if self.failed:
            extra.append(f"{self.failed} failed")
        return text + (f" ({', '.join(extra)})" if extra else "")


# ===================================================================================== inputs
def output_stem(path: Path) -> str:
    """The output name of an image file: its stem (``a.ome.tif`` -> ``a``)."""
    name = Path(path).name
    for suf in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def output_stems(paths: Sequence[Path]) -> list[str]:
    """One output name per input: the file stem, with ``_2``, ``_3``... for repeated stems.

    ``d1/a.tif`` and ``d2/a.tif``, or ``a.tif`` and ``a.png``, would otherwise write the same files.
    Compared without case (case-insensitive file systems).
    """
    used: set[str] = set()
    stems = []
    for path in paths:
        base = output_stem(Path(path))
        stem, k = base, 1
        while stem.lower() in used:
            k += 1
            stem = f"{base}_{k}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


def is_output_name(name: str) -> bool:
    """Whether a file name is one that a prediction writes (``a_labels.tif``, ``a_overlay.png``...)."""
    low = name.lower()
    return any(low.endswith(s) for s in OUTPUT_SUFFIXES)


def _canonical(path: Path) -> str:
    try:
        return os.path.normcase(str(path.resolve()))
    except OSError:
        return os.path.normcase(os.path.abspath(path))


def expand_inputs(inputs: Iterable[str | os.PathLike], out: str | os.PathLike | None = None) -> list[Path]:
    """Image files from files, folders and glob patterns (``**`` matches sub-folders).

    Folders and patterns contribute their image files (``IMAGE_EXTENSIONS``, hidden files left
    out) sorted by path; a file named explicitly is kept whatever it is (reading it reports what
    is wrong). Files found in the output folder ``out`` that a prediction writes
    (:data:`OUTPUT_SUFFIXES`) are left out, so a rerun over a folder that is also the output folder
    does not predict its own outputs. Each file appears once, at its first place.
    """
    out_dir = _canonical(Path(out).expanduser()) if out is not None else None
    seen: set[str] = set()
    paths: list[Path] = []

    def add(p: Path, listed: bool) -> None:
        if listed:
            if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
                return
            if out_dir is not None and is_output_name(p.name) and _canonical(p.parent) == out_dir:
                return
        key = _canonical(p)
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for item in inputs:
        text = os.path.expanduser(os.fspath(item))
        p = Path(text)
        if p.is_dir():
            for f in sorted(p.iterdir()):
                add(f, True)
        elif p.exists() or not (_GLOB_CHARS & set(text)):
            add(p, False)
        else:
            for m in sorted(glob.glob(text, recursive=True)):
                add(Path(m), True)
    return paths


# ================================================================================ worker side
_MODEL_LOCK = threading.Lock()
_MODEL_CACHE: dict[str, Any] = {}
_MODEL_LOADS: dict[str, int] = {}


def _model_key(model: str | os.PathLike, device: Any) -> tuple:
    from .models.checkpoint import checkpoint_files

    weights, meta = checkpoint_files(model)
    ws, ms = weights.stat(), meta.stat()
    return str(weights.resolve()), ws.st_size, ws.st_mtime_ns, str(meta.resolve()), ms.st_mtime_ns, str(device)


def cached_model(model: str | os.PathLike, device: Any = "cpu") -> tuple[Any, dict, int]:
    """(model, metadata, loads): the checkpoint loaded once per process and reused.

    The cache holds one model, keyed by its resolved files, their size and modification time and
    the device: a changed checkpoint is loaded again. ``loads`` counts how often this process has
    loaded this checkpoint (see :func:`model_loads`).
    """
    from .models import load_checkpoint

    key = _model_key(model, device)
    with _MODEL_LOCK:
        if _MODEL_CACHE.get("key") != key:
            _MODEL_CACHE.clear()
            net, meta = load_checkpoint(model, device=device)
            _MODEL_CACHE.update(key=key, model=net, meta=meta)
            _MODEL_LOADS[key[0]] = _MODEL_LOADS.get(key[0], 0) + 1
        return _MODEL_CACHE["model"], _MODEL_CACHE["meta"], _MODEL_LOADS[key[0]]


def model_loads() -> dict[str, int]:
    """How often this process loaded each checkpoint (weights path -> count)."""
    with _MODEL_LOCK:
        return dict(_MODEL_LOADS)


def read_for_prediction(path: Path, options: BatchOptions, warn: Callable[[str], None] | None = None):
    """The image a batch predicts on and the number of data bar rows left out (``options.data_bar``:
    ``"cut"`` reads it with :func:`~napari_grainlab.core.data.micrograph.read_specimen`, ``"keep"`` with
    :func:`~napari_grainlab.core.data.io.read_image`); a cut is said through ``warn`` (whose caller names
    the file)."""
    if options.data_bar == "keep":
        from .data.io import read_image

        return read_image(path), 0
    from .data.micrograph import read_specimen

    img, micrograph = read_specimen(path)
    bar = int(micrograph.data_bar_rows)
    if bar and warn is not None:
        warn(f"the bottom {bar} rows are a data bar ({micrograph.data_bar_source}); "
             "predicted without them (--data-bar keep predicts every row)")
    return img, bar


def with_bar_rows(a, bar: int):
    """An output of the specimen rows at the file's size: ``bar`` rows of 0 below it."""
    import numpy as np

    if not bar:
        return a
    padded = np.zeros((a.shape[0] + bar, *a.shape[1:]), a.dtype)
    padded[: a.shape[0]] = a
    return padded


def predict_image_file(model, meta: dict, path: str | os.PathLike, out: str | os.PathLike, stem: str | None = None,
                       options: BatchOptions | None = None, device: Any = None, *,
                       progress: Callable[[int, int], None] | None = None, stop: Callable[[], bool] | None = None,
                       warn: Callable[[str], None] | None = None) -> tuple[dict, list[str]]:
    """Segment / classify one image file and write its outputs (named ``stem``, default the file's) atomically.

    Returns ``(summary row, names of the files written)``. The row has ``image``, ``output``,
    ``pixel_size_um`` and, for segmentation, what :func:`~napari_grainlab.core.measure.summarize`
    gives (grain count, mean diameter in µm when the pixel size is known, else px, ASTM G...) and the
    grain scale (``diameter_px``, ``diameter_source``, ``scale``: see
    :class:`~napari_grainlab.core.inference.PredictionResult`); for classification ``class`` and
    ``p_<class>`` probabilities.
    """
    import numpy as np

    from ._io import atomic_write_png, atomic_write_tiff
    from .inference import predict_array
    from .measure import grain_table, summarize, write_table_csv

    options = options or BatchOptions()
    device = options.device if device is None else device
    path, out = Path(path), Path(out)
    img, bar = read_for_prediction(path, options, warn)
    pixel_size = options.pixel_size or img.pixel_size
    stem = stem or output_stem(path)
    row: dict[str, Any] = {"image": path.name, "output": stem, "pixel_size_um": pixel_size or "",
                           "data_bar_rows": bar}

    def full(a: np.ndarray) -> np.ndarray:
        return with_bar_rows(a, bar)
    # the overlay needs the image afterwards; else the prediction holds its only reference and can free it
    # once the network has seen it (its memory then serves the watershed of a large image)
    source = img.data if options.overlay else None
    data = [img.data]
    del img
    res = predict_array(model, meta, data.pop(), options.inference(), device=device, progress=progress, stop=stop,
                        warn=warn, keep_distance=False)
    written: list[str] = []

    def name(suffix: str) -> Path:
        written.append(f"{stem}{suffix}")
        return out / written[-1]

    if res.task == "segment":
        # written at the file's size; measured on the specimen rows (a grain cut by the data bar's edge is an
        # edge grain, as at any other image edge)
        atomic_write_tiff(name("_labels.tif"), full(res.labels.astype(np.uint32)), pixel_size_um=pixel_size)
        atomic_write_tiff(name("_boundary.tif"), full(res.boundary.astype(np.float32)), pixel_size_um=pixel_size)
        if res.twin_boundary is not None:
            from .twins import twin_statistics

            atomic_write_tiff(name("_twin_boundary.tif"), full(res.twin_boundary.astype(np.float32)),
                              pixel_size_um=pixel_size)
            row.update(twin_statistics(res.labels, res.twin_boundary, pixel_size))
        table = grain_table(res.labels, pixel_size)
        write_table_csv(name("_grains.csv"), table, pixel_size)
        if options.overlay:
            from .visualize import overlay_rgb

            atomic_write_png(name("_overlay.png"), overlay_rgb(source, res.labels))
        row.update(summarize(res.labels, pixel_size, table=table))
        row.update(res.scaling.row())
    else:
        atomic_write_tiff(name("_classes.tif"), full(res.class_map.astype(np.uint16)), pixel_size_um=pixel_size)
        atomic_write_tiff(name("_confidence.tif"), full(res.confidence.astype(np.float32)),
                          pixel_size_um=pixel_size)
        probs = res.class_probabilities
        row.update({"class": res.image_class, **{f"p_{n}": float(p) for n, p in zip(res.classes, probs)}})
    return row, written


@dataclass(frozen=True)
class _Job:
    """One image for a worker (plain data: it travels to other processes and machines)."""

    index: int
    path: str
    stem: str
    out: str
    model: str
    model_id: dict
    options: BatchOptions
    device: str
    pin_gpu: bool = False
    torch_threads: int | None = None


def _source_id(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _model_id(model: str | os.PathLike) -> dict:
    from .models.checkpoint import checkpoint_files

    weights, _ = checkpoint_files(model)
    st = weights.stat()
    return {"weights": str(weights.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _record_path(out: Path, stem: str) -> Path:
    return out / f".{stem}{RECORD_SUFFIX}"


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_index() -> int | None:
    """The index of this Dask worker in a LocalCluster (its name is 0, 1, ...), else None."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    return name if isinstance(name, int) else None


def _job_device(job: _Job):
    import torch

    from .inference import resolve_device

    dev = resolve_device(job.device)
    if job.pin_gpu and dev.type == "cuda" and dev.index is None and torch.cuda.device_count() > 1:
        index = _worker_index()
        if index is not None:
            dev = torch.device("cuda", index % torch.cuda.device_count())
    return dev


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        text = f"{exc.filename}: {exc.strerror or text}"
    return text or type(exc).__name__


#: errors a job reports as its one-line message (without the exception's type name): the user errors, plus plain
#: ``ValueError`` (what NumPy, scikit-image and tifffile raise for an array or file they reject while one image is
#: processed or written) and ``FloatingPointError``
_EXPECTED_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, ValueError, FloatingPointError)


def _run_job(job: _Job, stop: Callable[[], bool] | None = None) -> dict:
    """Predict one image (in whatever process runs it); never raises for a bad image or model."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {"index": job.index, "worker": _worker_name(), "warnings": [], "model_loads": 0}
    try:
        if job.torch_threads:
            import torch

            if torch.get_num_threads() != job.torch_threads:
                torch.set_num_threads(job.torch_threads)
        device = _job_device(job)
    except _EXPECTED_ERRORS as exc:  # e.g. --device cuda on a worker without a GPU
        return {**result, "error": f"worker {result['worker']}: {_one_line(exc)}", "fatal": True}
    try:
        model, meta, loads = cached_model(job.model, device)
    except _EXPECTED_ERRORS as exc:
        return {**result, "error": f"cannot load the model {job.model}: {without_path(_one_line(exc), job.model)}",
                "fatal": True}
    result["model_loads"] = loads
    path, out = Path(job.path), Path(job.out)
    try:
        source = _source_id(path)
        row, written = predict_image_file(model, meta, path, out, job.stem, job.options, device, stop=stop,
                                          warn=result["warnings"].append)
        record = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "source": source,
                  "model": job.model_id, "options": job.options.result_key(), "outputs": written,
                  "row": _json_row(row)}
        from ._io import atomic_write_text

        atomic_write_text(_record_path(out, job.stem), json.dumps(record, indent=1, allow_nan=False))
    except _EXPECTED_ERRORS as exc:
        return {**result, "error": without_path(_one_line(exc), path)}
    except Exception as exc:  # noqa: BLE001 - an odd image must not stop the batch; the message says what
        return {**result, "error": f"{type(exc).__name__}: {without_path(_one_line(exc), path)}"}
    return {**result, "row": row, "seconds": time.perf_counter() - t0}


def without_path(message: str, path: str | Path) -> str:
    """``message`` without a leading ``PATH: `` (the image's path is reported next to it anyway)."""
    path = Path(path)
    for p in (str(path), str(path.resolve()), path.name):
        if message.startswith(p + ": "):
            return message[len(p) + 2:]
    return message


def predict_task(job: _Job) -> dict:
    """The Dask task: predict one image on a worker (see :func:`run_batch`); returns a plain dict."""
    return _run_job(job)


class _MainWithoutPath(types.ModuleType):
    """What ``sys.modules["__main__"]`` is while our own worker processes may start: the launcher's
    module without ``__file__`` and ``__spec__``, every other attribute read from (and written to) it.

    Dask starts its workers with multiprocessing's ``spawn`` (or ``forkserver``) method, which runs the
    parent's main script again in every new process (as ``__mp_main__``), unless the main module names no
    file or module. A launcher without ``if __name__ == "__main__":`` (``import napari; napari.Viewer();
    ...; napari.run()``) would open one viewer per worker and the worker would fail to start. The tasks
    run here are functions of this package, so the workers never need the main script; the script's own
    code keeps its globals (its ``__file__`` too: only the ``sys.modules`` entry is replaced).
    """

    def __init__(self, main: types.ModuleType) -> None:
        super().__init__("__main__", getattr(main, "__doc__", None))
        self.__dict__["_grainlab_main"] = main

    def __getattr__(self, name: str) -> Any:
        if name in ("__file__", "__spec__", "__path__", "__cached__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_grainlab_main"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["_grainlab_main"], name, value)


_MAIN_LOCK = threading.Lock()
_MAIN_HIDDEN: dict[str, Any] = {"depth": 0, "main": None, "stand_in": None}


@contextlib.contextmanager
def _main_script_hidden() -> Generator[None, None, None]:
    """While inside, processes started with ``spawn`` / ``forkserver`` do not re-import the main script
    (see :class:`_MainWithoutPath`); nests and may be entered from several threads at once."""
    with _MAIN_LOCK:
        if _MAIN_HIDDEN["depth"] == 0:
            main = sys.modules.get("__main__")
            if main is not None and (getattr(main, "__file__", None) or getattr(main, "__spec__", None)):
                stand_in = _MainWithoutPath(main)
                _MAIN_HIDDEN.update(main=main, stand_in=stand_in)
                sys.modules["__main__"] = stand_in
        _MAIN_HIDDEN["depth"] += 1
    try:
        yield
    finally:
        with _MAIN_LOCK:
            _MAIN_HIDDEN["depth"] -= 1
            if _MAIN_HIDDEN["depth"] == 0:
                if _MAIN_HIDDEN["stand_in"] is not None and sys.modules.get("__main__") is _MAIN_HIDDEN["stand_in"]:
                    sys.modules["__main__"] = _MAIN_HIDDEN["main"]
                _MAIN_HIDDEN.update(main=None, stand_in=None)


# =============================================================================== records, rows
def _json_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v
    return out


def _row_from_json(row: dict) -> dict:
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def _done_row(out: Path, stem: str, path: Path, model_id: dict, options: BatchOptions) -> dict | None:
    """The stored row of an image whose outputs are complete and current, else None."""
    record_file = _record_path(out, stem)
    try:
        if record_file.stat().st_size > 1_000_000:
            return None
        record = json.loads(record_file.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            return None
        if record.get("source") != _source_id(path) or record.get("model") != model_id:
            return None
        if record.get("options") != json.loads(json.dumps(options.result_key())):
            return None
        outputs = record.get("outputs")
        if not isinstance(outputs, list) or not outputs:
            return None
        if not all(isinstance(n, str) and (out / n).is_file() for n in outputs):
            return None
        row = record.get("row")
        return _row_from_json(row) if isinstance(row, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _fmt_cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if v is None:
        return ""
    return " ".join(str(v).split())


def write_rows_csv(path: str | os.PathLike, rows: list[dict], first: Sequence[str] = (),
                   last: Sequence[str] = (), columns: Sequence[str] | None = None) -> None:
    """Write ``rows`` as CSV (quoted as the ``csv`` module does, so a comma in a message stays a
    comma), atomically; NaN and missing values as empty cells, each value on one line.

    The columns are ``columns`` when given (in that order, whatever the rows hold), else those of
    the rows in order of appearance, ``first`` ones first and ``last`` ones last.
    """
    import csv
    import io

    from ._io import atomic_write_text

    if columns is not None:
        keys = list(columns)
    else:
        keys = [k for k in first if any(k in r for r in rows)]
        for r in rows:
            keys += [k for k in r if k not in keys and k not in last]
        keys += [k for k in last if any(k in r for r in rows) and k not in keys]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    writer.writerows([_fmt_cell(r.get(k, "")) for k in keys] for r in rows)
    atomic_write_text(Path(path), buf.getvalue())


#: the per-image columns of a segmentation model's summary (what ``measure.summarize`` gives)
SEGMENT_COLUMNS = ("grains", "mean_diameter", "median_diameter", "mean_diameter_inside", "unit", "grains_per_mm2",
                   "astm_g")
#: the columns a model with a twin class adds (:func:`~napari_grainlab.core.twins.twin_statistics`)
TWIN_COLUMNS = ("twin_boundary_fraction", "twinned_grains", "grains_twins_counted", "G_twins_counted",
                "G_twins_excluded")


def summary_columns(meta: dict) -> list[str]:
    """The columns of ``summary.csv`` for a model (its ``model.json``): the same whichever images
    succeed or fail. Segmentation: grain count, sizes, ASTM G; classification: the class and one
    ``p_<class>`` probability per class; a model with a twin class adds the twin statistics."""
    meta = meta or {}
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    if (meta.get("task") or spec.get("task")) == "classify":
        names = [str(c) for c in (meta.get("classes") or spec.get("classes") or ())]
        if not names:
            k = spec.get("num_classes")
            names = [str(i) for i in range(k)] if isinstance(k, int) and k > 0 else []
        stats = ["class", *(f"p_{n}" for n in names)]
    else:
        from .inference._result import SCALE_COLUMNS

        outputs = meta.get("outputs") if isinstance(meta.get("outputs"), list) else []
        twins = TWIN_COLUMNS if "twin_boundary" in outputs or spec.get("twin_class") else ()
        stats = [*SEGMENT_COLUMNS, *twins, *SCALE_COLUMNS]
    return ["image", "output", "pixel_size_um", "data_bar_rows", *stats, "status", "error", "path"]


def _write_summary(out: Path, rows: dict[int, dict], columns: Sequence[str]) -> Path | None:
    if not rows:
        return None
    path = out / SUMMARY_NAME
    ordered = [rows[i] for i in sorted(rows)]
    keys = list(columns)
    extra = []  # a row with more than the model describes (e.g. a model.json edited since): kept, not lost
    for r in ordered:
        extra += [k for k in r if k not in keys and k not in extra]
    if extra:
        tail = keys.index("status")
        keys = keys[:tail] + extra + keys[tail:]
    write_rows_csv(path, ordered, columns=keys)
    return path


# ================================================================================= the driver
def parse_scheduler_address(address: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a Dask scheduler address ``[SCHEME://]HOST:PORT`` (scheme default
    ``tcp``; an IPv6 host in brackets, ``tcp://[::1]:8786``); an ``inproc://`` address (a scheduler in this
    process) gives ``("inproc", location, None)``.

    Raises :class:`BatchError` with one line for anything else, before Dask is asked: a malformed
    address made ``distributed.Client`` wait 24 s and print a traceback from its ``__del__``.
    """
    text = str(address).strip()

    def bad(why: str) -> BatchError:
        return BatchError(f"scheduler address {address!r} is not an address ({why}); expected tcp://HOST:PORT, "
                          "e.g. tcp://10.0.0.5:8786")

    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    scheme = scheme.lower()
    if scheme not in _SCHEDULER_SCHEMES:
        raise bad(f"unknown protocol {scheme!r}; use {', '.join(_SCHEDULER_SCHEMES[:5])}")
    if scheme == "inproc":
        if not rest or any(c.isspace() for c in rest):
            raise bad("no location")
        return scheme, rest, None
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
        if not sep or not host or any(c not in "0123456789abcdefABCDEF:." for c in host):
            raise bad("an IPv6 host is written [HOST]:PORT")
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            raise bad("no port")
        if not host or any(c.isspace() or c in ":/[]@?#" for c in host):
            raise bad(f"no host name {host!r}" if not host else f"{host!r} is no host name")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise bad(f"port {port!r} is not a number from 1 to 65535")
    return scheme, host, int(port)


def _scheduler(address: str) -> str:
    """The scheduler address in the form Dask reads, after checking that something listens there (a
    closed port used to take 13.6 s, the client's connection timeout with its retries)."""
    scheme, host, port = parse_scheduler_address(address)
    if port is None:
        return f"{scheme}://{host}"
    where = f"[{host}]" if ":" in host else host
    text = f"{scheme}://{where}:{port}"
    if scheme != "ucx":  # the others run over TCP
        try:
            with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as conn:
                greeting = _greeting(conn) if scheme == "tcp" else b"-"
        except socket.gaierror:
            raise BatchError(f"cannot reach the Dask scheduler at {text}: unknown host {host!r}") from None
        except ConnectionRefusedError:
            raise BatchError(f"cannot reach the Dask scheduler at {text}: nothing listens on port {port} of "
                             f"{host} (connection refused); is the scheduler running?") from None
        except TimeoutError:
            raise BatchError(f"cannot reach the Dask scheduler at {text}: no answer within "
                             f"{_PROBE_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise BatchError(f"cannot reach the Dask scheduler at {text}: {exc.strerror or exc}") from None
        if greeting is None:
            raise BatchError(f"cannot reach the Dask scheduler at {text}: something listens there but it is no "
                             f"Dask scheduler (no greeting within {_GREETING_TIMEOUT_S:g} s); is it the dashboard's "
                             "port? The scheduler's is 8786 by default") from None
        if not greeting:
            raise BatchError(f"cannot reach the Dask scheduler at {text}: the connection was closed at once; "
                             "is it a Dask scheduler?") from None
    return text


def _greeting(conn: socket.socket) -> bytes | None:
    """The first byte a server sends on a new connection (b"" when it closes it), None when it sends
    nothing in time; a Dask scheduler sends its handshake at once."""
    conn.settimeout(_GREETING_TIMEOUT_S)
    try:
        return conn.recv(1)
    except TimeoutError:
        return None


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable torch CUDA: CPU workers
        return 0


def default_workers(device: str = "auto") -> int:
    """Workers of a local batch: one per GPU when ``device`` is auto / cuda and CUDA is present,
    one for an explicit ``cuda:N``, else one per CPU core."""
    dev = str(device).strip().lower()
    if dev.startswith("cuda:"):
        return 1
    if dev in ("auto", "cuda"):
        gpus = _cuda_count()
        if gpus:
            return gpus
    return max(1, os.cpu_count() or 1)


def _stop_fn(stop: Any) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set
    return stop


def _check_model(model: str | os.PathLike, options: BatchOptions) -> dict:
    """Fail before any work when the model cannot be used: its files, description and weights header."""
    from .models.checkpoint import checkpoint_files, read_metadata

    weights, _ = checkpoint_files(model)
    meta = read_metadata(model)
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            fh.keys()
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
        raise CheckpointError(f"{weights}: corrupt weights file ({str(exc).splitlines()[0] if str(exc) else exc})"
                              ) from None
    if options.histogram_match and not meta.get("histogram_reference"):
        raise CheckpointError(f"{model}: the model has no intensity reference for histogram matching")
    return meta


def run_batch(model: str | os.PathLike, inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
              scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1,
              device: str | None = None, overwrite: bool = False, options: BatchOptions | None = None,
              in_process: bool | None = None, torch_threads: int | None = None, stop: Any = None,
              ) -> Generator[BatchStarted | BatchImageDone | BatchImageFailed | BatchFinished, None, BatchFinished]:
    """Predict every image of ``inputs`` into the folder ``out``; yields progress events.

    Parameters
    ----------
    model
        A model folder (or its ``model.json`` / ``model.safetensors``); checked here before any
        work (``CheckpointError``). Workers read it from the same path: on a cluster of several
        machines it must be on a shared file system (as must the images and ``out``).
    inputs
        Image files, folders and glob patterns (:func:`expand_inputs`).
    scheduler
        Address of a running Dask scheduler (``tcp://host:port``): the images go to its workers and
        the cluster is left running. A malformed address, or one where nothing accepts a connection
        within 3 s, raises :class:`BatchError` before any work (:func:`parse_scheduler_address`).
        None: a :class:`distributed.LocalCluster` of ``workers``
        processes with ``threads_per_worker`` threads each, closed at the end. The workers do not
        run the main script again, so a launcher script needs no ``if __name__ == "__main__":``.
    workers
        Local workers (default :func:`default_workers`: one per core, or one per GPU), at most
        one per image to predict. Each gets ``torch_threads`` PyTorch threads (default
        ``cores // (workers * threads_per_worker)``, at least 1) and, with several GPUs, its own GPU.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, resolved on each worker (default:
        ``options.device``).
    overwrite
        Redo images whose outputs are complete (default: skip them, keeping their stored rows).
    in_process
        Predict in this process without Dask. Default: when there is no ``scheduler`` and only one
        worker or one image to predict.
    stop
        A callable (or ``threading.Event``) polled while waiting: when true, outstanding images are
        cancelled, ``summary.csv`` is written with what is done and :class:`BatchFinished` has
        ``cancelled=True``. Closing the generator cancels the same way.

    Yields :class:`BatchStarted`, then :class:`BatchImageDone` / :class:`BatchImageFailed` per image
    as they finish, and :class:`BatchFinished` (also returned). Raises :class:`BatchError` when there
    are no images, the scheduler cannot be reached, or the workers cannot load the model.
    """
    t0 = time.perf_counter()
    options = options or BatchOptions()
    if not isinstance(options, BatchOptions):
        options = BatchOptions(**options.to_dict())
    device = options.device if device is None else device
    stopped = _stop_fn(stop)
    out_dir = Path(out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise BatchError(f"{out_dir} exists and is not a folder")
    if threads_per_worker < 1:
        raise BatchError(f"threads per worker must be at least 1, got {threads_per_worker}")
    if workers is not None and workers < 1:
        raise BatchError(f"workers must be at least 1, got {workers}")
    if torch_threads is not None and torch_threads < 1:
        raise BatchError(f"torch threads must be at least 1, got {torch_threads}")
    if scheduler is not None:
        scheduler = _scheduler(scheduler)
    meta = _check_model(model, options)
    columns = summary_columns(meta)
    if scheduler is None:
        from .inference import resolve_device

        resolve_device(device)  # an unknown or missing device: ConfigError before any work
    paths = expand_inputs(inputs, out_dir)
    if not paths:
        raise BatchError("no images to predict")
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()
    from .models.registry import resolve_model

    model_path = str(resolve_model(model).expanduser().resolve())  # a registry name: its bundled / cached folder
    model_id = _model_id(model_path)
    stems = output_stems(paths)

    rows: dict[int, dict] = {}
    todo: list[_Job] = []
    for i, (path, stem) in enumerate(zip(paths, stems)):
        path = Path(os.path.abspath(path))
        row = None if overwrite else _done_row(out_dir, stem, path, model_id, options)
        if row is not None:
            rows[i] = {**row, "status": "ok", "path": str(path)}
        else:
            todo.append(_Job(i, str(path), stem, str(out_dir), model_path, model_id, options, device))
    total, skipped = len(paths), len(rows)
    n_workers = workers or default_workers(device)
    if in_process is None:
        in_process = scheduler is None and (n_workers == 1 or len(todo) <= 1)
    n_workers = 1 if in_process else min(n_workers, max(1, len(todo)))
    where = "this process" if in_process else (scheduler or "LocalCluster")
    predicted = failed = 0
    cancelled = False
    summary: Path | None = None
    finished = False
    try:
        yield BatchStarted(total, skipped, n_workers if scheduler is None else 0, where)
        if todo:
            if in_process:
                results = _in_process(todo, stopped)
            else:
                results = _on_dask(todo, scheduler, n_workers, threads_per_worker, torch_threads, stopped)
            try:
                for res in results:
                    job = paths[res["index"]]
                    full = os.path.abspath(job)
                    done = skipped + predicted + failed + 1
                    if "row" in res:
                        predicted += 1
                        rows[res["index"]] = {**res["row"], "status": "ok", "path": full}
                        yield BatchImageDone(str(job), res["row"], done, total, tuple(res.get("warnings", ())),
                                             res.get("worker", ""), res.get("model_loads", 0), res.get("seconds", 0.0))
                    else:
                        failed += 1
                        stem = stems[res["index"]]
                        rows[res["index"]] = {"image": job.name, "output": stem, "status": "error",
                                              "error": res["error"], "path": full}
                        if res.get("fatal"):  # the model or the worker: reported once, for the whole batch
                            raise BatchError(res["error"])
                        yield BatchImageFailed(str(job), res["error"], done, total, res.get("worker", ""))
            finally:
                results.close()
            cancelled = stopped() or (skipped + predicted + failed) < total
        summary = _write_summary(out_dir, rows, columns)
        finished = True
    finally:
        if not finished:  # stopped by an error or by closing the generator: keep what is done
            with contextlib.suppress(OSError):
                _write_summary(out_dir, rows, columns)
    end = BatchFinished(summary, total, predicted, skipped, failed, cancelled, time.perf_counter() - t0)
    yield end
    return end


def _in_process(todo: list[_Job], stopped: Callable[[], bool]) -> Generator[dict, None, None]:
    from .inference import Cancelled

    for job in todo:
        if stopped():
            return
        try:
            res = _run_job(job, stop=stopped)
        except Cancelled:
            return
        if "error" in res and stopped():  # a stop during the image: not an error of the image
            return
        yield res


def _on_dask(todo: list[_Job], scheduler: str | None, n_workers: int, threads: int, torch_threads: int | None,
             stopped: Callable[[], bool]) -> Generator[dict, None, None]:
    from distributed import Client, LocalCluster, as_completed

    cluster = client = None
    futures: list = []
    hidden = contextlib.ExitStack()
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout=_CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise BatchError(f"cannot reach the Dask scheduler at {scheduler}: {_one_line(exc)}") from None
        else:
            torch_threads = torch_threads or max(1, (os.cpu_count() or 1) // (n_workers * threads))
            hidden.enter_context(_main_script_hidden())  # for the cluster's life: the nanny restarts dead workers
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                                   dashboard_address=None, memory_limit=0,
                                   # CRITICAL, not ERROR: a worker whose heartbeat races the
                                   # scheduler's shutdown logs a traceback at ERROR; task errors and
                                   # dead workers reach the user through the futures anyway
                                   silence_logs=logging.CRITICAL)
            client = Client(cluster, set_as_default=False)
            from ._dask_worker import QuietWorker

            client.register_plugin(QuietWorker())
            pin = n_workers > 1 and _cuda_count() > 1
            todo = [_replace_job(j, pin_gpu=pin, torch_threads=torch_threads) for j in todo]
        futures = client.map(predict_task, todo, pure=False)
        index = {f.key: j.index for f, j in zip(futures, todo)}
        queue = as_completed(futures, loop=client.loop, with_results=False)
        left = len(futures)
        while left:
            if stopped():
                return
            batch = queue.next_batch(block=False)
            if not batch:
                time.sleep(_POLL_S)
                continue
            for fut in batch:
                left -= 1
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker that died (KilledWorker)
                    res = {"index": index[fut.key], "error": f"the Dask task failed: {type(exc).__name__}: "
                                                             f"{_one_line(exc)}"}
                yield res
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                pending = [f for f in futures if not f.done()]
                if pending:
                    client.cancel(pending)
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        hidden.close()


def _replace_job(job: _Job, **changes: Any) -> _Job:
    from dataclasses import replace

    return replace(job, **changes)

