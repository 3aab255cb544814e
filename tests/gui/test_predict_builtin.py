"""The Predict dock with the built-in model: preselected on a fresh install, predicts grey and colour layers,
reports the grain scale; not installed -> one line and Predict disabled (a temporary registry, tiny models)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 30_000
#: the training grain scale the fake generalist records (px)
MODEL_DIAMETER = 16.0


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny untrained 3-channel segmentation model that records a training scale, and a grey one that records
    none (an older checkpoint)."""
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("builtin")
    torch.manual_seed(0)
    colour = build_model(ModelSpec(backbone="resnet18", decoder_channels=(8, 8, 8, 8, 8), in_chans=3)).eval()
    save_checkpoint(root / "colour", colour, {"grain_diameter": MODEL_DIAMETER, "metrics": {"boundary_f1": 0.9}})
    grey = build_model(ModelSpec(backbone="resnet18", decoder_channels=(8, 8, 8, 8, 8))).eval()
    save_checkpoint(root / "grey", grey)
    return root


def make_registry(tmp_path, monkeypatch, source, *, install: bool = True):
    """A registry whose ``generalist`` is ``source`` (bundled next to the registry file; left out when not
    ``install``)."""
    from napari_grainlab.core.models import registry

    pkg = tmp_path / "pkg"
    (pkg / "generalist").mkdir(parents=True)
    weights = source / "model.safetensors"
    if install:
        shutil.copy(weights, pkg / "generalist" / "model.safetensors")
        shutil.copy(source / "model.json", pkg / "generalist" / "model.json")
    entry = {"file": "generalist/model.safetensors", "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
             "channels": 3, "grain_diameter": MODEL_DIAMETER, "description": "test generalist"}
    (pkg / "registry.json").write_text(json.dumps({"format": "napari-grainlab-registry", "format_version": 1,
                                                   "models": {"generalist": entry}}))
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(pkg / "registry.json"))
    monkeypatch.setenv("GRAINLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAINLAB_CONFIG_DIR", str(tmp_path / "config"))  # no model chosen before
    monkeypatch.chdir(tmp_path)
    registry._verified.clear()
    return pkg


@pytest.fixture
def synthetic():
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    return generate(SynthParams(height=128, width=128, tessellation=TessellationParams(grains=24)), seed=5)


def colour_of(sample) -> np.ndarray:
    """An RGB uint8 micrograph of the sample's grains, each grain its own colour, no boundary lines."""
    rng = np.random.default_rng(1)
    palette = rng.integers(40, 230, size=(int(sample.labels.max()) + 1, 3)).astype(np.uint8)
    return palette[sample.labels]


def open_dock(qtbot, viewer):
    from napari_grainlab.gui.predict import PredictWidget

    dock = PredictWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Predict")
    qtbot.waitUntil(lambda: not dock.model_panel.is_checking, timeout=WAIT_MS)
    dock.tile_spin.setValue(128)
    dock.overlap_spin.setValue(16)
    dock.device_combo.setCurrentText("cpu")
    return dock


def run_and_wait(qtbot, dock):
    task = dock.run()
    assert task is not None
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    assert task.result.status == "completed", task.result.error
    return task.result


@pytest.fixture
def seen_images(monkeypatch):
    """The shapes of the images the dock's job hands to the core's prediction."""
    from napari_grainlab.core import inference

    shapes = []
    real = inference.iter_predict

    def spy(model, meta, image, *args, **kwargs):
        shapes.append(np.shape(image))
        return real(model, meta, image, *args, **kwargs)

    monkeypatch.setattr(inference, "iter_predict", spy)
    return shapes


def test_a_fresh_dock_predicts_grey_and_colour_with_the_builtin_model(qtbot, viewer, tiny_models, tmp_path,
                                                                       monkeypatch, synthetic, seen_images,
                                                                       notifications):
    make_registry(tmp_path, monkeypatch, tiny_models / "colour")
    dock = open_dock(qtbot, viewer)
    # chosen without the user: the generalist, first in the model list, checked
    assert dock.checkpoint == "generalist" and dock.model_panel.is_builtin
    assert dock.recent_combo.itemText(0) == "generalist (built-in)" and dock.recent_combo.itemData(0) == "generalist"
    assert dock.model_info.text().startswith("generalist (built-in): Segmentation")
    assert "colour" in dock.model_info.text() and f"⌀ {MODEL_DIAMETER:.0f} px" in dock.model_info.text()
    assert dock.checkpoint_edit.text() == "generalist"
    assert dock.run_button.isEnabled()
    diameter = dock.options_panel.editors["diameter"]
    assert diameter.editor.isEnabled() and diameter.editor.text() == "auto"
    assert dock.options().diameter is None

    grey = viewer.add_image(synthetic.image, name="sem")
    rgb = viewer.add_image(colour_of(synthetic), name="tint", rgb=True)
    for layer, shape in ((grey, synthetic.image.shape), (rgb, synthetic.image.shape + (3,))):
        dock.set_image_layer(layer)
        run_and_wait(qtbot, dock)
        assert seen_images[-1] == shape  # colour reaches the core as colour
        grains = viewer.layers[f"{layer.name} grains"]
        assert grains.data.shape == synthetic.image.shape and grains.data.max() >= 1
        done = dock.last_results[-1]
        scaling = done.result.scaling
        assert scaling.source == "estimated" and scaling.diameter > 0
        assert scaling.factor == pytest.approx(min(max(MODEL_DIAMETER / scaling.diameter, 0.25), 4.0), rel=0.06) \
            or scaling.note
        status = dock.status_label.text()
        assert "grain diameter ≈" in status and "(estimated)" in status and "\n" not in status.split("\n", 1)[-1]
        meta = grains.metadata["grainlab"]
        assert meta["model"] == "generalist"
        assert meta["grain_diameter_px"] == pytest.approx(scaling.diameter)
        assert meta["grain_diameter_source"] == "estimated" and meta["scale_factor"] == pytest.approx(scaling.factor)
        assert meta["model_grain_diameter_px"] == MODEL_DIAMETER
        assert viewer.layers[f"{layer.name} boundary"].metadata["grainlab"]["scale_text"] == scaling.text()

    # a diameter typed in is used as given: grains twice the model's scale are shrunk by half
    diameter.editor.setValue(2 * MODEL_DIAMETER)
    assert dock.options().diameter == 2 * MODEL_DIAMETER
    run_and_wait(qtbot, dock)
    scaling = dock.last_results[-1].result.scaling
    assert (scaling.source, scaling.diameter, scaling.factor) == ("given", 2 * MODEL_DIAMETER, 0.5)
    assert "grain diameter 32 px (given), scaled ×0.5" in dock.status_label.text()
    assert not notifications.messages("error")

    # the generalist is remembered: the next dock chooses it again
    second = open_dock(qtbot, viewer)
    assert second.checkpoint == "generalist" and second.recent_combo.count() == 1


def test_a_builtin_model_that_is_not_installed_is_one_line_and_blocks_predict(qtbot, viewer, tiny_models, tmp_path,
                                                                                monkeypatch, synthetic,
                                                                                notifications):
    make_registry(tmp_path, monkeypatch, tiny_models / "colour", install=False)
    viewer.add_image(synthetic.image, name="sem")
    dock = open_dock(qtbot, viewer)
    info = dock.model_info.text()
    assert dock.checkpoint is None and info.startswith("Built-in model 'generalist' not installed:")
    assert "\n" not in info
    assert not dock.run_button.isEnabled() and not dock.folder_button.isEnabled()
    assert not notifications.messages("error")  # the dock's own choice: no pop-up
    assert "not installed" in dock.recent_combo.itemData(0, 3)  # Qt.ToolTipRole
    assert dock.run() is None and dock.task is None
    assert any("not installed" in m for m in notifications.messages("error"))
    # another model lifts the block
    assert dock.set_checkpoint(tiny_models / "grey") and dock.run_button.isEnabled()


def test_a_model_without_a_training_scale_greys_out_the_diameter(qtbot, viewer, tiny_models, tmp_path, monkeypatch,
                                                                   synthetic):
    make_registry(tmp_path, monkeypatch, tiny_models / "colour")
    dock = open_dock(qtbot, viewer)
    diameter = dock.options_panel.editors["diameter"]
    diameter.editor.setValue(40)
    assert dock.set_checkpoint(tiny_models / "grey")
    assert not diameter.editor.isEnabled() and dock.options().diameter is None
    assert "no training grain scale" in diameter.editor.toolTip()
    viewer.add_image(synthetic.image, name="sem")
    run_and_wait(qtbot, dock)
    assert dock.last_results[-1].result.scaling.diameter is None
    assert "grain diameter" not in dock.status_label.text()
    assert dock.set_checkpoint("generalist") and dock.options().diameter == 40  # the value comes back
