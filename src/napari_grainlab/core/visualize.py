"""Quick-look pictures of grain data: label overlays and preview grids (NumPy only).

>>> import numpy as np
>>> image = np.zeros((4, 6), np.uint8)
>>> labels = np.array([[1, 1, 1, 2, 2, 2]] * 4, np.uint32)
>>> overlay_rgb(image, labels).shape
(4, 6, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["boundary_mask", "image_to_unit", "label_colors", "overlay_rgb", "preview_grid"]

_GOLDEN = 0.6180339887498949


def image_to_unit(image: np.ndarray, percentiles: tuple[float, float] | None = None) -> np.ndarray:
    """A grey ``(H, W)`` or colour ``(H, W, 3)`` image (any dtype) as float32 in [0, 1], of the same shape.

    Integer images are scaled by their dtype range (``uint16`` by 65535), float images are taken
    as [0, 1] and clipped. With ``percentiles=(lo, hi)`` the image is instead stretched so that
    those percentiles map to 0 and 1 (useful for dim 16-bit micrographs); a colour image gets one
    range for its three channels, so hues stay as they are.
    """
    a = np.asarray(image)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise DataError(f"expected a grey (H, W) or colour (H, W, 3) image, got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.float32)
    if percentiles is not None:
        a = a.astype(np.float32)
        lo, hi = np.percentile(a, percentiles)
        if hi <= lo:
            return np.zeros(a.shape, np.float32)
        return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return ((a.astype(np.float32) - info.min) / float(info.max - info.min)).astype(np.float32)
    return np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)


def label_colors(ids: np.ndarray, saturation: float = 0.65, value: float = 1.0) -> np.ndarray:
    """Deterministic, well-separated RGB colours (float32 in [0, 1]) for integer label ids.

    Consecutive ids get hues a golden-ratio step apart, so neighbouring grains (which usually have
    close ids) differ clearly. The same id always gets the same colour.
    """
    ids = np.asarray(ids, dtype=np.float64)
    h = (ids * _GOLDEN) % 1.0
    s = np.full_like(h, saturation)
    v = np.full_like(h, value)
    # HSV -> RGB
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour carries a different label (1 px wide boundaries)."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise DataError(f"expected 2-D labels, got shape {lab.shape}")
    edge = np.zeros(lab.shape, bool)
    dx = lab[:, 1:] != lab[:, :-1]
    dy = lab[1:, :] != lab[:-1, :]
    edge[:, :-1] |= dx
    edge[:-1, :] |= dy
    return edge


def overlay_rgb(
    image: np.ndarray,
    labels: np.ndarray,
    boundaries: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
    boundary_color: Sequence[float] = (1.0, 0.85, 0.0),
    percentiles: tuple[float, float] | None = None,
) -> np.ndarray:
    """The ``image`` (grey, or colour ``(H, W, 3)``) with each grain of ``labels`` tinted in its own
    colour, as uint8 RGB.

    Label 0 (not annotated, pores) is left untinted. ``boundaries`` (a bool mask, e.g. the one the
    generator writes) is drawn in ``boundary_color``; when it is ``None`` the 1-px boundaries
    between different labels are drawn instead.
    """
    unit = image_to_unit(image, percentiles)
    shape = unit.shape[:2]
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise DataError(f"image {shape} and labels {lab.shape} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    rgb = unit.copy() if unit.ndim == 3 else np.repeat(unit[..., None], 3, axis=-1)
    ids, inverse = np.unique(lab, return_inverse=True)
    colors = label_colors(ids)
    tint = colors[inverse.reshape(lab.shape)]
    grain = lab != 0
    rgb[grain] = (1.0 - alpha) * rgb[grain] + alpha * tint[grain]
    edge = boundary_mask(lab) if boundaries is None else np.asarray(boundaries, dtype=bool)
    if edge.shape != shape:
        raise DataError(f"boundaries {edge.shape} and image {shape} differ in shape")
    rgb[edge] = np.asarray(boundary_color, dtype=np.float32)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def _grey_rgb(image: np.ndarray, percentiles) -> np.ndarray:
    """uint8 RGB of a grey (replicated) or colour image."""
    unit = np.round(image_to_unit(image, percentiles) * 255.0).astype(np.uint8)
    return unit if unit.ndim == 3 else np.repeat(unit[..., None], 3, axis=-1)


def preview_grid(
    samples: Sequence[tuple],
    *,
    columns: int = 1,
    gap: int = 8,
    background: int = 255,
    percentiles: tuple[float, float] | None = None,
) -> np.ndarray:
    """Tiles of ``image | overlay`` side by side for several samples, as one uint8 RGB picture.

    ``samples`` holds ``(image, labels)`` or ``(image, labels, boundaries)`` tuples, possibly of
    different sizes (smaller tiles are top-left aligned in their cell). Tiles fill ``columns``
    columns row by row, separated by ``gap`` px of ``background``.
    """
    if not samples:
        raise DataError("preview_grid needs at least one sample")
    if columns < 1:
        raise ConfigError(f"columns must be >= 1, got {columns}")
    if gap < 0:
        raise ConfigError(f"gap must be >= 0, got {gap}")
    tiles = []
    for s in samples:
        if len(s) not in (2, 3):
            raise DataError("each sample must be (image, labels) or (image, labels, boundaries)")
        image, labels = s[0], s[1]
        boundaries = s[2] if len(s) == 3 else None
        left = _grey_rgb(image, percentiles)
        right = overlay_rgb(image, labels, boundaries, percentiles=percentiles)
        sep = np.full((left.shape[0], gap, 3), background, np.uint8)
        tiles.append(np.concatenate([left, sep, right], axis=1))
    cell_h = max(t.shape[0] for t in tiles)
    cell_w = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    cols = min(columns, len(tiles))
    out = np.full((rows * cell_h + (rows - 1) * gap, cols * cell_w + (cols - 1) * gap, 3), background, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        y, x = r * (cell_h + gap), c * (cell_w + gap)
        out[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return out
