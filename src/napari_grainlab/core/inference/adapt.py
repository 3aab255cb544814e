"""Domain adaptation at inference time: AdaBN and histogram matching.

- :func:`adapt_batchnorm` re-estimates every BatchNorm layer's running statistics on the
  target micrographs (AdaBN, Li et al. 2016), for a model trained on another domain (e.g.
  synthetic images).
- :func:`intensity_quantiles` summarises the intensities a model was trained on, and
  :func:`match_histogram` maps a new image's intensities onto them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from .tiling import MULTIPLE, _reflect_index, _round_up, model_multiple, resolve_device

__all__ = ["adapt_batchnorm", "intensity_quantiles", "match_histogram"]

#: pixels sampled per image for quantiles (enough for 1/256 steps to ~0.1 % accuracy)
SAMPLE_PIXELS = 1 << 20


def _check_images(images, name: str = "images") -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    images = list(images)
    if not images:
        raise ValueError(f"{name}: need at least one image")
    out = []
    for k, im in enumerate(images):
        im = np.asarray(im)
        if im.ndim != 2 or im.size == 0:
            raise ValueError(f"{name}[{k}]: expected a non-empty 2-D grayscale array, got shape {im.shape}")
        if im.dtype.kind not in "fiub":
            raise ValueError(f"{name}[{k}]: must be numeric, got dtype {im.dtype}")
        out.append(im)
    return out


# ----------------------------------------------------------------------------- AdaBN
def _random_tiles(images: list[np.ndarray], tile: int, max_tiles: int, rng: np.random.Generator, multiple: int):
    """Random tiles (float32, sides multiples of ``multiple``, reflect-padded) grouped by shape.

    Each image offers one slot per ``tile`` x ``tile`` block it holds (rounded up), and up to
    ``max_tiles`` slots are drawn without replacement; each slot becomes a tile at a uniform
    random position of its image.
    """
    slots = np.concatenate([np.full(-(-im.shape[0] // tile) * -(-im.shape[1] // tile), k)
                            for k, im in enumerate(images)])
    chosen = np.sort(rng.choice(slots, size=min(int(max_tiles), slots.size), replace=False))
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for k in chosen:
        im = images[k]
        h, w = im.shape
        th, tw = min(tile, _round_up(h, multiple)), min(tile, _round_up(w, multiple))
        y0 = int(rng.integers(0, max(h - th, 0) + 1))
        x0 = int(rng.integers(0, max(w - tw, 0) + 1))
        rows = _reflect_index(np.arange(y0, y0 + th), h)
        cols = _reflect_index(np.arange(x0, x0 + tw), w)
        groups.setdefault((th, tw), []).append(im[np.ix_(rows, cols)].astype(np.float32))
    return groups


def adapt_batchnorm(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    tile: int = 256,
    batch_size: int = 8,
    max_tiles: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> torch.nn.Module:
    """AdaBN: a copy of ``model`` whose BatchNorm statistics are re-estimated on ``images``.

    Every ``_BatchNorm`` layer (frozen ones included) gets its running mean and variance
    replaced by the statistics of its input over random tiles of the target images. The
    copy runs in eval mode except for its BatchNorm layers (so dropout stays off), with
    ``momentum=None`` (cumulative averaging) and no gradients; forward hooks accumulate each
    layer's per-channel sums over all tiles, so the new statistics are the exact pooled mean
    and unbiased variance whatever the batch sizes. The copy is returned in eval mode, on
    ``device``; ``model`` itself is left untouched.

    Parameters
    ----------
    model : torch.nn.Module
        Takes N x 1 x H x W float32 in [0, 1].
    images : sequence of (H, W) arrays
        Target-domain grayscale images in [0, 1].
    tile : int
        Tile side (rounded down to a multiple of 32, or of ``model.stride`` when larger;
        smaller images give smaller tiles).
    batch_size : int
        Tiles per forward pass.
    max_tiles : int
        Number of tiles drawn (at most one per ``tile``-sized block of the images).
    device : str or torch.device
    seed : int
        Seed of the tile positions.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = _check_images(images)
    if int(tile) < MULTIPLE or int(batch_size) < 1 or int(max_tiles) < 1:
        raise ValueError(f"tile must be >= {MULTIPLE}, batch_size and max_tiles >= 1")
    multiple = model_multiple(model)
    tile = max(multiple, int(tile) // multiple * multiple)
    device = resolve_device(device)
    adapted = copy.deepcopy(model).to(device)
    layers = [m for m in adapted.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    adapted.eval()
    if not layers:
        return adapted
    sums: dict[_BatchNorm, list] = {m: [0.0, 0.0, 0] for m in layers}  # sum, sum of squares, count

    def hook(module, inputs, _output):
        x = inputs[0].detach().to(torch.float64)
        dims = [d for d in range(x.ndim) if d != 1]
        acc = sums[module]
        acc[0] = acc[0] + x.sum(dim=dims)
        acc[1] = acc[1] + (x * x).sum(dim=dims)
        acc[2] += x.numel() // x.shape[1]

    saved = []
    for m in layers:
        saved.append((m, m.momentum))
        m.reset_running_stats()
        m.momentum = None
        m.train()
    handles = [m.register_forward_hook(hook) for m in layers]
    rng = np.random.default_rng(seed)
    try:
        with torch.no_grad():
            for tiles in _random_tiles(images, tile, max_tiles, rng, multiple).values():
                for i in range(0, len(tiles), int(batch_size)):
                    batch = np.stack(tiles[i:i + int(batch_size)])[:, None]
                    adapted(torch.from_numpy(batch).to(device))
    finally:
        for handle in handles:
            handle.remove()
        for m, momentum in saved:
            m.momentum = momentum
    for m in layers:
        s, ss, n = sums[m]
        if n == 0:
            continue  # the layer saw no input (an unused branch): keep the reset statistics
        mean = s / n
        var = (ss - n * mean * mean) / max(n - 1, 1)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.clamp_min(0).to(m.running_var.dtype))
    adapted.eval()
    return adapted


# ----------------------------------------------------------------------------- histogram matching
def _sample(image: np.ndarray, limit: int = SAMPLE_PIXELS) -> np.ndarray:
    """All pixels, or an evenly strided subset of about ``limit`` of them, as float64."""
    flat = image.reshape(-1)
    step = max(1, flat.size // limit)
    return flat[::step].astype(np.float64)


def _probabilities(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, int(n))


def intensity_quantiles(images: Sequence[np.ndarray] | np.ndarray, n: int = 256) -> np.ndarray:
    """``n`` evenly spaced quantiles (0 to 1) of the pooled intensities of ``images``, float32.

    Large images contribute an evenly strided sample of about a million pixels each.
    """
    if int(n) < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    images = _check_images(images)
    pooled = np.concatenate([_sample(im) for im in images])
    if not np.isfinite(pooled).all():
        raise ValueError("images contain NaN or infinite values")
    return np.quantile(pooled, _probabilities(n)).astype(np.float32)


def _check_reference(reference_quantiles) -> np.ndarray:
    ref = np.asarray(reference_quantiles, dtype=np.float64)
    if ref.ndim != 1 or ref.size < 2:
        raise ValueError(f"reference_quantiles must be a 1-D array of at least 2 values, got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError("reference_quantiles contain NaN or infinite values")
    if np.any(np.diff(ref) < 0):
        raise ValueError("reference_quantiles must be non-decreasing")
    return ref


def match_histogram(image: np.ndarray, reference_quantiles: np.ndarray, *, chunk: int = 1 << 22) -> np.ndarray:
    """Map the intensities of ``image`` monotonically onto a reference distribution.

    The image's own quantiles (at the probabilities of ``reference_quantiles``, from a
    sample of about a million pixels) are paired with the reference quantiles and the image
    is interpolated through that curve, in chunks of ``chunk`` pixels (float32 output, no
    float64 copy of a large image). Tied image quantiles (a saturated or constant region)
    map to the mean of their reference quantiles, so a constant image becomes the middle of
    the reference. The result is clipped to [0, 1].
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D grayscale array, got shape {image.shape}")
    if image.dtype.kind not in "fiub":
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    ref = _check_reference(reference_quantiles)
    sample = _sample(image)
    if not np.isfinite(sample).all() or (image.dtype.kind == "f" and not np.isfinite(image).all()):
        raise ValueError("image contains NaN or infinite values")
    src = np.quantile(sample, _probabilities(ref.size))
    xp, inverse = np.unique(src, return_inverse=True)
    fp = np.bincount(inverse, weights=ref) / np.bincount(inverse)
    out = np.empty(image.shape, dtype=np.float32)
    flat_in, flat_out = image.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, int(chunk)):
        stop = start + int(chunk)
        flat_out[start:stop] = np.interp(flat_in[start:stop], xp, fp)
    np.clip(out, 0.0, 1.0, out=out)
    return out
