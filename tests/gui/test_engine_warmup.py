"""Opening a dock starts loading the engine (torch, timm, the training and inference engine) in a background
thread, not on the GUI thread; a run then waits for it with the event loop running.

In a fresh interpreter (imports happen once per process), on the display the GUI tests use (Xvfb:
Mesa's llvmpipe OpenGL, whose libLLVM is what makes triton crash): an import hook records the thread
that first imports each heavy module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = r'''
import importlib.abc
import json
import sys
import threading

WATCH = ("torch", "timm", "torchvision", "napari_grainlab.core.inference.pipeline", "napari_grainlab.core.training.fit")
first = {}


class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in WATCH and name not in first:
            first[name] = threading.current_thread().name
        return None


sys.meta_path.insert(0, Hook())
import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=True)
app = QApplication.instance()
for _ in range(10):
    app.processEvents()
import builtins

asked = []  # torch imports that napari-grainlab's code asks for on the GUI thread while the dock opens
real_import = builtins.__import__


def spy(name, globals=None, *args, **kwargs):
    if (name == "torch" or name.startswith("torch.") or name == "matplotlib.figure") \
            and threading.current_thread() is threading.main_thread() \
            and str((globals or {}).get("__name__", "")).startswith("napari_grainlab"):
        asked.append(f"{globals['__name__']}: {name}")
    return real_import(name, globals, *args, **kwargs)


builtins.__import__ = spy
_, dock = viewer.window.add_plugin_dock_widget("napari-grainlab", sys.argv[1])
builtins.__import__ = real_import
from napari_grainlab.gui import _engine

import time

not_yet = _engine.warmup_running() or _engine.engine_loaded()  # the dock is shown before the imports start
end = time.monotonic() + 5 * _engine.BACKGROUND_DELAY_MS / 1000
while not (_engine.warmup_running() or _engine.engine_loaded()) and time.monotonic() < end:
    app.processEvents()
    time.sleep(0.005)
started = _engine.warmup_running() or _engine.engine_loaded()
ticks = []
timer = QTimer()
timer.timeout.connect(lambda: ticks.append(1))
timer.start(5)
statuses = []
ok = _engine.ensure_engine(lambda text, error=False: statuses.append(text))
timer.stop()
import torch

value = float(torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3)).sum())
triton = sys.modules.get("triton", "absent")
print(json.dumps({"first": first, "ok": ok, "started": started, "not_yet": not_yet, "value": value, "statuses": statuses,
                  "asked": asked,
                  "warmup": _engine.warmup_thread_name(), "main": threading.main_thread().name,
                  "triton": "blocked" if triton is None else ("absent" if triton == "absent" else "imported")}))
viewer.close()
'''


@pytest.mark.parametrize("dock", ["Train", "Predict", "Annotate"])
def test_opening_a_dock_loads_the_engine_off_the_gui_thread(dock, tmp_path):
    script = tmp_path / "open_dock.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), dock], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["ok"] and res["started"] and res["value"] == 36.0
    assert not res["not_yet"]  # started after the dock was made, so that it does not slow its construction
    assert res["asked"] == [], "opening the dock imports torch / matplotlib on the GUI thread (a stall of seconds)"
    first = res["first"]
    assert set(first) >= {"torch", "timm", "torchvision", "napari_grainlab.core.inference.pipeline"}
    assert set(first.values()) == {res["warmup"]}, first  # none of them on the GUI thread
    assert res["triton"] != "imported"  # Mesa's libLLVM is loaded under Xvfb: triton stays out
