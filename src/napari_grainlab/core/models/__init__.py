"""Networks on timm backbones, weight sources and checkpoints."""
from .checkpoint import (
                         CheckpointError,
                         check_checkpoint,
                         checkpoint_files,
                         copy_checkpoint,
                         is_checkpoint,
                         load_checkpoint,
                         load_into,
                         read_metadata,
                         save_checkpoint,
)
from .networks import SEG_OUTPUTS, GrainClassifier, GrainUNet, ModelError, ModelSpec, build_model, parameter_stages
from .registry import ModelNotInstalledError, is_registry_name, list_models, resolve_model
from .weights import WeightsError, load_state_dict_file, resolve_imagenet, resolve_weights

__all__ = [
    "CheckpointError", "GrainClassifier", "GrainUNet", "ModelError", "ModelNotInstalledError", "ModelSpec",
    "SEG_OUTPUTS", "WeightsError", "is_registry_name", "list_models", "resolve_model",
    "build_model", "check_checkpoint", "checkpoint_files", "copy_checkpoint", "is_checkpoint", "load_checkpoint",
    "load_into", "load_state_dict_file", "parameter_stages", "read_metadata", "resolve_imagenet", "resolve_weights",
    "save_checkpoint",
]
