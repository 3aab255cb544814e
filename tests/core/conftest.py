"""Fixtures the core tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """Untrained resnet18 checkpoints: ``seg`` (segmentation) and ``cls`` (two classes, 64 px patches)."""
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(root / "seg", seg)
    cls = build_model(ModelSpec(task="classify", backbone="resnet18", num_classes=2,
                                classes=["ferrite", "pearlite"])).eval()
    save_checkpoint(root / "cls", cls, {"training": {"patch_size": 64}})
    return root
