"""Networks on timm backbones, weight sources, the built-in model registry and checkpoints.

Submodules are imported on first use (see :mod:`.._lazy`), so the registry (:func:`list_models`,
:func:`is_registry_name`, :func:`resolve_model`) works without importing torch: the docks list the
built-in models when they open, before the engine has loaded.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    # torch-free
    "registry": ("ModelNotInstalledError", "is_registry_name", "list_models", "resolve_model"),
    # these import torch
    "checkpoint": ("CheckpointError", "check_checkpoint", "checkpoint_files", "copy_checkpoint", "is_checkpoint",
                   "load_checkpoint", "load_into", "read_metadata", "save_checkpoint"),
    "networks": ("SEG_OUTPUTS", "TWIN_OUTPUTS", "GrainClassifier", "GrainUNet", "ModelError", "ModelSpec", "build_model",
                 "parameter_stages", "seg_outputs"),
    "weights": ("WeightsError", "load_state_dict_file", "resolve_imagenet", "resolve_weights"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
