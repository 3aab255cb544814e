"""Sample data for napari (npe2 ``sample_data`` contributions).

*File ▸ Open Sample ▸ GrainLab* adds a synthetic micrograph and its ground-truth grain labels.
The Labels layer carries the per-grain table as ``features`` (an ``index`` column holds the
label ids), so hovering over a grain shows its area, equivalent diameter, orientation, ...
in the status bar.  Areas and lengths are in µm when the pixel size is known, and the layers
are then scaled to µm as well.

:func:`sample_layer_data` turns any :class:`~napari_grainlab.core.synthetic.SyntheticSample`
into the same layers; the Synthesize dock uses it for its live preview.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import numpy as np

from .core.measure import grain_features
from .core.synthetic import SyntheticSample, generate
from .core.synthetic.samples import OPTICAL_SEED, SAMPLE_SIZE, SEM_SEED, optical_sample_params, sem_sample_params

__all__ = [
    "OPTICAL_SEED",
    "SAMPLE_SIZE",
    "SEM_SEED",
    "grain_features",
    "layer_metadata",
    "optical_sample_params",
    "sample_layer_data",
    "sample_optical_grains",
    "sample_sem_grains",
    "sem_sample_params",
    "spatial_kwargs",
]

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

def layer_metadata(sample: SyntheticSample) -> dict[str, Any]:
    """Provenance stored in ``layer.metadata`` (JSON-compatible)."""
    return {
        "grainlab": {
            "source": "synthetic",
            "seed": int(sample.seed),
            "params": sample.params.to_dict(),
            "pixel_size_um": sample.params.pixel_size,
        }
    }


@lru_cache(maxsize=1)
def _layers_take_units() -> bool:
    """napari >= 0.6 layers accept ``units``; older versions reject the keyword."""
    from napari.layers import Image

    return "units" in inspect.signature(Image.__init__).parameters


def spatial_kwargs(pixel_size: float | None) -> dict[str, Any]:
    """``scale`` (and ``units``) of a layer with the given pixel size in µm (None: pixels)."""
    size, unit = (float(pixel_size), "µm") if pixel_size else (1.0, "pixel")
    kwargs: dict[str, Any] = {"scale": (size, size)}
    if _layers_take_units():
        kwargs["units"] = (unit, unit)
    return kwargs


def sample_layer_data(sample: SyntheticSample, name: str) -> list[LayerDataTuple]:
    """Image and Labels LayerData tuples for ``sample`` (layers ``name`` and ``name labels``).

    The image keeps its dtype with the contrast limits spanning it (so the generator's
    brightness settings stay visible); the labels carry the grain table as ``features``.
    """
    image = sample.image
    top = float(np.iinfo(image.dtype).max)
    common = {"metadata": layer_metadata(sample), **spatial_kwargs(sample.params.pixel_size)}
    image_kwargs = {
        "name": name,
        "colormap": "gray",
        "contrast_limits": (0.0, top),
        **common,
    }
    labels_kwargs = {
        "name": f"{name} labels",
        "features": grain_features(sample.table),
        "opacity": 0.4,
        **common,
    }
    return [(image, image_kwargs, "image"), (sample.labels, labels_kwargs, "labels")]


def sample_sem_grains() -> list[LayerDataTuple]:
    """A 768 × 768 synthetic SEM micrograph with its grain labels."""
    return sample_layer_data(generate(sem_sample_params(), seed=SEM_SEED), "SEM grains")


def sample_optical_grains() -> list[LayerDataTuple]:
    """A 768 × 768 synthetic etched optical micrograph with its grain labels."""
    return sample_layer_data(generate(optical_sample_params(), seed=OPTICAL_SEED), "Optical grains")
