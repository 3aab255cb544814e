"""Training configuration: one dataclass, serialised to JSON next to the weights."""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields

STRATEGIES = ("scratch", "frozen", "finetune", "gradual")
TASKS = ("segment", "classify")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_PRESETS = ("geometric", "intensity", "noise", "sem")


class ConfigError(ValueError):
    """A training option is out of range or inconsistent."""


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Strategies: ``scratch`` trains every layer from random weights; ``frozen`` keeps the pretrained
    backbone (weights and BatchNorm statistics) fixed and trains only the decoder / head; ``finetune``
    also trains the last ``finetune_stages`` backbone stages at ``lr * backbone_lr_factor``; ``gradual``
    starts frozen and unfreezes one more backbone stage, deepest first, every ``unfreeze_every`` epochs.
    """

    task: str = "segment"
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"  # imagenet | none | PATH (.safetensors / .pth / our model folder)
    strategy: str = "finetune"
    finetune_stages: int = 2
    unfreeze_every: int = 2
    backbone_lr_factor: float = 0.1
    epochs: int = 30
    steps_per_epoch: int | None = None  # None: from the amount of annotated data
    batch_size: int = 8
    patch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    patience: int = 8
    min_delta: float = 1e-3
    monitor: str = "auto"  # auto: boundary_f1 (segment) / macro_f1 (classify); or val_loss
    val_fraction: float = 0.2
    val_tile: int | None = None  # validation tile size (default: 2 x patch size)
    augment: tuple[str, ...] = AUGMENT_PRESETS
    oriented_growth: bool = False
    synthetic: str = "randomized"  # source of synthetic data: randomized | none | a preset name (sem, optical, ...)
    synthetic_ratio: float = 0.0  # fraction of training patches drawn from the synthetic source
    val_synthetic: int = 8  # synthetic validation images when there is no real data to validate on
    dropout: float = 0.1
    label_smoothing: float = 0.1
    mixup: float = 0.0  # classification: mixup alpha (0 = off)
    cutmix: float = 0.0  # classification: cutmix alpha (0 = off)
    boundary_width: int = 2
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    workers: int = 0  # DataLoader worker processes
    seed: int = 0
    out: str | None = None
    resume: bool = False
    classes: tuple[str, ...] = ()
    decoder_channels: tuple[int, ...] = (64, 48, 32, 24, 16)
    log_every: int = 1  # emit a Step event every N steps

    def __post_init__(self):
        self.augment = tuple(self.augment)
        self.classes = tuple(self.classes)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.validate()

    def validate(self) -> None:
        def bad(name, msg):
            raise ConfigError(f"{name}: {msg}")

        if self.task not in TASKS:
            bad("task", f"'{self.task}' is not one of {', '.join(TASKS)}")
        if self.strategy not in STRATEGIES:
            bad("strategy", f"'{self.strategy}' is not one of {', '.join(STRATEGIES)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            bad("device", f"'{self.device}' is not one of {', '.join(DEVICES)}")
        for name, lo in (("epochs", 1), ("batch_size", 1), ("finetune_stages", 1), ("unfreeze_every", 1),
                         ("patience", 1), ("boundary_width", 1), ("log_every", 1)):
            if int(getattr(self, name)) < lo:
                bad(name, f"must be >= {lo}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            bad("steps_per_epoch", "must be >= 1")
        if self.patch_size < 32 or self.patch_size % 32:
            bad("patch_size", f"{self.patch_size} must be a multiple of 32 and at least 32")
        if self.val_tile is not None and (self.val_tile < 32 or self.val_tile % 32):
            bad("val_tile", "must be a multiple of 32")
        for name in ("lr", "weight_decay", "backbone_lr_factor", "warmup_epochs", "min_lr_ratio", "min_delta",
                     "val_fraction", "synthetic_ratio", "dropout", "label_smoothing", "mixup", "cutmix"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                bad(name, f"expected a number, got {value!r}")
            if not math.isfinite(value):
                bad(name, f"must be a finite number, got {value}")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if self.warmup_epochs < 0:
            bad("warmup_epochs", "must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            bad("min_lr_ratio", "must be in [0, 1]")
        if not 0 < self.backbone_lr_factor <= 10:
            bad("backbone_lr_factor", "must be in (0, 10]")
        if not 0 <= self.val_fraction < 1:
            bad("val_fraction", "must be in [0, 1)")
        if not 0 <= self.synthetic_ratio <= 1:
            bad("synthetic_ratio", "must be in [0, 1]")
        if not 0 <= self.dropout < 1:
            bad("dropout", "must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "must be in [0, 1)")
        if self.mixup < 0 or self.cutmix < 0:
            bad("mixup", "alphas must be >= 0")
        unknown = set(self.augment) - set(AUGMENT_PRESETS) - {"invert"}
        if unknown:
            bad("augment", f"unknown preset(s) {sorted(unknown)}; choose from {', '.join(AUGMENT_PRESETS)}")
        if self.workers < 0:
            bad("workers", "must be >= 0")

    @property
    def monitor_metric(self) -> str:
        if self.monitor != "auto":
            return self.monitor
        return "boundary_f1" if self.task == "segment" else "macro_f1"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        d = self.to_dict()
        d.update(changes)
        return TrainConfig.from_dict(d)


__all__ = ["AUGMENT_PRESETS", "ConfigError", "DEVICES", "STRATEGIES", "TASKS", "TrainConfig", "field"]
