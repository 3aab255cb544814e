"""Every reach into napari's internals, in one place.

The docks use napari's public API everywhere else.  What napari offers no public way to do sits
here, each function documented with the napari internal it relies on and guarded so that a napari
release that changes that internal degrades the feature (logged at debug level) instead of breaking
the dock.  Tested with napari 0.6.3 (the lowest the package allows) to 0.9 (``scripts/compat_matrix.sh``);
``tests/gui/test_napari_compat.py`` has one test per
function, so a napari upgrade that breaks one of them fails there first.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMainWindow, QWidget

__all__ = ["center_camera", "dock_widget_names", "hook_dock_close", "labels_colormap_backend", "labels_layer_ready", "preload_labels_layer_modules",
           "throttle_activity_animation", "unwrap_proxy", "watch_main_window_close"]

log = logging.getLogger(__name__)


def center_camera(viewer: Any, world: Any) -> None:
    """Centre ``viewer``'s camera on the (…, y, x) world point ``world``: ``viewer.scene.camera`` from napari
    0.9 (``viewer.camera`` is deprecated there), ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    camera = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
    camera.center = tuple(float(v) for v in list(world)[-2:])


def unwrap_proxy(obj: Any) -> Any:
    """The napari object behind the ``PublicOnlyProxy`` napari hands a plugin widget.

    napari (>= 0.4.12) gives plugin widgets a ``wrapt`` proxy of the viewer that warns on private
    attributes; identity checks (``layer in viewer.layers``, the selection, event sources) need the
    real object, which the proxy keeps as ``__wrapped__``.  Anything else is returned as it is.
    """
    return getattr(obj, "__wrapped__", obj)


def _weak_callable(func: Callable[[], bool]) -> Callable[[], Callable[[], bool] | None]:
    """A weak reference to ``func`` (a bound method is held through its instance)."""
    if hasattr(func, "__self__") and hasattr(func, "__func__"):
        return weakref.WeakMethod(func)
    return lambda: func


class _CloseFilter(QObject):
    """Event filter on a main window: ignore its Close event when ``confirm()`` says no."""

    def __init__(self, parent: QObject, confirm: Callable[[], bool]) -> None:
        super().__init__(parent)
        self._confirm = _weak_callable(confirm)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Close:
            confirm = self._confirm()
            if confirm is not None and not confirm():
                event.ignore()
                return True
        return False


def watch_main_window_close(widget: QWidget, confirm: Callable[[], bool]) -> Callable[[], None] | None:
    """Ask ``confirm()`` before the main window holding ``widget`` closes; a False answer keeps it open.

    napari has no public "viewer is about to close" hook that can cancel, so an event filter goes
    on the ``QMainWindow`` ancestor of the dock (napari's ``_QtMainWindow``).  Returns a function
    that removes the filter again, or ``None`` while ``widget`` is not (yet) inside a main window
    (a dock widget is reparented into it only once it is added).  ``confirm`` is held weakly when
    it is a bound method, and the filter is a child of ``widget``: neither keeps the other alive.
    """
    main = widget.parent()
    while main is not None and not isinstance(main, QMainWindow):
        main = main.parent()
    if main is None:
        return None
    close_filter = _CloseFilter(widget, confirm)
    main.installEventFilter(close_filter)
    window = weakref.ref(main)
    filter_ref = weakref.ref(close_filter)

    def remove() -> None:
        win, filt = window(), filter_ref()
        if win is not None and filt is not None:
            try:
                win.removeEventFilter(filt)
            except RuntimeError:  # the window's C++ part is already gone
                pass

    return remove


def dock_widget_names(viewer: Any) -> set[str]:
    """Names of the dock widgets in ``viewer``'s window: ``Window.dock_widgets`` (public from napari 0.7),
    else the main window's ``_dock_widgets`` (napari 0.6)."""
    window = viewer.window
    public = getattr(window, "dock_widgets", None)
    if public is not None:
        return set(public)
    return set(getattr(window._qt_window, "_dock_widgets", {}))


def hook_dock_close(widget: QWidget, before_close: Callable[[], bool]) -> bool:
    """Call ``before_close()`` when napari's dock close button (the "x" of the dock) is clicked;
    the dock closes only when it returns True.

    The close button of napari's ``QtViewerDockWidget`` calls its ``destroyOnClose()``, which
    removes the dock at once; there is no signal to cancel it, so that method is replaced on the
    dock instance by one that asks first.  Returns True when the hook is in place, False while
    ``widget`` is not inside such a dock, or when napari no longer has ``destroyOnClose``.
    ``before_close`` is held weakly when it is a bound method.
    """
    dock = widget.parent()
    while dock is not None and not hasattr(dock, "destroyOnClose"):
        dock = dock.parent()
    if dock is None:
        return False
    original = dock.destroyOnClose
    if not callable(original):
        log.debug("napari's dock widget has no callable destroyOnClose: close button not hooked")
        return False
    ask = _weak_callable(before_close)

    def destroy_on_close() -> None:
        func = ask()
        if func is not None and not func():
            return
        original()

    dock.destroyOnClose = destroy_on_close
    return True


def throttle_activity_animation(widget_or_viewer: Any, on: bool, speed_percent: int = 10) -> int:
    """Slow napari's activity animation to ``speed_percent`` % of its speed while ``on``; restore
    its normal speed when not.  Returns how many animations were found (0: nothing changed).

    The animation is the spinner next to the status bar's "activity" button while a progress bar
    runs: the ``QMovie`` of a ``QLabel`` in napari's ``ActivityToggleItem`` (napari 0.4.14 to 0.9,
    ``napari._qt.dialogs.qt_activity_dialog``).  Every frame of it repaints the main window, which
    is recomposited as a whole because it holds the OpenGL canvas; with software OpenGL (virtual
    machines, remote desktops) each frame costs milliseconds of CPU taken from a running job (see
    ``benchmarks/bench_gui_responsiveness.py``).  ``widget_or_viewer`` is a widget inside the main
    window, or the viewer (also behind a ``PublicOnlyProxy``).  Best effort: when napari moves the
    animation, none is found and nothing happens.
    """
    from qtpy.QtWidgets import QLabel

    if isinstance(widget_or_viewer, QWidget):
        window = widget_or_viewer.window()
    else:
        window = getattr(getattr(unwrap_proxy(widget_or_viewer), "window", None), "_qt_window", None)
    if not isinstance(window, QWidget):
        return 0
    found = 0
    try:
        for label in window.findChildren(QLabel):
            parent, movie = label.parent(), label.movie()
            if movie is not None and parent is not None and type(parent).__name__ == "ActivityToggleItem":
                movie.setSpeed(speed_percent if on else 100)
                found += 1
    except RuntimeError:  # a deleted Qt object (the window is closing)
        return found
    if not found:
        log.debug("napari's activity animation was not found: not throttled")
    return found


def labels_colormap_backend() -> str:
    """Which backend napari maps Labels values to colours with: ``"partsegcore"`` (compiled, no start-up
    cost), ``"numba"`` (JIT: the first uint32 / int32 / int64 Labels layer of a session loads its kernels
    on the GUI thread, about a second), ``"numpy"``, or ``"unknown"``.

    Relies on ``napari.utils.colormaps._accelerated_cmap`` (napari >= 0.5): its module-level
    ``zero_preserving_modulo`` is the function of the backend in use (``_zero_preserving_modulo_loop``
    is the numba one when numba is installed, else plain Python).
    """
    try:
        from napari.utils.colormaps import _accelerated_cmap as acc
    except ImportError:  # pragma: no cover - napari moved it
        log.debug("napari.utils.colormaps._accelerated_cmap not found")
        return "unknown"
    func = getattr(acc, "zero_preserving_modulo", None)
    known = {"partsegcore": "zero_preserving_modulo_partsegcore", "numba": "_zero_preserving_modulo_loop",
             "numpy": "zero_preserving_modulo_numpy"}
    for name, attr in known.items():
        if func is not None and func is getattr(acc, attr, None):
            return "numba" if name == "numba" and getattr(acc, "numba", None) is not None else name
    return "unknown"


#: what napari imports the first time a Labels (or Points, Shapes…) layer is made: the layer's features
#: table is a pandas DataFrame, and ``napari.layers.utils.layer_utils`` imports pandas lazily (its
#: ``_LazyPandas``, napari >= 0.4.19) — 1 to 2 s on the GUI thread on a cold start; and the label colours
#: need scikit-image's colour conversions (``skimage.color``, which brings ``scipy.linalg``): ~50 ms more
_LAYER_MODULES = ("pandas", "scipy.linalg", "skimage.color")
_PRELOAD: dict[str, threading.Thread | None] = {"thread": None}
_PRELOAD_LOCK = threading.Lock()
_LINE_PATTERNS = {"warm": False}


def _warm_line_patterns() -> None:
    """Fill vispy's cache of dash patterns, off the GUI thread.

    A Labels layer's polygon overlay makes three vispy line visuals; the first ``DashAtlas`` of a session
    computes its 13 dash patterns in Python (~60 ms on the GUI thread at the first Labels layer). The
    patterns are cached module-wide (``functools.lru_cache`` on ``vispy.visuals.line.dash_atlas._make_pattern``),
    so one atlas made here, with no GL involved, spares the GUI thread that work. Guarded: a vispy without
    the module only loses the speed-up."""
    try:
        from vispy.visuals.line.dash_atlas import DashAtlas

        DashAtlas()
    except Exception:  # an optimisation only
        log.debug("warming vispy's dash patterns failed", exc_info=True)
    _LINE_PATTERNS["warm"] = True


#: attributes of those modules to touch as well: ``skimage.color`` is a lazy module (lazy_loader), its
#: conversions are imported at the first attribute access (napari's label colours call ``lab2rgb``)
_LAYER_ATTRIBUTES = {"skimage.color": ("lab2rgb",)}


def _import_layer_modules() -> None:
    for name in _LAYER_MODULES:
        try:
            module = importlib.import_module(name)
            for attr in _LAYER_ATTRIBUTES.get(name, ()):
                getattr(module, attr)
        except Exception:
            log.debug("preloading %s failed", name, exc_info=True)
    _warm_line_patterns()


def preload_labels_layer_modules() -> bool:
    """Import what napari's first Labels layer needs (pandas) and compute vispy's dash patterns
    (:func:`_warm_line_patterns`) in a background thread, once; returns whether that thread runs.  Call on
    the main thread when a dock that makes Labels layers opens: the work then happens while the user looks
    at the dock, not in the GUI thread at the first layer.
    The GUI thread must not import these modules meanwhile (it would wait for the thread's module lock):
    :func:`labels_layer_ready` tells when a layer can be made without that wait."""
    with _PRELOAD_LOCK:
        thread = _PRELOAD["thread"]
        if thread is not None:
            return thread.is_alive()
        if all(name in sys.modules for name in _LAYER_MODULES) and _LINE_PATTERNS["warm"]:
            return False
        thread = threading.Thread(target=_import_layer_modules, name="grainlab-preload-layers", daemon=True)
        _PRELOAD["thread"] = thread
        thread.start()
        return True


def labels_layer_ready() -> bool:
    """Whether a Labels layer can be made now without importing pandas on the GUI thread (imported, and no
    preload thread still running)."""
    thread = _PRELOAD["thread"]
    if thread is not None:  # a failed import is napari's to report when it needs the module
        return not thread.is_alive()
    return all(name in sys.modules for name in _LAYER_MODULES)
