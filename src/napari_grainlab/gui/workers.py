"""Run headless core work off the GUI thread.

Two helpers, both thin wrappers around napari's ``thread_worker`` machinery
(:mod:`napari.qt.threading`):

:class:`GeneratorTask`
    runs a long core generator such as ``write_dataset(..., stop=...)`` or ``fit(..., stop=...)``.
    It owns a :class:`threading.Event` that is passed to the generator as its stop flag, and it
    drives an optional dock :class:`~qtpy.QtWidgets.QProgressBar`, an optional Cancel button and
    a cancelable progress bar in napari's activity dock.  Exceptions raised by the generator
    never escape: they become a napari notification and a ``"failed"`` :class:`TaskResult`.

:class:`LatestOnlyRunner`
    runs short function calls (previews) one at a time and delivers only the result of the most
    recent request; requests made while one runs are coalesced into the newest.

Every signal is emitted on the main thread, so slots may touch the viewer.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import notification_manager, show_error
from napari.utils.progress import cancelable_progress
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QProgressBar, QPushButton

from ..core.errors import USER_ERRORS

__all__ = [
    "GeneratorTask",
    "LatestOnlyRunner",
    "TaskProgress",
    "TaskResult",
    "default_progress",
    "report_error",
    "shutdown_on_destroy",
]

log = logging.getLogger(__name__)

_ACTIVITY_INTERVAL_MS = 50  # at most ~20 repaints per second of napari's activity bar

#: the ``destroyed`` hooks of running tasks (see :func:`_abandon`), held here and not by the task:
#: a hook reachable only through its Qt connection is garbage to Python once the dock that owns the
#: task is, and the collector may clear it before Qt calls it from the dock's destructor (a crash)
_ABANDON_HOOKS: dict[int, Callable[..., None]] = {}
_HOOK_KEYS = itertools.count()

#: how long the interpreter's exit waits for the workers still running (see _finish_workers_at_exit)
EXIT_WAIT_MS = 10_000


def _finish_workers_at_exit(timeout_ms: int = EXIT_WAIT_MS) -> None:
    """At interpreter exit, before Python's finalisation deletes Qt objects: ask the tasks still running to
    stop (as closing their dock does) and wait, at most ``timeout_ms``, for the thread pool's workers.

    A worker that finished after finalisation had begun emitted into a deleted signals object, and the
    exception raised in the Qt thread aborted the process (napari closed while a preview, a check or a
    proposal was running crashed on the way out)."""
    for hook in list(_ABANDON_HOOKS.values()):
        try:
            hook()
        except Exception:
            log.debug("stopping a task at exit failed", exc_info=True)
    try:
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(int(timeout_ms))
    except Exception:
        log.debug("waiting for the workers at exit failed", exc_info=True)


atexit.register(_finish_workers_at_exit)


@dataclass(frozen=True)
class TaskProgress:
    """Where a task stands: ``done`` of ``total`` steps (``total`` None: unknown)."""

    done: int
    total: int | None = None
    text: str = ""


def default_progress(event: Any) -> TaskProgress | None:
    """Read progress from events with ``done`` / ``total`` attributes (e.g. ``DatasetProgress``).

    Events without a ``done`` attribute carry no progress (``None``).
    """
    done = getattr(event, "done", None)
    if done is None:
        return None
    total = getattr(event, "total", None)
    text = getattr(event, "name", None) or getattr(event, "message", None) or ""
    return TaskProgress(int(done), None if total is None else int(total), str(text))


@dataclass(frozen=True)
class TaskResult:
    """How a :class:`GeneratorTask` ended.

    ``status`` is ``"completed"`` (the generator returned normally without a stop request),
    ``"cancelled"`` (a stop was requested, or napari aborted the worker) or ``"failed"``.
    ``value`` is the generator's return value, ``last_event`` its last yielded event.
    """

    status: Literal["completed", "cancelled", "failed"]
    value: Any = None
    error: BaseException | None = None
    last_event: Any = None
    progress: TaskProgress | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "completed"


# --------------------------------------------------------------------------- thread side
@dataclass(frozen=True)
class _Returned:
    value: Any


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def _drive(make: Callable[[], Iterator[Any]]) -> Generator[Any, None, _Returned | _Failed]:
    """Worker-thread body: relay the events of ``make()`` and capture its outcome.

    Exceptions are returned, not raised, so that napari's worker never re-raises them in the
    main thread (where they would escape as an unhandled exception).
    """
    try:
        value = yield from make()
    except Exception as exc:  # noqa: BLE001 - reported to the user by the main thread
        return _Failed(exc)
    return _Returned(value)


def _call_tagged(tag: int, func: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[int, _Returned | _Failed]:
    """Worker-thread body of :class:`LatestOnlyRunner`: the outcome, tagged with its request."""
    try:
        return tag, _Returned(func(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - delivered through ``LatestOnlyRunner.failed``
        return tag, _Failed(exc)


def report_error(error: BaseException, context: str) -> None:
    """Show ``error`` as a napari notification: the GUI's one place that tells a user's error
    (:data:`~napari_grainlab.core.errors.USER_ERRORS`: its message, one line) from a bug (with the
    traceback)."""
    log.debug("%s failed", context, exc_info=error)
    if isinstance(error, USER_ERRORS):
        show_error(f"{context} failed: {error}")
    else:
        notification_manager.receive_error(type(error), error, error.__traceback__)


def _abandon(key: int, stop: threading.Event, shared: dict[str, Any], *_: Any) -> None:
    """The task's QObject is being deleted while it runs (e.g. with its dock): stop the generator
    and remove the activity-dock progress bar that ``_finish`` will no longer close."""
    _ABANDON_HOOKS.pop(key, None)
    stop.set()
    pbar, shared["pbar"] = shared.get("pbar"), None
    if pbar is not None:
        pbar.close()


class _StoppableProgress(cancelable_progress):
    """A napari activity-dock progress bar whose Cancel button calls ``cancel_callback``."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


# ---------------------------------------------------------------------------- main side
class GeneratorTask(QObject):
    """Run the core generator ``func(*args, stop=<Event>, **kwargs)`` in a worker thread.

    Parameters
    ----------
    func
        A generator function that accepts a stop flag (keyword ``stop_kwarg``) and returns
        early, leaving consistent output, once the flag is set.
    description
        Short text for napari's activity dock and for error notifications
        ("Writing dataset failed: ...").
    progress_bar, cancel_button
        Optional dock widgets driven by the task: the bar shows ``done / total``, the button is
        enabled while the task runs and requests a stop.
    progress_of
        Maps a yielded event to a :class:`TaskProgress` (or None for events without progress).
    total
        Number of steps if known before the first event.
    notify_errors
        Show a napari notification when the generator raises.

    Signals (all on the main thread, in order): ``yielded(object)`` for every yielded event,
    ``progressed(TaskProgress)`` for every event with progress, ``finished(TaskResult)``
    exactly once, last.
    """

    yielded = Signal(object)  # (not "event": that would shadow QObject.event)
    progressed = Signal(object)
    finished = Signal(object)

    def __init__(
        self,
        func: Callable[..., Iterator[Any]],
        *args: Any,
        description: str,
        progress_bar: QProgressBar | None = None,
        cancel_button: QPushButton | None = None,
        progress_of: Callable[[Any], TaskProgress | None] = default_progress,
        total: int | None = None,
        stop_kwarg: str = "stop",
        notify_errors: bool = True,
        parent: QObject | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(parent)
        self.description = description
        self.stop_flag = threading.Event()
        self._func = func
        self._args = args
        self._kwargs = {**kwargs, stop_kwarg: self.stop_flag}
        self._bar = progress_bar
        self._cancel_button = cancel_button
        self._cancel_text = cancel_button.text() if cancel_button is not None else ""
        self._progress_of = progress_of
        self._total = total
        self._notify_errors = notify_errors
        self._worker = None
        # shared with the ``destroyed`` handler, which must not reference ``self``
        self._shared: dict[str, Any] = {"pbar": None}
        self._hook_key = next(_HOOK_KEYS)
        self._last_event: Any = None
        self._progress: TaskProgress | None = None
        self._activity_timer = QTimer(self)
        self._activity_timer.setSingleShot(True)
        self._activity_timer.setInterval(_ACTIVITY_INTERVAL_MS)
        self._activity_timer.timeout.connect(self._update_activity)
        self._started_at = 0.0
        self._result: TaskResult | None = None

    # ------------------------------------------------------------------ public
    @property
    def is_running(self) -> bool:
        return self._worker is not None and self._result is None

    @property
    def result(self) -> TaskResult | None:
        """The outcome once ``finished`` was emitted, else None."""
        return self._result

    @property
    def activity_progress(self) -> cancelable_progress | None:
        """The progress bar shown in napari's activity dock while the task runs."""
        return self._shared["pbar"]

    def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("a GeneratorTask can only be started once")
        func, args, kwargs = self._func, self._args, self._kwargs

        def make() -> Iterator[Any]:
            return func(*args, **kwargs)

        worker = create_worker(_drive, make, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        self._worker = worker
        hook = _ABANDON_HOOKS[self._hook_key] = partial(_abandon, self._hook_key, self.stop_flag, self._shared)
        self.destroyed.connect(hook)

        self._started_at = time.perf_counter()
        self._shared["pbar"] = _StoppableProgress(total=self._total or 0, desc=self.description,
                                                  cancel_callback=self.cancel)
        if self._bar is not None:
            self._bar.setRange(0, self._total or 0)
            self._bar.setValue(0)
            self._bar.setFormat("%v / %m" if self._total else "")
            self._bar.setEnabled(True)
        if self._cancel_button is not None:
            self._cancel_button.setText(self._cancel_text)
            self._cancel_button.setEnabled(True)
            self._cancel_button.clicked.connect(self.cancel)
        worker.start()

    def cancel(self) -> None:
        """Ask the generator to stop; it finishes its current step and returns."""
        if self._result is not None:
            return
        self.stop_flag.set()
        if self._cancel_button is not None:
            self._cancel_button.setEnabled(False)
            self._cancel_button.setText("Cancelling…")

    # ------------------------------------------------------------------- slots
    def _on_yielded(self, event: Any) -> None:
        if self._result is not None:
            return
        self._last_event = event
        prog = self._progress_of(event)
        if prog is not None:
            self._progress = prog
            self._update_bar(prog)
            if not self._activity_timer.isActive():
                self._activity_timer.start()
        self.yielded.emit(event)
        if prog is not None:
            self.progressed.emit(prog)

    def _update_bar(self, prog: TaskProgress) -> None:
        if self._bar is None:
            return
        total = prog.total or 0
        if self._bar.maximum() != total:
            self._bar.setRange(0, total)
            self._bar.setFormat("%v / %m" if total else "")
        self._bar.setValue(min(prog.done, total) if total else 0)

    def _update_activity(self) -> None:
        """Bring the activity-dock bar up to date (throttled by ``_activity_timer``).

        napari's activity bar processes pending events while it repaints, so this never runs
        inside ``_on_yielded``: events would otherwise be delivered out of order.
        """
        pbar, prog = self._shared["pbar"], self._progress
        if pbar is None or prog is None:
            return
        if (prog.total or 0) != pbar.total:
            pbar.total = prog.total or 0
        if prog.done != pbar.n:
            pbar.update(prog.done - pbar.n)

    def _on_returned(self, outcome: _Returned | _Failed) -> None:
        if isinstance(outcome, _Failed):
            self._finish("failed", error=outcome.error)
        elif self.stop_flag.is_set():
            self._finish("cancelled", value=outcome.value)
        else:
            self._finish("completed", value=outcome.value)

    def _on_aborted(self) -> None:  # napari quit the worker (e.g. the viewer is closing)
        self.stop_flag.set()
        self._finish("cancelled")

    def _finish(self, status: str, value: Any = None, error: BaseException | None = None) -> None:
        if self._result is not None:
            return
        self._result = TaskResult(status=status, value=value, error=error, last_event=self._last_event,
                                  progress=self._progress, elapsed=time.perf_counter() - self._started_at)
        self._activity_timer.stop()
        hook = _ABANDON_HOOKS.pop(self._hook_key, None)
        if hook is not None:  # done: nothing to stop when the task is deleted
            try:
                self.destroyed.disconnect(hook)
            except (TypeError, RuntimeError):
                pass
        pbar, self._shared["pbar"] = self._shared["pbar"], None
        if pbar is not None:
            pbar.close()
        if self._bar is not None:
            if status == "completed" and self._bar.maximum() == 0:
                self._bar.setRange(0, 1)
                self._bar.setValue(1)
            label = {"completed": "", "cancelled": "cancelled", "failed": "failed"}[status]
            if label:
                self._bar.setFormat(f"%v / %m ({label})" if self._bar.maximum() else label)
        if self._cancel_button is not None:
            try:
                self._cancel_button.clicked.disconnect(self.cancel)
                self._cancel_button.setText(self._cancel_text)
                self._cancel_button.setEnabled(False)
            except (RuntimeError, TypeError):  # the button was deleted meanwhile
                pass
        if error is not None and self._notify_errors:
            report_error(error, self.description)
        self.finished.emit(self._result)


class LatestOnlyRunner(QObject):
    """Run one function call at a time off the main thread; deliver only the newest result.

    ``submit`` while a call runs replaces any queued request, so a burst of requests costs at
    most two calls, and ``result`` / ``failed`` are emitted only for the latest request (results
    of superseded or :meth:`discard`-ed requests are dropped).
    """

    result = Signal(object)  # the return value of the latest request
    failed = Signal(object)  # the exception raised by the latest request
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self._worker: FunctionWorker | None = None
        self._pending: tuple[int, Callable[..., Any], tuple, dict] | None = None
        self._busy = False
        self._closed = False

    @property
    def is_busy(self) -> bool:
        """A call is running or queued."""
        return self._busy

    def submit(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``func(*args, **kwargs)`` as soon as the running call (if any) is done."""
        if self._closed:
            return
        self._generation += 1
        request = (self._generation, func, args, kwargs)
        if self._worker is None:
            self._launch(request)
        else:
            self._pending = request

    def discard(self) -> None:
        """Drop the queued request and ignore the result of the running one."""
        self._generation += 1
        self._pending = None
        self._set_busy(self._worker is not None)

    def close(self) -> None:
        """Stop accepting requests (a running call finishes, its result is dropped)."""
        self._closed = True
        self.discard()

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    def _launch(self, request: tuple[int, Callable[..., Any], tuple, dict]) -> None:
        generation, func, args, kwargs = request
        worker = FunctionWorker(_call_tagged, generation, func, args, kwargs)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_busy(True)
        worker.start()

    def _on_returned(self, tagged: tuple[int, _Returned | _Failed]) -> None:
        generation, outcome = tagged
        if self._closed or generation != self._generation:
            return
        if isinstance(outcome, _Failed):
            self.failed.emit(outcome.error)
        else:
            self.result.emit(outcome.value)

    def _on_finished(self) -> None:
        self._worker = None
        pending, self._pending = self._pending, None
        if pending is not None and not self._closed:
            self._launch(pending)
        else:
            self._set_busy(False)


def shutdown_on_destroy(*runners: LatestOnlyRunner) -> Callable[..., None]:
    """A slot for a widget's ``destroyed`` signal that closes ``runners`` without referencing the
    widget (which is gone by then); runners already deleted are skipped."""
    refs = [weakref.ref(r) for r in runners]

    def shutdown(*_: Any) -> None:
        for ref in refs:
            runner = ref()
            if runner is not None:
                try:
                    runner.close()
                except RuntimeError:  # its C++ part is already gone
                    pass

    return shutdown
