"""The live preview of the Synthesize dock: generated in a worker thread (no Qt, no viewer),
shown in two layers found by their roles (``synthetic_image``, ``synthetic_labels``), not their
names, so that renaming them keeps them the dock's."""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels

from ..._sample_data import sample_layer_data
from ...core.synthetic import SynthParams, generate
from .._layers import layers_with_role, role_metadata, role_name

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["PREVIEW_IMAGE", "PREVIEW_LABELS", "PREVIEW_MAX_PIXELS", "PreviewLayers", "PreviewResult",
           "make_preview", "preview_params"]

PREVIEW_IMAGE = "synthetic preview"
PREVIEW_LABELS = role_name(PREVIEW_IMAGE, "synthetic_labels")
#: larger images are previewed as a window of this many pixels at the same grain size
PREVIEW_MAX_PIXELS = 2048 * 2048
#: the role of each preview layer, by layer kind
_ROLES = {"image": "synthetic_image", "labels": "synthetic_labels"}
_LAYER_TYPES = {"image": Image, "labels": Labels}


@dataclass(frozen=True)
class PreviewResult:
    """A preview computed in a worker thread, ready to become layers."""

    layers: list[tuple[np.ndarray, dict[str, Any], str]]
    params: SynthParams
    seed: int
    n_grains: int
    elapsed: float
    note: str = ""


def preview_params(params: SynthParams) -> tuple[SynthParams, str]:
    """The parameters to preview: ``params`` itself, or for images larger than
    :data:`PREVIEW_MAX_PIXELS` a smaller window with the same grain size."""
    h, w = params.shape
    if h * w <= PREVIEW_MAX_PIXELS:
        return params, ""
    f = math.sqrt(PREVIEW_MAX_PIXELS / (h * w))
    ph, pw = max(8, int(h * f)), max(8, int(w * f))
    tess = params.tessellation.replace(grains=None, mean_diameter=params.mean_diameter())
    return params.replace(height=ph, width=pw, tessellation=tess), f"a {ph} × {pw} px window of the {h} × {w} px image"


def make_preview(params: SynthParams, note: str = "", *, seed: int) -> PreviewResult:
    """Generate a preview (runs in a worker thread: no Qt, no viewer).  Its layers carry their
    roles in ``metadata["grainlab"]``."""
    t0 = time.perf_counter()
    sample = generate(params, seed=seed)
    layers = sample_layer_data(sample, PREVIEW_IMAGE)
    for data, kwargs, kind in layers:
        kwargs["metadata"] = role_metadata(_ROLES[kind], **kwargs["metadata"]["grainlab"])
        if kind == "image":
            kwargs["rgb"] = is_rgb(data)
            if kwargs["rgb"]:  # a colour look (tint, polarized, ebsd) is shown as RGB, not as a grey stack
                kwargs.pop("colormap", None)
    n = len(layers[1][1]["features"]["index"])
    return PreviewResult(layers, params, seed, n, time.perf_counter() - t0, note)


def is_rgb(data: np.ndarray) -> bool:
    """A generated image is colour: (H, W, 3)."""
    return np.ndim(data) == 3 and np.shape(data)[-1] == 3


class PreviewLayers:
    """The preview layers of one dock in a viewer: added once, then updated in place."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self._refs: dict[str, weakref.ref] = {}

    def show(self, result: PreviewResult) -> None:
        """Put ``result`` into the preview layers (adding those that are missing); the view is
        reset when the image is new or its extent changed."""
        reset_view = False
        for data, kwargs, kind in result.layers:
            role = _ROLES[kind]
            layer = self.find(role, kind)
            if layer is not None and kind == "image" and bool(layer.rgb) != bool(kwargs.get("rgb")):
                self.viewer.layers.remove(layer)  # grey <-> colour: napari fixes rgb when a layer is made
                layer = None
            if layer is None:
                layer = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
                reset_view = reset_view or kind == "image"
            else:
                reset_view = self._update(layer, data, kwargs) or reset_view
            self._refs[role] = weakref.ref(layer)
        if reset_view:
            self.viewer.reset_view()

    def find(self, role: str, kind: str) -> Layer | None:
        """Our preview layer of ``role``: the one we created (even if renamed), else one tagged with it."""
        layers = self.viewer.layers
        ref = self._refs.get(role)
        layer = ref() if ref is not None else None
        if layer is not None and layer in layers:
            return layer
        cls = _LAYER_TYPES[kind]
        return next((ly for ly in layers_with_role(layers, role) if isinstance(ly, cls)), None)

    @staticmethod
    def _update(layer: Layer, data: np.ndarray, kwargs: dict[str, Any]) -> bool:
        """Update a preview layer in place (keeps the user's display settings).  Returns
        whether its extent changed."""
        old_shape, old_scale = layer.data.shape, tuple(layer.scale)
        old_dtype = layer.data.dtype
        old_pixel_size = layer.metadata.get("grainlab", {}).get("pixel_size_um", "unknown")
        layer.metadata = kwargs["metadata"]
        if "features" in kwargs:
            layer.features = kwargs["features"]
        layer.data = data
        if "contrast_limits" in kwargs and old_dtype != data.dtype:
            layer.contrast_limits_range = kwargs["contrast_limits"]
            layer.contrast_limits = kwargs["contrast_limits"]
        if old_pixel_size != kwargs["metadata"]["grainlab"]["pixel_size_um"]:  # (costly events)
            if "units" in kwargs:
                layer.units = kwargs["units"]
            layer.scale = kwargs["scale"]
        return old_shape != data.shape or old_scale != tuple(layer.scale)
