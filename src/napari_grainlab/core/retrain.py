"""Retrain from corrections: short fine-tuning rounds on the user's annotations, each round's model kept.

The Annotate dock's *Retrain* (and scripts) call :func:`retrain`: it fine-tunes the current model (the
built-in ``generalist``, or the model of an earlier round) on the annotated images with few-shot defaults
(:class:`RetrainOptions`: a few short epochs, a low learning rate for the backbone, early stopping on a
held-out part), through the same engine as ``grainlab train`` (:func:`~napari_grainlab.core.training.fit`),
and records the result as a new **round** in a folder: ``round-01/``, ``round-02/``, ... (each a model
folder), indexed by ``rounds.json`` (round number, model folder, the validation boundary F1, the model it
started from, the images, the time taken).  Any round can be chosen again later (:class:`RoundStore`), so a
round that made things worse costs nothing.

Unannotated pixels (label 0) are ignored by training, so a partly annotated micrograph is fine; only images
with at least one annotated grain take part.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .retrain_options import RetrainOptions

__all__ = ["Round", "RoundStore", "RetrainOptions", "retrain", "retrain_samples"]

INDEX = "rounds.json"
FORMAT = "napari-grainlab-rounds"


@dataclass
class Round:
    """One retraining round: its model folder and what it scored."""

    number: int
    path: str
    score: float | None
    base: str
    images: list[str] = field(default_factory=list)
    seconds: float = 0.0
    created: str = ""
    reason: str = ""

    def text(self) -> str:
        score = "n/a" if self.score is None else f"{self.score:.3f}"
        return f"round {self.number}: validation F1 {score} ({len(self.images)} image(s), from {Path(self.base).name})"


class RoundStore:
    """The rounds of one annotation project, in ``folder`` (``rounds.json`` + ``round-NN/`` model folders)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def rounds(self) -> list[Round]:
        """The recorded rounds whose model folder still exists, oldest first (a damaged index reads as empty)."""
        path = self.folder / INDEX
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        out = []
        names = {f.name for f in dataclasses.fields(Round)}
        for item in data.get("rounds", []) if isinstance(data, dict) else []:
            if not isinstance(item, dict):
                continue
            try:
                r = Round(**{k: v for k, v in item.items() if k in names})
            except TypeError:
                continue
            if (self.folder / r.path).is_dir():
                out.append(dataclasses.replace(r, path=str(self.folder / r.path)))
        return sorted(out, key=lambda r: r.number)

    def next_number(self) -> int:
        used = [r.number for r in self.rounds()]
        used += [int(p.name[6:]) for p in self.folder.glob("round-*") if p.name[6:].isdigit()]
        return max(used, default=0) + 1

    def add(self, r: Round) -> None:
        """Record ``r`` (its ``path`` inside :attr:`folder`), replacing a round of the same number."""
        from ._io import atomic_write_text

        keep = [x for x in self.rounds() if x.number != r.number]
        items = []
        for x in [*keep, r]:
            d = dataclasses.asdict(x)
            d["path"] = Path(x.path).name
            items.append(d)
        items.sort(key=lambda d: d["number"])
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / INDEX, json.dumps({"format": FORMAT, "format_version": 1, "rounds": items},
                                                          indent=1))

    def get(self, number: int) -> Round:
        for r in self.rounds():
            if r.number == number:
                return r
        raise DataError(f"{self.folder}: no round {number}")


def retrain_samples(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> list:
    """Training samples from ``(name, image, labels)``: the image normalised to [0, 1] grey or colour, labels as
    uint32; images without an annotated grain are left out; a duplicate name keeps its first pair."""
    from .data.datasets import SegSample
    from .inference.pipeline import prepare_image

    out, seen = [], set()
    for name, image, labels in pairs:
        if name in seen:
            continue
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.dtype.kind not in "uib":
            raise DataError(f"{name}: labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
        img = prepare_image(image, name)
        if img.shape[:2] != labels.shape:
            raise DataError(f"{name}: image {img.shape[:2]} and labels {labels.shape} differ in size")
        if not labels.any():
            continue
        seen.add(name)
        out.append(SegSample(name=name, image=img, labels=labels.astype(np.uint32, copy=False), group=name))
    return out


def retrain(samples: Sequence, model: str | Path, folder: str | Path, options: RetrainOptions | None = None, *,
            stop: Callable[[], bool] | Any = None) -> Generator[Any, None, Round | None]:
    """Fine-tune ``model`` (a registry name or model folder) on ``samples`` (``SegSample``; see
    :func:`retrain_samples`) as the next round in ``folder``.

    A generator: it yields the training events of :func:`~napari_grainlab.core.training.fit` (progress, epochs,
    checkpoints) and returns the recorded :class:`Round`, or None when stopped before a checkpoint was written.
    ``stop`` is a ``threading.Event`` or a callable; the round stops after the current step.
    """
    from .models.checkpoint import read_metadata
    from .training.config import TrainConfig
    from .training.fit import fit

    opts = (options or RetrainOptions()).validate()
    samples = list(samples)
    if not samples:
        raise DataError("nothing to retrain on: annotate at least one grain in an image first")
    store = RoundStore(folder)
    number = store.next_number()
    out = store.folder / f"round-{number:02d}"
    meta = read_metadata(model)
    side = min(min(s.image.shape[:2]) for s in samples)
    patch = int(min(opts.patch_size, max(64, side // 32 * 32)))
    val_fraction = opts.val_fraction if len(samples) > 1 or side >= 2 * patch else 0.0
    cfg = TrainConfig(backbone=meta.get("backbone", TrainConfig.backbone), weights=str(model), strategy="finetune",
                      finetune_stages=opts.finetune_stages, epochs=opts.epochs, steps_per_epoch=opts.steps_per_epoch,
                      batch_size=opts.batch_size, patch_size=patch, lr=opts.lr, val_fraction=val_fraction,
                      patience=max(2, opts.epochs // 2), device=opts.device, seed=opts.seed, out=str(out), workers=0)
    started = time.perf_counter()
    gen = fit(cfg, samples, val=None if val_fraction > 0 else samples, stop=stop)
    while True:
        try:
            event = next(gen)
        except StopIteration as end:
            finished = end.value
            break
        yield event
    best = getattr(finished, "best_path", None) or getattr(finished, "last_path", None)
    if not best:
        return None
    # the round's folder is a model path: its best/ checkpoint (last/ stays beside it)
    r = Round(number=number, path=str(out), score=getattr(finished, "best_metric", None), base=str(model),
              images=[s.name for s in samples], seconds=time.perf_counter() - started,
              created=time.strftime("%Y-%m-%d %H:%M:%S"), reason=str(getattr(finished, "reason", "")))
    store.add(r)
    return r
