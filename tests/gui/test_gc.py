"""gui/_gc.py: the heap is frozen when a dock starts its background imports, and a frozen napari layer that is
removed (or a closed dock) makes everything collectable again, so that no memory is kept for good."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from napari_grainlab.gui import _gc


class Tracked(np.ndarray):
    """An array that can be weakly referenced (to see when a layer's data is freed)."""


def data():
    return np.zeros((64, 64), np.float32).view(Tracked)


def collect(qtbot):
    """What the event loop does after a layer is removed: delete the widgets napari scheduled for deletion
    (``deleteLater``; under PySide6 the removed layer's controls hold the layer until then), then collect."""
    from qtpy.QtCore import QCoreApplication, QEvent

    for _ in range(2):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        qtbot.wait(10)
    gc.collect()


@pytest.fixture
def freezing(monkeypatch):
    monkeypatch.setenv("GRAINLAB_GC_FREEZE", "1")
    gc.unfreeze()
    yield
    _gc.unfreeze()


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_a_removed_frozen_layer_is_collected(viewer, freezing, qtbot):
    arr = data()
    ref = weakref.ref(arr)
    viewer.add_image(arr, name="micrograph")
    del arr
    assert _gc.freeze_long_lived(viewer)
    assert gc.get_freeze_count() > 0 and _gc.frozen_layer_count() == 1
    viewer.layers.remove("micrograph")
    assert gc.get_freeze_count() == 0  # unfrozen: the layer's cycles are the collector's again
    collect(qtbot)
    assert ref() is None


def test_layers_made_after_the_freeze_stay_collectable_and_keep_it(viewer, freezing, qtbot):
    viewer.add_image(data(), name="kept")
    assert _gc.freeze_long_lived(viewer)
    arr = data()
    ref = weakref.ref(arr)
    viewer.add_image(arr, name="later")
    del arr
    viewer.layers.remove("later")
    assert gc.get_freeze_count() > 0  # not a frozen layer: the freeze stays
    collect(qtbot)
    assert ref() is None


def test_no_second_freeze_after_a_removal(viewer, freezing):
    viewer.add_image(data(), name="a")
    viewer.add_image(data(), name="b")
    assert _gc.freeze_long_lived(viewer)  # first watch of the viewer
    mark = _gc.removal_mark()
    viewer.layers.remove("b")  # a frozen layer: everything unfrozen
    assert gc.get_freeze_count() == 0
    assert not _gc.freeze_long_lived(viewer, unless_since=mark)  # a removed layer may still be garbage
    assert gc.get_freeze_count() == 0
    assert _gc.freeze_long_lived(viewer, unless_since=_gc.removal_mark())


def test_switched_off_by_the_environment(viewer, monkeypatch):
    monkeypatch.setenv("GRAINLAB_GC_FREEZE", "0")
    gc.unfreeze()
    assert not _gc.freeze_long_lived(viewer)
    assert gc.get_freeze_count() == 0


def test_a_dock_freezes_the_heap_and_its_closing_unfreezes(viewer, qtbot, freezing):
    from napari_grainlab.gui.synthesize import SynthesizeWidget

    viewer.add_image(data(), name="micrograph")
    widget = SynthesizeWidget(viewer)
    assert gc.get_freeze_count() > 0 and _gc.frozen_layer_count() == 1
    widget.deleteLater()
    qtbot.waitUntil(lambda: gc.get_freeze_count() == 0, timeout=5000)


def test_background_loading_resumes_full_collections_when_its_imports_end(viewer, qtbot, freezing, monkeypatch):
    """The engine's imports alone (no Labels modules asked for): when they end, full collections resume and
    the heap is frozen again, whether or not the Labels modules are imported."""
    from qtpy.QtWidgets import QWidget

    from napari_grainlab.gui import _engine, _napari_compat

    state = {"running": False, "started": 0}

    def start_warmup():
        state["started"] += 1
        state["running"] = True
        return True

    monkeypatch.setattr(_engine, "start_warmup", start_warmup)
    monkeypatch.setattr(_engine, "warmup_running", lambda: state["running"])
    monkeypatch.setattr(_napari_compat, "labels_layer_ready", lambda: False)  # pandas never imported
    before = gc.get_threshold()
    owner = QWidget()
    _engine.start_background_loading(owner, viewer, engine=True, layers=False, delay_ms=0)
    qtbot.waitUntil(lambda: state["started"] == 1, timeout=5000)
    assert gc.get_threshold()[2] > before[2]  # suspended while the imports run
    gc.unfreeze()
    state["running"] = False  # the imports end
    qtbot.waitUntil(lambda: gc.get_threshold() == before, timeout=5000)
    assert gc.get_freeze_count() > 0
    owner.deleteLater()


def test_background_loading_leaves_a_tick_between_the_labels_modules_and_torch(viewer, qtbot, monkeypatch):
    """A dock waiting for the Labels modules (Annotate's first annotation layer) makes its layer in the tick
    after they are ready; torch's import thread starts only a tick later, so that the layer is not made
    while another thread holds the GIL."""
    from qtpy.QtWidgets import QWidget

    from napari_grainlab.gui import _engine, _napari_compat

    state = {"ready": False, "started": 0, "seen_ready": 0}

    def start_warmup():
        state["started"] += 1
        return False  # nothing left running: the loader's poll ends

    def ready():
        if state["ready"]:
            state["seen_ready"] += 1
        return state["ready"]

    monkeypatch.setattr(_engine, "start_warmup", start_warmup)
    monkeypatch.setattr(_engine, "warmup_running", lambda: False)
    monkeypatch.setattr(_napari_compat, "preload_labels_layer_modules", lambda: True)  # a preload thread runs
    monkeypatch.setattr(_napari_compat, "labels_layer_ready", ready)
    owner = QWidget()
    _engine.start_background_loading(owner, viewer, engine=True, layers=True, delay_ms=0)
    qtbot.wait(200)
    assert state["started"] == 0  # the Labels modules first, one import thread at a time
    state["ready"] = True
    qtbot.waitUntil(lambda: state["started"] == 1, timeout=5000)
    assert state["seen_ready"] >= 2, "torch started in the same tick the Labels modules became ready"
    owner.deleteLater()
