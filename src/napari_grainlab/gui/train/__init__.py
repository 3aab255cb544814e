"""The *Train* dock (:class:`TrainWidget`) and its panels: data (:mod:`.data`), option sections
generated from the training configuration's metadata (:mod:`.options`), the run panel
(:mod:`.run`) and the live plot (:mod:`.plot`)."""

from __future__ import annotations

from .data import LayerPair, find_pairs
from .dock import TrainWidget
from .options import STRATEGY_TIPS
from .plot import TrainingPlot
from .run import fmt_duration

__all__ = ["STRATEGY_TIPS", "LayerPair", "TrainWidget", "TrainingPlot", "find_pairs", "fmt_duration"]
