"""Freezing strategies: which backbone stages train, at which learning rate, and BatchNorm handling.

A *stage* is the part of the backbone that produces one feature level (see
:func:`napari_grainlab.core.models.parameter_stages`). Frozen stages have ``requires_grad=False`` and their
BatchNorm layers stay in eval mode, so neither weights nor running statistics move.
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .config import STRATEGIES


def trainable_stages(strategy: str, num_stages: int, epoch: int = 0, finetune_stages: int = 2,
                     unfreeze_every: int = 2) -> list[int]:
    """Backbone stages that train at 0-based ``epoch`` under ``strategy`` (the head always trains)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: '{strategy}' is not one of {', '.join(STRATEGIES)}")
    if strategy == "scratch":
        return list(range(num_stages))
    if strategy == "frozen":
        return []
    if strategy == "finetune":
        k = min(finetune_stages, num_stages)
        return list(range(num_stages - k, num_stages))
    k = min(epoch // unfreeze_every, num_stages)  # gradual: head only, then one more stage every E epochs
    return list(range(num_stages - k, num_stages))


def apply_stages(model: nn.Module, stages: list[int]) -> int:
    """Freeze every backbone stage not in ``stages``; returns the number of trainable parameters."""
    smap = model.stage_map()
    keep = set(stages)
    params = dict(model.named_parameters())
    for name, p in params.items():
        p.requires_grad_(name not in smap or smap[name] in keep)
    frozen_bn = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and name in smap and smap[name] not in keep:
            frozen_bn.add(name)
    model.frozen_bn = frozen_bn
    model.train(model.training)  # re-applies eval() to frozen BatchNorms when training
    return sum(p.numel() for p in params.values() if p.requires_grad)


def param_groups(model: nn.Module, lr: float, backbone_lr_factor: float, weight_decay: float,
                 strategy: str) -> list[dict]:
    """AdamW parameter groups: one per backbone stage (LR x factor; x1 for scratch) plus the head.

    Biases and normalisation weights get no weight decay. Every parameter is in a group from the start,
    so stages unfrozen later (gradual) train without rebuilding the optimiser; frozen ones get no gradient
    and AdamW skips them.
    """
    smap = model.stage_map()
    factor = 1.0 if strategy == "scratch" else backbone_lr_factor
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        stage = smap.get(name)
        decay = p.ndim > 1
        key = ("head" if stage is None else f"stage{stage}", decay)
        groups.setdefault(key, []).append(p)
    out = []
    for (gname, decay), ps in sorted(groups.items(), key=lambda kv: (kv[0][0] == "head", kv[0])):
        out.append({"params": ps, "name": gname, "lr": lr if gname == "head" else lr * factor,
                    "weight_decay": weight_decay if decay else 0.0})
    return out
