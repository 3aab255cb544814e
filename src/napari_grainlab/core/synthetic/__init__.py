"""Synthetic grain micrographs: tessellation (Voronoi, Laguerre, grain growth), SEM / optical / colour
rendering, datasets.

>>> from napari_grainlab.core.synthetic import SynthParams, generate
>>> sample = generate(SynthParams(height=256, width=256), seed=0)
>>> sample.image.shape, sample.labels.dtype
((256, 256), dtype('uint32'))
"""

from .dataset import DatasetProgress, synthetic_stream, write_dataset
from .generate import SyntheticSample, generate
from .params import (
    EBSDParams,
    OpticalParams,
    ParameterError,
    PolarizedParams,
    SEMParams,
    SynthParams,
    TessellationParams,
    TintParams,
    param_fields,
)

__all__ = [
    "DatasetProgress",
    "EBSDParams",
    "OpticalParams",
    "ParameterError",
    "PolarizedParams",
    "SEMParams",
    "SynthParams",
    "SyntheticSample",
    "TessellationParams",
    "TintParams",
    "generate",
    "param_fields",
    "synthetic_stream",
    "write_dataset",
]
