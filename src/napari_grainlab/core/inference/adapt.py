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

from ..errors import ConfigError
from ._histogram import (  # noqa: F401
    SAMPLE_PIXELS,
    _check_images,
    _check_reference,
    _probabilities,
    _sample,
    intensity_quantiles,
    match_histogram,
)
from .tiling import MULTIPLE, _reflect_index, _round_up, as_model_input, model_channels, model_multiple, resolve_device

__all__ = ["adapt_batchnorm", "intensity_quantiles", "match_histogram"]

# ----------------------------------------------------------------------------- AdaBN
def _random_tiles(images: list[np.ndarray], tile: int, max_tiles: int, rng: np.random.Generator, multiple: int):
    """Random tiles (float32 (C, th, tw), sides multiples of ``multiple``, reflect-padded) of (C, H, W)
    images, grouped by shape.

    Each image offers one slot per ``tile`` x ``tile`` block it holds (rounded up), and up to
    ``max_tiles`` slots are drawn without replacement; each slot becomes a tile at a uniform
    random position of its image.
    """
    slots = np.concatenate([np.full(-(-im.shape[-2] // tile) * -(-im.shape[-1] // tile), k)
                            for k, im in enumerate(images)])
    chosen = np.sort(rng.choice(slots, size=min(int(max_tiles), slots.size), replace=False))
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for k in chosen:
        im = images[k]
        h, w = im.shape[-2:]
        th, tw = min(tile, _round_up(h, multiple)), min(tile, _round_up(w, multiple))
        y0 = int(rng.integers(0, max(h - th, 0) + 1))
        x0 = int(rng.integers(0, max(w - tw, 0) + 1))
        rows = _reflect_index(np.arange(y0, y0 + th), h)
        cols = _reflect_index(np.arange(x0, x0 + tw), w)
        groups.setdefault((th, tw), []).append(im[:, rows[:, None], cols[None, :]].astype(np.float32))
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
        Takes N x c x H x W float32 in [0, 1] (c: :func:`~napari_grainlab.core.inference.tiling.model_channels`).
    images : sequence of (H, W) or (H, W, 3) arrays
        Target-domain grey or colour images in [0, 1], given to the model as
        :func:`~napari_grainlab.core.inference.tiling.as_model_input` makes them.
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
        raise ConfigError(f"tile must be >= {MULTIPLE}, batch_size and max_tiles >= 1")
    multiple = model_multiple(model)
    channels = model_channels(model)
    images = [as_model_input(im, channels) for im in images]
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
                    batch = np.stack(tiles[i:i + int(batch_size)])
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
