"""GeneratorTask when the dock that owns it goes away: a running task stops, a finished one leaves
no Python slot for Qt to call from the dock's destructor (the garbage collector may have cleared it:
closing the Train dock after a run, then collecting it, crashed the interpreter)."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui]


def _until_stopped(started: threading.Event, ended: list, stop):
    started.set()
    while not stop.wait(0.005):
        yield 0
    ended.append("stopped")
    return "stopped"


def _wait_for_threads() -> None:
    from qtpy.QtCore import QThreadPool

    assert QThreadPool.globalInstance().waitForDone(20_000)


def test_a_task_deleted_with_its_dock_while_it_runs_stops_its_generator(qtbot):
    from qtpy.QtWidgets import QWidget

    from napari_grainlab.gui import workers

    dock = QWidget()
    started, ended = threading.Event(), []
    task = workers.GeneratorTask(_until_stopped, started, ended, description="Endless", parent=dock)
    task.start()
    qtbot.waitUntil(started.is_set, timeout=10_000)
    flag = task.stop_flag
    assert not flag.is_set()
    dock.deleteLater()  # the task goes with it, unfinished
    qtbot.waitUntil(lambda: ended == ["stopped"], timeout=10_000)
    assert flag.is_set()
    _wait_for_threads()


def _destroyed_receivers(obj) -> int:
    """How many slots ``obj.destroyed`` has: PyQt takes the bound signal, PySide6 a signature string."""
    try:
        return obj.receivers(obj.destroyed)
    except TypeError:
        from qtpy.QtCore import SIGNAL

        return obj.receivers(SIGNAL("destroyed(QObject*)"))


def test_a_finished_task_leaves_no_python_slot_on_destroyed(qtbot):
    from qtpy.QtWidgets import QWidget

    from napari_grainlab.gui import workers

    dock = QWidget()
    started, ended = threading.Event(), []
    task = workers.GeneratorTask(_until_stopped, started, ended, description="Stopped", parent=dock)
    hooks_before = dict(workers._ABANDON_HOOKS)
    with qtbot.waitSignal(task.finished, timeout=10_000):
        task.start()
        qtbot.waitUntil(started.is_set, timeout=10_000)
        assert len(workers._ABANDON_HOOKS) == len(hooks_before) + 1  # held outside the task while it runs
        running = _destroyed_receivers(task)
        task.cancel()
    assert task.result.status == "cancelled" and ended == ["stopped"]
    assert _destroyed_receivers(task) == running - 1  # the stop hook is gone
    assert workers._ABANDON_HOOKS == hooks_before
    _wait_for_threads()
    dock.deleteLater()


def test_quitting_while_a_worker_runs_does_not_abort(tmp_path):
    """Python's exit waits for the workers still running (gui/workers._finish_workers_at_exit): before, a
    preview or check that finished after finalisation had begun emitted into a deleted Qt object and the
    process aborted on the way out."""
    import os
    import subprocess
    import sys

    script = tmp_path / "quit_while_busy.py"
    script.write_text(
        "import time, napari\n"
        "from napari_grainlab.gui.workers import LatestOnlyRunner\n"
        "viewer = napari.Viewer(show=False)\n"
        "runner = LatestOnlyRunner()\n"
        "runner.submit(time.sleep, 1.5)\n"
        "time.sleep(0.2)\n"
        "viewer.close()\n"
        "del runner\n"
        "print('leaving', flush=True)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "GRAINLAB_GC_FREEZE": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "leaving" in r.stdout and "has been deleted" not in r.stderr
