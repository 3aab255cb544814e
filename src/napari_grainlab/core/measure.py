"""Per-grain measurements from instance labels (no Qt, no napari)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["grain_table", "TABLE_COLUMNS"]

TABLE_COLUMNS = (
    "label", "area", "equivalent_diameter", "centroid_y", "centroid_x", "major_axis_length",
    "minor_axis_length", "aspect_ratio", "orientation", "touches_border",
)


def grain_table(labels: np.ndarray, pixel_size: float | None = None, periodic: bool = False,
                reference: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Area, equivalent diameter, centroid, ellipse axes, aspect ratio and orientation of
    every label > 0, from image moments (one pass of ``np.bincount`` per moment).

    ``orientation`` is the direction of the major axis in degrees, counter-clockwise from
    +x with y pointing up (the convention of the generator's ``orientation``), in
    (-90, 90].  Lengths are in px, or in the units of ``pixel_size`` when given (areas in
    units squared).  With ``periodic`` grains wrapping around the image edges are measured
    as one piece; ``reference`` (n+1, 2) gives a point of each grain to unwrap around
    (default: the first pixel of the grain in raster order).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    h, w = labels.shape
    flat = labels.ravel().astype(np.int64, copy=False)
    if flat.size and flat.min() < 0:
        raise ValueError("labels must be >= 0")
    nl = int(flat.max()) + 1 if flat.size else 1
    area = np.bincount(flat, minlength=nl).astype(np.float64)
    ids = np.nonzero(area)[0]
    ids = ids[ids > 0]
    yy = np.repeat(np.arange(h, dtype=np.float64), w)
    xx = np.tile(np.arange(w, dtype=np.float64), h)
    if periodic:
        if reference is None:
            first = np.full(nl, -1, dtype=np.int64)
            first[flat[::-1]] = np.arange(flat.size - 1, -1, -1)
            ref_y, ref_x = first // w, first % w
        else:
            ref_y, ref_x = reference[:, 0], reference[:, 1]
        yy = ref_y[flat] + (yy - ref_y[flat] + h / 2) % h - h / 2
        xx = ref_x[flat] + (xx - ref_x[flat] + w / 2) % w - w / 2
    safe = np.maximum(area, 1.0)
    my = np.bincount(flat, yy, nl) / safe
    mx = np.bincount(flat, xx, nl) / safe
    dy = yy - my[flat]
    dx = xx - mx[flat]
    # second central moments (+1/12: a pixel is a unit square, not a point)
    myy = np.bincount(flat, dy * dy, nl) / safe + 1.0 / 12.0
    mxx = np.bincount(flat, dx * dx, nl) / safe + 1.0 / 12.0
    mxy = np.bincount(flat, dx * dy, nl) / safe
    tr = myy + mxx
    det_term = np.sqrt(np.maximum(((mxx - myy) / 2.0) ** 2 + mxy**2, 0.0))
    l1 = tr / 2.0 + det_term
    l2 = np.maximum(tr / 2.0 - det_term, 1e-12)
    major = 4.0 * np.sqrt(l1)
    minor = 4.0 * np.sqrt(l2)
    # major axis angle in image coordinates (x right, y down), then flip y to point up
    ang = 0.5 * np.degrees(np.arctan2(2.0 * mxy, mxx - myy))
    orient = -ang
    orient = np.where(orient <= -90.0, orient + 180.0, orient)
    touches = np.zeros(nl, dtype=bool)
    if not periodic:
        for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
            touches[edge] = True
    scale = float(pixel_size) if pixel_size else 1.0
    out = {
        "label": ids.astype(np.int64),
        "area": area[ids] * scale * scale,
        "equivalent_diameter": np.sqrt(4.0 * area[ids] / math.pi) * scale,
        "centroid_y": (my[ids] % h if periodic else my[ids]) * scale,
        "centroid_x": (mx[ids] % w if periodic else mx[ids]) * scale,
        "major_axis_length": major[ids] * scale,
        "minor_axis_length": minor[ids] * scale,
        "aspect_ratio": major[ids] / minor[ids],
        "orientation": orient[ids],
        "touches_border": touches[ids],
    }
    return out
