"""CUDA-only checks: mixed-precision training and prediction on the GPU (skipped without one)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_grainlab.core.data.datasets import SegSample
from napari_grainlab.core.synthetic import SynthParams, generate

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _samples(n: int, size: int = 128) -> list[SegSample]:
    out = []
    for i in range(n):
        p = SynthParams.preset("sem", height=size, width=size)
        p.tessellation.grains = 40
        s = generate(p, seed=i)
        img = s.image_float()
        lo, hi = np.percentile(img, (0.1, 99.9))
        out.append(SegSample(name=f"g{i}", image=np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32),
                             labels=s.labels, group=f"g{i}"))
    return out


def test_fit_on_cuda_uses_mixed_precision_and_lowers_the_loss(tmp_path):
    from napari_grainlab.core.training import Epoch, Finished, Started, TrainConfig, fit

    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=3, steps_per_epoch=10,
                      batch_size=8, patch_size=64, val_tile=64, device="cuda", amp=True, out=str(tmp_path / "m"),
                      decoder_channels=(16, 16, 16, 8, 8))
    events = list(fit(cfg, _samples(4)))
    started = events[0]
    assert isinstance(started, Started) and started.device.startswith("cuda")
    assert started.amp in ("bf16", "fp16")
    losses = [e.train_loss for e in events if isinstance(e, Epoch)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert isinstance(events[-1], Finished) and events[-1].best_path


def test_tiled_prediction_on_cuda_matches_the_cpu():
    from napari_grainlab.core.inference import predict_tiled
    from napari_grainlab.core.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone="resnet18", decoder_channels=(16, 16, 16, 8, 8))).eval()
    image = np.random.default_rng(0).random((300, 420), dtype=np.float32)
    cpu = predict_tiled(model, image, tile=128, overlap=32, device="cpu")
    gpu = predict_tiled(model, image, tile=128, overlap=32, device="cuda")
    assert gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)
    # bf16 / fp16 autocast stays close to fp32
    amp = predict_tiled(model, image, tile=128, overlap=32, device="cuda", amp=True)
    assert float(np.abs(amp - cpu).mean()) < 2e-2
