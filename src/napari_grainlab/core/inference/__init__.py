"""Inference: tiled prediction, watershed post-processing, the classical baseline, domain adaptation.

>>> from napari_grainlab.core.inference import segment_image, classical_grains
>>> labels, ridge = classical_grains(image)                      # doctest: +SKIP
>>> result = segment_image(model, image, tile=512, tta=True)     # doctest: +SKIP

Submodules are imported on first use, so the classical baseline, the post-processing, histogram
matching and the tile geometry work without importing torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
