"""The options of a retraining round (:mod:`napari_grainlab.core.retrain`), importable without NumPy or torch
(the command line builds its flags from them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from ._schema import check_options, option
from .errors import ConfigError

__all__ = ["RetrainOptions"]


@dataclass
class RetrainOptions:
    """Few-shot fine-tuning settings of one *Retrain* round."""

    epochs: int = option(4, min=1, max=1000, metavar="N", help="passes over the annotated patches (early stopping "
                         "may end the round sooner)")
    steps_per_epoch: int = option(12, min=1, max=100_000, metavar="S", label="Steps / epoch",
                                  help="batches per epoch (a round's time grows in proportion)")
    batch_size: int = option(4, min=1, max=256, metavar="B", help="patches per step")
    patch_size: int = option(256, min=64, max=1024, multiple_of=32, step=32, suffix=" px", metavar="PX",
                             help="side of the training patches (smaller images use their own size)")
    lr: float = option(5e-4, min=0.0, max=1.0, min_open=True, widget="log", metavar="LR",
                       label="Learning rate", help="decoder learning rate; the backbone gets a tenth")
    finetune_stages: int = option(2, min=1, max=16, metavar="K", label="Fine-tuned stages",
                                  help="backbone stages trained besides the decoder (the rest stays frozen)")
    val_fraction: float = option(0.2, min=0.0, max=0.9, scale=100, suffix=" %", metavar="F",
                                 help="share held out to score the round (one image: a strip of it)")
    device: str = option("auto", suggest=("auto", "cpu", "cuda"), metavar="DEV", help="where to train")
    seed: int = option(0, min=0, max=2**31 - 1, metavar="S", help="random seed")

    def validate(self) -> RetrainOptions:
        check_options(self, ConfigError)
        return self
