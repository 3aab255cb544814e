"""The Train dock (real napari viewers, pytest-qt; tiny networks on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate
from napari_grainlab.core.training import (
    Checkpoint,
    CrossValidated,
    Epoch,
    Finished,
    FoldStarted,
    Started,
    Step,
    TrainConfig,
    TrainWarning,
)
from napari_grainlab.gui._napari_compat import dock_widget_names

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 60_000


def micrograph(size: int = 96, seed: int = 0):
    s = generate(SynthParams(height=size, width=size, tessellation=TessellationParams(grains=20)), seed=seed)
    return s.image, s.labels


def tiny_config(out: Path, **changes) -> TrainConfig:
    opts = dict(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=2, batch_size=2,
                patch_size=64, synthetic="none", augment=(), device="cpu", out=str(out), val_fraction=0.5)
    opts.update(changes)
    return TrainConfig(**opts)


@pytest.fixture
def dock(viewer, qtbot, tmp_path):
    from napari_grainlab.gui.train import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    widget.set_config(tiny_config(tmp_path / "run"))
    widget.ask_overwrite = lambda folder: True
    return widget


def add_pair(viewer, name: str, seed: int = 0, size: int = 96):
    image, labels = micrograph(size, seed)
    viewer.add_image(image, name=name)
    viewer.add_labels(labels, name=f"{name} grains")


def run_to_end(qtbot, dock):
    """Start training and return (events, TaskResult)."""
    events = []
    dock.event_received.connect(events.append)
    with qtbot.waitSignal(dock.training_finished, timeout=WAIT_MS) as blocker:
        task = dock.start()
        assert task is not None, "training did not start"
    return events, blocker.args[0]


# ---------------------------------------------------------------------------------- training
def test_trains_two_steps_from_layers_then_previews(viewer, dock, qtbot, tmp_path, notifications):
    add_pair(viewer, "micrograph A", seed=1)
    add_pair(viewer, "micrograph B", seed=2)
    assert [p.text() for p in dock.pairs] == ["micrograph A  ←  micrograph A grains",
                                              "micrograph B  ←  micrograph B grains"]
    # frozen + random weights: fit() warns, and the dock turns that into a napari warning
    dock.set_config(strategy="frozen")
    events = []
    dock.event_received.connect(events.append)
    with qtbot.waitSignal(dock.event_received, timeout=WAIT_MS,
                          check_params_cb=lambda ev: isinstance(ev, Started)):
        dock.start()
    assert dock.is_running and not dock.start_button.isEnabled() and dock.stop_button.isEnabled()
    assert not dock.settings.isEnabled()
    with qtbot.waitSignal(dock.training_finished, timeout=WAIT_MS) as blocker:
        pass
    result = blocker.args[0]
    assert result.status == "completed", result.error

    kinds = [type(e) for e in events]
    assert kinds.index(Started) < kinds.index(Step) < kinds.index(Epoch) < kinds.index(Finished)
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.step for s in steps] == [1, 2] and steps[-1].total_steps == 2
    started = next(e for e in events if isinstance(e, Started))
    assert started.device == "cpu" and started.n_train == 1 and started.n_val == 1  # group split of 2 layers
    assert any(isinstance(e, TrainWarning) for e in events)
    assert any("frozen layers will stay random" in m for m in notifications.messages("warning"))
    finished = next(e for e in events if isinstance(e, Finished))
    assert finished.reason == "completed" and finished.best_path
    assert (Path(finished.best_path) / "model.safetensors").is_file()
    assert Path(dock.model_path) == tmp_path / "run" / "best"

    # the dock shows what happened
    assert dock.progress_bar.value() == 2 and dock.progress_bar.maximum() == 2
    assert dock.device_label.text().startswith("cpu")
    assert dock.plot.steps == [1, 2] and len(dock.plot.epoch_x) == 1 and dock.plot.redraws >= 1
    assert "best boundary F1" in dock.best_label.text()
    assert any("Training finished" in m for m in notifications.messages("info"))
    assert dock.start_button.isEnabled() and not dock.stop_button.isEnabled() and dock.settings.isEnabled()

    # preview on the current image: the active layer is "micrograph B grains", so micrograph B
    assert dock.preview_button.isEnabled()
    assert "micrograph B" in dock.preview_button.text()
    with qtbot.waitSignal(dock.preview_finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dock.preview_button, _left())
    assert blocker.args[0].status == "completed", blocker.args[0].error
    # the annotations keep their name and data; the prediction gets its own layers
    grains = viewer.layers["micrograph B grains (prediction)"]
    boundary = viewer.layers["micrograph B boundary"]
    assert grains.data.shape == (96, 96) and grains.data.dtype == np.uint32
    assert boundary.data.dtype == np.float32 and 0 <= boundary.data.min() and boundary.data.max() <= 1
    assert grains.metadata["grainlab"]["prediction"]
    # predictions are listed for the next run, but not selected until the user checks them
    pred = next(p for p in dock.pairs if p.labels.name == "micrograph B grains (prediction)")
    assert pred.image.name == "micrograph B" and pred.prediction
    assert pred not in dock.selected_pairs() and len(dock.selected_pairs()) == 2


def _left():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_stop_ends_gracefully_and_keeps_the_best_checkpoint(viewer, dock, qtbot, tmp_path):
    add_pair(viewer, "micrograph", seed=3, size=128)
    dock.set_config(epochs=3, steps_per_epoch=500)
    events = []
    dock.event_received.connect(events.append)
    with qtbot.waitSignal(dock.event_received, timeout=WAIT_MS, check_params_cb=lambda ev: isinstance(ev, Step)):
        dock.start()
    with qtbot.waitSignal(dock.training_finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(dock.stop_button, _left())
        assert dock.stop_button.text() == "Stopping…" and not dock.stop_button.isEnabled()
    result = blocker.args[0]
    assert result.status == "cancelled"
    finished = next(e for e in events if isinstance(e, Finished))
    assert finished.reason == "stopped" and finished.epochs_run == 1
    assert max(e.step for e in events if isinstance(e, Step)) < 500
    run = tmp_path / "run"
    assert (run / "last" / "model.json").is_file() and (run / "best" / "model.json").is_file()
    assert any(isinstance(e, Checkpoint) and e.kind == "best" for e in events)
    assert "Stopped" in dock.status_label.text()
    assert dock.start_button.isEnabled() and dock.stop_button.text() == "Stop"
    assert dock.preview_button.isEnabled()


def _napari_dock_of(widget):
    """The napari dock widget holding ``widget`` (its close button calls ``destroyOnClose``)."""
    dock = widget.parent()
    while dock is not None and not hasattr(dock, "destroyOnClose"):
        dock = dock.parent()
    assert dock is not None, "the widget is not in a napari dock"
    return dock


def test_closing_the_dock_mid_run_asks_then_stops_training_cleanly(viewer, dock, qtbot, tmp_path, notifications):
    from napari_grainlab.gui.train import dock as dock_module

    add_pair(viewer, "micrograph", seed=3, size=128)
    dock.set_config(epochs=3, steps_per_epoch=500)
    answers, asked = [False, True], []

    def ask_stop_to_close() -> bool:
        asked.append(dock.is_running)
        return answers[len(asked) - 1]

    dock.ask_stop_to_close = ask_stop_to_close
    events = []
    dock.event_received.connect(events.append)
    with qtbot.waitSignal(dock.event_received, timeout=WAIT_MS, check_params_cb=lambda ev: isinstance(ev, Step)):
        task = dock.start()
    napari_dock = _napari_dock_of(dock)
    napari_dock.destroyOnClose()  # napari's close button: "Keep training"
    assert asked == [True]
    assert "Train" in dock_widget_names(viewer) and dock.is_running and not task.stop_flag.is_set()
    with qtbot.waitSignal(dock.training_finished, timeout=WAIT_MS) as blocker:
        napari_dock.destroyOnClose()  # "Stop training and close"
        assert asked == [True, True]
        assert "Train" not in dock_widget_names(viewer) and dock.parent() is None
        assert task.stop_flag.is_set()
    result = blocker.args[0]
    assert result.status == "cancelled" and not task.is_running
    finished = next(e for e in events if isinstance(e, Finished))
    assert finished.reason == "stopped" and max(e.step for e in events if isinstance(e, Step)) < 500
    run = tmp_path / "run"
    assert (run / "last" / "model.json").is_file() and (run / "last" / "model.safetensors").is_file()
    assert (run / "best" / "model.json").is_file()
    assert any(m.startswith("Training stopped") and str(run) in m for m in notifications.messages("info"))
    assert dock not in dock_module._CLOSED_WHILE_RUNNING  # let go once the run ended


def test_closing_an_idle_dock_does_not_ask(viewer, dock):
    dock.ask_stop_to_close = lambda: pytest.fail("asked although nothing runs")
    _napari_dock_of(dock).destroyOnClose()
    assert "Train" not in dock_widget_names(viewer)


def test_a_dock_removed_by_a_script_mid_run_stops_its_run(viewer, dock, qtbot, tmp_path):
    add_pair(viewer, "micrograph", seed=3, size=128)
    dock.set_config(epochs=3, steps_per_epoch=500)
    with qtbot.waitSignal(dock.event_received, timeout=WAIT_MS, check_params_cb=lambda ev: isinstance(ev, Step)):
        task = dock.start()
    with qtbot.waitSignal(dock.training_finished, timeout=WAIT_MS) as blocker:
        viewer.window.remove_dock_widget(dock)
        assert task.stop_flag.is_set()
    assert blocker.args[0].status == "cancelled"
    assert (tmp_path / "run" / "last" / "model.json").is_file()


@pytest.mark.parametrize("kind", ["rgb", "uint16"])
def test_rgb_and_16_bit_images_train(viewer, dock, qtbot, notifications, kind, tmp_path):
    image, labels = micrograph(96, seed=4)
    if kind == "rgb":
        data = np.stack([image, image // 2, image], axis=-1)
        viewer.add_image(data, name="colour", rgb=True)
        viewer.add_labels(labels, name="colour grains")
    else:
        viewer.add_image(image.astype(np.uint16) * 16 + 300, name="deep")
        viewer.add_labels(labels, name="deep grains")
    assert len(dock.selected_pairs()) == 1
    events, result = run_to_end(qtbot, dock)
    assert result.status == "completed", result.error
    assert next(e for e in events if isinstance(e, Started)).n_train == 1
    if kind == "rgb":  # colour trains a colour model (input channels: auto)
        assert not any("luminance" in m for m in notifications.messages("info"))
        meta = json.loads(next((tmp_path / "run").glob("*/model.json")).read_text())
        assert meta["input"]["channels"] == 3
    assert any("Training finished" in m for m in notifications.messages("info"))
    assert not notifications.messages("error")


def test_the_builtin_model_is_a_weights_choice_and_fine_tunes_on_colour(viewer, qtbot, notifications, tmp_path,
                                                                         monkeypatch):
    import hashlib
    import shutil

    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, registry, save_checkpoint
    from napari_grainlab.gui.train import TrainWidget

    torch.manual_seed(0)
    net = build_model(ModelSpec(backbone="resnet18", in_chans=3)).eval()
    pkg = tmp_path / "pkg"
    save_checkpoint(pkg / "generalist", net, {"grain_diameter": 20.0})
    weights = pkg / "generalist" / "model.safetensors"
    entry = {"file": "generalist/model.safetensors", "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
             "channels": 3, "description": "test generalist"}
    (pkg / "registry.json").write_text(json.dumps({"format": "napari-grainlab-registry", "format_version": 1,
                                                   "models": {"generalist": entry}}))
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(pkg / "registry.json"))
    monkeypatch.chdir(tmp_path)
    registry._verified.clear()

    dock = TrainWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Train")
    dock.ask_overwrite = lambda folder: True
    combo = dock.weights_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert texts[:2] == ["ImageNet", "generalist (built-in model)"], texts
    assert "fine-tune the built-in generalist" in combo.itemData(1, 3)  # Qt.ToolTipRole
    dock.set_config(tiny_config(tmp_path / "run", weights="generalist", strategy="finetune"))
    assert combo.currentData() == "generalist" and not dock.options.weights_row.isVisible()
    assert dock.config().weights == "generalist"
    image, labels = micrograph(96, seed=4)
    viewer.add_image(np.stack([image, image // 2, 255 - image], axis=-1), name="tint", rgb=True)
    viewer.add_labels(labels, name="tint grains")
    events, result = run_to_end(qtbot, dock)
    assert result.status == "completed", result.error
    meta = json.loads(next((tmp_path / "run").glob("*/model.json")).read_text())
    assert meta["input"]["channels"] == 3 and meta["training"]["weights"] == "generalist"
    assert not notifications.messages("error")
    shutil.rmtree(tmp_path / "run")


# -------------------------------------------------------------------------------- bad inputs
def _setup_bad(viewer, dock, case):
    image, labels = micrograph(96, seed=5)
    if case == "no image layer":
        viewer.add_labels(labels, name="lonely grains")
        return "no image layer"
    if case == "empty viewer":
        return "no image layer and no labels layer"
    if case == "labels of another shape":
        viewer.add_image(image, name="micrograph")
        viewer.add_labels(labels[:80, :90], name="micrograph grains")
        return "no image of its shape (80 × 90 px)"
    if case == "unknown backbone":
        viewer.add_image(image, name="micrograph")
        viewer.add_labels(labels, name="micrograph grains")
        dock.set_config(backbone="resnet_that_does_not_exist")
        return "unknown backbone 'resnet_that_does_not_exist'"
    if case == "empty labels":
        viewer.add_image(image, name="micrograph")
        viewer.add_labels(np.zeros_like(labels), name="micrograph grains")
        return "no annotated pixel"
    if case == "missing weights file":
        viewer.add_image(image, name="micrograph")
        viewer.add_labels(labels, name="micrograph grains")
        dock.set_config(weights=str(Path("/nonexistent/weights.safetensors")))
        return "do not exist"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["no image layer", "empty viewer", "labels of another shape", "unknown backbone",
                                  "empty labels", "missing weights file"])
def test_bad_inputs_become_notifications(viewer, dock, qtbot, notifications, case):
    expected = _setup_bad(viewer, dock, case)
    assert dock.start() is None
    errors = notifications.messages("error")
    assert len(errors) == 1 and expected in errors[0], errors
    assert errors[0].startswith("Cannot train: ")
    assert dock.task is None and dock.start_button.isEnabled() and dock.settings.isEnabled()


def test_the_no_labels_hint_names_the_layer_the_annotate_dock_makes(viewer, dock, notifications):
    from napari_grainlab.gui._layers import role_name

    image, labels = micrograph(96, seed=5)
    viewer.add_image(image, name="micrograph")
    assert role_name("<image>", "annotation") in dock.data.pairs_hint.text()
    assert dock.start() is None
    expected = role_name("micrograph", "annotation")  # what the Annotate dock names its layer
    (error,) = notifications.messages("error")
    assert f"'{expected}'" in error and "Annotate dock" in error and "grains'" not in error
    assert expected in dock.status_label.text()
    # following the hint gives training data for that image
    viewer.add_labels(labels, name=expected)
    assert [(p.image.name, p.labels.name) for p in dock.selected_pairs()] == [("micrograph", expected)]
    # with several images, the hint names the pattern
    viewer.layers.remove(expected)
    viewer.add_image(image, name="another")
    assert dock.start() is None
    assert f"'{role_name('<image>', 'annotation')}'" in notifications.messages("error")[-1]


def test_data_errors_in_the_worker_are_notified(viewer, dock, qtbot, tmp_path, notifications):
    import tifffile

    folder = tmp_path / "broken"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    tifffile.imwrite(folder / "images" / "a.tif", np.zeros((64, 64), np.uint8))
    tifffile.imwrite(folder / "labels" / "a.tif", np.ones((32, 32), np.uint16))
    assert dock.add_dataset_folder(folder)
    assert dock.dataset_folders == [str(folder.resolve())]
    assert not dock.add_dataset_folder(tmp_path)  # not a dataset: refused with a message
    assert any("not a dataset folder" in m for m in notifications.messages("error"))
    _events, result = run_to_end(qtbot, dock)
    assert result.status == "failed"
    assert any(m.startswith("Training failed:") and "does not match" in m for m in notifications.messages("error"))
    assert "Training failed" in dock.status_label.text()
    assert dock.start_button.isEnabled() and not dock.preview_button.isEnabled()


# -------------------------------------------------------------------- folders and K-fold
def test_kfold_on_a_dataset_folder(viewer, dock, qtbot, tmp_path):
    import tifffile

    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(2):
        image, labels = micrograph(96, seed=10 + i)
        tifffile.imwrite(folder / "images" / f"m{i}.tif", image)
        tifffile.imwrite(folder / "labels" / f"m{i}.tif", labels.astype(np.uint16))
    assert dock.add_dataset_folder(folder)
    dock.set_config(kfold=2, steps_per_epoch=1)
    assert dock.kfold == 2
    events, result = run_to_end(qtbot, dock)
    assert result.status == "completed", result.error
    assert [e.fold for e in events if isinstance(e, FoldStarted)] == [0, 1]
    summary = next(e for e in events if isinstance(e, CrossValidated))
    assert summary.k == 2 and "boundary_f1" in summary.mean
    assert "2-fold cross-validation" in dock.best_label.text()
    assert dock.progress_bar.value() == dock.progress_bar.maximum() == 2  # one step per fold
    assert (tmp_path / "run" / "fold2" / "best" / "model.json").is_file()


# -------------------------------------------------------------------------------- the form
def test_pairs_follow_the_layers(viewer, dock):
    image, labels = micrograph(96, seed=6)
    viewer.add_image(image, name="a")
    viewer.add_labels(labels, name="a grains")
    viewer.add_image(image, name="b")
    viewer.add_labels(labels, name="hand labels")
    viewer.add_labels(labels[:50], name="crop")
    pairs = {p.labels.name: p for p in dock.pairs}
    assert pairs["a grains"].image.name == "a"  # by name, although "b" is on top
    assert pairs["hand labels"].image.name == "b"  # by shape: the topmost image
    assert not pairs["crop"].usable and "no image of its shape" in pairs["crop"].problem
    dock.set_pair_checked("a grains", False)
    assert [p.labels.name for p in dock.selected_pairs()] == ["hand labels"]
    viewer.layers["b"].name = "b renamed"  # renames refresh the list; the choice is kept
    assert {p.labels.name: p.image.name for p in dock.pairs if p.usable} == {"a grains": "a",
                                                                             "hand labels": "b renamed"}
    assert [p.labels.name for p in dock.selected_pairs()] == ["hand labels"]
    viewer.layers.remove("a")
    assert "no image of its shape" not in {p.problem for p in dock.pairs if p.labels.name == "a grains"}
    assert {p.labels.name: p.image.name for p in dock.pairs if p.usable}["a grains"] == "b renamed"


def test_form_round_trips_the_config_and_explains_strategies(dock, tmp_path):
    from napari_grainlab.gui.train import STRATEGY_TIPS

    cfg = TrainConfig(backbone="convnext_tiny", weights="imagenet", strategy="gradual", unfreeze_every=3,
                      epochs=12, batch_size=4, patch_size=128, lr=3e-4, patience=5, val_fraction=0.3,
                      augment=("geometric", "noise"), oriented_growth=True, synthetic="sem-twins",
                      synthetic_ratio=0.4, device="cpu", amp=False, seed=7, steps_per_epoch=20, out=str(tmp_path))
    dock.set_config(cfg)
    back = dock.config()
    for name in ("backbone", "weights", "strategy", "unfreeze_every", "epochs", "batch_size", "patch_size",
                 "patience", "augment", "oriented_growth", "synthetic", "device", "amp", "seed", "steps_per_epoch"):
        assert getattr(back, name) == getattr(cfg, name), name
    assert back.lr == pytest.approx(3e-4) and back.val_fraction == pytest.approx(0.3)
    assert back.synthetic_ratio == pytest.approx(0.4) and back.out == str(tmp_path)
    # options that do not apply to the strategy are disabled
    assert dock.unfreeze_spin.isEnabled() and not dock.stages_spin.isEnabled()
    # one sentence per strategy, as item tooltips
    from qtpy.QtCore import Qt

    for i in range(dock.strategy_combo.count()):
        tip = dock.strategy_combo.itemData(i, Qt.ItemDataRole.ToolTipRole)
        assert tip == STRATEGY_TIPS[dock.strategy_combo.itemData(i)] and tip.count(".") == 1
    # synthetic-only pre-training ignores the layers and trains on synthetic data alone
    dock.set_config(synthetic_only=True, synthetic="none")
    assert dock.synthetic_combo.currentData() == "randomized"
    assert dock.config().synthetic_ratio == 1.0 and not dock.pair_list.isEnabled()
    # the learning-rate box shows short numbers and steps by factors of two
    dock.lr_spin.setValue(1e-3)
    assert dock.lr_spin.text() == "0.001"
    dock.lr_spin.stepBy(-1)
    assert dock.lr_spin.value() == pytest.approx(5e-4)
