"""Training: configuration, freezing strategies, losses and the ``fit()`` event generator."""
from .config import STRATEGIES, ConfigError, TrainConfig
from .events import (Checkpoint, CrossValidated, EarlyStopped, Epoch, Event, Finished, FoldStarted, Started, Step,
                     TrainWarning, Unfrozen)
from .fit import DataError, cross_validate, evaluate, fit, resolve_device
from .strategies import apply_stages, param_groups, trainable_stages

__all__ = [
    "STRATEGIES", "Checkpoint", "ConfigError", "CrossValidated", "DataError", "EarlyStopped", "Epoch", "Event",
    "Finished", "FoldStarted", "Started", "Step", "TrainConfig", "TrainWarning", "Unfrozen", "apply_stages",
    "cross_validate", "evaluate", "fit", "param_groups", "resolve_device", "trainable_stages",
]
