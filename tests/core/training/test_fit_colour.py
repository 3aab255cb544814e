"""fit() with colour data and at a grain scale: the channels rule, 1 <-> 3 fine-tuning, the recorded scale."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_grainlab.core.data.datasets import SegSample
from napari_grainlab.core.data.patches import SegPatchDataset
from napari_grainlab.core.data.targets import mean_grain_diameter
from napari_grainlab.core.errors import ConfigError
from napari_grainlab.core.models import load_checkpoint
from napari_grainlab.core.training import Finished, Started, TrainConfig, fit
from napari_grainlab.core.training.fit import _to_grain_scale

TINY = dict(decoder_channels=(16, 16, 16, 8, 8), device="cpu", augment=("geometric", "colour"), patch_size=64,
            epochs=1, steps_per_epoch=1, batch_size=2, val_fraction=0.0, synthetic="none", amp=False)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def grid_labels(h: int, w: int, cell: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy // cell) * (-(-w // cell)) + xx // cell + 1).astype(np.uint32)


def colour_sample(name: str, size: int = 96, cell: int = 16, seed: int = 0) -> SegSample:
    lab = grid_labels(size, size, cell)
    table = np.random.default_rng(seed).uniform(0.1, 0.9, (int(lab.max()) + 1, 3)).astype(np.float32)
    return SegSample(name=name, image=table[lab], labels=lab, group=name)


def grey_sample(name: str, size: int = 96, cell: int = 16, seed: int = 0) -> SegSample:
    s = colour_sample(name, size, cell, seed)
    return SegSample(name=name, image=np.ascontiguousarray(s.image[..., 0]), labels=s.labels, group=name)


def run(cfg: TrainConfig, train) -> tuple[list, dict, object]:
    events = list(fit(cfg, train))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    model, meta = load_checkpoint(events[-1].last_path)
    return events, meta, model


def test_channels_option():
    cfg = TrainConfig()
    assert cfg.channels == "auto"
    assert cfg.in_chans() == 1 and cfg.in_chans(colour_data=True) == 3 and cfg.in_chans(colour_weights=True) == 3
    assert TrainConfig(channels="1").in_chans(colour_data=True, colour_weights=True) == 1
    assert TrainConfig(channels="3").in_chans() == 3
    assert TrainConfig(channels=3).channels == "3"  # from a script
    with pytest.raises(ConfigError, match="channels"):
        TrainConfig(channels="2")
    assert "colour" in TrainConfig().augment
    with pytest.raises(ConfigError, match="grain_diameter"):
        TrainConfig(grain_diameter=1.0)
    assert TrainConfig.from_dict({"grain_diameter": 30.0}).grain_diameter == 30.0


def test_colour_training_then_grey_finetuning_keeps_three_channels(tmp_path):
    train = [colour_sample("tint0"), grey_sample("grey1", seed=1)]  # a dataset may mix them
    _, meta, model = run(TrainConfig(strategy="scratch", weights="none", out=str(tmp_path / "c"), **TINY), train)
    assert model.spec.in_chans == 3 and meta["spec"]["in_chans"] == 3 and meta["input"]["channels"] == 3
    # no target: the model records the data's own scale (median equivalent-circle diameter of 16 px squares)
    assert meta["grain_diameter"] == pytest.approx(np.sqrt(4 * 256 / np.pi))
    assert meta["training"]["grain_diameter"] is None
    # auto: the starting weights are a colour model, so grey data trains a 3-channel model
    events, meta2, model2 = run(TrainConfig(weights=str(tmp_path / "c" / "last"), out=str(tmp_path / "g"), **TINY),
                                [grey_sample("grey2", seed=2)])
    assert model2.spec.in_chans == 3 and "converted" not in events[0].weights
    # and channels=1 forces grey, converting the colour weights
    events, _, model3 = run(TrainConfig(weights=str(tmp_path / "c" / "last"), channels="1", out=str(tmp_path / "h"),
                                        **TINY), [colour_sample("tint3", seed=3)])
    assert model3.spec.in_chans == 1 and "converted from 3 to 1" in events[0].weights


def test_old_grey_checkpoint_finetunes_on_grey_and_on_colour(tmp_path):
    _, meta, grey_model = run(TrainConfig(strategy="scratch", weights="none", out=str(tmp_path / "old"),
                                          grain_diameter=12.0, **TINY), [grey_sample("g0"), grey_sample("g1", seed=1)])
    assert grey_model.spec.in_chans == 1
    assert meta["grain_diameter"] == 12.0 and meta["training"]["grain_diameter"] == 12.0
    assert meta["data"]["grain_diameter_measured"] == pytest.approx(np.sqrt(4 * 256 / np.pi))
    # make it an older checkpoint: no in_chans in its spec
    mj = tmp_path / "old" / "last" / "model.json"
    data = json.loads(mj.read_text())
    del data["spec"]["in_chans"]
    mj.write_text(json.dumps(data))
    old = str(tmp_path / "old" / "last")
    events, _, m1 = run(TrainConfig(weights=old, strategy="finetune", out=str(tmp_path / "g"), **TINY),
                        [grey_sample("g2", seed=2)])
    assert m1.spec.in_chans == 1 and "converted" not in events[0].weights
    events, meta3, m3 = run(TrainConfig(weights=old, strategy="finetune", out=str(tmp_path / "c"), **TINY),
                            [colour_sample("c3", seed=3)])
    assert m3.spec.in_chans == 3 and "converted from 1 to 3 input channels" in events[0].weights
    assert "re-initialised" not in events[0].weights  # every tensor came from the grey model
    # the frozen backbone stages (finetune trains the last 2) are the grey model's, except the stem's convolution
    from napari_grainlab.core.training.strategies import trainable_stages

    smap = m3.stage_map()
    trained = set(trainable_stages("finetune", m3.num_stages, 0, 2))
    g_state, c_state = grey_model.state_dict(), m3.state_dict()
    frozen = [k for k, st in smap.items() if st not in trained and k in g_state and k != "encoder.conv_stem.weight"]
    assert len(frozen) > 10 and all(torch.equal(g_state[k], c_state[k]) for k in frozen)
    assert c_state["encoder.conv_stem.weight"].shape[1] == 3
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.isfinite(m3(x)).all()


def test_grain_diameter_rescaling_gives_patches_at_the_target_scale():
    big = [colour_sample("a", size=240, cell=30), grey_sample("b", size=200, cell=20, seed=1)]
    warn: list = []
    scaled = _to_grain_scale(big, 15.0, warn)
    assert not warn
    for s in scaled:
        assert mean_grain_diameter(s.labels) == pytest.approx(15.0, rel=0.05)
    assert scaled[0].image.ndim == 3 and scaled[1].image.ndim == 2
    ds = SegPatchDataset(scaled, 64, None, length=16, seed=1, in_chans=3)
    diameters = []
    for i in range(len(ds)):
        item = ds[i]
        valid = item["valid"][0].numpy() > 0
        # the grains of the patch: label the interior (distance > 0) into connected pieces
        pieces, n = ndi.label((item["distance"][0].numpy() > 0) & valid)
        assert n > 4
        diameters.append(mean_grain_diameter(pieces.astype(np.uint32)))
    # interiors lose the one-pixel boundary band on each side: diameter - 2
    assert np.median(diameters) == pytest.approx(15.0 - 2.0, abs=1.5)


def test_synthetic_source_at_a_grain_scale():
    from napari_grainlab.core.training.sources import DIAMETER_SPREAD, synthetic_source

    r = synthetic_source("randomized", diameter=30.0)
    assert r.grains == pytest.approx((30.0 / DIAMETER_SPREAD, 30.0 * DIAMETER_SPREAD))
    assert synthetic_source("randomized").grains != r.grains
    p = synthetic_source("sem", diameter=20.0)
    assert p.diameter == pytest.approx((20.0 / DIAMETER_SPREAD, 20.0 * DIAMETER_SPREAD))
    img, lab = p.sample(np.random.default_rng(0), 160)
    assert 0.6 * 20 < mean_grain_diameter(lab) < 1.6 * 20


def test_finetuning_a_model_with_a_scale_trains_at_that_scale(tmp_path):
    """grain_diameter auto + a grainlab model that records a scale: its scale, not the data's."""
    _, meta, _ = run(TrainConfig(strategy="scratch", weights="none", out=str(tmp_path / "base"),
                                 grain_diameter=24.0, **TINY), [grey_sample("g0")])
    assert meta["grain_diameter"] == 24.0
    _, meta2, _ = run(TrainConfig(weights=str(tmp_path / "base" / "last"), out=str(tmp_path / "ft"), **TINY),
                      [grey_sample("g1", seed=1)])
    assert meta2["grain_diameter"] == 24.0
    assert meta2["data"]["grain_diameter_measured"] == pytest.approx(np.sqrt(4 * 256 / np.pi))
    # from ImageNet there is no model scale: the data's own
    _, meta3, _ = run(TrainConfig(strategy="scratch", weights="none", out=str(tmp_path / "own"), **TINY),
                      [grey_sample("g2", seed=2)])
    assert meta3["grain_diameter"] == pytest.approx(np.sqrt(4 * 256 / np.pi))
