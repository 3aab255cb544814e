"""Freezing strategies freeze exactly what they say."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_grainlab.core.models import ModelSpec, build_model
from napari_grainlab.core.training import ConfigError, TrainConfig, apply_stages, param_groups, trainable_stages


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelSpec(backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8)))


def _bn_stats(m, names):
    mods = dict(m.named_modules())
    return {n: (mods[n].running_mean.clone(), mods[n].running_var.clone()) for n in names}


def _one_step(m, lr=1e-2):
    m.train()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=lr)
    x = torch.rand(2, 1, 64, 64)
    loss = m(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("strategy", ["scratch", "frozen", "finetune", "gradual"])
def test_strategy_freezes_exactly_its_stages(model, strategy):
    n = model.num_stages
    stages = trainable_stages(strategy, n, epoch=0, finetune_stages=2, unfreeze_every=2)
    expected = {"scratch": set(range(n)), "frozen": set(), "finetune": {n - 2, n - 1}, "gradual": set()}[strategy]
    assert set(stages) == expected
    apply_stages(model, stages)
    smap = model.stage_map()
    for name, p in model.named_parameters():
        if name in smap:
            assert p.requires_grad == (smap[name] in expected), name
        else:  # decoder and head always train
            assert p.requires_grad, name
    bns = [n_ for n_, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    frozen_bn = [b for b in bns if b in smap and smap[b] not in expected]
    live_bn = [b for b in bns if b not in frozen_bn]
    before_w = {n_: p.detach().clone() for n_, p in model.named_parameters()}
    before = _bn_stats(model, bns)
    _one_step(model)
    after = _bn_stats(model, bns)
    for b in frozen_bn:  # weights and running statistics untouched
        assert torch.equal(before[b][0], after[b][0]) and torch.equal(before[b][1], after[b][1]), b
        assert not dict(model.named_modules())[b].training
    for b in live_bn:
        assert not torch.equal(before[b][0], after[b][0]), b
    for name, p in model.named_parameters():
        changed = not torch.equal(before_w[name], p.detach())
        if name in smap and smap[name] not in expected:
            assert not changed, name
    assert any(not torch.equal(before_w[n_], p.detach()) for n_, p in model.named_parameters() if n_ not in smap)


def test_gradual_unfreezes_one_more_stage_every_e_epochs():
    seen = [trainable_stages("gradual", 5, epoch=e, unfreeze_every=3) for e in range(20)]
    assert seen[0] == seen[2] == []
    assert seen[3] == [4] and seen[6] == [3, 4] and seen[9] == [2, 3, 4]
    assert seen[15] == seen[19] == [0, 1, 2, 3, 4]
    assert trainable_stages("finetune", 4, finetune_stages=9) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="strategy"):
        trainable_stages("melt", 4)


def test_backbone_learning_rate_is_the_head_rate_times_the_factor(model):
    groups = param_groups(model, lr=1e-3, backbone_lr_factor=0.1, weight_decay=1e-4, strategy="finetune")
    by_name = {}
    for g in groups:
        by_name.setdefault(g["name"], set()).add(g["lr"])
        if g["weight_decay"]:
            assert all(p.ndim > 1 for p in g["params"])
    assert by_name["head"] == {1e-3}
    assert all(len(v) == 1 and v.pop() == pytest.approx(1e-4) for k, v in by_name.items() if k != "head")
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    scratch = param_groups(model, 1e-3, 0.1, 1e-4, "scratch")
    assert {g["lr"] for g in scratch} == {1e-3}


def test_config_rejects_bad_values_with_the_option_name():
    for kwargs, name in (({"strategy": "freeze"}, "strategy"), ({"patch_size": 100}, "patch_size"),
                         ({"lr": 0}, "lr"), ({"augment": ("geometric", "warp")}, "augment"),
                         ({"device": "tpu"}, "device")):
        with pytest.raises(ConfigError, match=name):
            TrainConfig(**kwargs)
    cfg = TrainConfig(epochs=3, augment=["noise"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
