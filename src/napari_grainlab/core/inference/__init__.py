"""Inference: tiled prediction, watershed post-processing, the classical baseline, domain adaptation.

>>> from napari_grainlab.core.inference import segment_image, classical_grains
>>> labels, ridge = classical_grains(image)                      # doctest: +SKIP
>>> result = segment_image(model, image, tile=512, tta=True)     # doctest: +SKIP

Submodules are imported on first use, so the classical baseline, the post-processing, histogram
matching and the tile geometry work without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # torch-free modules first: these names import no torch
    "_grid": ("Cancelled", "ClassMap", "tile_positions", "tile_window"),
    "_histogram": ("intensity_quantiles", "match_histogram"),
    "_result": ("PredictionResult", "default_min_size"),
    "postprocess": ("boundary_from_labels", "merge_small_grains", "relabel_sequential", "watershed_grains"),
    "classical": ("classical_grains", "ridge_map"),
    # these import torch
    "tiling": ("classify_image", "classify_tiled", "model_multiple", "predict_tiled", "resolve_device"),
    "adapt": ("adapt_batchnorm",),
    "segment": ("SegmentationResult", "segment_image"),
    "pipeline": ("PredictProgress", "histogram_reference", "iter_predict", "predict_array", "prepare_image"),
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
