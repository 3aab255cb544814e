"""The thread / progress glue the docks are built on (real napari viewers, pytest-qt)."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 15_000


def wait_task(qtbot, task):
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    return task.result


def _counting(n, stop, fail_at=None, delay=0.0):
    for i in range(n):
        if stop.is_set():
            return "stopped"
        if i == fail_at:
            raise RuntimeError(f"boom at {i}")
        time.sleep(delay)
        yield type("Ev", (), {"done": i + 1, "total": n, "name": f"item {i}"})()
    return "all done"


def test_generator_task_reports_progress_and_return_value(viewer, qtbot):
    from qtpy.QtWidgets import QProgressBar, QPushButton

    from napari_grainlab.gui.workers import GeneratorTask

    bar, button = QProgressBar(), QPushButton("Stop")
    qtbot.addWidget(bar)
    qtbot.addWidget(button)
    events, progressed = [], []
    task = GeneratorTask(_counting, 300, description="Counting", progress_bar=bar, cancel_button=button, total=300)
    task.yielded.connect(events.append)
    task.progressed.connect(lambda p: progressed.append(p.done))
    task.start()
    assert button.isEnabled()
    result = wait_task(qtbot, task)
    assert result.status == "completed" and result.ok and result.value == "all done"
    # in order, although napari's activity bar processes pending events while it repaints
    assert [e.done for e in events] == progressed == list(range(1, 301))
    assert result.last_event is events[-1]
    assert result.progress.done == 300 and bar.value() == 300
    assert button.text() == "Stop" and not button.isEnabled()


def test_generator_task_error_is_notified_not_raised(viewer, qtbot, notifications):
    from napari_grainlab.gui.workers import GeneratorTask

    task = GeneratorTask(_counting, 5, fail_at=2, description="Counting")
    task.start()
    result = wait_task(qtbot, task)
    assert result.status == "failed" and isinstance(result.error, RuntimeError)
    assert result.progress.done == 2
    assert any("boom at 2" in m for m in notifications.messages("error"))


def test_generator_task_stop_flag_and_activity_cancel(viewer, qtbot):
    from napari.utils.progress import progress

    from napari_grainlab.gui.workers import GeneratorTask

    task = GeneratorTask(_counting, 1000, delay=0.005, description="Slow counting", total=1000)
    task.start()
    qtbot.waitUntil(lambda: task.activity_progress is not None and task.activity_progress.n > 0, timeout=WAIT_MS)
    pbar = task.activity_progress
    pbar.cancel()  # what the Cancel button of napari's activity dock does
    result = wait_task(qtbot, task)
    assert result.status == "cancelled" and result.value == "stopped"
    assert result.progress.done < 1000
    assert pbar not in progress._all_instances


def test_latest_only_runner_coalesces(viewer, qtbot):
    from napari_grainlab.gui.workers import LatestOnlyRunner

    runner = LatestOnlyRunner()
    results, failures, calls = [], [], []
    lock = threading.Lock()

    def work(x):
        with lock:
            calls.append(x)
        time.sleep(0.05)
        if x == "bad":
            raise ValueError("bad input")
        return x * 2

    runner.result.connect(results.append)
    runner.failed.connect(failures.append)
    for x in range(10):
        runner.submit(work, x)
    qtbot.waitUntil(lambda: not runner.is_busy, timeout=WAIT_MS)
    assert results == [18] and calls == [0, 9]

    runner.submit(work, "bad")
    qtbot.waitUntil(lambda: not runner.is_busy, timeout=WAIT_MS)
    assert len(failures) == 1 and isinstance(failures[0], ValueError)

    runner.submit(work, 1)
    runner.discard()
    qtbot.waitUntil(lambda: not runner.is_busy, timeout=WAIT_MS)
    assert results == [18]
