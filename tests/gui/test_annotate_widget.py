"""The Annotate dock in a real napari viewer (pytest-qt; run under xvfb-run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import yaml

from napari_grainlab.core import annotate as core
from napari_grainlab.core.data.datasets import load_classification_folder, load_segmentation_folder

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


def micrograph(shape=(160, 192), dtype=np.uint8, seed=0) -> np.ndarray:
    """A small synthetic micrograph: bright grains separated by dark lines."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = 0.7 + 0.05 * rng.standard_normal(shape)
    img[(yy % 40) < 3] = 0.15
    img[(xx % 48) < 3] = 0.15
    top = 255 if dtype == np.uint8 else 4095
    return np.clip(img * top, 0, top).astype(dtype)


@pytest.fixture(autouse=True)
def autosave_dir(tmp_path, monkeypatch):
    folder = tmp_path / "autosave"
    monkeypatch.setenv(core.AUTOSAVE_ENV, str(folder))
    monkeypatch.setenv("GRAINLAB_CONFIG_DIR", str(tmp_path / "config"))  # the remembered dataset folders
    return folder


def make_widget(viewer, qtbot):
    from napari_grainlab.gui.annotate import AnnotateWidget

    widget = AnnotateWidget(viewer)
    widget.ask_unsaved = lambda: "discard"  # never block on a dialog
    widget.ask_overwrite = lambda conflict: pytest.fail(f"asked to replace saved labels: {conflict}")
    viewer.window.add_dock_widget(widget, name="Annotate", area="right")
    qtbot.waitUntil(lambda: not widget.attach_pending, timeout=20000)  # napari's first Labels layer needs pandas
    return widget


@pytest.fixture
def dock(viewer, qtbot):
    viewer.add_image(micrograph(), name="grains")
    widget = make_widget(viewer, qtbot)
    assert widget.labels_layer is not None
    return widget


def mouse(layer, kind: str, position, dragging: bool = False):
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    event = SimpleNamespace(type=kind, is_dragging=dragging, position=tuple(float(p) for p in position), button=1,
                            buttons=[1], modifiers=[], handled=False, pos=np.zeros(2), view_direction=None,
                            dims_displayed=[0, 1], delta=np.zeros(2))
    event = ReadOnlyWrapper(event, exceptions=("handled",))
    {"mouse_press": mouse_press_callbacks, "mouse_move": mouse_move_callbacks,
     "mouse_release": mouse_release_callbacks}[kind](layer, event)


def click(layer, position):
    mouse(layer, "mouse_press", position)
    mouse(layer, "mouse_release", position)


# --------------------------------------------------------------------------- docks
def _dock_names() -> list[tuple[str, str]]:
    manifest = yaml.safe_load((ROOT / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    return [(w["display_name"], commands[w["command"]]) for w in manifest["contributions"]["widgets"]]


@pytest.mark.parametrize(("display_name", "python_name"), _dock_names())
def test_every_dock_opens(viewer, qtbot, display_name, python_name):
    assert importlib.util.find_spec(python_name.split(":")[0]) is not None, python_name
    viewer.add_image(micrograph(), name="grains")
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", display_name)
    assert dock_widget.widget() is widget
    if display_name == "Annotate":
        widget.ask_unsaved = lambda: "discard"
        qtbot.waitUntil(lambda: not widget.attach_pending, timeout=20000)
        assert widget.labels_layer is not None and widget.labels_layer.name == "grains annotation"


# ------------------------------------------------------------------------ attaching
def test_attach_creates_labels_and_shows_stats(dock, viewer, qtbot):
    labels = dock.labels_layer
    assert labels.data.shape == (160, 192) and not labels.data.any()
    # the counter follows the layer after a short debounce
    qtbot.waitUntil(lambda: dock.stats_label.text() == "0 grains · 0.0 % annotated", timeout=5000)
    edit = core.LabelEdit.between(labels.data, np.pad(np.ones((80, 192), np.uint32), ((0, 80), (0, 0))))
    dock._apply_edit(edit)
    dock._refresh_stats()
    assert dock.stats_label.text() == "1 grain · 50.0 % annotated"
    assert dock.state_label.text() == "● unsaved"


def test_tools_merge_split_delete_with_undo(dock, viewer, qtbot):
    labels = dock.labels_layer
    start = np.zeros(labels.data.shape, np.uint32)
    start[10:70, 10:90] = 1
    start[10:70, 92:180] = 2  # 2 px gap at columns 90, 91
    start[90:150, 10:180] = 3
    dock._apply_edit(core.LabelEdit.between(labels.data, start))
    np.testing.assert_array_equal(labels.data, start)

    dock.set_tool("merge")
    assert labels.mode == "pan_zoom" and labels.mouse_pan  # clicks only: panning stays
    click(labels, (40, 50))
    assert "Grain 1 chosen" in dock.tool_help.text()
    click(labels, (40, 150))
    assert set(np.unique(labels.data)) == {0, 1, 3}
    assert (labels.data[10:70, 90:92] == 1).all()  # the gap between them is closed

    dock.set_tool("split")
    assert not labels.mouse_pan and viewer.layers[-1].name == "split line"
    assert viewer.layers.selection.active is labels
    mouse(labels, "mouse_press", (80, 95))
    for r in range(82, 160, 6):
        mouse(labels, "mouse_move", (r, 95.3), dragging=True)
    mouse(labels, "mouse_release", (159, 95), dragging=True)
    ids = set(np.unique(labels.data))
    assert ids == {0, 1, 3, 4}  # grain 3 was cut in two, grain 1 untouched
    assert ((labels.data > 0) == (start > 0) | (np.isin(np.arange(192), [90, 91])[None, :] &
                                                 (np.arange(160) >= 10)[:, None] & (np.arange(160) < 70)[:, None])).all()

    dock.set_tool("delete")
    click(labels, (120, 30))
    assert 3 not in set(np.unique(labels.data)) or 4 not in set(np.unique(labels.data))

    # each edit is one undo step
    labels.undo()  # delete
    assert set(np.unique(labels.data)) == {0, 1, 3, 4}
    labels.undo()  # split
    assert set(np.unique(labels.data)) == {0, 1, 3}
    dock.undo()  # merge
    np.testing.assert_array_equal(labels.data, start)
    dock.redo()
    assert set(np.unique(labels.data)) == {0, 1, 3}

    dock.set_tool("paint")
    assert labels.mode == "paint" and labels.mouse_pan
    dock.set_tool("fill")
    assert labels.mode == "fill"
    labels.mode = "erase"  # napari's own control switches the dock's tool
    assert dock.tool == "erase" and dock.tool_buttons["erase"].isChecked()
    new = dock.select_new_id()
    assert new == int(labels.data.max()) + 1 and labels.selected_label == new and labels.mode == "paint"


def test_fill_holes_button(dock):
    labels = dock.labels_layer
    data = np.zeros(labels.data.shape, np.uint32)
    data[20:80, 20:80] = 5
    data[40:50, 40:50] = 0
    dock._apply_edit(core.LabelEdit.between(labels.data, data))
    dock.holes_button.click()
    assert (labels.data[40:50, 40:50] == 5).all()
    labels.undo()
    assert (labels.data[40:50, 40:50] == 0).all()


# ------------------------------------------------------------------------ proposals
def test_classical_proposal_live_and_apply_keeps_user_labels(dock, viewer, qtbot):
    labels = dock.labels_layer
    mine = np.zeros(labels.data.shape, np.uint32)
    mine[0:40, 0:48] = 77  # the user's grain
    dock._apply_edit(core.LabelEdit.between(labels.data, mine))
    dock.propose()
    qtbot.waitUntil(lambda: dock.proposal_layer is not None and not dock.proposal_busy, timeout=20_000)
    proposal = dock.proposal_layer
    assert proposal.name == "grains proposal" and proposal.data.max() >= 12
    assert "grains in" in dock.proposal_label.text()
    shown = dock.proposals_shown
    # slider changes update the proposal live (debounced: a burst is one or two runs, in a worker)
    from napari_grainlab.core.inference import classical_grains
    for value in (2.0, 3.0, 4.0):
        dock.sliders["smoothing"].setValue(value)
    dock.sliders["h"].setValue(3.0)
    assert dock.proposal_busy
    qtbot.waitUntil(lambda: not dock.proposal_busy and dock.proposals_shown > shown, timeout=20_000)
    assert dock.proposals_shown - shown <= 2
    settings = dock.settings()
    assert settings.smoothing == pytest.approx(4.0) and settings.h == pytest.approx(3.0)
    expected, _ = classical_grains(dock._gray, **settings.kwargs())
    np.testing.assert_array_equal(dock.proposal_layer.data, expected)
    assert dock.apply_proposal()
    assert dock.proposal_layer is None
    assert (labels.data[0:40, 0:48] == 77).all()  # annotation untouched
    n, frac = dock.stats()
    assert n >= 12 and frac > 0.6
    labels.undo()  # the whole proposal is one step
    np.testing.assert_array_equal(labels.data, mine)
    # replace mode
    dock.propose()
    qtbot.waitUntil(lambda: dock.proposal_layer is not None and not dock.proposal_busy, timeout=20_000)
    dock.apply_proposal(mode="replace")
    assert 77 not in labels.data


def test_model_proposal_bad_path_notifies(dock, notifications):
    dock.propose_from_model("/nonexistent/model")
    assert any("no model at" in m for m in notifications.messages())


# ---------------------------------------------------------------------------- saving
def test_annotate_save_reload_identical(viewer, qtbot, tmp_path, autosave_dir):
    image = micrograph(dtype=np.uint16)
    viewer.add_image(image, name="sample 1")
    dock = make_widget(viewer, qtbot)
    labels = dock.labels_layer
    data = np.zeros(image.shape, np.uint32)
    data[5:60, 5:70] = 3
    data[70:150, 100:190] = 70_000  # beyond uint16
    data[100:110, 10:20] = 1
    dock._apply_edit(core.LabelEdit.between(labels.data, data))
    folder = tmp_path / "dataset"
    dock.ask_directory = lambda: folder
    assert dock.has_unsaved_changes()
    dock.save_button.click()
    assert (folder / "images" / "sample_1.tif").is_file() and (folder / "labels" / "sample_1.tif").is_file()
    assert not dock.has_unsaved_changes()
    dock._refresh_stats()
    assert dock.state_label.text() == "saved"
    samples = load_segmentation_folder(folder)  # the training loader accepts it
    assert len(samples) == 1 and samples[0].labels.shape == image.shape
    # reopen: a new dock on the same image reloads the labels exactly
    viewer.layers.remove(labels)
    dock2 = make_widget(viewer, qtbot)
    dock2.set_folder(folder)
    dock2.attach(viewer.layers["sample 1"])
    np.testing.assert_array_equal(dock2.labels_layer.data, data)
    assert not dock2.has_unsaved_changes()


def test_autosave_file_appears_and_on_layer_switch(dock, viewer, qtbot, autosave_dir):
    labels = dock.labels_layer
    data = np.zeros(labels.data.shape, np.uint32)
    data[10:50, 10:50] = 9
    dock._apply_edit(core.LabelEdit.between(labels.data, data))
    # autosaves are named after the image and a fingerprint of its pixels
    stored = core.autosave_name("grains", viewer.layers["grains"].data)
    target = autosave_dir / "labels" / f"{stored}.tif"
    assert stored.startswith("grains-") and not target.exists()
    dock._autosave_timer.start(50)  # the spin box's minimum is 5 s; the test does not wait that long
    qtbot.waitUntil(target.exists, timeout=10_000)
    qtbot.waitUntil(lambda: not dock.autosave_busy, timeout=10_000)
    np.testing.assert_array_equal(core.load_segmentation(autosave_dir, stored), data)
    assert "Autosaved" in dock.save_status.text()
    # without a dataset folder the work still counts as unsaved for closing
    assert dock.has_unsaved_changes()
    dock._autosave_timer.stop()

    # switching the image autosaves the changes first
    labels.data_setitem((np.array([100]), np.array([100])), 5)
    second = viewer.add_image(micrograph(seed=1), name="second")
    dock.image_combo.setCurrentIndex(dock.image_combo.findText("second"))
    dock.image_combo.activated.emit(dock.image_combo.currentIndex())
    assert dock.image_layer is second and dock.labels_layer.name == "second annotation"
    assert core.load_segmentation(autosave_dir, stored)[100, 100] == 5
    # and switching back reloads from the autosave when the layer is gone
    viewer.layers.remove("grains annotation")
    dock.attach(viewer.layers["grains"])
    assert dock.labels_layer.data[100, 100] == 5 and (dock.labels_layer.data == 9).sum() == 1600


def test_another_micrograph_of_the_same_name_does_not_get_its_autosave(dock, viewer, qtbot, autosave_dir):
    labels = dock.labels_layer
    data = np.zeros(labels.data.shape, np.uint32)
    data[20:60, 20:60] = 4
    dock._apply_edit(core.LabelEdit.between(labels.data, data))
    assert dock.autosave(wait=True)
    viewer.layers.remove("grains annotation")
    viewer.layers.remove("grains")
    # a different micrograph of the same name and size: a fresh, empty annotation
    other = viewer.add_image(micrograph(seed=5), name="grains")
    dock.attach(other)
    assert not dock.labels_layer.data.any()
    # the first one's work is still there and comes back with its own pixels
    viewer.layers.remove("grains annotation")
    viewer.layers.remove("grains")
    dock.attach(viewer.add_image(micrograph(), name="grains"))
    np.testing.assert_array_equal(dock.labels_layer.data, data)


def test_close_with_unsaved_changes_asks(dock, viewer, tmp_path, qtbot):
    viewer.window._qt_window.show()
    qtbot.waitUntil(dock.isVisible, timeout=5000)
    labels = dock.labels_layer
    labels.data_setitem((np.array([3]), np.array([3])), 2)
    asked = []
    dock.ask_unsaved = lambda: asked.append(1) or "cancel"
    assert not dock.confirm_close()
    # the viewer's close event is refused
    viewer.window._qt_window.close()
    assert viewer.window._qt_window.isVisible() and len(asked) == 2
    # napari's dock close button too
    dock_widget = dock.parent()
    while not hasattr(dock_widget, "destroyOnClose"):
        dock_widget = dock_widget.parent()
    dock_widget.destroyOnClose()
    assert len(asked) == 3 and dock.isVisible()
    # Save writes and closes
    dock.ask_unsaved = lambda: "save"
    dock.ask_directory = lambda: tmp_path / "ds"
    assert dock.confirm_close()
    assert (tmp_path / "ds" / "labels" / "grains.tif").is_file()
    assert not dock.has_unsaved_changes()
    dock.ask_unsaved = lambda: pytest.fail("asked without unsaved changes")
    assert dock.confirm_close()


# ------------------------------------------------------------------------ bad inputs
def test_no_image_layer(viewer, qtbot, notifications):
    dock = make_widget(viewer, qtbot)
    assert dock.labels_layer is None and dock.stats_label.text() == "No image chosen"
    dock.propose_button.click()
    dock.save_button.click()
    dock.holes_button.click()
    dock.apply_button.click()
    dock.regions_button.click()
    dock.merge([1, 2])
    errors = notifications.messages("error")
    assert len(errors) >= 4 and all("no image layer" in m.lower() or "choose an image" in m.lower() for m in errors)
    # an image added later is picked up
    viewer.add_image(micrograph(), name="late")
    qtbot.waitUntil(lambda: dock.labels_layer is not None, timeout=5000)
    assert dock.labels_layer.name == "late annotation"


def test_rgb_image_of_equal_channels_is_annotated_as_gray(viewer, qtbot, notifications, tmp_path):
    gray = micrograph()
    rgb = np.stack([gray, gray, gray], axis=-1)
    viewer.add_image(rgb, name="colour", rgb=True)
    dock = make_widget(viewer, qtbot)
    assert dock.labels_layer is not None and dock.labels_layer.data.shape == gray.shape
    assert dock._gray.shape == gray.shape  # an RGB file whose channels are equal is grey
    assert not any("colour" in m for m in notifications.messages("warning"))
    dock.propose()
    qtbot.waitUntil(lambda: dock.proposal_layer is not None and not dock.proposal_busy, timeout=20_000)
    dock.apply_proposal()
    assert dock.save(tmp_path / "ds") is not None
    samples = load_segmentation_folder(tmp_path / "ds")
    assert samples[0].image.shape == gray.shape


def colour_micrograph(shape=(160, 192)) -> np.ndarray:
    """Grains told apart by colour only: blocks of one luminance, no boundary lines (a tint-etched look)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = (yy // 40) * 8 + xx // 48
    palette = np.array([[200, 80, 80], [80, 160, 90], [90, 110, 220], [180, 150, 40]], np.float64)
    rgb = palette[(ids + yy // 40) % 4]
    rgb *= 120.0 / (rgb @ [0.2125, 0.7154, 0.0721])[..., None]  # equal luminance everywhere
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_colour_image_is_shown_as_it_is_and_proposed_on_colour(viewer, qtbot, notifications, tmp_path):
    from napari_grainlab.core.inference import classical_grains

    rgb = colour_micrograph()
    layer = viewer.add_image(rgb, name="tint", rgb=True)
    dock = make_widget(viewer, qtbot)
    assert dock.labels_layer.data.shape == rgb.shape[:2]
    assert layer.rgb and layer.data is rgb or np.array_equal(layer.data, rgb)  # the layer is left as it is
    assert dock._gray.shape == rgb.shape and dock._gray.dtype == np.float32  # colour kept for the proposals
    assert not any("colour image" in m for m in notifications.messages("warning"))
    dock.propose()
    qtbot.waitUntil(lambda: dock.proposal_layer is not None and not dock.proposal_busy, timeout=20_000)
    expected, _ = classical_grains(dock._gray, **dock.proposals.settings().kwargs())
    np.testing.assert_array_equal(dock.proposal_layer.data, expected)
    assert int(expected.max()) >= 12  # the 16 blocks, told apart by colour alone
    dock.apply_proposal()
    assert dock.save(tmp_path / "ds") is not None
    samples = load_segmentation_folder(tmp_path / "ds")
    assert samples[0].image.shape == rgb.shape  # the dataset folder keeps the colour
    stored = tifffile.imread(next((tmp_path / "ds" / "images").iterdir()))
    np.testing.assert_array_equal(stored, rgb)


def test_from_model_takes_the_builtin_name_and_a_diameter(viewer, qtbot, notifications, tmp_path, monkeypatch):
    import hashlib
    import json
    import shutil

    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, registry, save_checkpoint
    from napari_grainlab.gui.annotate import AnnotateWidget

    torch.manual_seed(0)
    net = build_model(ModelSpec(backbone="resnet18", decoder_channels=(8, 8, 8, 8, 8), in_chans=3)).eval()
    pkg = tmp_path / "pkg"
    save_checkpoint(pkg / "generalist", net, {"grain_diameter": 16.0})
    weights = pkg / "generalist" / "model.safetensors"
    entry = {"file": "generalist/model.safetensors", "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (pkg / "registry.json").write_text(json.dumps({"format": "napari-grainlab-registry", "format_version": 1,
                                                   "models": {"generalist": entry}}))
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(pkg / "registry.json"))
    monkeypatch.chdir(tmp_path)
    registry._verified.clear()
    calls = []
    real = core.propose_from_model

    def spy(checkpoint, image, **kwargs):
        calls.append((checkpoint, np.shape(image), kwargs.get("diameter")))
        return real(checkpoint, image, **kwargs)

    monkeypatch.setattr(core, "propose_from_model", spy)
    rgb = colour_micrograph((128, 128))
    viewer.add_image(rgb, name="tint", rgb=True)
    dock = AnnotateWidget(viewer)
    dock.ask_unsaved = lambda: "discard"
    viewer.window.add_dock_widget(dock, name="Annotate", area="right")
    qtbot.waitUntil(lambda: not dock.attach_pending, timeout=20000)
    panel = dock.proposals
    assert panel.model_edit.text() == "generalist"  # the installed built-in model is offered
    assert panel.diameter_spin.text() == "auto" and panel.diameter() is None
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    task = dock.propose_from_model()
    assert task is not None
    qtbot.waitUntil(lambda: task.result is not None, timeout=60_000)
    assert task.result.status == "completed", task.result.error
    assert calls[-1] == ("generalist", rgb.shape, None)
    assert dock.proposal_layer is not None and dock.proposal_layer.data.shape == rgb.shape[:2]
    assert "grain diameter ≈" in panel.proposal_label.text()  # the estimate the model was run at is reported
    panel.diameter_spin.setValue(24)
    assert panel.diameter() == 24
    task = dock.propose_from_model("generalist")
    qtbot.waitUntil(lambda: task.result is not None, timeout=60_000)
    assert task.result.status == "completed" and calls[-1] == ("generalist", rgb.shape, 24)
    assert "grain diameter 24 px (given)" in panel.proposal_label.text()
    assert not notifications.messages("error")


def test_16bit_image_works(viewer, qtbot, tmp_path):
    viewer.add_image(micrograph(dtype=np.uint16), name="deep")
    dock = make_widget(viewer, qtbot)
    dock.propose()
    qtbot.waitUntil(lambda: dock.proposal_layer is not None and not dock.proposal_busy, timeout=20_000)
    assert dock.proposal_layer.data.max() >= 12
    dock.apply_proposal()
    dock.save(tmp_path / "ds")
    import tifffile
    assert tifffile.imread(tmp_path / "ds" / "images" / "deep.tif").dtype == np.uint16


def test_labels_of_another_shape_and_stacks_notify(viewer, qtbot, notifications):
    image = viewer.add_image(micrograph(), name="img")
    dock = make_widget(viewer, qtbot)
    before = dock.labels_layer
    other = viewer.add_labels(np.zeros((50, 50), np.uint32), name="wrong")
    dock._refresh_layer_choices()
    dock.labels_combo.setCurrentIndex(dock.labels_combo.findText("wrong"))
    dock.labels_combo.activated.emit(dock.labels_combo.currentIndex())
    assert any("do not match" in m for m in notifications.messages("error"))
    assert dock.labels_layer is before  # still attached to the good one
    assert not dock.attach(image, other)
    stack = viewer.add_image(np.zeros((3, 64, 64), np.uint8), name="stack")
    assert not dock.attach(stack)
    assert any("2-D image" in m for m in notifications.messages("error"))
    assert dock.labels_layer is before


def test_existing_labels_layer_can_be_attached(viewer, qtbot):
    image = viewer.add_image(micrograph(), name="img")
    gt = np.zeros((160, 192), np.int32)
    gt[:80] = 4
    mine = viewer.add_labels(gt, name="ground truth")
    dock = make_widget(viewer, qtbot)
    assert dock.attach(image, mine)
    assert dock.labels_layer is mine and dock.stats() == (1, 0.5)


# --------------------------------------------------------------------- classification
def test_classification_image_class_and_regions(dock, viewer, qtbot, tmp_path):
    dock.classes_edit.setText("ferrite, pearlite")
    dock.classes_edit.editingFinished.emit()
    assert [dock.region_class_combo.itemText(i) for i in range(2)] == ["ferrite", "pearlite"]
    dock.region_class_combo.setCurrentIndex(1)
    layer = dock.paint_regions()
    assert layer.name == "grains classes" and layer.selected_label == 2 and layer.mode == "paint"
    assert layer.name not in [dock.labels_combo.itemText(i) for i in range(dock.labels_combo.count())]
    dock.tile_spin.setValue(64)
    regions = np.zeros(layer.data.shape, np.uint8)
    regions[:, :96] = 1
    regions[:, 96:] = 2
    layer.data = regions
    assert dock.has_unsaved_changes()
    folder = tmp_path / "cls"
    dock.save(folder)
    assert not dock.has_unsaved_changes()
    assert not (folder / "labels").exists()  # no grain annotated: no empty label file
    samples, classes = load_classification_folder(folder / "classification")
    assert classes == ["ferrite", "pearlite"]
    assert sorted(s.name for s in samples) == ["ferrite/grains_r0_c0", "ferrite/grains_r1_c0",
                                               "pearlite/grains_r0_c2", "pearlite/grains_r1_c2"]
    # whole-image class
    dock.set_image_class("pearlite")
    assert dock.has_unsaved_changes()
    dock.save()
    assert (folder / "classification" / "pearlite" / "grains.tif").is_file()
    # reload: a fresh dock restores classes, image class and regions
    viewer.layers.remove(layer)
    viewer.layers.remove(dock.labels_layer)
    dock2 = make_widget(viewer, qtbot)
    dock2.set_folder(folder)
    dock2.attach(viewer.layers["grains"])
    assert dock2.class_names() == ["ferrite", "pearlite"] and dock2.image_class() == "pearlite"
    np.testing.assert_array_equal(dock2.classes_layer.data, regions)


# ------------------------------------------------------------------------ screenshot
def test_layout_fits_a_narrow_dock(dock, viewer, qtbot, tmp_path):
    dock.resize(360, 900)
    qtbot.wait(50)
    for button in [*dock.tool_buttons.values(), dock.save_button, dock.apply_button, dock.propose_button]:
        assert button.width() >= button.minimumSizeHint().width() - 1, button.text()
    assert dock.scroll_area.horizontalScrollBar().maximum() == 0
    dock.grab().save(str(tmp_path / "annotate_dock.png"))


# --------------------------------------------------------------------- robustness
def test_opening_waits_for_pandas_off_the_gui_thread_before_the_first_labels_layer(viewer, qtbot, monkeypatch):
    """napari imports pandas for a session's first Labels layer (seconds on a cold start): the dock has
    it imported in the background and makes the annotation layer afterwards, instead of freezing."""
    from napari_grainlab.gui import _napari_compat
    from napari_grainlab.gui.annotate import AnnotateWidget
    from napari_grainlab.gui.annotate import dock as dock_module

    state = {"ready": False, "preloads": 0}

    def preload():
        state["preloads"] += 1
        return True

    monkeypatch.setattr(dock_module, "labels_layer_ready", lambda: state["ready"])
    monkeypatch.setattr(_napari_compat, "preload_labels_layer_modules", preload)  # the dock's background loading
    viewer.add_image(micrograph(), name="grains")
    widget = AnnotateWidget(viewer)
    widget.ask_unsaved = lambda: "discard"
    viewer.window.add_dock_widget(widget, name="Annotate", area="right")
    assert widget.attach_pending and state["preloads"] == 0  # the import starts once the dock is shown
    qtbot.waitUntil(lambda: state["preloads"] == 1, timeout=5000)
    qtbot.wait(100)
    assert widget.attach_pending and widget.labels_layer is None and state["preloads"] == 1
    assert widget.state_label.text() == "preparing…"
    assert not [layer for layer in viewer.layers if layer.name == "grains annotation"]
    state["ready"] = True
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=5000)
    assert not widget.attach_pending and widget.labels_layer.name == "grains annotation"
    assert widget.state_label.text() != "preparing…"
    assert widget.image_layer is viewer.layers["grains"]


def test_closed_dock_lets_go_of_the_layer(viewer, qtbot, tmp_path):
    viewer.add_image(micrograph(), name="grains")
    dock = make_widget(viewer, qtbot)
    labels = dock.labels_layer
    data = np.zeros(labels.data.shape, np.uint32)
    data[10:30, 10:30] = 7
    dock._apply_edit(core.LabelEdit.between(labels.data, data))
    assert dock.save(tmp_path / "ds") is not None
    dock.set_tool("delete")
    viewer.window.remove_dock_widget(dock)  # napari only takes the widget out of its dock
    assert not dock._autosave_timer.isActive()
    assert dock._on_mouse not in labels.mouse_drag_callbacks
    click(labels, (20, 20))  # an ordinary click on the layer no longer deletes the grain
    assert (labels.data == 7).sum() == 400


def test_model_proposal_for_another_image_is_dropped(dock, viewer, qtbot, monkeypatch, tmp_path):
    import threading

    from napari_grainlab.gui.annotate import proposals as widget_module

    release = threading.Event()

    def slow_proposal(checkpoint, gray, stop=None, **_):
        release.wait(10)
        return np.ones(gray.shape, np.int32)

    monkeypatch.setattr(core, "propose_from_model", slow_proposal)
    monkeypatch.setattr(widget_module, "ensure_engine", lambda *a, **k: True)
    task = dock.propose_from_model(tmp_path)
    other = viewer.add_image(micrograph(seed=2), name="other")
    dock.attach(other)  # the user switches images while the model runs
    release.set()
    qtbot.waitUntil(lambda: task.result is not None, timeout=10_000)
    assert dock.proposal_layer is None
    assert not dock.labels_layer.data.any()


def test_a_slow_autosave_never_overwrites_a_newer_save(dock, viewer, qtbot, tmp_path, monkeypatch):
    import threading
    import time

    import tifffile

    real = core.save_segmentation

    def slow_off_main(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "save_segmentation", slow_off_main)
    dock.set_folder(tmp_path / "ds")
    labels = dock.labels_layer
    first = np.zeros(labels.data.shape, np.uint32)
    first[5:20, 5:20] = 3
    dock._apply_edit(core.LabelEdit.between(labels.data, first))
    assert dock.autosave()  # in a worker, slowly
    second = first.copy()
    second[30:50, 30:50] = 9
    dock._apply_edit(core.LabelEdit.between(labels.data, second))
    assert dock.save() is not None  # the user saves meanwhile
    qtbot.waitUntil(lambda: not dock.autosave_busy, timeout=10_000)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ds" / "labels" / "grains.tif"), second)
    assert not dock.has_unsaved_changes()


def test_replacing_with_more_ids_than_a_uint8_layer_holds_is_refused(viewer, qtbot, notifications):
    viewer.add_image(micrograph(), name="grains")
    small = viewer.add_labels(np.zeros((160, 192), np.uint8), name="png labels")
    dock = make_widget(viewer, qtbot)
    dock.attach(viewer.layers["grains"], small)
    proposal = np.arange(160 * 192, dtype=np.uint32).reshape(160, 192) % 600 + 1
    dock._show_proposal((proposal, 0.0), source="classical")
    assert not dock.apply_proposal(mode="replace")
    assert not small.data.any()
    assert any("uint8" in m for m in notifications.messages("error"))


def test_renamed_layers_stay_choosable(dock, viewer, qtbot):
    second = viewer.add_image(micrograph(seed=3), name="B")
    second.name = "C"
    items = [dock.image_combo.itemText(i) for i in range(dock.image_combo.count())]
    assert "C" in items and "B" not in items


# ------------------------------------------------------------------ issue 14: nothing lost
def many_grains(shape=(160, 192), n=54) -> np.ndarray:
    lab = np.zeros(shape, np.uint32)
    for i in range(n):
        r, c = divmod(i, 9)
        lab[2 + 20 * r: 16 + 20 * r, 2 + 21 * c: 18 + 21 * c] = i + 1
    return lab


def restart(viewer, qtbot, dock, pixels):
    """Close the dock and the image, open the image again with a new dock (a restarted napari)."""
    viewer.window.remove_dock_widget(dock)
    for name in [layer.name for layer in viewer.layers]:
        viewer.layers.remove(name)
    viewer.add_image(pixels, name="grains")
    return make_widget(viewer, qtbot)


def test_saved_labels_come_back_after_a_restart_and_are_not_replaced(viewer, qtbot, tmp_path, notifications):
    pixels = micrograph()
    viewer.add_image(pixels, name="grains")
    dock = make_widget(viewer, qtbot)
    ds = tmp_path / "ds"
    dock._apply_edit(core.LabelEdit.between(dock.labels_layer.data, many_grains()))
    assert dock.save(ds) == ds
    dock2 = restart(viewer, qtbot, dock, pixels)
    # the dock remembers where this image's labels were saved and loads them
    assert dock2.folder == ds
    np.testing.assert_array_equal(dock2.labels_layer.data, many_grains())
    assert any("reloaded" in m and str(ds) in m for m in notifications.messages("info"))
    # the user paints, chooses the folder again, and the autosave keeps the 54 grains
    dock2.labels_layer.data_setitem((np.array([150]), np.array([180])), 99)
    dock2.set_folder(ds)
    assert dock2.autosave(wait=True)
    saved = core.load_segmentation(ds, "grains")
    assert core.annotation_stats(saved)[0] == 55 and (saved[many_grains() > 0] == many_grains()[many_grains() > 0]).all()


def test_a_saved_file_with_more_grains_is_not_replaced_without_asking(viewer, qtbot, tmp_path, notifications):
    from napari_grainlab.gui import _settings

    pixels = micrograph()
    viewer.add_image(pixels, name="grains")
    dock = make_widget(viewer, qtbot)
    ds = tmp_path / "ds"
    dock._apply_edit(core.LabelEdit.between(dock.labels_layer.data, many_grains()))
    assert dock.save(ds) == ds
    (_settings.config_dir() / _settings.FILE).unlink(missing_ok=True)  # the remembered folders are gone
    dock2 = restart(viewer, qtbot, dock, pixels)
    assert dock2.folder is None and not dock2.labels_layer.data.any()
    # the story of the issue: paint before choosing the folder, then autosave
    dock2.labels_layer.data_setitem((np.array([150]), np.array([180])), 1)
    dock2.set_folder(ds)
    assert any("grains" in m and "Reload" in m for m in notifications.messages("warning"))
    assert dock2.autosave(wait=True)
    np.testing.assert_array_equal(core.load_segmentation(ds, "grains"), many_grains())
    assert any("54 grains" in m for m in notifications.messages("warning"))
    # Save asks; No keeps the file
    asked = []
    dock2.ask_overwrite = lambda conflict: asked.append(conflict) or False
    assert dock2.save() is None and len(asked) == 1 and asked[0].saved[0] == 54
    np.testing.assert_array_equal(core.load_segmentation(ds, "grains"), many_grains())
    # Yes replaces it and keeps what it replaced
    dock2.ask_overwrite = lambda conflict: True
    assert dock2.save() == ds
    assert core.annotation_stats(core.load_segmentation(ds, "grains"))[0] == 1
    backups = list((ds / "labels" / ".backup").glob("grains.*.tif"))
    assert len(backups) == 1
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(backups[0]), many_grains())


def test_remembered_dataset_folders_are_bounded_and_survive_a_corrupt_file(tmp_path):
    from napari_grainlab.gui import _settings

    assert _settings.dataset_folders("abc") == []
    for i in range(_settings.MAX_DATASET_FOLDERS + 2):
        assert _settings.remember_dataset_folder("abc", tmp_path / f"ds{i}")
    assert not _settings.remember_dataset_folder("abc", tmp_path / f"ds{i}")  # unchanged: not written again
    folders = _settings.dataset_folders("abc")
    assert len(folders) == _settings.MAX_DATASET_FOLDERS and folders[0] == str(tmp_path / f"ds{i}")
    _settings.remember_dataset_folder("abc", tmp_path / "ds3")
    assert _settings.dataset_folders("abc")[:2] == [str(tmp_path / "ds3"), str(tmp_path / f"ds{i}")]
    _settings.remember_checkpoint(tmp_path / "model")  # the other settings are kept
    assert _settings.dataset_folders("abc")[0] == str(tmp_path / "ds3") and _settings.recent_checkpoints()
    (_settings.config_dir() / _settings.FILE).write_text("{not json")
    assert _settings.dataset_folders("abc") == []


def test_discard_on_close_removes_the_autosave(dock, viewer, qtbot, autosave_dir):
    labels = dock.labels_layer
    dock._apply_edit(core.LabelEdit.between(labels.data, many_grains()))
    assert dock.autosave(wait=True)
    stored = core.autosave_name("grains", viewer.layers["grains"].data)
    assert (autosave_dir / "labels" / f"{stored}.tif").is_file()
    dock.ask_unsaved = lambda: "discard"
    assert dock.confirm_close()  # closing napari: Discard
    assert not (autosave_dir / "labels" / f"{stored}.tif").exists()
    # the discarded work does not come back the next time
    dock2 = restart(viewer, qtbot, dock, micrograph())
    assert not dock2.labels_layer.data.any()


def test_model_proposal_failure_is_reported_as_a_failure(dock, qtbot, notifications, monkeypatch, tmp_path, capfd):
    from napari_grainlab.core.errors import CheckpointError
    from napari_grainlab.gui._engine import preload_engine
    from napari_grainlab.gui.annotate import proposals as widget_module

    preload_engine()  # as the dock does before it starts the worker
    monkeypatch.setattr(widget_module, "ensure_engine", lambda *a, **k: True)

    def broken(checkpoint, gray, stop=None, **_):
        raise CheckpointError(f"{checkpoint}: no model.json in this folder")

    monkeypatch.setattr(core, "propose_from_model", broken)
    capfd.readouterr()
    task = dock.propose_from_model(tmp_path)
    qtbot.waitUntil(lambda: task.result is not None, timeout=60_000)
    assert task.result.status == "failed", task.result
    label = dock.proposal_label.text()
    assert "failed" in label and "no model.json" in label and "cancel" not in label.lower(), label
    errors = [m for m in notifications.messages("error") if "no model.json" in m]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    out, err = capfd.readouterr()
    printed = [line for line in (out + err).splitlines() if "no model.json" in line]
    assert "Traceback (most recent call last)" not in out + err and len(printed) <= 1, out + err

    # a bug: a failure too, reported with its traceback
    def buggy(checkpoint, gray, stop=None, **_):
        raise RuntimeError("size mismatch for decoder.weight\n" + "x" * 5000)

    monkeypatch.setattr(core, "propose_from_model", buggy)
    task = dock.propose_from_model(tmp_path)
    qtbot.waitUntil(lambda: task.result is not None, timeout=60_000)
    label = dock.proposal_label.text()
    assert "failed" in label and "size mismatch" in label and len(label) < 300, label
    assert any(getattr(n, "exception", None) is task.result.error for n in notifications.records), task.result


def test_nan_image_is_named_not_no_image_layer(viewer, qtbot, notifications):
    data = micrograph().astype(np.float32)
    data[10, 10] = np.nan
    data[20, 20] = np.inf
    viewer.add_image(data, name="x")
    dock = make_widget(viewer, qtbot)
    assert dock.labels_layer is None
    dock.propose_button.click()
    dock.save_button.click()
    dock.propose_from_model("/nonexistent/model")
    errors = notifications.messages("error")
    assert len(errors) >= 3
    assert all("image 'x' contains NaN or infinite values" in m for m in errors), errors
    assert not any("no image layer chosen" in m for m in errors)
    # fixed pixels: the image can be annotated
    viewer.layers["x"].data = np.nan_to_num(data, posinf=1.0)
    assert dock.attach(viewer.layers["x"]) and dock.labels_layer is not None
