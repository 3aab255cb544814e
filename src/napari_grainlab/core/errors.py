"""Every error a user's input can cause, under one base class.

The CLI and the GUI catch :class:`GrainLabError` (together with ``OSError`` and ``MemoryError``)
in one place each and show its message as one line; anything else is a bug and keeps its
traceback.  A new user-facing error derives from :class:`GrainLabError` (or one of the classes
below) and needs no change in either front end.

``GrainLabError`` is a ``ValueError``, so code that caught ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BatchError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExperimentError",
    "ExportError",
    "GrainLabError",
    "MetricError",
    "ModelError",
    "OnnxModelError",
    "OutputExistsError",
    "ParameterError",
    "WeightsError",
    "USER_ERRORS",
]


class GrainLabError(ValueError):
    """A problem with what the user asked for or gave (files, options, models); the message is
    one line that names the culprit."""


class ParameterError(GrainLabError):
    """A generator parameter is out of range or inconsistent (message names the parameter)."""


class ConfigError(GrainLabError):
    """An option (training, inference) is out of range or inconsistent."""


class DataError(GrainLabError):
    """Bad input data: unreadable, empty or inconsistent files and arrays (the message names the culprit)."""


class MetricError(GrainLabError):
    """Inputs a metric cannot be computed on."""


class ModelError(GrainLabError):
    """The model cannot be built (unknown backbone, bad options) or produced unusable output."""


class CheckpointError(GrainLabError):
    """A checkpoint is missing, corrupt or of an unknown format."""


class WeightsError(GrainLabError):
    """Pretrained weights could not be found or do not fit the model."""


class BatchError(GrainLabError):
    """The batch as a whole cannot run (no images, no scheduler, a model the workers cannot load)."""


class ExportError(GrainLabError):
    """The model cannot be exported, or the exported model does not reproduce PyTorch."""


class OnnxModelError(GrainLabError):
    """An ONNX file is missing, corrupt, not a napari-grainlab model, or fails to run."""


class ExperimentError(GrainLabError):
    """An experiment configuration is missing something or is inconsistent."""


class OutputExistsError(GrainLabError, FileExistsError):
    """The output folder is not empty and overwriting was not requested."""


#: what the front ends report as a one-line message instead of a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (GrainLabError, OSError, MemoryError)
