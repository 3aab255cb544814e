"""What a prediction returns, and its defaults (NumPy only).

Shared by the PyTorch pipeline (:mod:`~napari_grainlab.core.inference.pipeline`) and the
torch-free ONNX prediction (:mod:`napari_grainlab.core.onnx_predict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CLASSIFY_TILE", "SEGMENT_TILE", "PredictionResult", "default_min_size"]

#: default tile of a segmentation model (px)
SEGMENT_TILE = 512
#: default tile of a classification model trained without a recorded patch size (px)
CLASSIFY_TILE = 224


@dataclass
class PredictionResult:
    """What a model made of one micrograph.

    Segmentation (``task == "segment"``): ``labels`` (H, W) uint32 grain instances 1..n,
    ``boundary`` and ``distance`` (H, W) float32 probability maps. Classification
    (``task == "classify"``): ``class_map`` (H, W) uint16 class indices into ``classes``,
    ``confidence`` (H, W) float32 and ``tile_probs`` (n_tiles, K) float32.
    """

    task: str
    labels: np.ndarray | None = None
    boundary: np.ndarray | None = None
    distance: np.ndarray | None = None
    class_map: np.ndarray | None = None
    confidence: np.ndarray | None = None
    tile_probs: np.ndarray | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def class_probabilities(self) -> np.ndarray | None:
        """Whole-image class probabilities (K,): the mean over tiles (classification only)."""
        return None if self.tile_probs is None else self.tile_probs.mean(axis=0)

    @property
    def image_class(self) -> str | None:
        """Name of the most probable class of the whole image (classification only)."""
        p = self.class_probabilities
        return None if p is None else self.classes[int(np.argmax(p))]


def default_min_size(shape: tuple[int, int]) -> int:
    """Default minimum grain area (px): 16, or one millionth of the image area when larger.

    Spurious fragments come from noise in the probability maps, whose scale is set by the
    network (in px), not by the image; the area term only grows on images beyond 16 Mpx
    (67 px on 8192 x 8192), where a 4 x 4 px "grain" is certainly a fragment.
    """
    h, w = shape
    return max(16, int(round(h * w * 1e-6)))


def _default_tile(task: str, meta: dict) -> int:
    if task == "segment":
        return SEGMENT_TILE
    patch = ((meta or {}).get("training") or {}).get("patch_size")
    return int(patch) if isinstance(patch, (int, float)) and patch >= 32 else CLASSIFY_TILE
