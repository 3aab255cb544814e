"""The torch-free half of tiled prediction: tile geometry, blending windows and input checks.

:mod:`~napari_grainlab.core.inference.tiling` (PyTorch models) and
:mod:`napari_grainlab.core.onnx_predict` (ONNX models on onnxruntime) cut images into the same
tiles and blend the network outputs with the same windows, from the code here; see the
description of the method in :mod:`~napari_grainlab.core.inference.tiling`. Only NumPy is
imported (and the error classes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError, ModelError

__all__ = ["MIN_TILE", "MULTIPLE", "Cancelled", "ClassMap", "tile_positions", "tile_window"]

MULTIPLE = 32
MIN_TILE = 64


class Cancelled(Exception):
    """Raised when the ``stop`` callable asks a running prediction to stop."""


class ClassMap(NamedTuple):
    """Result of :func:`classify_tiled`."""

    class_map: np.ndarray  # (H, W) uint16, argmax of the blended class probabilities
    confidence: np.ndarray  # (H, W) float32, the blended probability of that class
    tile_probs: np.ndarray  # (n_tiles, K) float32, tiles in row-major order of the grid


# ----------------------------------------------------------------------------- geometry
def _round_up(n: int, m: int = MULTIPLE) -> int:
    return -(-int(n) // m) * m


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions outside it (mirror without edge repeat)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def tile_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` overlap.

    The last tile ends exactly at ``length`` (it may overlap its neighbour by more).
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ConfigError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    pos = list(range(0, length - tile + 1, stride))
    if pos[-1] != length - tile:
        pos.append(length - tile)
    return pos


def tile_window(tile: int, overlap: int, start_inside: bool, end_inside: bool) -> np.ndarray:
    """1-D blending weights of one tile (float32, length ``tile``).

    Flat (1) towards a canvas border; where the tile has a neighbour (``start_inside`` /
    ``end_inside``) the first / last ``overlap`` px are 0 for ``overlap // 4`` px, then rise as
    a raised cosine to 1. Two neighbours overlapping by exactly ``overlap`` sum to 1.
    """
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        margin = overlap // 4
        i = np.arange(overlap, dtype=np.float64)
        u = np.clip((i - margin + 0.5) / (overlap - 2 * margin), 0.0, 1.0)
        ramp = 0.5 - 0.5 * np.cos(np.pi * u)
        ramp[:margin] = 0.0
        if start_inside:
            w[:overlap] *= ramp
        if end_inside:
            w[tile - overlap:] *= ramp[::-1]
    return w.astype(np.float32)


class _Grid:
    """Tile grid over the padded canvas of an (H, W) image, with separable weights."""

    def __init__(self, shape: tuple[int, int], tile: int, overlap: int, multiple: int = MULTIPLE):
        self.shape = shape
        self.canvas = tuple(_round_up(n, multiple) for n in shape)
        tile = max(multiple, tile // multiple * multiple)
        self.tile = tuple(min(tile, c) for c in self.canvas)
        self.overlap = tuple(min(overlap, t // 2) for t in self.tile)
        self.pos = [tile_positions(c, t, o) for c, t, o in zip(self.canvas, self.tile, self.overlap)]
        self.windows = []
        self.sums = []
        for n, c, t, o, pos in zip(shape, self.canvas, self.tile, self.overlap, self.pos):
            wins = [tile_window(t, o, p > 0, p + t < c) for p in pos]
            total = np.zeros(c, dtype=np.float64)
            for p, w in zip(pos, wins):
                total[p:p + t] += w
            self.windows.append(wins)
            self.sums.append(total[:n].astype(np.float32))

    def __len__(self) -> int:
        return len(self.pos[0]) * len(self.pos[1])

    def tiles(self) -> Iterator[tuple[int, int]]:
        """(row index, column index) in row-major order."""
        for i in range(len(self.pos[0])):
            for j in range(len(self.pos[1])):
                yield i, j

    def extract(self, image: np.ndarray, i: int, j: int, out: np.ndarray) -> None:
        """Tile (i, j) of ``image`` into ``out``: an (H, W) image into (th, tw), a (C, H, W) one into (C, th, tw)."""
        (h, w), (th, tw) = self.shape, self.tile
        y0, x0 = self.pos[0][i], self.pos[1][j]
        if y0 + th <= h and x0 + tw <= w:
            out[...] = image[..., y0:y0 + th, x0:x0 + tw]
        else:
            rows = _reflect_index(np.arange(y0, y0 + th), h)
            cols = _reflect_index(np.arange(x0, x0 + tw), w)
            out[...] = image[..., rows[:, None], cols[None, :]]

    def valid(self, i: int, j: int) -> tuple[slice, slice, int, int]:
        """Image slices covered by tile (i, j) and the size of its part inside the image."""
        (h, w), (th, tw) = self.shape, self.tile
        y0, x0 = self.pos[0][i], self.pos[1][j]
        vh, vw = min(th, h - y0), min(tw, w - x0)
        return slice(y0, y0 + vh), slice(x0, x0 + vw), vh, vw


# ----------------------------------------------------------------------------- checks
def _check_image(image) -> np.ndarray:
    """An (H, W) grey or (H, W, 3) colour image as float32; :class:`DataError` for anything else."""
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise DataError(f"image must be a 2-D grey or (H, W, 3) colour array, got shape {image.shape}")
    if image.size == 0:
        raise DataError("image is empty")
    if image.dtype.kind not in "fiub":
        raise DataError(f"image must be numeric, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise DataError("image contains NaN or infinite values")
    return image


def _unit_image(image) -> np.ndarray:
    """:func:`_check_image`, and the image in the engine's [0, 1] range: a float image within [0, 1] as it is;
    any other (integer pixel values of an 8/16-bit micrograph, bool, floats outside [0, 1]) stretched between
    its 0.1 and 99.9 percentiles, as :func:`~napari_grainlab.core.inference.prepare_image` and the file readers
    do. (The network, the scale estimate and the resampling assume [0, 1]: raw 8-bit values gave one grain.)"""
    raw = np.asarray(image)
    img = _check_image(raw)
    if raw.dtype.kind != "f" or float(img.min()) < 0.0 or float(img.max()) > 1.0:
        from ..data.channels import normalize_image

        img = normalize_image(img)
    return img


def _check_size(image: np.ndarray, multiple: int = MULTIPLE) -> None:
    """Refuse an image with a side shorter than the model's input multiple (at least 32 px).

    The network halves its input five times (or more: ``multiple``), so a smaller image is less than
    one pixel of its coarsest features; padded up to one tile it gave a fake result (one 1.13 px
    "grain" for a 1 x 1 px image).
    """
    side = max(MULTIPLE, int(multiple))
    h, w = image.shape[:2]
    if h < side or w < side:
        raise DataError(f"the image is {h} x {w} px, smaller than the model can see: it needs at least "
                        f"{side} x {side} px")


def _warn_constant(image: np.ndarray, warn: Callable[[str], None] | None) -> None:
    """Warn (through ``warn``, else ``warnings.warn``) when every pixel of ``image`` is the same."""
    from ..data.io import constant_image_message

    message = constant_image_message(image)
    if message is not None:
        if warn is not None:
            warn(message)
        else:
            import warnings

            warnings.warn(message, UserWarning, stacklevel=3)


def _check_tiling(tile: int, overlap: int, batch_size: int) -> None:
    if int(tile) < MULTIPLE:
        raise ConfigError(f"tile must be at least {MULTIPLE} px, got {tile}")
    if int(overlap) < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")


def _check_output(out: np.ndarray, error: type[Exception] = ModelError) -> np.ndarray:
    """Raise ``error`` (default :class:`~napari_grainlab.core.errors.ModelError`) when the network gave NaN / inf."""
    # a float64 sum is finite exactly when every float32 value is (it cannot overflow), and unlike
    # np.isfinite(out) it allocates no full-size mask
    if not math.isfinite(float(out.sum(dtype=np.float64))):
        raise error("the model produced NaN or infinite values; its weights may have diverged during "
                    "training (retrain it, e.g. with a lower learning rate)")
    return out


# ----------------------------------------------------------------------------- blending
#: the flips of test-time augmentation (axes of an N x C x H x W batch), identity first
_FLIPS = ((), (-1,), (-2,), (-2, -1))


def _blend_tiles(out: np.ndarray, grid: _Grid, chunk: Sequence[tuple[int, int]], y: np.ndarray) -> None:
    """Add the activated outputs ``y`` (n, C, th, tw) of the tiles ``chunk``, weighted, into ``out`` (C, H, W).

    ``y`` is multiplied by the windows in place.
    """
    for k, (i, j) in enumerate(chunk):
        ys, xs, vh, vw = grid.valid(i, j)
        pred = y[k, :, :vh, :vw]
        pred *= grid.windows[0][i][:vh, None]
        pred *= grid.windows[1][j][None, :vw]
        out[:, ys, xs] += pred


def _normalise(out: np.ndarray, grid: _Grid) -> None:
    """Divide the blended sum ``out`` (C, H, W) by the window sums, in place."""
    sy, sx = grid.sums
    out *= (1.0 / sy)[None, :, None]
    out *= (1.0 / sx)[None, None, :]


def _class_map(grid: _Grid, probs: np.ndarray) -> ClassMap:
    """Blend per-tile class probabilities (n_tiles, K) over the image into a :class:`ClassMap`.

    Built in row blocks: memory is O(H * W), not O(K * H * W).
    """
    h, w = grid.shape
    nr, nc = len(grid.pos[0]), len(grid.pos[1])
    k = probs.shape[1]
    grid_probs = probs.reshape(nr, nc, k)
    # normalised 1-D weights of every row / column position over the image: (H, nr), (W, nc)
    ay = _axis_weights(grid, 0)
    ax = _axis_weights(grid, 1)
    # blend along x once: (nr, W, K), then per row block along y
    px = np.einsum("wj,ijk->iwk", ax, grid_probs, optimize=True).astype(np.float32)
    class_map = np.empty((h, w), dtype=np.uint16)
    confidence = np.empty((h, w), dtype=np.float32)
    block = max(1, (1 << 22) // max(1, w * k))
    for y0 in range(0, h, block):
        y1 = min(h, y0 + block)
        p = np.einsum("yi,iwk->ywk", ay[y0:y1], px, optimize=True)
        class_map[y0:y1] = p.argmax(axis=2)
        confidence[y0:y1] = p.max(axis=2)
    return ClassMap(class_map, confidence, probs)


def _axis_weights(grid: _Grid, axis: int) -> np.ndarray:
    n = grid.shape[axis]
    t = grid.tile[axis]
    a = np.zeros((n, len(grid.pos[axis])), dtype=np.float32)
    for idx, (p, win) in enumerate(zip(grid.pos[axis], grid.windows[axis])):
        vn = min(t, n - p)
        if vn > 0:
            a[p:p + vn, idx] = win[:vn]
    a /= grid.sums[axis][:, None]
    return a
