"""The reach-ins into napari internals (gui/_napari_compat.py), one test each, in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_grainlab.gui import _napari_compat as compat

dock_widget_names = compat.dock_widget_names

pytestmark = pytest.mark.gui


def fresh_python(code: str) -> str:
    """The standard output of ``code`` run in a fresh interpreter (imports happen once per process)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _plain_widget(viewer, name="compat"):
    from qtpy.QtWidgets import QLabel

    widget = QLabel("compat test")
    viewer.window.add_dock_widget(widget, name=name, area="right")
    return widget


def test_unwrap_proxy_returns_the_viewer_behind_the_plugin_proxy(viewer):
    import numpy as np
    from napari.utils._proxies import PublicOnlyProxy

    proxy = PublicOnlyProxy(viewer)
    assert proxy is not viewer
    assert compat.unwrap_proxy(proxy) is viewer
    assert compat.unwrap_proxy(viewer) is viewer  # a real viewer passes through
    layer = viewer.add_image(np.zeros((4, 4)), name="img")
    assert compat.unwrap_proxy(proxy).layers[0] is layer


def test_watch_main_window_close_can_cancel_and_be_removed(viewer, qtbot):
    from qtpy.QtGui import QCloseEvent
    from qtpy.QtWidgets import QApplication, QWidget

    assert compat.watch_main_window_close(QWidget(), lambda: False) is None  # not in a window yet
    widget = _plain_widget(viewer)
    answers = []

    def confirm() -> bool:
        answers.append("asked")
        return False

    remove = compat.watch_main_window_close(widget, confirm)
    assert remove is not None
    main = viewer.window._qt_window
    event = QCloseEvent()
    QApplication.sendEvent(main, event)
    assert answers == ["asked"]
    assert not event.isAccepted()  # the window stays open
    remove()
    event = QCloseEvent()
    event.ignore()
    QApplication.sendEvent(main, event)
    assert answers == ["asked"]  # no longer asked


def test_hook_dock_close_asks_before_the_close_button_removes_the_dock(viewer, qtbot):
    from qtpy.QtWidgets import QWidget

    assert compat.hook_dock_close(QWidget(), lambda: True) is False  # not docked
    widget = _plain_widget(viewer, name="hooked")
    answer = {"value": False, "asked": 0}

    def before_close() -> bool:
        answer["asked"] += 1
        return answer["value"]

    assert compat.hook_dock_close(widget, before_close) is True
    dock = widget.parent()
    while not hasattr(dock, "destroyOnClose"):
        dock = dock.parent()
    dock.destroyOnClose()
    assert answer["asked"] == 1
    assert "hooked" in dock_widget_names(viewer)  # refused: still docked
    answer["value"] = True
    dock.destroyOnClose()
    assert answer["asked"] == 2
    assert "hooked" not in dock_widget_names(viewer)


def test_throttle_activity_animation_slows_the_status_bar_spinner_and_restores_it(viewer, qtbot):
    from napari._qt.dialogs.qt_activity_dialog import ActivityToggleItem
    from napari.utils._proxies import PublicOnlyProxy
    from qtpy.QtWidgets import QWidget

    (item,) = viewer.window._qt_window.findChildren(ActivityToggleItem)
    movie = item._inProgressIndicator.movie()
    assert movie.speed() == 100
    widget = _plain_widget(viewer, name="throttled")
    assert compat.throttle_activity_animation(widget, True, 10) == 1  # a widget in the main window
    assert movie.speed() == 10
    assert compat.throttle_activity_animation(PublicOnlyProxy(viewer), False) == 1  # or the viewer
    assert movie.speed() == 100
    assert compat.throttle_activity_animation(viewer, True, 25) == 1 and movie.speed() == 25
    compat.throttle_activity_animation(viewer, False)
    assert compat.throttle_activity_animation(QWidget(), True) == 0  # in no napari window: nothing to slow
    assert movie.speed() == 100


def test_labels_colormap_backend_is_the_compiled_one_so_a_first_uint32_layer_costs_no_jit():
    """Without PartSegCore's compiled backend napari falls back to numba, whose kernels load on the GUI
    thread the first time a uint32 / int32 Labels layer shows (about a second in a fresh session)."""
    code = ("import numpy as np\n"
            "from napari.utils.colormaps import _accelerated_cmap as acc\n"
            "from napari_grainlab.gui._napari_compat import labels_colormap_backend\n"
            "print(labels_colormap_backend())\n"
            "out = acc.zero_preserving_modulo(np.arange(10, dtype=np.uint32), 5, np.uint8)\n"
            "print(out.tolist())\n")
    out = fresh_python(code)
    backend, values = out.split()[0], out.split(None, 1)[1]
    assert backend == "partsegcore", out
    assert values.strip() == str([0, 1, 2, 3, 4, 5, 1, 2, 3, 4]), values  # (v - 1) % 5 + 1, 0 stays 0


def test_preload_labels_layer_modules_imports_pandas_in_a_background_thread():
    """napari imports pandas lazily for a layer's features table, the first time a Labels layer is made:
    a second or two on the GUI thread. The preload does that import in a thread instead."""
    code = ("import sys, threading\n"
            "from napari_grainlab.gui import _napari_compat as c\n"
            "before = 'pandas' in sys.modules\n"
            "started = c.preload_labels_layer_modules()\n"
            "names = [t.name for t in threading.enumerate()]\n"
            "again = c.preload_labels_layer_modules()\n"
            "c._PRELOAD['thread'].join(60)\n"
            "print(before, started, 'grainlab-preload-layers' in names, c.labels_layer_ready(), "
            "'pandas' in sys.modules and 'skimage.color.colorconv' in sys.modules, "
            "c.preload_labels_layer_modules())\n")
    out = fresh_python(code)
    before, started, named, ready, imported, third = out.split()
    assert before == "False", "importing the compat module imported pandas already"
    assert (started, named) == ("True", "True")
    assert (ready, imported) == ("True", "True")
    assert third == "False"  # once loaded, nothing more is started


def test_preload_computes_vispy_dash_patterns_even_when_the_modules_are_imported():
    """The first vispy line visual of a session (three per Labels layer) computes its dash patterns in
    Python, ~60 ms on the GUI thread; the preload fills vispy's pattern cache in its thread instead, also
    when pandas and the rest were imported already."""
    code = ("import pandas, scipy.linalg, skimage.color\n"
            "from vispy.visuals.line import dash_atlas\n"
            "from napari_grainlab.gui import _napari_compat as c\n"
            "before = dash_atlas._make_pattern.cache_info().currsize\n"
            "started = c.preload_labels_layer_modules()\n"
            "c._PRELOAD['thread'].join(60)\n"
            "after = dash_atlas._make_pattern.cache_info().currsize\n"
            "misses = dash_atlas._make_pattern.cache_info().misses\n"
            "dash_atlas.DashAtlas()\n"
            "print(before, started, after, dash_atlas._make_pattern.cache_info().misses - misses)\n")
    out = fresh_python(code)
    before, started, after, new_misses = out.split()
    assert before == "0" and started == "True"
    assert int(after) >= 10, "the preload did not compute vispy's dash patterns"
    assert new_misses == "0", "an atlas made after the preload still computes patterns"


def test_labels_layer_ready_waits_for_a_running_preload(monkeypatch):
    import threading

    from napari_grainlab.gui import _napari_compat as compat

    gate = threading.Event()
    thread = threading.Thread(target=gate.wait, daemon=True)
    thread.start()
    monkeypatch.setitem(compat._PRELOAD, "thread", thread)
    assert not compat.labels_layer_ready() and compat.preload_labels_layer_modules()
    gate.set()
    thread.join(5)
    assert compat.labels_layer_ready()


def test_center_camera_moves_the_view_without_a_deprecation_warning(viewer):
    import warnings

    from napari_grainlab.gui._napari_compat import center_camera

    viewer.add_image(np.zeros((200, 300), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        center_camera(viewer, (5.0, 120.0, 40.0))
        scene = getattr(viewer, "scene", None)
        camera = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
        assert tuple(camera.center)[-2:] == (120.0, 40.0)


def test_dock_widget_names_lists_the_docks_of_the_window(viewer):
    from qtpy.QtWidgets import QLabel

    assert "probe dock" not in compat.dock_widget_names(viewer)
    widget = QLabel("x")
    viewer.window.add_dock_widget(widget, name="probe dock")
    assert "probe dock" in compat.dock_widget_names(viewer)
    viewer.window.remove_dock_widget(widget)
    assert "probe dock" not in compat.dock_widget_names(viewer)
