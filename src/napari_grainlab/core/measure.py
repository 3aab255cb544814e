"""Per-grain measurements from instance labels (no Qt, no napari)."""

from __future__ import annotations

import math

import numpy as np

from .errors import DataError

__all__ = ["astm_grain_size", "grain_features", "grain_table", "summarize", "TABLE_COLUMNS", "write_table_csv"]

TABLE_COLUMNS = (
    "label", "area", "equivalent_diameter", "centroid_y", "centroid_x", "major_axis_length",
    "minor_axis_length", "aspect_ratio", "orientation", "touches_border",
)


def grain_table(labels: np.ndarray, pixel_size: float | None = None, periodic: bool = False,
                reference: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Area, equivalent diameter, centroid, ellipse axes, aspect ratio and orientation of
    every label > 0, from image moments (two compiled passes over the labels, no per-pixel temporaries).

    ``orientation`` is the direction of the major axis in degrees, counter-clockwise from
    +x with y pointing up (the convention of the generator's ``orientation``), in
    (-90, 90].  Lengths are in px, or in the units of ``pixel_size`` when given (areas in
    units squared).  With ``periodic`` grains wrapping around the image edges are measured
    as one piece; ``reference`` (n+1, 2) gives a point of each grain to unwrap around
    (default: the first pixel of the grain in raster order).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"labels must be 2-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"labels must be integers, got {labels.dtype}")
    h, w = labels.shape
    if labels.size == 0:
        return _empty_table()
    if labels.dtype.kind == "u" and labels.dtype.itemsize >= 8:
        labels = labels.astype(np.int64)  # beyond 2**63 becomes negative, refused below
    if labels.min() < 0:
        raise DataError("labels must be >= 0")
    nl = int(labels.max()) + 1
    ids_orig = None
    if nl > labels.size + 1:
        # sparse ids (e.g. {1, 20_000_000}): the per-label arrays below would be as long as the largest id;
        # renumber compactly (0 stays 0) and report the original ids in the "label" column
        uniq, inv = np.unique(labels, return_inverse=True)
        inv = inv.reshape(-1)
        if uniq[0] != 0:
            uniq = np.concatenate([[0], uniq])
            inv = inv + 1
        ids_orig = uniq
        if reference is not None:
            reference = np.asarray(reference)[uniq]
        labels = inv.astype(np.int64, copy=False).reshape(h, w)
        nl = int(uniq.size)
    # the area and the moments in two compiled passes over the labels (kept in their dtype and strides),
    # without per-pixel temporaries
    from ._measure_kernels import first_pixels, label_moments

    ref_y = ref_x = np.zeros(1)
    if periodic:
        if reference is None:  # the first pixel of every grain in raster order
            ref_y, ref_x = first_pixels(labels, nl)
        else:
            ref_y = np.ascontiguousarray(reference[:, 0], dtype=np.float64)
            ref_x = np.ascontiguousarray(reference[:, 1], dtype=np.float64)
            if ref_y.size < nl:
                raise DataError(f"reference: one point per label 0..{nl - 1} is needed, got {ref_y.size}")
    area, my, mx, syy, sxx, sxy = label_moments(labels, nl, bool(periodic), ref_y, ref_x)
    ids = np.nonzero(area)[0]
    ids = ids[ids > 0]
    safe = np.maximum(area, 1.0)
    # second central moments (+1/12: a pixel is a unit square, not a point)
    myy = syy / safe + 1.0 / 12.0
    mxx = sxx / safe + 1.0 / 12.0
    mxy = sxy / safe
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
        "label": (ids if ids_orig is None else ids_orig[ids]).astype(np.int64),
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


_STATUS_FIRST = ("equivalent_diameter", "area", "aspect_ratio", "orientation", "phase", "twinned")


def grain_features(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A grain table as napari Labels ``features`` (plain arrays: no napari here): its ``label`` column
    becomes ``index``.

    napari matches feature rows to label values through the ``index`` column, so the rows
    need not be ordered or contiguous.
    """
    if "label" not in table:
        raise KeyError("the grain table has no 'label' column")
    features = {"index": np.asarray(table["label"])}
    # what a microscopist reads first comes first: napari's status bar shows the columns in
    # order and cuts the line at the window edge
    first = [k for k in _STATUS_FIRST if k in table]
    rest = [k for k in table if k != "label" and k not in first]
    features.update((k, np.asarray(table[k])) for k in first + rest)
    return features


def _empty_table() -> dict[str, np.ndarray]:
    out = {c: np.zeros(0, dtype=np.float64) for c in TABLE_COLUMNS}
    out["label"] = np.zeros(0, dtype=np.int64)
    out["touches_border"] = np.zeros(0, dtype=bool)
    return out


def _check_measurable(labels: np.ndarray) -> None:
    """Refuse a label image 1 px high or wide: it holds no area to measure, and its one "grain" would
    be reported as a 1.13 px one. An empty array has no grains, and any image of 2 x 2 px or more is
    measured as it is."""
    if labels.ndim == 2 and labels.size and min(labels.shape) < 2:
        h, w = labels.shape
        raise DataError(f"a {h} x {w} px label image has no grain area to measure; label images must be at "
                        "least 2 px high and wide")


def astm_grain_size(labels: np.ndarray, pixel_size: float | None) -> dict[str, float]:
    """ASTM E112 grain size number G by the planimetric (Jeffries) method.

    Grains entirely inside the field count 1, grains cut by the field edge count 1/2 (E112 §11). With the
    field area A in mm² at 1x, ``N_A = (N_inside + N_edge / 2) / A`` grains per mm² and
    ``G = 3.321928 log10(N_A) - 2.954``. ``pixel_size`` is in µm; without it G is undefined (NaN) and only
    the counts are returned. Unlabelled pixels (0) are excluded from the field area. A label image 1 px
    high or wide raises :class:`DataError` (nothing to measure).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"labels must be 2-D, got shape {labels.shape}")
    _check_measurable(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if labels.size:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        edge = edge[edge > 0]
    else:
        edge = ids
    n_edge = int(len(edge))
    n_inside = int(len(ids)) - n_edge
    counted = n_inside + 0.5 * n_edge
    out = {"grains": float(len(ids)), "grains_inside": float(n_inside), "grains_on_edge": float(n_edge),
           "grains_counted": counted, "grains_per_mm2": math.nan, "astm_g": math.nan}
    if pixel_size and math.isfinite(float(pixel_size)) and counted > 0:
        try:
            area_mm2 = float(np.count_nonzero(labels)) * (float(pixel_size) * 1e-3) ** 2
        except OverflowError:
            area_mm2 = math.inf
        n_a = counted / area_mm2 if area_mm2 > 0 else math.inf
        if 0 < n_a < math.inf:  # an absurd pixel size (1e-200, 1e200) makes no grain size
            out["grains_per_mm2"] = n_a
            out["astm_g"] = 3.321928 * math.log10(n_a) - 2.954
    return out


def summarize(labels: np.ndarray, pixel_size: float | None = None, *,
              table: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """One row per image: grain count, mean / median equivalent diameter (µm or px) and ASTM G.

    ``table``: the :func:`grain_table` of these labels with this pixel size, when the caller has it
    already (it is not computed again). A label image 1 px high or wide raises :class:`DataError`
    (nothing to measure)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        _check_measurable(labels)
    t = grain_table(labels, pixel_size) if table is None else table
    d = t["equivalent_diameter"]
    inner = d[~t["touches_border"]]
    out = {"grains": float(len(d)),
           "mean_diameter": float(d.mean()) if len(d) else math.nan,
           "median_diameter": float(np.median(d)) if len(d) else math.nan,
           "mean_diameter_inside": float(inner.mean()) if len(inner) else math.nan,
           "unit": "um" if pixel_size else "px"}
    out.update({k: v for k, v in astm_grain_size(labels, pixel_size).items() if k in ("grains_per_mm2", "astm_g")})
    return out


def write_table_csv(path, table: dict[str, np.ndarray], pixel_size: float | None = None) -> None:
    """Write a grain table as CSV atomically (units in the header)."""
    from ._io import atomic_write_text

    unit = "um" if pixel_size else "px"
    units = {"area": f"{unit}^2", "equivalent_diameter": unit, "centroid_y": unit, "centroid_x": unit,
             "major_axis_length": unit, "minor_axis_length": unit, "orientation": "deg"}
    cols = list(table)
    header = ",".join(f"{c} [{units[c]}]" if c in units else c for c in cols)
    rows = [header]
    n = len(table[cols[0]]) if cols else 0
    for i in range(n):
        vals = []
        for c in cols:
            v = table[c][i]
            if isinstance(v, (bool, np.bool_)):
                vals.append("1" if v else "0")
            elif isinstance(v, (int, np.integer)):
                vals.append(str(int(v)))
            else:
                vals.append(f"{float(v):.6g}")
        rows.append(",".join(vals))
    atomic_write_text(path, "\n".join(rows) + "\n")
