"""GUI tests: real napari viewers with pytest-qt.

They need a Qt binding and a display with OpenGL; on a headless machine run them under Xvfb::

    xvfb-run -a pytest tests/gui

Without either, every test here is skipped with the reason (never a crash of the test run:
creating a QApplication without a display would abort the interpreter).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _gui_unavailable() -> str | None:
    try:
        importlib.import_module("qtpy.QtWidgets")  # raises if no Qt binding is installed
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable Qt
        return f"no usable Qt binding: {exc}"
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform in ("offscreen", "minimal"):
        return f"napari needs OpenGL, which QT_QPA_PLATFORM={platform} lacks; run under xvfb-run instead"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display; run the GUI tests under Xvfb: xvfb-run -a pytest tests/gui"
    return None


GUI_SKIP_REASON = _gui_unavailable()

# the docks move the heap out of the garbage collector's way (gui/_gc.py) in napari; in a test process that
# makes hundreds of viewers, frozen viewers of earlier tests would add up: off here, on in test_gc.py
os.environ.setdefault("GRAINLAB_GC_FREEZE", "0")


def pytest_collection_modifyitems(config, items):
    if GUI_SKIP_REASON is not None:
        skip = pytest.mark.skip(reason=GUI_SKIP_REASON)
        for item in items:
            if "gui" in item.keywords or HERE in Path(str(item.path)).resolve().parents:
                item.add_marker(skip)
        return


@pytest.fixture
def make_napari_viewer(make_napari_viewer):
    """napari's viewer factory, plus the plugin's triton guard once the viewer exists.

    The first viewer loads Mesa's libLLVM (llvmpipe under Xvfb); a later import of triton (torchvision
    imports torch._dynamo, which imports it) then crashes the process. In napari the docks apply the guard
    before the engine loads (``gui/_engine.avoid_triton_llvm_clash``); tests that build models with torch
    after a viewer exists need it too, whatever test ran before in the same process."""
    from napari_grainlab.gui._engine import avoid_triton_llvm_clash

    def make(*args, **kwargs):
        v = make_napari_viewer(*args, **kwargs)
        avoid_triton_llvm_clash()
        return v

    return make


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A napari viewer; background workers are finished before it is closed."""
    from qtpy.QtCore import QThreadPool
    from qtpy.QtWidgets import QApplication

    v = make_napari_viewer()
    yield v
    assert QThreadPool.globalInstance().waitForDone(20_000), "background workers did not finish"
    QApplication.processEvents()  # deliver the workers' last signals while the viewer exists


@pytest.fixture
def notifications():
    """The napari notifications dispatched during the test (a live list)."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)

    class _Recorder:
        @property
        def records(self):
            return notification_manager.records[start:]

        def messages(self, severity: str | None = None) -> list[str]:
            return [str(n.message) for n in self.records if severity is None or str(n.severity) == severity]

    return _Recorder()
