"""Training: configuration, freezing strategies, losses and the ``fit()`` event generator.

Submodules are imported on first use: ``TrainConfig`` and the events import no torch, so the
CLI can build ``grainlab train``'s flags from the configuration's field metadata instantly.
"""

from __future__ import annotations

import sys
import types

from .._lazy import lazy_exports

_EXPORTS = {
    "config": ("STRATEGIES", "ConfigError", "TrainConfig"),
    "events": ("Checkpoint", "CrossValidated", "EarlyStopped", "Epoch", "Event", "Finished", "FoldStarted",
               "Started", "Step", "TrainWarning", "Unfrozen"),
    "fit": ("DataError", "cross_validate", "evaluate", "fit", "resolve_device"),
    "strategies": ("apply_stages", "param_groups", "trainable_stages"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
#: names that are both a submodule and a function of that submodule (``fit``)
_SHADOWED = frozenset(name for module, names in _EXPORTS.items() for name in names if name == module)


class _Package(types.ModuleType):
    """The submodule ``fit`` shares its name with the function ``fit``: importing the submodule
    must not replace the package's ``fit`` (the function) by the module."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _SHADOWED:
            return  # the module stays importable (sys.modules); the attribute is the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
