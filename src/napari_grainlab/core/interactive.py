"""Prompted grain segmentation: the grain under a click, the grains in a box, edits from a scribble.

A :class:`ClickSegmenter` runs a segmentation model (the built-in ``generalist`` by default, any checkpoint
by choice) **once** per image, at the image's grain scale (given, or estimated as
:func:`~napari_grainlab.core.inference.predict_array` does), and keeps what it predicted: the boundary and
distance-to-boundary probability maps and the grains its marker-controlled watershed draws on them.  Every
prompt after that is answered from those cached maps, without the network:

- :meth:`ClickSegmenter.grain_at` -- the grain containing a pixel (a bounding-box lookup in the cached
  grains; a click on a boundary line takes the side the network is surest of);
- :meth:`ClickSegmenter.grains_in_box` -- every grain that lies mostly inside a box;
- :attr:`ClickSegmenter.uncertainty` and :meth:`ClickSegmenter.next_uncertain` -- where the network is least
  sure whether there is a boundary (:func:`boundary_uncertainty`), and the most uncertain area not annotated
  yet.

The edit functions (:func:`add_grain`, :func:`add_grains`, :func:`remove_grain_at`, :func:`scribble`) turn a
prompt's answer into one :class:`~napari_grainlab.core.annotate.LabelEdit` on an annotation, which the
Annotate dock applies as one undoable step and the interactive benchmark applies directly.  No Qt, no
napari; the network runs only in the constructor (call it off the GUI thread).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .annotate import LabelEdit, _check_labels, merge_grains, polyline_pixels, split_grain
from .errors import DataError, ModelError

__all__ = ["ClickSegmenter", "add_grain", "add_grains", "boundary_uncertainty", "remove_grain_at", "scribble"]

#: a box keeps a grain when at least this share of its area lies inside the box
BOX_MIN_FRACTION = 0.5
#: a scribble splits the grain holding at least this share of its pixels; else it merges the grains it crosses
SPLIT_SHARE = 0.7
#: ... each grain holding at least this share of the scribble takes part in a merge
MERGE_SHARE = 0.15
#: a click on a pixel whose boundary probability is above this is moved to the nearest surer interior pixel
ON_BOUNDARY = 0.5


def boundary_uncertainty(boundary: np.ndarray, smoothing: float = 1.0, reach: int = 2) -> np.ndarray:
    """Where the network is unsure whether there is a boundary: the binary entropy (bits, in [0, 1]) of the
    strongest boundary probability within ``reach`` px (a maximum filter), Gaussian-smoothed by ``smoothing`` px.

    The maximum filter matters: across a boundary the network is sure of, the probability still falls from 1 to
    0 over a pixel or two, and the entropy of the raw map would light up both flanks of every boundary.  The
    strongest value nearby is about 1 on such a boundary and about 0 inside a grain (both certain), and stays
    near 0.5 only on a faint, doubtful one.
    """
    p = np.asarray(boundary, dtype=np.float32)
    if reach > 0:
        p = ndi.maximum_filter(p, size=2 * int(reach) + 1, mode="nearest")
    p = np.clip(p, 1e-6, 1 - 1e-6)
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    if smoothing > 0:
        h = ndi.gaussian_filter(h, float(smoothing))
    return np.clip(h, 0.0, 1.0).astype(np.float32)


def _load_model(model: Any, device: Any):
    """``model``: a registry name / model folder / file, or a ``(module, meta)`` pair already loaded."""
    if isinstance(model, tuple) and len(model) == 2:
        return model
    if not isinstance(model, (str, Path)):
        raise ModelError(f"model: expected a model name or folder, or a (module, metadata) pair, got {type(model).__name__}")
    from .models import load_checkpoint

    module, meta = load_checkpoint(model, device=device)
    if getattr(module, "task", "segment") != "segment":
        raise ModelError(f"{model}: a {module.task} model; clicking grains needs a segmentation model")
    return module, meta


class ClickSegmenter:
    """Grains at a click or in a box, answered from one prediction of a segmentation model.

    Parameters
    ----------
    image : (H, W) or (H, W, 3 / 4) array of any dtype
        The micrograph (normalised as :func:`~napari_grainlab.core.inference.prepare_image` does).
    model : str, path or (module, metadata)
        A built-in model's name (default ``"generalist"``), a model folder, or a loaded checkpoint.
    diameter : float, optional
        The image's mean grain diameter in px; None: estimated (see ``scaling`` for what was used).
    device, stop, progress, **options
        Passed to :func:`~napari_grainlab.core.inference.predict_array` (``tile=``, ``tta=``, watershed
        settings, ...); ``stop`` is polled between tiles and cancels with
        :class:`~napari_grainlab.core.inference.tiling.Cancelled`.
    result : PredictionResult, optional
        A prediction already made for this image (its ``labels``, ``boundary`` and ``distance``): the model
        is not run (see also :meth:`from_maps`).
    """

    def __init__(self, image: Any, model: Any = "generalist", *, diameter: float | None = None,
                 device: Any = "auto", stop: Callable[[], bool] | None = None,
                 progress: Callable[[int, int], None] | None = None, result: Any = None, **options: Any) -> None:
        from .inference.pipeline import prepare_image

        img = prepare_image(image)
        self._image_shape = img.shape[:2]  # the image itself is not kept: only the maps answer prompts
        if result is None:
            from .inference import predict_array
            from .inference.tiling import resolve_device

            dev = resolve_device(device) if isinstance(device, str) else device
            module, meta = _load_model(model, dev)
            try:
                result = predict_array(module, meta, img, device=dev, stop=stop, progress=progress,
                                       diameter=diameter, **options)
            except RuntimeError as exc:  # torch's out-of-memory errors are RuntimeErrors
                from .training.fit import is_oom

                if not (is_oom(exc) or "can't allocate memory" in str(exc)):
                    raise
                raise MemoryError(f"out of {'GPU ' if getattr(dev, 'type', '') == 'cuda' else ''}memory predicting "
                                  f"the maps of a {img.shape[0]} x {img.shape[1]} px image; try a smaller tile "
                                  "(tile=256)") from exc
            self.model_name = str(model) if isinstance(model, (str, Path)) else str(meta.get("name", "model"))
        else:
            self.model_name = str(model) if isinstance(model, (str, Path)) else "given maps"
        del img
        if getattr(result, "labels", None) is None or getattr(result, "boundary", None) is None:
            raise ModelError("clicking grains needs a segmentation prediction (labels and boundary map)")
        self.scaling = getattr(result, "scaling", None)
        self._set_maps(result.labels, result.boundary, getattr(result, "distance", None))

    @classmethod
    def from_maps(cls, image: Any, boundary: np.ndarray, distance: np.ndarray, *, labels: np.ndarray | None = None,
                  **watershed: Any) -> ClickSegmenter:
        """A segmenter on maps made elsewhere (another model, a cache): ``labels`` are the grains drawn on them
        (None: :func:`~napari_grainlab.core.inference.postprocess.watershed_grains` with ``watershed``)."""
        from types import SimpleNamespace

        from .inference.postprocess import watershed_grains

        boundary = np.asarray(boundary, dtype=np.float32)
        distance = np.asarray(distance, dtype=np.float32)
        if labels is None:
            labels = watershed_grains(boundary, distance, **watershed)
        return cls(image, model="given maps", result=SimpleNamespace(labels=labels, boundary=boundary,
                                                                      distance=distance, scaling=None))

    def _set_maps(self, labels: np.ndarray, boundary: np.ndarray, distance: np.ndarray | None) -> None:
        labels = _check_labels(labels)
        shape = self._image_shape
        if labels.shape != shape or np.shape(boundary) != shape:
            raise DataError(f"the maps have shape {labels.shape} / {np.shape(boundary)}, the image {shape}")
        self.labels = np.ascontiguousarray(labels)
        self.boundary = np.asarray(boundary, dtype=np.float32)
        self.distance = None if distance is None else np.asarray(distance, dtype=np.float32)
        self._objects = ndi.find_objects(self.labels)
        self._areas = np.bincount(self.labels.ravel())
        self._uncertainty: np.ndarray | None = None

    # ----------------------------------------------------------------------------- prompts
    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape

    @property
    def diameter(self) -> float | None:
        """The image's grain diameter (px) the prediction used (None: not known)."""
        return getattr(self.scaling, "diameter", None)

    def _check_point(self, y: float, x: float) -> tuple[int, int]:
        if not (math.isfinite(y) and math.isfinite(x)):
            raise DataError(f"click at ({y}, {x}): not a pixel")
        r, c = int(math.floor(y + 0.5)), int(math.floor(x + 0.5))
        h, w = self.shape
        if not (0 <= r < h and 0 <= c < w):
            raise DataError(f"click at ({y:g}, {x:g}) is outside the {h} x {w} px image")
        return r, c

    def _interior_point(self, r: int, c: int) -> tuple[int, int]:
        """A click on a boundary line moves to the lowest-boundary pixel within 3 px (ties: the nearest)."""
        if self.boundary[r, c] <= ON_BOUNDARY:
            return r, c
        h, w = self.shape
        r0, r1, c0, c1 = max(0, r - 3), min(h, r + 4), max(0, c - 3), min(w, c + 4)
        win = self.boundary[r0:r1, c0:c1]
        yy, xx = np.mgrid[r0:r1, c0:c1]
        key = win + 1e-3 * np.hypot(yy - r, xx - c)
        i = int(np.argmin(key))
        return int(yy.flat[i]), int(xx.flat[i])

    def grain_id_at(self, y: float, x: float) -> int:
        """The id, in :attr:`labels`, of the grain the click at (row ``y``, column ``x``) falls in."""
        r, c = self._interior_point(*self._check_point(y, x))
        return int(self.labels[r, c])

    def grain_at(self, y: float, x: float) -> np.ndarray:
        """Boolean (H, W) mask of the grain containing (row ``y``, column ``x``)."""
        g = self.grain_id_at(y, x)
        mask = np.zeros(self.shape, dtype=bool)
        if g > 0 and g <= len(self._objects) and self._objects[g - 1] is not None:
            box = self._objects[g - 1]
            mask[box] = self.labels[box] == g
        return mask

    def grains_in_box(self, y0: float, x0: float, y1: float, x1: float, *,
                      min_fraction: float = BOX_MIN_FRACTION) -> np.ndarray:
        """uint32 (H, W) labels 1..n of the grains with at least ``min_fraction`` of their area inside the box
        (corners in any order, clipped to the image); the grains are whole, also where they leave the box."""
        h, w = self.shape
        vals = [float(v) for v in (y0, x0, y1, x1)]
        if not all(math.isfinite(v) for v in vals):
            raise DataError("box: the corners must be finite numbers")
        ra, rb = sorted((vals[0], vals[2]))
        ca, cb = sorted((vals[1], vals[3]))
        r0, r1 = max(0, int(math.floor(ra + 0.5))), min(h, int(math.floor(rb + 0.5)) + 1)
        c0, c1 = max(0, int(math.floor(ca + 0.5))), min(w, int(math.floor(cb + 0.5)) + 1)
        out = np.zeros(self.shape, dtype=np.uint32)
        if r0 >= r1 or c0 >= c1:
            return out
        inside = np.bincount(self.labels[r0:r1, c0:c1].ravel(), minlength=self._areas.size)
        ids = np.nonzero((inside >= min_fraction * np.maximum(self._areas, 1)) & (inside > 0))[0]
        ids = ids[ids > 0]
        for new, g in enumerate(ids, start=1):
            box = self._objects[g - 1]
            out[box][self.labels[box] == g] = new
        return out

    @property
    def uncertainty(self) -> np.ndarray:
        """(H, W) float32 in [0, 1]: the binary entropy of the boundary probability (:func:`boundary_uncertainty`)."""
        if self._uncertainty is None:
            self._uncertainty = boundary_uncertainty(self.boundary)
        return self._uncertainty

    def next_uncertain(self, annotated: np.ndarray | None = None, window: int | None = None) -> tuple[int, int] | None:
        """Centre (row, column) of the ``window`` px square (default: two grain diameters, at least 32 px) with
        the highest mean uncertainty over the pixels not ``annotated`` (a bool mask, or labels: > 0); None when
        everything is annotated.

        The search runs on a grid of every ``window / 8``-th pixel (the uncertainty is smooth on that scale),
        so it costs well under a millisecond per megapixel whatever the window; the answer is the grid point at
        the best window's centre, or the free pixel nearest to it.
        """
        u = self.uncertainty
        h, w = self.shape
        if annotated is not None and np.shape(annotated) != self.shape:
            raise DataError(f"annotated has shape {np.shape(annotated)}, the image {self.shape}")
        if window is None:
            d = self.diameter or 16.0
            window = int(max(32, round(2 * d)))
        window = max(1, int(window))
        b = max(1, window // 8)
        o = b // 2
        ann = None if annotated is None else np.asarray(annotated)
        free = np.ones(u[o::b, o::b].shape, dtype=bool) if ann is None else ann[o::b, o::b] == 0
        score = ndi.uniform_filter(np.where(free, u[o::b, o::b], 0.0).astype(np.float32),
                                   size=max(1, round(window / b)), mode="constant")
        if free.any():
            gy, gx = divmod(int(np.argmax(np.where(free, score, -1.0))), free.shape[1])
            return int(o + gy * b), int(o + gx * b)
        if ann is None or (ann != 0).all():
            return None
        ys, xs = np.nonzero(ann == 0)  # free pixels only between the grid points (a rare, tiny remainder)
        i = int(np.argmax(u[ys, xs]))
        return int(ys[i]), int(xs[i])


# ============================================================================ edits

def _new_id(labels: np.ndarray) -> int:
    new = int(labels.max(initial=0)) + 1
    if new > np.iinfo(labels.dtype).max:
        raise DataError(f"no free grain id in a {labels.dtype} label array")
    return new


def add_grain(labels: np.ndarray, mask: np.ndarray, *, at: tuple[float, float] | None = None) -> LabelEdit:
    """Put the grain ``mask`` into the annotation ``labels`` as one edit.

    The grain goes into unannotated pixels (0) only; other grains are never overwritten.  When ``at`` (the
    click, row / column) lies on an existing grain, that grain is replaced: it keeps its id, takes the mask's
    pixels, and its pixels outside the mask become unannotated.  Otherwise the grain gets a new id.
    """
    labels = _check_labels(labels)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != labels.shape:
        raise DataError(f"mask has shape {mask.shape}, the labels {labels.shape}")
    old = 0
    if at is not None:
        r, c = (int(math.floor(v + 0.5)) for v in at)
        if 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]:
            old = int(labels[r, c])
    target = old or _new_id(labels)
    # work inside the bounding box of the mask and of the replaced grain (a click on a large image stays fast)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    boxes = [(rows[0], rows[-1], cols[0], cols[-1])] if rows.size else []
    if old:
        flat = np.flatnonzero(labels == old)
        oy, ox = np.divmod(flat, labels.shape[1])
        boxes.append((oy.min(), oy.max(), ox.min(), ox.max()))
    if not boxes:
        return LabelEdit.empty(labels.dtype)
    r0, r1 = min(b[0] for b in boxes), max(b[1] for b in boxes) + 1
    c0, c1 = min(b[2] for b in boxes), max(b[3] for b in boxes) + 1
    sub, m = labels[r0:r1, c0:c1], mask[r0:r1, c0:c1]
    paint = m & ((sub == 0) | (sub == old)) if old else m & (sub == 0)
    clear = (sub == old) & ~m if old else np.zeros_like(m)
    values = np.where(paint, target, 0).astype(labels.dtype)
    change = (paint | clear) & (sub != values)
    if not change.any():
        return LabelEdit.empty(labels.dtype)
    yy, xx = np.nonzero(change)
    return LabelEdit((yy + r0, xx + c0), values[change], new_ids=() if old else (target,))


def add_grains(labels: np.ndarray, grains: np.ndarray, *, min_fraction: float = 0.5) -> LabelEdit:
    """Put every grain of the label image ``grains`` into the unannotated pixels of ``labels`` (new ids), as one
    edit; a grain of which less than ``min_fraction`` is still unannotated is left out."""
    labels = _check_labels(labels)
    grains = _check_labels(grains)
    if grains.shape != labels.shape:
        raise DataError(f"grains have shape {grains.shape}, the labels {labels.shape}")
    flat = np.flatnonzero(grains)
    if flat.size == 0:
        return LabelEdit.empty(labels.dtype)
    ys, xs = np.divmod(flat, grains.shape[1])
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # work in the grains' bounding box
    sub_g, free = grains[r0:r1, c0:c1], labels[r0:r1, c0:c1] == 0
    total = np.bincount(sub_g.ravel())
    avail = np.bincount(sub_g[free].ravel(), minlength=total.size)
    ids = [g for g in range(1, total.size) if total[g] and avail[g] >= min_fraction * total[g]]
    if not ids:
        return LabelEdit.empty(labels.dtype)
    start = _new_id(labels)
    if start + len(ids) - 1 > np.iinfo(labels.dtype).max:
        raise DataError(f"no free grain ids in a {labels.dtype} label array")
    lut = np.zeros(total.size, dtype=np.int64)
    lut[ids] = np.arange(start, start + len(ids))
    target = lut[sub_g] * free
    yy, xx = np.nonzero(target)
    return LabelEdit((yy + r0, xx + c0), target[yy, xx].astype(labels.dtype),
                     new_ids=tuple(range(start, start + len(ids))))


def remove_grain_at(labels: np.ndarray, y: float, x: float) -> LabelEdit:
    """Unannotate the grain under the click (shift-click); nothing when the pixel is not annotated."""
    labels = _check_labels(labels)
    r, c = int(math.floor(y + 0.5)), int(math.floor(x + 0.5))
    if not (0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]) or labels[r, c] == 0:
        return LabelEdit.empty(labels.dtype)
    g = int(labels[r, c])
    idx = np.nonzero(labels == g)
    return LabelEdit(idx, np.zeros(idx[0].size, labels.dtype), removed_ids=(g,))


def _extend(points: np.ndarray, mask: np.ndarray, reach: int) -> np.ndarray:
    """``points`` with each end prolonged along its last segment, pixel by pixel, until it leaves ``mask``
    (at most ``reach`` px): a split stroke that stops short of the grain's border still cuts it."""
    pts = [p for p in np.asarray(points, dtype=float)]
    h, w = mask.shape

    def walk(end: np.ndarray, prev: np.ndarray) -> np.ndarray | None:
        d = end - prev
        n = float(np.hypot(*d))
        if n < 1e-9:
            return None
        d /= n
        p = end.copy()
        for _ in range(int(reach)):
            p = p + d
            r, c = int(round(p[0])), int(round(p[1]))
            if not (0 <= r < h and 0 <= c < w) or not mask[r, c]:
                return p
        return p

    if len(pts) >= 2:
        head = walk(pts[0], pts[1])
        tail = walk(pts[-1], pts[-2])
        if head is not None:
            pts.insert(0, head)
        if tail is not None:
            pts.append(tail)
    return np.array(pts)


def scribble(labels: np.ndarray, points: Sequence[Sequence[float]] | np.ndarray, *, width: int = 1,
             reach: int = 256) -> LabelEdit:
    """A stroke (polyline ``points``, row / column) drawn on the annotation, as one edit.

    - A stroke that lies mostly (:data:`SPLIT_SHARE`) in one grain *splits* it along the stroke, prolonged at
      both ends to the grain's border (at most ``reach`` px), so a line drawn along a missed boundary is enough.
    - Otherwise it *merges* the grains it crosses (each holding at least :data:`MERGE_SHARE` of the stroke)
      into the first one it touches.
    """
    labels = _check_labels(labels)
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    if pts.shape[0] < 2:
        return LabelEdit.empty(labels.dtype)
    line = polyline_pixels(pts, labels.shape, width)
    under = labels[line]
    under = under[under > 0]
    if under.size == 0:
        return LabelEdit.empty(labels.dtype)
    ids, counts = np.unique(under, return_counts=True)
    share = counts / counts.sum()
    top = int(ids[np.argmax(share)])
    if share.max() >= SPLIT_SHARE:
        long = _extend(pts, labels == top, reach)
        return split_grain(labels, long, width=width, grain=top)
    # merge: the grains holding enough of the stroke, in the order the stroke meets them
    keep = {int(g) for g, s in zip(ids, share) if s >= MERGE_SHARE}
    order: list[int] = []
    h, w = labels.shape
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        n = int(max(abs(r1 - r0), abs(c1 - c0))) + 1
        for t in np.linspace(0.0, 1.0, n):
            r, c = int(round(r0 + t * (r1 - r0))), int(round(c0 + t * (c1 - c0)))
            if 0 <= r < h and 0 <= c < w:
                g = int(labels[r, c])
                if g in keep and g not in order:
                    order.append(g)
    if len(order) < 2:
        return LabelEdit.empty(labels.dtype)
    return merge_grains(labels, order, bridge=2)
