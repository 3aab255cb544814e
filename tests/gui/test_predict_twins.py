"""The Predict dock with a model that has a twin class: a twin-boundary layer tagged with its role."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small untrained resnet18 segmentation models, with and without the twin class."""
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("twin_models")
    torch.manual_seed(0)
    spec = dict(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))
    save_checkpoint(root / "twin", build_model(ModelSpec(**spec, twin_class=True)).eval())
    save_checkpoint(root / "plain", build_model(ModelSpec(**spec)).eval())
    return root


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAINLAB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(tmp_path / "no_registry.json"))  # no built-in model


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


def test_a_twin_model_adds_a_twin_boundary_layer_with_its_role(qtbot, viewer, dock, checkpoints, notifications):
    from napari.layers import Image

    from napari_grainlab.gui._layers import is_prediction, layers_with_role, role_of

    micrograph = np.random.default_rng(0).random((80, 80)).astype(np.float32)
    image = viewer.add_image(micrograph, name="sem", scale=(0.05, 0.05))
    assert dock.set_checkpoint(checkpoints / "twin")
    assert "twin boundaries" in dock.model_info.text()
    result = run_and_wait(qtbot, dock)
    assert result.status == "completed", result.error
    twins = layers_with_role(viewer, "twin_boundary")
    assert len(twins) == 1
    layer = twins[0]
    assert isinstance(layer, Image) and layer.name == "sem twin boundary"
    assert role_of(layer) == "twin_boundary" and is_prediction(layer)
    assert layer.metadata["grainlab"]["source"] == "sem"
    assert layer.data.shape == micrograph.shape and 0.0 <= layer.data.min() <= layer.data.max() <= 1.0
    assert tuple(layer.scale) == tuple(image.scale)
    boundary = layers_with_role(viewer, "boundary")[0]
    assert not np.array_equal(boundary.data, layer.data)  # its own channel, not a copy of the boundary map
    assert not notifications.messages("error")

    # a model without the twin class adds no twin layer
    viewer.layers.remove(layer)
    assert dock.set_checkpoint(checkpoints / "plain")
    assert "twin" not in dock.model_info.text()
    assert run_and_wait(qtbot, dock).status == "completed"
    assert layers_with_role(viewer, "twin_boundary") == []
