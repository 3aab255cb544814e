"""One call from micrograph to grain instances, as used by the CLI and the GUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from ._result import default_min_size
from .adapt import adapt_batchnorm, match_histogram
from .options import DEFAULTS as _D
from .postprocess import watershed_grains
from .tiling import _check_image, predict_tiled

__all__ = ["SegmentationResult", "check_segmentation_model", "default_min_size", "segment_image"]


@dataclass
class SegmentationResult:
    """Grain instances and the probability maps they were derived from."""

    labels: np.ndarray  # (H, W) uint32, grains 1..n
    boundary: np.ndarray  # (H, W) float32 boundary probability
    distance: np.ndarray  # (H, W) float32 normalised distance to the boundary (1 = grain centre)
    twin_boundary: np.ndarray | None = None  # (H, W) float32 twin-boundary probability (models with a twin class)


def check_segmentation_model(model: torch.nn.Module) -> int:
    """The output channel count of a segmentation model: 2 (boundary, distance) or 3 (and the twin
    boundary); :class:`ModelError` for any other model."""
    task = getattr(model, "task", "segment")
    if task != "segment":
        raise ModelError(f"model: expected a segmentation model, got task {task!r}")
    out_channels = getattr(model, "out_channels", 2)
    if out_channels not in (2, 3):
        raise ModelError(f"model: a segmentation model has 2 output channels (3 with the twin class), this one has "
                         f"{out_channels}")
    return int(out_channels)


def segment_image(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    tile: int = 512,
    overlap: int = _D.overlap,
    batch_size: int = _D.batch_size,
    tta: bool = False,
    device: str | torch.device = "cpu",
    amp: bool = False,
    histogram_reference: np.ndarray | None = None,
    adabn: bool = False,
    min_size: int | None = None,
    marker_threshold: float = _D.marker_threshold,
    boundary_threshold: float = _D.boundary_threshold,
    smoothing: float = _D.smoothing,
    h: float = _D.h,
    merge_threshold: float | None = _D.merge_threshold,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    warn: Callable[[str], None] | None = None,
    **watershed: Any,
) -> SegmentationResult:
    """Segment a micrograph into grains with a boundary / distance model.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model (``model.task == "segment"``) returning N x 2 x H x W logits:
        grain boundary, normalised distance to the boundary (N x 3: and the twin boundary).
    image : (H, W) or (H, W, 3) float array
        Grey or colour micrograph in [0, 1] (given to the model with its input channels, see
        :func:`~napari_grainlab.core.inference.tiling.predict_tiled`). No grain-scale rescaling here:
        :func:`~napari_grainlab.core.inference.predict_array` does that.
    tile, overlap, batch_size, tta, device, amp, progress, stop, warn
        See :func:`~napari_grainlab.core.inference.tiling.predict_tiled`.
    histogram_reference : (n,) array, optional
        Intensity quantiles of the training data (from
        :func:`~napari_grainlab.core.inference.adapt.intensity_quantiles`): the image is
        histogram-matched to them first.
    adabn : bool
        Re-estimate the BatchNorm statistics on this image first (on a copy of the model).
    min_size : int, optional
        Minimum grain area in px (default :func:`default_min_size`).
    marker_threshold, boundary_threshold, smoothing, h, merge_threshold
        Post-processing of the maps into grains (smoothing, h-maxima markers, watershed,
        merging of borders with no boundary evidence), see
        :func:`~napari_grainlab.core.inference.postprocess.watershed_grains`; ``**watershed``: its
        other keyword arguments (e.g. ``compactness``).

    Returns
    -------
    SegmentationResult
    """
    channels = check_segmentation_model(model)
    image = _check_image(image)
    if histogram_reference is not None:
        image = match_histogram(image, histogram_reference)
    if adabn:
        model = adapt_batchnorm(model, [image], device=device)
    probs = predict_tiled(model, image, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta, device=device,
                          amp=amp, activation="sigmoid", progress=progress, stop=stop, out_channels=channels, warn=warn)
    boundary, distance = probs[0], probs[1]
    if min_size is None:
        min_size = default_min_size(image.shape[:2])
    labels = watershed_grains(boundary, distance, marker_threshold=marker_threshold,
                              boundary_threshold=boundary_threshold, min_size=int(min_size),
                              smoothing=smoothing, h=h, merge_threshold=merge_threshold, **watershed)
    return SegmentationResult(labels=labels, boundary=boundary, distance=distance,
                              twin_boundary=probs[2] if channels == 3 else None)
