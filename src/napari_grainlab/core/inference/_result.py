"""What a prediction returns, and its defaults (NumPy only).

Shared by the PyTorch pipeline (:mod:`~napari_grainlab.core.inference.pipeline`) and the
torch-free ONNX prediction (:mod:`napari_grainlab.core.onnx_predict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CLASSIFY_TILE", "SCALE_COLUMNS", "SEGMENT_TILE", "PredictionResult", "ScaleInfo", "default_min_size"]

#: default tile of a segmentation model (px)
SEGMENT_TILE = 512
#: default tile of a classification model trained without a recorded patch size (px)
CLASSIFY_TILE = 224


@dataclass(frozen=True)
class ScaleInfo:
    """The grain scale of one prediction.

    ``diameter``: the input's mean grain diameter in px that was used (None: not known, nothing was
    estimated); ``source``: ``"given"`` (the user's), ``"estimated"`` or ``""``; ``model_diameter``: the
    model's training scale (None: the model records none); ``factor``: the input was resized by this before
    the model (1: not resized); ``note``: why it was not resized, or was clamped (empty otherwise).
    """

    diameter: float | None = None
    source: str = ""
    model_diameter: float | None = None
    factor: float = 1.0
    note: str = ""

    def text(self) -> str:
        """One line for a report, e.g. ``grain diameter ≈ 23 px (estimated), scaled ×1.39``; '' when the
        diameter is not known."""
        if self.diameter is None:
            return ""
        sign = "≈ " if self.source.startswith("estimated") else ""
        size = f"{self.diameter:.0f}" if self.diameter >= 10 else f"{self.diameter:.2g}"
        source = (self.source or "given").replace(" (model)", ", checked with the model")
        line = f"grain diameter {sign}{size} px ({source})"
        line += f", scaled ×{self.factor:.3g}" if self.factor != 1.0 else ", not scaled"
        return line + (f" ({self.note})" if self.note else "")

    def row(self) -> dict[str, Any]:
        """The summary-table columns (:data:`SCALE_COLUMNS`)."""
        return {"diameter_px": "" if self.diameter is None else float(self.diameter),
                "diameter_source": self.source, "scale": float(self.factor)}


#: the columns of :meth:`ScaleInfo.row` in a batch's ``summary.csv``
SCALE_COLUMNS = ("diameter_px", "diameter_source", "scale")


@dataclass
class PredictionResult:
    """What a model made of one micrograph.

    Segmentation (``task == "segment"``): ``labels`` (H, W) uint32 grain instances 1..n,
    ``boundary`` and ``distance`` (H, W) float32 probability maps, ``twin_boundary`` the twin-boundary
    probability of a model with a twin class (None for the others). Classification
    (``task == "classify"``): ``class_map`` (H, W) uint16 class indices into ``classes``,
    ``confidence`` (H, W) float32 and ``tile_probs`` (n_tiles, K) float32. ``scaling``: the grain
    diameter of the input and the factor it was resized by for the model (:class:`ScaleInfo`; the
    outputs are always at the input's resolution). ``backend``: what ran the network
    (``"onnxruntime"``, ``"torch"`` (channels-last on the CPU) or ``"torch-eager"``; see
    :mod:`~napari_grainlab.core.inference.backend`).
    """

    task: str
    labels: np.ndarray | None = None
    boundary: np.ndarray | None = None
    distance: np.ndarray | None = None
    twin_boundary: np.ndarray | None = None
    class_map: np.ndarray | None = None
    confidence: np.ndarray | None = None
    tile_probs: np.ndarray | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)
    scaling: ScaleInfo = field(default_factory=ScaleInfo)
    backend: str = ""

    @property
    def diameter(self) -> float | None:
        """The input's mean grain diameter (px) used for the scale: given or estimated (None: not known)."""
        return self.scaling.diameter

    @property
    def scale(self) -> float:
        """The factor the input was resized by before the model (1: not resized)."""
        return self.scaling.factor

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
