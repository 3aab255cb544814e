"""Prediction options, declared once.

:class:`InferenceOptions` holds every setting of a prediction: grain scale, tiling, test-time augmentation,
domain adaptation, the watershed that turns the maps into grains, and the device.  Its fields
carry their ranges and help (see :mod:`napari_grainlab.core._schema`); ``predict_array``,
``iter_predict``, ``run_batch`` (whose :class:`~napari_grainlab.core.batch.BatchOptions` extends
it), the ONNX path, the CLI flags of ``predict`` / ``eval`` / ``predict-onnx`` and the Predict dock
all take it, so a default or a range exists in one place.

This module imports no torch or numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from .._schema import check_options, option, option_fields
from ..errors import ConfigError

__all__ = ["DEFAULTS", "DEFAULT_OVERLAP", "MIN_TILE", "WATERSHED_FIELDS", "InferenceOptions", "resolve_options"]

#: smallest tile side a prediction accepts (px)
MIN_TILE = 32
#: overlap of neighbouring segmentation tiles (px)
DEFAULT_OVERLAP = 64


@dataclass(frozen=True)
class InferenceOptions:
    """Settings of one prediction (segmentation or classification).

    ``diameter`` and ``rescale`` act on segmentation models that record their training grain scale
    (``grain_diameter``); see :mod:`napari_grainlab.core.inference._rescale`."""

    # ------------------------------------------------------------------- scale
    diameter: float | None = option(None, min=1.0, max=10_000.0, step=1.0, suffix=" px", special="auto",
                                    group="Scale", label="Grain diameter", metavar="PX",
                                    help="mean grain diameter of the image in px (default: estimated when the "
                                         "model records its training scale); the image is resized so its grains "
                                         "meet the model at that scale, and the labels come back at the image's "
                                         "resolution")
    rescale: bool = option(True, group="Scale", label="Rescale to the model",
                           help="resize the image to the model's training grain scale (models that record one; "
                                "by 0.25 to 4 times)")
    refine_scale: bool = option(True, group="Scale", label="Check the scale with the model",
                                help="when the diameter is estimated, also try the model on a centre crop at 1 to "
                                     "2.8 times the estimated factor and keep the one whose boundaries it is surest "
                                     "of, the largest among near-ties (network passes on centre crops of 3 to 7.5 x 256² px in all, under half of a "
                                     "1024² prediction; the model-free estimate is often too large on real images)")
    # ------------------------------------------------------------------ tiling
    tile: int | None = option(None, min=MIN_TILE, max=16384, step=32, suffix=" px", special="auto",
                              group="Tiling", metavar="PX",
                              help=f"tile side in px, at least {MIN_TILE} (default: 512 for segmentation, the "
                                   "training patch size for classification)")
    overlap: int = option(DEFAULT_OVERLAP, min=0, max=4096, step=16, suffix=" px", group="Tiling", metavar="PX",
                          help="overlap of neighbouring tiles in px (segmentation; blended smoothly)")
    batch_size: int = option(4, min=1, max=1024, group="Tiling", metavar="B", help="tiles per forward pass")
    # -------------------------------------------------- augmentation, adaptation
    tta: bool = option(False, group="Adaptation", label="Test-time augmentation",
                       help="average over flips (slower, smoother)")
    adabn: bool = option(False, group="Adaptation", label="AdaBN",
                         help="domain adaptation: re-estimate BatchNorm statistics on each image")
    histogram_match: bool = option(False, group="Adaptation", label="Histogram match",
                                   help="domain adaptation: match intensities to the training data")
    # ---------------------------------------------------------------- watershed
    min_size: int | None = option(None, min=1, max=10_000_000, suffix=" px", special="auto", group="Grains",
                                  label="Min grain size", metavar="PX",
                                  help="smallest grain area in px (default: from the image size); smaller "
                                       "fragments merge into a neighbour")
    marker_threshold: float = option(0.25, min=0.0, max=1.0, step=0.05, group="Grains", cli=False,
                                     help="watershed markers only where the distance map exceeds this")
    boundary_threshold: float = option(0.5, min=0.0, max=1.0, step=0.05, group="Grains", cli=False,
                                       help="watershed markers only where the boundary probability is below this")
    smoothing: float = option(1.5, min=0.0, max=20.0, step=0.5, group="Grains", cli=False,
                              help="Gaussian smoothing (px) of the distance map before the markers are taken")
    h: float = option(0.1, min=0.0, max=1.0, step=0.05, group="Grains", cli=False, label="h-maxima depth",
                      help="markers are the h-maxima of the distance map (0: plain thresholding)")
    merge_threshold: float | None = option(0.35, min=0.0, max=1.0, step=0.05, group="Grains", cli=False,
                                           help="merge neighbouring grains whose shared boundary is weaker than "
                                                "this (None: never)")
    compactness: float = option(0.0, min=0.0, max=1e6, group="Grains", cli=False,
                                help="compact watershed: larger values give more regular, convex grains (0: the "
                                     "plain watershed)")
    # ------------------------------------------------------------------ device
    device: str = option("auto", suggest=("auto", "cpu", "cuda", "mps"), group="Device", metavar="DEV",
                         help="auto | cpu | cuda | cuda:N | mps")
    amp: bool = option(False, group="Device", widget="hidden", cli=False,
                       help="mixed precision on CUDA")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every option against its declared type and range; raises :class:`ConfigError`."""
        check_options(self, ConfigError)

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes: Any) -> InferenceOptions:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown prediction option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in option_fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown prediction option(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def inference(self) -> InferenceOptions:
        """Just the :class:`InferenceOptions` part (of a subclass such as ``BatchOptions``)."""
        if type(self) is InferenceOptions:
            return self
        names = {f.name for f in fields(InferenceOptions)}
        return InferenceOptions(**{k: v for k, v in self.to_dict().items() if k in names})

    def watershed(self) -> dict[str, Any]:
        """The keyword arguments of ``watershed_grains`` (without ``min_size``)."""
        return {name: getattr(self, name) for name in WATERSHED_FIELDS}

    def watershed_changes(self) -> dict[str, Any]:
        """The watershed options that differ from their defaults."""
        defaults = InferenceOptions()
        return {k: v for k, v in self.watershed().items() if getattr(defaults, k) != v}


#: the options of the marker-controlled watershed (keyword arguments of ``postprocess.watershed_grains``):
#: every "Grains" option but ``min_size``
WATERSHED_FIELDS = tuple(f.name for f in option_fields(InferenceOptions)
                         if f.metadata["group"] == "Grains" and f.name != "min_size")
#: the default options (their values are the defaults of the lower-level functions too)
DEFAULTS = InferenceOptions()


def resolve_options(options: InferenceOptions | None, overrides: dict[str, Any]) -> InferenceOptions:
    """``options`` (default: the defaults) with the keyword ``overrides`` applied.

    Functions that predict take ``options=`` and, for scripts, the same settings as keywords
    (``predict_array(model, meta, image, tta=True)``)."""
    if options is None:
        options = InferenceOptions()
    elif not isinstance(options, InferenceOptions):
        raise TypeError(f"options must be InferenceOptions, not {type(options).__name__}")
    else:
        options = options.inference()
    if overrides:
        options = options.replace(**overrides)
    return options
