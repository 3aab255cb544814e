"""The Predict dock (real napari viewers, pytest-qt): layers with features, bad inputs as notifications."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small untrained checkpoints (resnet18): a segmentation model with an intensity reference, one
    without, and a two-class classifier."""
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(root / "seg", seg, {"histogram_reference": np.linspace(0, 1, 32).tolist(),
                                        "metrics": {"boundary_f1": 0.5}})
    save_checkpoint(root / "seg_noref", seg)
    cls = build_model(ModelSpec(task="classify", backbone="resnet18", num_classes=2,
                                classes=["ferrite", "pearlite"])).eval()
    save_checkpoint(root / "cls", cls, {"training": {"patch_size": 64}})
    return root


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAINLAB_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture(autouse=True)
def no_builtin_models(tmp_path, monkeypatch):
    """No built-in model (an empty registry): these tests choose their models themselves, so a fresh dock
    starts with none (tests/gui/test_predict_builtin.py covers the built-in model)."""
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(tmp_path / "no_registry.json"))


@pytest.fixture
def micrograph():
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    return generate(SynthParams(height=96, width=96, tessellation=TessellationParams(grains=20)), seed=3).image


@pytest.fixture
def dock(viewer):
    from napari_grainlab.gui.predict import PredictWidget

    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    widget.tile_spin.setValue(64)
    widget.overlap_spin.setValue(16)
    widget.device_combo.setCurrentText("cpu")
    return widget


def run_and_wait(qtbot, dock):
    task = dock.run()
    assert task is not None
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    return task.result


def test_predict_adds_grains_and_boundary_layers_with_features(qtbot, viewer, dock, checkpoints, micrograph,
                                                             notifications):
    from napari.layers import Image, Labels

    image = viewer.add_image(micrograph, name="sem", scale=(0.05, 0.05), translate=(3.0, 4.0))
    assert dock.set_checkpoint(checkpoints / "seg")
    assert "Segmentation" in dock.model_info.text() and "resnet18" in dock.model_info.text()
    assert dock.pixel_spin.value() == pytest.approx(0.05)  # from the layer's scale
    result = run_and_wait(qtbot, dock)
    assert result.status == "completed", result.error

    grains, boundary = viewer.layers["sem grains"], viewer.layers["sem boundary"]
    assert isinstance(grains, Labels) and isinstance(boundary, Image)
    assert grains.data.shape == micrograph.shape and grains.data.max() >= 1
    features = grains.features
    for col in ("index", "area", "equivalent_diameter", "aspect_ratio", "orientation"):
        assert col in features.columns
    assert sorted(features["index"]) == sorted(np.unique(grains.data[grains.data > 0]))
    # areas in µm² with the 0.05 µm pixel: the areas sum to the labelled area
    assert features["area"].sum() == pytest.approx(np.count_nonzero(grains.data) * 0.05 ** 2)
    assert grains.metadata["grainlab"]["pixel_size_um"] == pytest.approx(0.05)
    for layer in (grains, boundary):
        assert tuple(layer.scale) == tuple(image.scale) and tuple(layer.translate) == tuple(image.translate)
    assert boundary.colormap.name == "inferno" and str(boundary.blending) == "additive"
    assert 0.0 <= boundary.data.min() and boundary.data.max() <= 1.0
    assert viewer.layers.selection.active is grains
    # hovering over a grain shows its numbers
    label = int(features["index"].iloc[0])
    y, x = np.argwhere(grains.data == label)[0]
    status = grains.get_status(grains.data_to_world((y, x)), world=True)
    text = json.dumps(status, default=str) if not isinstance(status, str) else status
    assert "equivalent_diameter" in text
    assert "grain" in dock.status_label.text() and "ASTM G" in dock.status_label.text()
    assert not notifications.messages("error")

    # a second run updates the same layers in place
    n_layers = len(viewer.layers)
    grains.opacity = 0.9
    dock.tta_check.setChecked(True)
    assert run_and_wait(qtbot, dock).status == "completed"
    assert len(viewer.layers) == n_layers and viewer.layers["sem grains"] is grains and grains.opacity == 0.9


def test_prediction_never_overwrites_the_users_labels(qtbot, viewer, dock, checkpoints, micrograph, notifications):
    viewer.add_image(micrograph, name="sem")
    annotations = np.zeros(micrograph.shape, np.uint32)
    annotations[10:40, 10:40] = 7
    mine = viewer.add_labels(annotations.copy(), name="sem grains")  # the user's own layer
    dock.set_checkpoint(checkpoints / "seg")
    assert run_and_wait(qtbot, dock).status == "completed"
    np.testing.assert_array_equal(mine.data, annotations)
    predicted = viewer.layers["sem grains (prediction)"]
    assert predicted.metadata["grainlab"]["prediction"] and predicted.data.max() >= 1
    # a second run updates the prediction layer, still not the user's
    assert run_and_wait(qtbot, dock).status == "completed"
    assert "sem grains (prediction) (prediction)" not in viewer.layers
    np.testing.assert_array_equal(mine.data, annotations)
    assert not notifications.messages("error")


def test_rgb_and_16_bit_images_and_all_images(qtbot, viewer, dock, checkpoints, micrograph, notifications):
    rgb = np.stack([micrograph, micrograph // 2, micrograph], axis=-1).astype(np.uint8)
    viewer.add_image(rgb, name="colour", rgb=True)
    viewer.add_image(micrograph.astype(np.uint16) * 64 + 1000, name="deep")
    dock.set_checkpoint(checkpoints / "seg")
    dock.all_check.setChecked(True)
    dock.adabn_check.setChecked(True)
    dock.histogram_check.setChecked(True)
    result = run_and_wait(qtbot, dock)
    assert result.status == "completed", result.error
    assert result.value == 2 and len(dock.last_results) == 2
    for name in ("colour", "deep"):
        assert viewer.layers[f"{name} grains"].data.shape == micrograph.shape
        assert viewer.layers[f"{name} grains"].features["equivalent_diameter"].notna().all()
    # again: the boundary maps of the first run are no micrographs to predict
    assert run_and_wait(qtbot, dock).value == 2
    assert not notifications.messages("error")


def test_an_image_stack_is_a_notification(qtbot, viewer, dock, checkpoints, micrograph, notifications):
    viewer.add_image(np.stack([micrograph] * 3), name="stack")
    dock.set_checkpoint(checkpoints / "seg")
    result = run_and_wait(qtbot, dock)
    assert result.status == "completed" and result.value == 0
    assert any("stack" in m for m in notifications.messages("error"))
    assert "stack grains" not in viewer.layers


def test_no_image_layer_and_no_model_are_notifications(viewer, dock, checkpoints, notifications, micrograph):
    assert dock.run() is None  # no model yet
    assert any("model" in m.lower() for m in notifications.messages("error"))
    dock.set_checkpoint(checkpoints / "seg")
    assert dock.run() is None  # no image layer
    assert any("No image layer" in m for m in notifications.messages("error"))
    assert dock.task is None


def test_corrupt_checkpoints_are_notifications(qtbot, viewer, dock, checkpoints, micrograph, notifications,
                                               tmp_path):
    import shutil

    viewer.add_image(micrograph, name="sem")
    bad_json = tmp_path / "bad_json"
    shutil.copytree(checkpoints / "seg", bad_json)
    (bad_json / "model.json").write_text("{not json")
    assert not dock.set_checkpoint(bad_json)
    assert "Not a usable model" in dock.model_info.text()
    assert any("unreadable metadata" in m for m in notifications.messages("error"))
    assert dock.run() is None

    bad_weights = tmp_path / "bad_weights"
    shutil.copytree(checkpoints / "seg", bad_weights)
    (bad_weights / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    assert not dock.set_checkpoint(bad_weights)  # the description is fine, the weights header is not
    assert any("corrupt weights" in m for m in notifications.messages("error"))
    assert "corrupt weights" in dock.model_info.text() and not dock.run_button.isEnabled()
    assert dock.run() is None and dock.task is None
    assert "sem grains" not in viewer.layers

    assert not dock.set_checkpoint(tmp_path / "nowhere")
    assert not dock.set_checkpoint(tmp_path)  # a folder without model.json


def _broken_copy(checkpoints, folder: Path, case: str) -> tuple[Path, str]:
    """A copy of the segmentation model broken as ``case``, and the words that must name the fault."""
    import shutil

    shutil.copytree(checkpoints / "seg", folder)
    if case == "model.json not JSON":
        (folder / "model.json").write_text('{"format": "napari-grainlab-model", "backbone": resnet18}')
        return folder, "unreadable metadata"
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder, "truncated"


@pytest.mark.parametrize("case", ["model.json not JSON", "truncated weights"])
def test_a_broken_model_folder_is_refused_when_browsed_to(qtbot, viewer, dock, checkpoints, micrograph, tmp_path,
                                                          notifications, monkeypatch, case):
    import threading

    from napari_grainlab.gui.predict import model as model_module

    viewer.add_image(micrograph, name="sem")
    broken, fault = _broken_copy(checkpoints, tmp_path / "broken", case)
    checked_on = []
    real_check = model_module.check_model

    def check_model(path):
        checked_on.append(threading.current_thread() is threading.main_thread())
        return real_check(path)

    monkeypatch.setattr(model_module, "check_model", check_model)
    dock.ask_checkpoint_folder = lambda: broken
    qtbot.mouseClick(dock.browse_button, _left())
    assert dock.checkpoint_edit.text() == str(broken)
    qtbot.waitUntil(lambda: not dock.model_panel.is_checking, timeout=WAIT_MS)
    assert checked_on == [False]  # checked in a worker thread, not on the GUI thread
    assert dock.checkpoint is None
    info = dock.model_info.text()
    assert info.startswith("Not a usable model:") and fault in info and str(broken) in info
    assert "Segmentation" not in info  # never described as a working model
    assert not dock.run_button.isEnabled() and not dock.folder_button.isEnabled()
    assert any(fault in m for m in notifications.messages("error"))
    assert dock.run() is None and dock.task is None
    # editing the path lifts the block (the typed path is checked when Predict runs)
    dock.checkpoint_edit.setFocus()
    qtbot.keyClick(dock.checkpoint_edit, "x")
    assert dock.run_button.isEnabled()


def test_a_model_broken_since_it_was_used_is_refused_from_the_recent_list(qtbot, viewer, dock, checkpoints,
                                                                            tmp_path, notifications):
    good, later = checkpoints / "seg", tmp_path / "later"
    _broken_copy(checkpoints, later, "model.json not JSON")
    (later / "model.json").write_bytes((good / "model.json").read_bytes())  # a good copy at first
    assert dock.set_checkpoint(good) and dock.set_checkpoint(later)
    weights = later / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # e.g. an interrupted copy over it

    def choose(path: Path) -> None:
        items = [dock.recent_combo.itemData(i) for i in range(dock.recent_combo.count())]
        dock.recent_combo.setCurrentIndex(items.index(str(path.resolve())))
        dock.recent_combo.activated.emit(dock.recent_combo.currentIndex())
        qtbot.waitUntil(lambda: not dock.model_panel.is_checking, timeout=WAIT_MS)

    choose(later)
    assert dock.checkpoint is None and "truncated" in dock.model_info.text()
    assert not dock.run_button.isEnabled()
    choose(good)
    assert dock.checkpoint == good.resolve() and dock.model_info.text().startswith("Segmentation")
    assert dock.run_button.isEnabled() and dock.folder_button.isEnabled()


def test_predict_right_after_choosing_checks_the_model_first(qtbot, viewer, dock, checkpoints, micrograph):
    viewer.add_image(micrograph, name="sem")
    dock.model_panel.choose(checkpoints / "seg")
    assert dock.model_panel.is_checking and dock.run_button.isEnabled()
    result = run_and_wait(qtbot, dock)  # checks the model at once instead of waiting for the worker
    assert result.status == "completed", result.error
    assert dock.checkpoint == checkpoints / "seg" and not dock.model_panel.is_checking


def _left():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


class _Payload:
    """Unpickling this creates the file ``path``: proof that a pickle ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_is_refused_and_never_unpickled(qtbot, viewer, dock, checkpoints, micrograph, notifications,
                                                  tmp_path):
    import shutil

    viewer.add_image(micrograph, name="sem")
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pth"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    assert not dock.set_checkpoint(evil)
    assert any("pickle" in m for m in notifications.messages("error"))
    # a pickle disguised as the weights of a model folder
    disguised = tmp_path / "disguised"
    shutil.copytree(checkpoints / "seg", disguised)
    (disguised / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    assert not dock.set_checkpoint(disguised)
    assert any("not a safetensors file" in m for m in notifications.messages("error"))
    assert dock.run() is None
    assert not marker.exists()
    assert "sem grains" not in viewer.layers


def test_histogram_match_needs_a_reference(viewer, dock, checkpoints):
    dock.set_checkpoint(checkpoints / "seg_noref")
    assert not dock.histogram_check.isEnabled() and not dock.options().histogram_match
    dock.set_checkpoint(checkpoints / "seg")
    assert dock.histogram_check.isEnabled()
    dock.histogram_check.setChecked(True)
    assert dock.options().histogram_match


def test_cancel_stops_the_run(qtbot, viewer, dock, checkpoints, micrograph):
    viewer.add_image(np.tile(micrograph, (4, 4)), name="big")
    dock.set_checkpoint(checkpoints / "seg")
    task = dock.run()
    assert dock.cancel_button.isEnabled()
    task.cancel()
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    assert task.result.status == "cancelled"
    assert "big grains" not in viewer.layers
    assert dock.run_button.isEnabled() and "Cancelled" in dock.status_label.text()


def test_classification_adds_class_and_confidence_layers(qtbot, viewer, dock, checkpoints, micrograph,
                                                         notifications):
    viewer.add_image(micrograph, name="sem")
    dock.set_checkpoint(checkpoints / "cls")
    assert "Classification" in dock.model_info.text() and "pearlite" in dock.model_info.text()
    assert dock.tile_spin.value() == 64  # the training patch size
    result = run_and_wait(qtbot, dock)
    assert result.status == "completed", result.error
    classes, confidence = viewer.layers["sem classes"], viewer.layers["sem confidence"]
    assert set(np.unique(classes.data)) <= {1, 2}
    assert list(classes.features["class"]) == ["ferrite", "pearlite"]
    assert list(classes.features["index"]) == [1, 2]
    assert 0.5 <= confidence.data.min() and confidence.data.max() <= 1.0
    assert "ferrite" in dock.status_label.text() or "pearlite" in dock.status_label.text()
    assert not notifications.messages("error")


def test_recent_checkpoints_are_remembered(qtbot, viewer, checkpoints, config_dir):
    from napari_grainlab.gui.predict import PredictWidget

    first = PredictWidget(viewer)
    first.set_checkpoint(checkpoints / "cls")
    first.set_checkpoint(checkpoints / "seg")
    assert (config_dir / "settings.json").is_file()
    second = PredictWidget(viewer)
    items = [second.recent_combo.itemData(i) for i in range(second.recent_combo.count())]
    assert items == [str((checkpoints / "seg").resolve()), str((checkpoints / "cls").resolve())]
    second._on_recent(1)
    qtbot.waitUntil(lambda: not second.model_panel.is_checking, timeout=WAIT_MS)
    assert second.checkpoint == (checkpoints / "cls").resolve()


def test_pixel_size_from_the_tiff_and_typed_in(qtbot, viewer, dock, checkpoints, micrograph, tmp_path):
    from napari_grainlab.core._io import write_tiff

    path = tmp_path / "calibrated.tif"
    write_tiff(path, micrograph, pixel_size_um=0.25)
    viewer.open(str(path), plugin="napari")
    assert dock.pixel_spin.value() == pytest.approx(0.25)
    assert "TIFF" in dock.pixel_hint.text()
    dock.set_pixel_size(0.5)
    assert "typed" in dock.pixel_hint.text()
    dock.set_checkpoint(checkpoints / "seg")
    assert run_and_wait(qtbot, dock).status == "completed"
    grains = viewer.layers["calibrated grains"]
    assert grains.metadata["grainlab"]["pixel_size_um"] == 0.5
    done = dock.last_results[0]
    assert done.summary["unit"] == "um" and np.isfinite(done.summary["astm_g"])


# ------------------------------------------------------------------------------ Predict folder…
def _folder(root: Path, micrograph, n: int, side: int = 96) -> Path:
    import tifffile

    root.mkdir()
    for i in range(n):
        tifffile.imwrite(root / f"img{i}.tif", np.roll(np.tile(micrograph, (side // 96, side // 96)), 7 * i, axis=0))
    return root


def test_predict_folder_runs_the_batch_on_dask_workers_and_resumes(qtbot, viewer, dock, checkpoints, micrograph,
                                                                   notifications, tmp_path, monkeypatch):
    import tifffile

    src = _folder(tmp_path / "in", micrograph, 3)
    (src / "broken.tif").write_bytes(np.random.default_rng(0).bytes(400))
    out = tmp_path / "out"
    asked = []
    monkeypatch.setattr(dock, "ask_input_folder", lambda: src)
    monkeypatch.setattr(dock, "ask_output_folder", lambda start: asked.append(start) or out)
    dock.set_checkpoint(checkpoints / "seg")
    n_layers = len(viewer.layers)
    dock.folder_button.click()
    task = dock.task
    assert asked == [src] and task is not None and task.is_running  # the batch runs in a worker thread
    assert not dock.folder_button.isEnabled() and not dock.run_button.isEnabled()
    assert dock.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: task.result is not None, timeout=60_000)
    assert task.result.status == "completed", task.result.error
    end = dock.last_batch
    assert (end.total, end.predicted, end.failed, end.skipped) == (4, 3, 1, 0)
    for i in range(3):
        assert tifffile.imread(out / f"img{i}_labels.tif").shape == micrograph.shape
    assert len((out / "summary.csv").read_text().splitlines()) == 5
    assert len(viewer.layers) == n_layers  # results go to files, not layers
    assert any("broken.tif" in m for m in notifications.messages("error"))
    assert any("3 of 4 images done, 1 failed" in m for m in notifications.messages("info"))
    assert (dock.progress_bar.value(), dock.progress_bar.maximum()) == (4, 4)
    assert "summary.csv" in dock.status_label.text() and dock.folder_button.isEnabled()

    # again: the three done images are skipped, only the broken one is tried again
    task = dock.predict_folder(src, out)
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    assert (dock.last_batch.skipped, dock.last_batch.failed) == (3, 1)
    assert "3 already done" in dock.status_label.text()


def test_predict_folder_cancel_and_dialogs_closed(qtbot, viewer, dock, checkpoints, micrograph, notifications,
                                                  tmp_path, monkeypatch):
    from napari_grainlab.gui.jobs import predict

    monkeypatch.setattr(predict, "FOLDER_WORKERS", 1)  # in the worker thread itself, no cluster
    src = _folder(tmp_path / "in", micrograph, 3, side=384)
    dock.set_checkpoint(checkpoints / "seg")
    monkeypatch.setattr(dock, "ask_input_folder", lambda: None)  # the dialog was closed
    assert dock.predict_folder() is None and dock.task is None
    assert dock.predict_folder(tmp_path / "nowhere", tmp_path / "o") is None
    assert any("Not a folder" in m for m in notifications.messages("error"))

    task = dock.predict_folder(src, tmp_path / "out")
    task.cancel()
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    assert task.result.status == "cancelled"
    assert dock.last_batch is not None and dock.last_batch.cancelled and dock.last_batch.predicted < 3
    assert "Cancelled" in dock.status_label.text() and dock.folder_button.isEnabled()
    assert any("cancelled" in m for m in notifications.messages("info"))


# ------------------------------------------------------------------------------ options from the schema
def _shown_fields():
    from napari_grainlab.core._schema import option_fields
    from napari_grainlab.core.inference.options import InferenceOptions

    return [f for f in option_fields(InferenceOptions) if f.metadata.get("widget") != "hidden"]


def _other_value(f):
    """A valid value of option ``f`` other than its default (None for an optional one that has a value)."""
    from napari_grainlab.core._schema import field_kind
    from napari_grainlab.core.inference.options import InferenceOptions

    kind, optional, _ = field_kind(InferenceOptions, f.name)
    meta, default = f.metadata, f.default
    if kind is bool:
        return not default
    if kind is str:
        return next(s for s in meta["suggest"] if s != default)
    if optional and default is not None:
        return None
    step = meta.get("step") or 1
    if default is None:
        return kind(meta["min"] + step)
    value = default + step
    return round(value, 6) if kind is float else value


def _type_into(editor, value):
    """Set an option's editor like a user would: its check box, spin box, combo box or on/off toggle."""
    from qtpy.QtWidgets import QCheckBox, QComboBox

    w = editor.editor
    if editor.toggle is not None:
        editor.toggle.setChecked(value is not None)
        if value is None:
            return
    if isinstance(w, QCheckBox):
        w.setChecked(value)
    elif isinstance(w, QComboBox):
        w.setCurrentText(value)
    elif value is None:
        w.setValue(w.minimum())  # the "auto" at the minimum
    else:
        w.setValue(value)


def test_every_option_has_an_editor_from_its_metadata(viewer):
    from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

    from napari_grainlab.core._schema import field_kind, option_fields
    from napari_grainlab.core.inference.options import InferenceOptions
    from napari_grainlab.gui.predict import PredictWidget

    dock = PredictWidget(viewer)
    editors = dock.options_panel.editors
    shown = _shown_fields()
    assert set(editors) == {f.name for f in shown}
    hidden = [f.name for f in option_fields(InferenceOptions) if f.metadata.get("widget") == "hidden"]
    assert hidden and not set(hidden) & set(editors)
    for f in shown:
        meta, w = f.metadata, editors[f.name].editor
        kind, optional, _ = field_kind(InferenceOptions, f.name)
        assert (meta.get("help") or "")[:20] in w.toolTip(), f.name
        if kind is bool:
            assert isinstance(w, QCheckBox), f.name
            continue
        if kind is str:
            assert isinstance(w, QComboBox) and w.isEditable(), f.name
            assert w.currentText() == f.default
            continue
        assert isinstance(w, QSpinBox if kind is int else QDoubleSpinBox), f.name
        assert w.maximum() == pytest.approx(meta["max"]), f.name
        assert w.suffix() == (meta.get("suffix") or ""), f.name
        if meta.get("step"):
            assert w.singleStep() == pytest.approx(meta["step"]), f.name
        if optional and meta.get("special"):  # None is the minimum, shown as the special text
            assert w.specialValueText() == meta["special"], f.name
            assert w.minimum() < meta["min"] <= w.minimum() + w.singleStep(), f.name
        else:
            assert w.minimum() == pytest.approx(meta["min"]), f.name
    # the editors the dock (and its scripts) name are the generated ones
    assert dock.tile_spin is editors["tile"].editor and dock.device_combo is editors["device"].editor
    # the watershed settings sit in a collapsed section of their own
    assert "marker_threshold" in dock.options_panel.forms["Grains"].editors
    assert not dock.options_panel.sections["Grains"].isExpanded()


def test_the_editors_round_trip_through_options(viewer):
    from napari_grainlab.core.inference.options import InferenceOptions
    from napari_grainlab.gui.predict import PredictWidget

    dock = PredictWidget(viewer)
    assert dock.options() == InferenceOptions(device=dock.device_combo.currentText())
    shown = _shown_fields()
    changed = {f.name: _other_value(f) for f in shown}
    for name, value in changed.items():
        _type_into(dock.options_panel.editors[name], value)
    got = dock.options()
    for name, value in changed.items():
        assert getattr(got, name) == pytest.approx(value) if isinstance(value, float) else \
            getattr(got, name) == value, name
    # and back: options shown by set_options come out unchanged, hidden ones included
    wanted = InferenceOptions(amp=True, **{f.name: f.default for f in shown})
    dock.set_options(wanted)
    assert dock.options() == wanted
    dock.set_options(got)
    assert dock.options() == got.replace(amp=False)


def test_options_a_model_cannot_use_give_their_defaults(viewer):
    from napari_grainlab.gui.predict import PredictWidget

    dock = PredictWidget(viewer)
    panel = dock.options_panel
    grains = panel.editors["marker_threshold"]
    grains.editor.setValue(0.6)
    dock.histogram_check.setChecked(True)
    panel.apply_model({"task": "classify", "training": {"patch_size": 128}})  # a classifier separates no grains
    assert not grains.editor.isEnabled() and grains.editor.value() == pytest.approx(0.25)
    options = dock.options()
    assert options.marker_threshold == 0.25 and not options.histogram_match and options.tile == 128
    panel.apply_model({"task": "segment", "histogram_reference": [0.0, 1.0]})
    assert grains.editor.isEnabled() and dock.options().marker_threshold == pytest.approx(0.6)
    assert dock.options().histogram_match  # the value set before comes back
