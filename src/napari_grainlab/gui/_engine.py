"""Loading the learning engine (torch, timm) inside a running napari, off the GUI thread.

Importing torch, timm and the engine takes seconds; on the GUI thread that freezes the viewer. The
first dock that needs the engine (Train, Annotate, Predict) calls :func:`start_warmup`, which imports
them in a background thread; :func:`ensure_engine` (before a run) waits for it with the event loop
running, a busy cursor and a status line, so the viewer keeps painting meanwhile.

What makes the import in a thread safe here:

* on Linux, Mesa's OpenGL drivers (llvmpipe under Xvfb or in VMs, radeonsi on AMD GPUs) load the
  system's ``libLLVM`` into napari's process. torchvision imports ``torch._dynamo``, which imports
  triton, whose own bundled LLVM then crashes the process (segmentation fault) — in whichever thread
  imports it. When ``libLLVM`` is already mapped and triton is not yet imported, triton is marked as
  unavailable (``sys.modules["triton"] = None``): torch then treats it as not installed, which costs
  nothing here (triton only serves ``torch.compile`` GPU kernels, which GrainLab does not use).
  :func:`start_warmup` does this on the main thread before the thread starts, and only once a dock is
  open (napari's canvas, hence ``libLLVM``, exists then). ``GRAINLAB_ALLOW_TRITON=1`` turns the guard off.
* a module being imported by one thread makes any other thread that imports it wait (Python's module
  locks): the GUI must not import the engine itself while the warm-up runs, so the docks import no torch
  at module level and reach it only through :func:`ensure_engine` or in their workers.
* an import holds the GIL most of the time, so the event loop still runs only in the gaps; the longest
  gap is loading torch's native libraries (``dlopen`` of ``libtorch_cpu`` and ``libtorch_cuda``, hundreds
  of MB, under the GIL). :func:`_preload_native_libraries` loads them first through libc's ``dlopen``
  called by ctypes, which releases the GIL, so ``import torch`` then finds them in memory.
* the GUI thread's own Python code runs only in the import's gaps too: a dock starts its imports
  :data:`BACKGROUND_DELAY_MS` after it is built (:func:`start_background_loading`), not while it is built.
* the imports allocate about a million objects, and the garbage collector's full passes over a heap
  that size stop every thread for 100-250 ms: :mod:`napari_grainlab.gui._gc` freezes the long-lived
  heap when they start and when they end.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading

__all__ = ["BACKGROUND_DELAY_MS", "avoid_triton_llvm_clash", "engine_loaded", "ensure_engine", "preload_engine",
           "start_background_loading", "start_warmup", "warmup_running", "warmup_thread_name", "when_engine_ready"]

log = logging.getLogger(__name__)

#: what :func:`preload_engine` imports, in this order
_MODULES = ("torch", "timm", "napari_grainlab.core.inference.pipeline", "napari_grainlab.core.models.networks",
            "napari_grainlab.core.training",
            # the Train dock's plot (no Qt in these: the Qt canvas is made on the main thread afterwards)
            "matplotlib.figure", "matplotlib.font_manager")


def _system_llvm_loaded() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:
        return False


def avoid_triton_llvm_clash() -> bool:
    """Block the triton import when Mesa's ``libLLVM`` is loaded and triton is not; returns whether it did."""
    if os.environ.get("GRAINLAB_ALLOW_TRITON", "") not in ("", "0") or "triton" in sys.modules:
        return False
    if _system_llvm_loaded():
        log.info("the OpenGL driver loaded libLLVM: triton is disabled to keep it from crashing napari")
        sys.modules["triton"] = None  # type: ignore[assignment]  # ``import triton`` now raises ImportError
        return True
    return False


def engine_loaded() -> bool:
    """Whether every engine module is imported (and finished importing: the warm-up is not in it)."""
    return all(name in sys.modules for name in _MODULES) and not warmup_running()


#: torch's native libraries, in load order (those present are loaded; CUDA builds have the CUDA ones)
_NATIVE_LIBRARIES = (("libtorch_global_deps.so", True), ("libc10.so", False), ("libtorch_cpu.so", False),
                     ("libtorch.so", False))


def _preload_native_libraries() -> list[str]:
    """``dlopen`` torch's big native libraries without holding the GIL (Linux; returns those loaded).

    ``libtorch_global_deps`` is opened ``RTLD_GLOBAL`` as torch itself does, the others ``RTLD_LOCAL``
    (torch's ``_C`` extension then links to these same copies). Libraries that call into Python
    (``libtorch_python``) are left to torch. Anything unexpected: nothing is loaded, torch does it.
    """
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return []
    try:
        import ctypes

        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.origin:
            return []
        libdir = os.path.join(os.path.dirname(spec.origin), "lib")
        libc = ctypes.CDLL(None)  # a CDLL function call releases the GIL while it runs
        dlopen = libc.dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        loaded = []
        for name, is_global in _NATIVE_LIBRARIES:
            path = os.path.join(libdir, name)
            if not os.path.isfile(path):
                continue
            mode = os.RTLD_NOW | (os.RTLD_GLOBAL if is_global else os.RTLD_LOCAL)
            if not dlopen(path.encode(), mode):
                log.info("could not preload %s; torch loads it itself", path)
                break
            loaded.append(name)
        return loaded
    except Exception as exc:  # noqa: BLE001 - only an optimisation
        log.info("native torch libraries not preloaded: %s", exc)
        return []


def preload_engine() -> None:
    """Import torch, timm and the engine in this thread (a few seconds the first time)."""
    if all(name in sys.modules for name in _MODULES) and not warmup_running():
        return
    if threading.current_thread() is threading.main_thread():
        avoid_triton_llvm_clash()
    _preload_native_libraries()
    for name in _MODULES:
        importlib.import_module(name)


_WARMUP_LOCK = threading.Lock()
_WARMUP: dict = {"thread": None, "done": threading.Event(), "error": None}


def warmup_thread_name() -> str:
    return "grainlab-engine-warmup"


def warmup_running() -> bool:
    """Whether the background import of the engine is under way."""
    t = _WARMUP["thread"]
    return t is not None and not _WARMUP["done"].is_set()


def _warm() -> None:
    try:
        preload_engine()
    except BaseException as exc:  # noqa: BLE001 - kept for ensure_engine, which reports it
        _WARMUP["error"] = exc
        log.info("loading the engine in the background failed: %s", exc)
    finally:
        _WARMUP["done"].set()


def start_warmup() -> bool:
    """Start importing the engine in a background thread, once (call on the main thread, when a dock opens).

    Returns whether a warm-up thread runs (False: already loaded, or already warmed up). The thread is
    not a daemon: an interpreter that exits meanwhile waits for the import to end instead of tearing it
    down half-way.
    """
    with _WARMUP_LOCK:
        if _WARMUP["thread"] is not None:
            return warmup_running()
        if all(name in sys.modules for name in _MODULES):
            return False
        avoid_triton_llvm_clash()  # on the main thread, before anything may import triton
        thread = threading.Thread(target=_warm, name=warmup_thread_name(), daemon=False)
        _WARMUP["thread"] = thread
        thread.start()
        return True


#: a dock starts its background imports this long after it is made, once napari has added and painted it.
#: An import thread holds the GIL most of the time, so Python code on the GUI thread meanwhile (the dock's
#: own construction and first layout, ~50-90 ms) runs only in its gaps: started together, opening a dock
#: stalled the viewer for 300-480 ms instead of ~50 (benchmarks/bench_gui_responsiveness.py --stalls)
BACKGROUND_DELAY_MS = 300
#: docks whose scheduled background loading will start the warm-up (:func:`when_engine_ready` leaves it
#: to them, so that two import threads do not run at once)
_ENGINE_SCHEDULED: set[int] = set()


def start_background_loading(owner, viewer, *, engine: bool = True, layers: bool = False,
                             delay_ms: int = BACKGROUND_DELAY_MS) -> None:
    """Start the background imports a dock needs, ``delay_ms`` after now (call from the dock's constructor):
    ``engine``: torch, timm and the engine (:func:`start_warmup`); ``layers``: what napari's first Labels
    layer needs (:func:`~napari_grainlab.gui._napari_compat.preload_labels_layer_modules`). The timer
    belongs to ``owner`` (a QObject): a dock closed before it fires starts nothing. Whatever needs the
    engine earlier starts the warm-up itself (:func:`ensure_engine`, :func:`when_engine_ready`).

    The objects that exist now, and those that exist when the imports are done, are frozen
    (:func:`~napari_grainlab.gui._gc.freeze_long_lived`; the layers of ``viewer`` stay collectable once
    removed)."""
    from qtpy.QtCore import QTimer

    from ._gc import freeze_long_lived, removal_mark, resume_full_collections, suspend_full_collections, unfreeze
    from ._napari_compat import labels_layer_ready, preload_labels_layer_modules, unwrap_proxy

    viewer = unwrap_proxy(viewer)
    # napari's objects out of the way of the full collections that the dock's construction and the imports
    # would trigger (see _gc); now, before the dock's own allocations
    frozen = freeze_long_lived(viewer)
    mark = removal_mark()
    if frozen:
        owner.destroyed.connect(unfreeze)  # a closed dock may be garbage: let the collector see it again
    token = id(owner)
    if engine:
        _ENGINE_SCHEDULED.add(token)
        owner.destroyed.connect(lambda *_: _ENGINE_SCHEDULED.discard(token))
    pending = {"engine": bool(engine), "layers_seen": False}

    def start_engine() -> bool:
        pending["engine"] = False
        _ENGINE_SCHEDULED.discard(token)
        return start_warmup()

    def start() -> None:
        # one import thread at a time: with two, the GUI thread gets the GIL still less often (the threads
        # hand it to each other); what napari's first Labels layer needs first, it is small
        running = bool(layers and preload_labels_layer_modules())
        if not running and pending["engine"]:
            running = start_engine()
        if not running:
            _ENGINE_SCHEDULED.discard(token)
            return
        suspended = frozen and suspend_full_collections()  # until the imports end (or the dock closes)
        if suspended:
            owner.destroyed.connect(resume_full_collections)
        poll = QTimer(owner)
        poll.setInterval(50)

        def check() -> None:
            if warmup_running() or (layers and not labels_layer_ready()):
                return
            if layers and pending["engine"] and not pending["layers_seen"]:
                # one more tick before torch: a dock that waited for the Labels modules (Annotate's first
                # annotation layer, polled every 25 ms) makes its layer now, with the GIL to itself
                pending["layers_seen"] = True
                return
            if pending["engine"] and start_engine():
                return
            poll.stop()
            poll.deleteLater()
            if frozen:
                freeze_long_lived(viewer, unless_since=mark)  # and the imported modules' objects
            if suspended:
                resume_full_collections()

        poll.timeout.connect(check)
        poll.start()

    timer = QTimer(owner)
    timer.setSingleShot(True)
    timer.setInterval(max(0, int(delay_ms)))
    timer.timeout.connect(start)
    timer.timeout.connect(timer.deleteLater)
    timer.start()


def when_engine_ready(parent, callback) -> None:
    """Call ``callback()`` on the main thread once the engine is imported: now if it is, else when the
    warm-up is done, polled every 50 ms by a timer that ``parent`` (a QObject) owns, so nothing is called
    after ``parent`` is gone. The warm-up is started here if nothing started it
    :data:`BACKGROUND_DELAY_MS` from now (not at once: this is called while docks are built). A failed
    warm-up calls nothing (the first run reports the error). For what only needs torch to answer a
    question (which devices exist), without importing torch on the GUI thread."""
    if engine_loaded():
        callback()
        return
    from qtpy.QtCore import QElapsedTimer, QTimer

    clock = QElapsedTimer()
    clock.start()
    timer = QTimer(parent)
    timer.setInterval(50)

    def poll() -> None:
        if _WARMUP["thread"] is None and not engine_loaded():
            if clock.elapsed() < BACKGROUND_DELAY_MS or _ENGINE_SCHEDULED:
                return  # a dock's background loading starts it (after what it imports first)
            start_warmup()
        if warmup_running():
            return
        timer.stop()
        timer.deleteLater()
        if _WARMUP["error"] is None and engine_loaded():
            callback()

    timer.timeout.connect(poll)
    timer.start()


_WAITING = {"now": False}


def ensure_engine(status=None) -> bool:
    """Make sure the engine is loaded before a run; False (and a notification) if it cannot be.

    When it is not loaded yet, the warm-up (:func:`start_warmup`) is started or joined and waited for
    with the event loop running (a busy cursor; ``status("Loading PyTorch…")``), so that the viewer stays
    responsive. ``status(text, error=False)`` is told what happens (e.g. a dock's status line). A second
    call while one waits returns False at once (a second click on *Predict* while PyTorch loads).
    """
    if engine_loaded():
        return True
    if _WAITING["now"]:
        return False
    from qtpy.QtCore import QEventLoop, Qt, QTimer
    from qtpy.QtWidgets import QApplication

    from .workers import report_error

    start_warmup()
    if status is not None:
        status("Loading PyTorch…")
    _WAITING["now"] = True
    QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)
    try:
        if warmup_running():
            loop = QEventLoop()
            timer = QTimer()
            timer.setInterval(20)
            timer.timeout.connect(lambda: loop.quit() if _WARMUP["done"].is_set() else None)
            timer.start()
            loop.exec()
            timer.stop()
        error = _WARMUP["error"]
        if error is None and not engine_loaded():
            preload_engine()  # the warm-up ended without the engine (it never ran): import here
        elif error is not None:
            raise error
    except Exception as exc:  # noqa: BLE001 - a broken torch install: tell, do not crash
        if status is not None:
            status(f"Cannot load PyTorch: {exc}", error=True)
        report_error(exc, "Loading PyTorch")
        return False
    finally:
        _WAITING["now"] = False
        QApplication.restoreOverrideCursor()
    if status is not None:
        status("")
    return True
