"""Typed progress events yielded by :func:`fit` (and :func:`cross_validate`)."""
from __future__ import annotations

from dataclasses import dataclass, field


def _fmt_time(s: float | None) -> str:
    if s is None or s != s:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class Event:
    fold: int | None = field(default=None, kw_only=True)


@dataclass
class Started(Event):
    device: str
    n_train: int  # training images (real)
    n_val: int  # validation images
    epochs: int
    steps_per_epoch: int
    trainable_params: int
    total_params: int
    weights: str  # where the initial weights came from
    amp: str  # "off" / "bf16" / "fp16"

    def __str__(self):
        return (f"training on {self.device} ({self.amp} precision): {self.n_train} train / {self.n_val} val images, "
                f"{self.epochs} epochs x {self.steps_per_epoch} steps, {self.trainable_params:,} of "
                f"{self.total_params:,} parameters trainable, weights: {self.weights}")


@dataclass
class Step(Event):
    epoch: int
    step: int  # global step (1-based)
    total_steps: int
    loss: float
    lr: float  # head learning rate
    images_per_s: float
    eta_s: float

    def __str__(self):
        return f"step {self.step}/{self.total_steps} loss {self.loss:.4f} lr {self.lr:.2e} ETA {_fmt_time(self.eta_s)}"


@dataclass
class Unfrozen(Event):
    epoch: int
    trainable_stages: list[int]
    trainable_params: int

    def __str__(self):
        return (f"epoch {self.epoch}: backbone stages {self.trainable_stages or 'none'} trainable "
                f"({self.trainable_params:,} parameters)")


@dataclass
class Epoch(Event):
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float
    metrics: dict
    lrs: dict  # {"head": lr, "backbone": lr}
    images_per_s: float
    eta_s: float
    improved: bool
    seconds: float

    def __str__(self):
        ms = " ".join(f"{k} {v:.4f}" for k, v in self.metrics.items() if isinstance(v, (int, float)))
        star = " *" if self.improved else ""
        return (f"epoch {self.epoch}/{self.epochs} train_loss {self.train_loss:.4f} val_loss {self.val_loss:.4f} "
                f"{ms} ({self.images_per_s:.1f} img/s, ETA {_fmt_time(self.eta_s)}){star}")


@dataclass
class Checkpoint(Event):
    path: str
    kind: str  # best | last
    epoch: int
    metric: float | None

    def __str__(self):
        return f"saved {self.kind} checkpoint (epoch {self.epoch}) to {self.path}"


@dataclass
class TrainWarning(Event):
    message: str

    def __str__(self):
        return f"warning: {self.message}"


@dataclass
class EarlyStopped(Event):
    epoch: int
    best_epoch: int
    best_metric: float

    def __str__(self):
        return f"early stop at epoch {self.epoch}: no improvement since epoch {self.best_epoch} ({self.best_metric:.4f})"


@dataclass
class Finished(Event):
    best_path: str | None
    last_path: str | None
    best_epoch: int
    best_metric: float | None
    best_metrics: dict
    epochs_run: int
    reason: str  # completed | early_stopped | stopped
    seconds: float
    history: list = field(default_factory=list, repr=False)

    def __str__(self):
        m = "n/a" if self.best_metric is None else f"{self.best_metric:.4f}"
        return (f"finished ({self.reason}) after {self.epochs_run} epochs in {_fmt_time(self.seconds)}; "
                f"best epoch {self.best_epoch}: {m}; model: {self.best_path}")


@dataclass
class FoldStarted(Event):
    k: int
    n_train: int
    n_val: int

    def __str__(self):
        return f"fold {self.fold + 1}/{self.k}: {self.n_train} train / {self.n_val} val images"


@dataclass
class CrossValidated(Event):
    k: int
    per_fold: list[dict]
    mean: dict
    sd: dict

    def __str__(self):
        return f"{self.k}-fold: " + ", ".join(f"{k} {self.mean[k]:.4f} ± {self.sd[k]:.4f}" for k in self.mean)
