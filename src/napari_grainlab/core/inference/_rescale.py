"""Grain scale at inference: meet the model at the grain size it was trained on (NumPy / scikit-image only).

A model that records its training scale (``grain_diameter``, the mean grain diameter in px of its
training data) sees an input best when the input's grains have about that size.  The input's mean grain
diameter is the user's (``InferenceOptions.diameter``) or estimated
(:func:`napari_grainlab.core.inference.scale.estimate_diameter`); the image is resized by
``model diameter / input diameter`` (clamped to [:data:`MIN_SCALE`, :data:`MAX_SCALE`], never below what
the model can see, never above :data:`MAX_SCALED_PIXELS` unless the input is already larger), the model
predicts, and its probability maps are resized back to the input's resolution before the watershed, so
labels come back at the input's resolution.  The watershed settings measured in px at the network's
scale (the Gaussian ``smoothing`` of the maps, the default ``min_size``) are converted to input px.
Models without a recorded scale (older checkpoints) are never rescaled.

An *estimated* diameter is refined with the model itself when the caller passes a ``predict`` function
(:func:`refine_factor`; the ``refine_scale`` option switches it off): the model-free estimate can be far off on real
micrographs (2-3x too large on optical micrographs without dark boundary lines and on EBSD maps), so the
network is run on a centre crop at a few factors around the estimate's (and at 1), each result is
segmented by the watershed, and the factor whose predicted boundaries the network is surest of (the
highest mean boundary probability along the watershed lines, the largest factor among near-ties) is taken.
A network shown grains far smaller than it was trained on blurs their boundaries into grey; shown grains
far larger, it draws weak, invented boundaries inside them; both lower that mean, the second more
(missed boundaries are simply not drawn), hence the preference for the larger factor among near-ties.
(Comparing the predicted grain size with the training scale, cellpose's criterion, does not work for our networks: they find grains of about their
training size at every factor.)

Shared by the PyTorch pipeline and the torch-free ONNX prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DataError
from ._result import SCALE_COLUMNS, ScaleInfo, default_min_size

__all__ = ["MAX_SCALE", "MAX_SCALED_PIXELS", "MIN_SCALE", "SCALE_COLUMNS", "ScaleInfo", "boundary_support",
           "model_grain_diameter", "plan_scale", "refine_factor", "resize_image", "resize_maps", "scaled_postprocess",
           "scaled_shape"]

#: the input is resized by at least this factor ...
MIN_SCALE = 0.25
#: ... and at most this one
MAX_SCALE = 4.0
#: factors this close to 1 are taken as 1 (no resampling, no blur)
TOLERANCE = 0.05
#: an image is not enlarged beyond this many pixels (8192 x 8192) unless it is already larger
MAX_SCALED_PIXELS = 1 << 26
#: the factors tried, as multiples of the model-free estimate's factor (and 1, the input as it is, when it
#: lies between them): only enlarging ones, since the estimate errs towards too large a diameter on real
#: micrographs (benchmarks/bench_real.py) and every wrong choice measured below the estimate's factor cost
#: more F1 than the right ones gained (benchmarks/bench_scale.py --model)
REFINE_STEPS = (1.0, 2 ** 0.5, 2.0, 2 ** 1.5)
#: the refinement looks at a centre crop of at most this side (input px) ...
REFINE_CROP = 512
#: ... smaller when the candidates together would give the network more than this many pixels ...
REFINE_PIXELS = 3 * 256 * 256
#: ... but not below this side
REFINE_MIN_CROP = 128
#: candidates whose boundary support is within this much of the highest count as tied, and the largest factor
#: among them (the finest segmentation) is taken: the support drops when the network invents boundaries in
#: grains shown too large, but hardly when it misses boundaries of grains shown too small, so a plain
#: maximum picks too small a factor. Measured (the estimate's candidates on 16 real fields of 9 sources and
#: 16 synthetic tint / SEM / optical images, each scored against its labels): a tie of 0.02-0.08 gives real
#: mean boundary F1 0.862-0.867 (0.867 at 0.02) against 0.857 for the plain maximum and 0.838 for keeping
#: the estimate unless beaten by 0.01 (the former rule); wider ties help small tint-etched images more (0.86-0.89
#: from 0.04 on, 0.83 at 0.02) but choose larger factors on SEM images too, and the network's time grows
#: with the square of the factor (1024² SEM: 1.9 s at 0.05, against the 2 s target), so the smallest is used
REFINE_TIE = 0.02
#: when every candidate's support lies within this much, the network does not tell scales apart: the
#: estimate's factor stays
REFINE_FLAT = 1e-3


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def model_grain_diameter(meta: dict | None, model: Any = None) -> float | None:
    """The training scale (mean grain diameter, px) a model records: ``model.spec.grain_diameter``, else the
    ``grain_diameter`` of its metadata (top level, ``spec``, ``training`` or ``input``); None when there is
    none (older checkpoints)."""
    found = _positive(getattr(getattr(model, "spec", None), "grain_diameter", None))
    if found is not None:
        return found
    meta = meta if isinstance(meta, dict) else {}
    for where in (meta, meta.get("spec"), meta.get("training"), meta.get("input")):
        if isinstance(where, dict):
            found = _positive(where.get("grain_diameter"))
            if found is not None:
                return found
    return None


def _clamp(wanted: float, shape: tuple[int, ...], min_side: int) -> float:
    h, w = shape[:2]
    factor = min(max(wanted, MIN_SCALE), MAX_SCALE)
    factor = max(factor, min_side / min(h, w))  # never smaller than the model can see
    return min(factor, max(1.0, math.sqrt(MAX_SCALED_PIXELS / (h * w))))  # nor beyond a sane size


def boundary_support(maps: np.ndarray) -> tuple[float, np.ndarray]:
    """``(mean boundary probability along the watershed lines, labels)`` of (2, h, w) network maps (boundary,
    distance) at the network's scale, segmented with the default watershed; 0 when there are no lines."""
    from skimage.segmentation import find_boundaries

    from .postprocess import watershed_grains

    labels = watershed_grains(maps[0], maps[1], min_size=default_min_size(maps.shape[1:]))
    lines = find_boundaries(labels, mode="inner")
    return (float(maps[0][lines].mean()) if lines.any() else 0.0), labels


def refine_factor(image: np.ndarray, factor: float, predict: Callable[[np.ndarray], np.ndarray], min_side: int,
                  steps: tuple[float, ...] = REFINE_STEPS) -> tuple[float, dict[float, float]]:
    """The resize factor the network is surest of, among ``factor`` x ``steps`` (each clamped as
    :func:`plan_scale` does) and 1 when it lies between them; returns it and the boundary support (:func:`boundary_support`) of every
    candidate.

    ``predict`` takes an (h, w) / (h, w, 3) image and returns the network's (2, h, w) maps. All candidates
    see the same centre crop of ``image`` (at most :data:`REFINE_CROP` px, less when they would cost more
    than :data:`REFINE_PIXELS` network pixels together, at least :data:`REFINE_MIN_CROP`); the largest
    candidate whose support is within :data:`REFINE_TIE` of the highest is taken (``factor`` itself when all
    supports lie within :data:`REFINE_FLAT`). Deterministic.
    """
    shape = image.shape[:2]
    cands = {round(_clamp(factor * k, shape, min_side), 6) for k in steps}
    lo, hi = min(cands), max(cands)
    native = round(_clamp(1.0, shape, min_side), 6)
    cands = sorted(cands | ({native} if lo <= native <= hi else set()))
    cost = sum(f * f for f in cands)
    side = int(max(REFINE_MIN_CROP, min(REFINE_CROP, math.sqrt(REFINE_PIXELS / cost))))
    h, w = min(side, shape[0]), min(side, shape[1])
    y0, x0 = (shape[0] - h) // 2, (shape[1] - w) // 2
    crop = image[y0:y0 + h, x0:x0 + w]
    support = {}
    for f in cands:
        support[f] = boundary_support(predict(resize_image(crop, f, min_side)))[0]
    base = min(cands, key=lambda f: abs(math.log(f / factor)))
    top = max(support.values())
    if top - min(support.values()) < REFINE_FLAT:
        return factor, support
    best = max(f for f in cands if support[f] >= top - REFINE_TIE)
    return (factor if best == base else best), support


def plan_scale(image: np.ndarray, model_diameter: float | None, diameter: float | None, rescale: bool,
               min_side: int, predict: Callable[[np.ndarray], np.ndarray] | None = None,
               refine: bool = True) -> ScaleInfo:
    """How to resize ``image`` ((H, W) or (H, W, 3) in [0, 1]) for a model of training scale ``model_diameter``.

    ``diameter`` is the user's mean grain diameter of the image in px (None: estimate it, but only when the
    model records a scale and ``rescale`` is on, since nothing else needs it); ``min_side`` is the shortest
    side the model takes. ``predict`` (an image -> the network's (2, h, w) maps) lets an estimate be refined
    with the model (:func:`refine_factor`, when ``refine``); the diameter is then
    ``model_diameter / factor`` and the source ``"estimated (model)"``.
    """
    given = _positive(diameter)
    if diameter is not None and given is None:
        raise DataError(f"diameter: must be a positive number of px, got {diameter!r}")
    if model_diameter is None:
        return ScaleInfo(given, "given" if given else "", None, 1.0,
                         "the model records no training scale" if given else "")
    if not rescale:
        return ScaleInfo(given, "given" if given else "", model_diameter, 1.0, "rescaling off" if given else "")
    if given is None:
        from .scale import estimate_diameter

        est = _positive(estimate_diameter(image))
        if est is None:
            return ScaleInfo(None, "", model_diameter, 1.0, "no grain diameter could be estimated")
        used, source = est, "estimated"
    else:
        used, source = given, "given"
    wanted = model_diameter / used
    factor = _clamp(wanted, image.shape, min_side)
    if source == "estimated" and predict is not None and refine:
        refined, _ = refine_factor(image, factor, predict, min_side)
        if refined != factor:
            used, source, wanted, factor = model_diameter / refined, "estimated (model)", refined, refined
    note = ""
    if abs(factor - wanted) > 1e-9 * wanted:
        note = f"limited from ×{wanted:.3g}"
    if abs(factor - 1.0) < TOLERANCE:
        factor = 1.0
    return ScaleInfo(float(used), source, float(model_diameter), float(factor), note)


def scaled_shape(shape: tuple[int, ...], factor: float, min_side: int = 1) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` resized by ``factor`` (each side at least ``min_side``)."""
    return tuple(max(int(min_side), int(round(n * factor))) for n in shape[:2])


def resize_image(image: np.ndarray, factor: float, min_side: int = 1) -> np.ndarray:
    """``image`` ((H, W) or (H, W, 3)) resized by ``factor``: bilinear, anti-aliased when shrinking;
    float32, values kept in the input's range."""
    from skimage.transform import resize

    if factor == 1.0:
        return image
    shape = scaled_shape(image.shape, factor, min_side) + tuple(image.shape[2:])
    out = resize(image, shape, order=1, mode="reflect", anti_aliasing=factor < 1, preserve_range=True)
    return out.astype(np.float32, copy=False)


def resize_maps(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(C, h, w) probability maps resized to (C, *shape): bilinear, anti-aliased when shrinking, so a thin
    boundary line is kept (blurred) rather than skipped."""
    from skimage.transform import resize

    if maps.shape[1:] == tuple(shape):
        return maps
    shrink = shape[0] < maps.shape[1] or shape[1] < maps.shape[2]
    out = np.empty((maps.shape[0], *shape), dtype=np.float32)
    for c in range(maps.shape[0]):
        out[c] = resize(maps[c], shape, order=1, mode="reflect", anti_aliasing=shrink, preserve_range=True)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def scaled_postprocess(min_size: int | None, watershed: dict[str, Any], factor: float,
                       model_shape: tuple[int, int]) -> tuple[int, dict[str, Any]]:
    """``(min_size, watershed keyword arguments)`` for maps at the input's resolution that the network
    made at ``factor`` times it: the ``smoothing`` (px at the network's scale) becomes ``smoothing /
    factor`` input px; the default ``min_size`` (:func:`default_min_size` of the network's image) becomes
    ``/ factor**2`` input px.  A ``min_size`` the user gave is in input px and stays."""
    kwargs = dict(watershed)
    if min_size is None:
        min_size = default_min_size(model_shape)
        if factor != 1.0:
            min_size = max(1, int(round(min_size / (factor * factor))))
    if factor != 1.0 and kwargs.get("smoothing"):
        kwargs["smoothing"] = float(kwargs["smoothing"]) / factor
    return int(min_size), kwargs
