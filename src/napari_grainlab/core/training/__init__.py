"""Training: configuration, freezing strategies, losses and the ``fit()`` event generator.

Submodules are imported on first use: ``TrainConfig`` and the events import no torch, so the
CLI can build ``grainlab train``'s flags from the configuration's field metadata instantly.
"""

from __future__ import annotations

import importlib
import sys
import types

_EXPORTS = {
    "config": ("STRATEGIES", "ConfigError", "TrainConfig"),
    "events": ("Checkpoint", "CrossValidated", "EarlyStopped", "Epoch", "Event", "Finished", "FoldStarted",
               "Started", "Step", "TrainWarning", "Unfrozen"),
    "fit": ("DataError", "cross_validate", "evaluate", "fit", "resolve_device"),
    "strategies": ("apply_stages", "param_groups", "trainable_stages"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The submodule ``fit`` shares its name with the function ``fit``: importing the submodule
    must not replace the package's ``fit`` (the function) by the module."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE and _WHERE[name] == name:
            return  # the module stays importable (sys.modules); the attribute is the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
