"""ASTM E112 grain size by the planimetric, intercept and three-circle methods, with the E112 statistics.

>>> res = grain_size(labels, 0.5, method="intercept")              # doctest: +SKIP
>>> res.G, res.G_ci95, res.relative_accuracy                       # doctest: +SKIP

Everything here works on label images: 2-D integer arrays, 0 = unlabelled, grains > 0; lengths are in
pixels of the label image and the pixel size is in µm. No Qt or napari.

**The field.** Unlabelled bands up to ``gap_width`` px wide (thin boundary lines between grains) are
grain boundaries: they are given to the nearest grain (:func:`fill_gaps`), so a crossing of such a gap
counts once and grains separated by gaps measure as grains that touch. Unlabelled regions wider than
that (pores, unindexed areas, margins: where a pixel lies farther than ``√2 (gap_width + 1) / 2`` px from
every grain, more than in the middle of two gaps that cross, with the unlabelled pixels within that
distance of it) are not part of the field: they are left out of the field area and of the test-line
length.

**Planimetric (Jeffries)**, E112 §11: grains inside the field count 1, grains cut by the field edge 1/2
(:func:`~napari_grainlab.core.measure.astm_grain_size` counts them) and, with ``corner_quarter`` (the
E112 rule for a rectangular field), the grains at the four corners 1/4. ``N_A`` = grains counted per
mm² of field and ``G = 3.321928 log10(N_A) - 2.954``.

**Heyn lineal intercept**, E112 §12-13: parallel, evenly spaced test lines in each of ``directions``
(default 0°, 45°, 90°, 135°), clipped to the image. Along each line the grain boundaries crossed are
counted (``P``) on the label image sampled every 0.25 px:

- a change of grain label is one crossing (a gap between two grains is part of it);
- a tangent hit (the line touches another grain for less than ``tangent_length`` and returns into the
  same grain) counts 1;
- E112's triple-point rule: where a line passes within ``triple_point_radius`` of a point where three
  grains meet (a pixel corner with three grains around it), the crossings of that junction's boundaries
  there count 1½ together, whether the line met one of them or two; where four grains meet, 2 (half the
  grains that meet: what the lines just beside the junction count on average). Judged by the line's
  distance from the junction, the rule is the same on both sides of it and adds no bias;
- the ends of a line are no crossings (a line ends inside a grain), nor are the edges of regions that are
  not field.

``P_L = P / L`` in mm⁻¹ and ``G = 6.643856 log10(P_L) - 3.288`` (``= -6.643856 log10(ℓ̄) - 3.288`` with
the mean lineal intercept ``ℓ̄ = 1 / P_L`` in mm).

**Abrams three-circle**, E112 §14: three concentric circles whose circumferences are in the ratio 3:2:1
(E112's pattern: 250, 166.7 and 83.3 mm, 500 mm in all), placed ``circle_grid`` x ``circle_grid`` times
on a grid over the field (each placement is one measurement). Intersections are counted as on lines; a
triple point counts ``circle_triple_point`` (1½ as on lines by default; some circle procedures count 2);
``P_L = P`` / total circumference, and G as for the intercept method.

**Statistics**, E112 §15: from the measurements ``x_i`` (N_A for planimetric, P_L for intercept and
circles), the mean, the standard deviation ``s``, the 95 % confidence interval ``CI = t(0.975, n-1) s /
√n`` and the relative accuracy ``%RA = 100 CI / x̄``; G is that of the mean and ``G_ci95`` that of ``x̄ ±
CI``. With several images each image is a field and the statistics run over the fields; within one
image they run over its sub-measurements: N x N sub-fields (``tiles``) for planimetric, the test lines
for intercept, the placements for circles, and the image's own estimate (all its grains / all its lines
together) is the value whose CI they give.

**Distributions** (E1382 style): log-binned histograms of the grain areas (grains not cut by the edge)
and of the intercept lengths (between two crossings of one test line), their log-normal fit, the largest
grain (E930 ALA, as the G of a mean grain area equal to it) and a duplex flag (E1181 style; Sarle's
bimodality coefficient of the log areas, see :func:`distribution_summary`).

**Twins**: :func:`merge_twins` merges grains that are separated mostly by twin boundaries into their
parent grain; with a twin-boundary mask :func:`grain_size` reports G with twins counted and excluded and
the twin-boundary fraction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, DataError
from .grainsize_options import METHODS, GrainSizeSettings, resolve_settings
from .measure import astm_grain_size

__all__ = [
    "G_NA_OFFSET",
    "G_NA_SLOPE",
    "G_PL_OFFSET",
    "G_PL_SLOPE",
    "METHODS",
    "GrainSizeResult",
    "GrainSizeSettings",
    "distribution_summary",
    "field_statistics",
    "fill_gaps",
    "g_from_intercept",
    "g_from_na",
    "g_from_pl",
    "grain_size",
    "merge_twins",
    "test_pattern",
    "twin_boundary_fraction",
]

#: E112: G = 3.321928 log10(N_A) - 2.954, N_A in grains per mm² at 1x
G_NA_SLOPE = 3.321928
G_NA_OFFSET = -2.954
#: E112: G = 6.643856 log10(P_L) - 3.288, P_L in intersections per mm at 1x
G_PL_SLOPE = 6.643856
G_PL_OFFSET = -3.288
#: sampling step along test lines and circles (px)
_STEP = 0.25
#: below this many grains no duplex flag is given
_MIN_GRAINS_DUPLEX = 20
#: Sarle's bimodality coefficient of a uniform distribution: larger values suggest two modes
BIMODALITY_THRESHOLD = 5.0 / 9.0

_MEASUREMENT = {"planimetric": "tile", "intercept": "line", "circles": "placement"}


# ------------------------------------------------------------------------------------------ G formulas
def _finite_positive(v: float) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def g_from_na(n_a: float) -> float:
    """ASTM G from ``N_A`` (grains per mm² at 1x): ``3.321928 log10(N_A) - 2.954``; NaN unless ``N_A > 0``."""
    n_a = float(n_a)
    return G_NA_SLOPE * math.log10(n_a) + G_NA_OFFSET if _finite_positive(n_a) else math.nan


def g_from_pl(p_l: float) -> float:
    """ASTM G from ``P_L`` (intersections per mm at 1x): ``6.643856 log10(P_L) - 3.288``; NaN unless ``P_L > 0``."""
    p_l = float(p_l)
    return G_PL_SLOPE * math.log10(p_l) + G_PL_OFFSET if _finite_positive(p_l) else math.nan


def g_from_intercept(mean_intercept_mm: float) -> float:
    """ASTM G from the mean lineal intercept ℓ̄ in mm: ``-6.643856 log10(ℓ̄) - 3.288``."""
    v = float(mean_intercept_mm)
    return g_from_pl(1.0 / v) if _finite_positive(v) else math.nan


# ------------------------------------------------------------------------------------------ statistics
def field_statistics(values: Sequence[float]) -> dict[str, Any]:
    """E112 §15 statistics of the measurements ``values``: ``n``, ``mean``, ``std`` (n - 1), ``t`` =
    t(0.975, n - 1), ``ci95 = t std / √n``, ``relative_accuracy = 100 ci95 / mean`` (%) and ``ci_reason``
    (None, or why there is no interval: fewer than two measurements, or a mean of 0)."""
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out: dict[str, Any] = {"n": n, "mean": math.nan, "std": math.nan, "t": math.nan, "ci95": math.nan,
                           "relative_accuracy": math.nan, "ci_reason": None}
    if n == 0:
        out["ci_reason"] = "no measurements"
        return out
    out["mean"] = float(x.mean())
    if n < 2:
        out["ci_reason"] = "one measurement: a confidence interval needs at least two"
        return out
    from scipy import stats

    out["std"] = float(x.std(ddof=1))
    out["t"] = float(stats.t.ppf(0.975, n - 1))
    out["ci95"] = out["t"] * out["std"] / math.sqrt(n)
    if out["mean"] > 0:
        out["relative_accuracy"] = 100.0 * out["ci95"] / out["mean"]
    else:
        out["ci_reason"] = "the mean is 0: no relative accuracy"
    return out


# -------------------------------------------------------------------------------------------- checks
def _check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise DataError(f"{name} must be 2-D, got shape {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise DataError(f"{name} must be integers, got {lab.dtype}")
    if lab.size == 0:
        raise DataError(f"{name} are empty ({lab.shape[0]} x {lab.shape[1]} px)")
    if min(lab.shape) < 2:
        raise DataError(f"a {lab.shape[0]} x {lab.shape[1]} px label image has no grain area to measure; "
                        "label images must be at least 2 px high and wide")
    if lab.dtype.kind == "u" and lab.dtype.itemsize >= 8:
        if int(lab.max()) >= 2**63:
            raise DataError(f"{name}: label values must be below 2**63")
        lab = lab.astype(np.int64)
    if lab.dtype.kind == "i" and int(lab.min()) < 0:
        raise DataError(f"{name} must be >= 0, got {int(lab.min())}")
    if not lab.any():
        raise DataError(f"{name} hold no grains (every pixel is 0)")
    return lab


def _check_pixel_size(px: Any) -> float | None:
    if px is None:
        return None
    try:
        v = float(px)
    except (TypeError, ValueError):
        raise DataError(f"pixel size must be a number of µm, got {px!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise DataError(f"pixel size must be a positive number of µm, got {px!r}")
    return v


# ----------------------------------------------------------------------------------- gaps and field
def _not_field(zero: np.ndarray, gap_width: float) -> np.ndarray:
    """The unlabelled pixels of regions wider than gaps of ``gap_width`` px: the pixels farther than
    ``√2 (gap_width + 1) / 2`` from every grain (more than in the middle of two such gaps that cross) and
    the unlabelled pixels within that distance of them."""
    from scipy import ndimage

    reach = math.sqrt(2.0) * (gap_width + 1.0) / 2.0 + 1e-9
    core = ndimage.distance_transform_edt(zero) > reach
    if not core.any():
        return np.zeros_like(zero)
    return zero & (ndimage.distance_transform_edt(~core) <= reach)


def fill_gaps(labels: np.ndarray, gap_width: float = 3.0) -> np.ndarray:
    """``labels`` with every unlabelled band up to ``gap_width`` px wide given to the nearest grain.

    Wider unlabelled regions stay 0 (they are not field). Touching grains come back unchanged."""
    lab = _check_labels(labels)
    zero = lab == 0
    if not zero.any():
        return lab
    not_field = _not_field(zero, gap_width)
    if not (zero & ~not_field).any():
        return lab
    from scipy import ndimage

    iy, ix = ndimage.distance_transform_edt(zero, return_distances=False, return_indices=True)
    filled = lab[iy, ix]
    del iy, ix
    filled[not_field] = 0
    return filled


# ------------------------------------------------------------------------------------------- geometry
def _unit(theta_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Direction ``u`` and normal ``n`` (x, y image coordinates, y down) of a line at ``theta_deg``
    counter-clockwise from +x with y up."""
    th = math.radians(theta_deg)
    c, s = round(math.cos(th), 12), round(math.sin(th), 12)
    return np.array([c, -s]), np.array([s, c])


def _line_segments(shape: tuple[int, int], theta: float, spacing: float | None,
                   count: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The test lines of one direction, clipped to the image (pixel edges at -0.5 and size - 0.5): a
    list of end points ``(p0, p1)`` in (x, y)."""
    h, w = shape
    u, n = _unit(theta)
    lo = np.array([-0.5, -0.5])
    hi = np.array([w - 0.5, h - 0.5])
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]])
    proj = corners @ n
    cmin, cmax = float(proj.min()), float(proj.max())
    span = cmax - cmin
    if count is not None:
        cs = cmin + (np.arange(count) + 0.5) * span / count
    else:
        m = max(1, int(math.floor(span / spacing + 1e-9)))
        cs = (cmin + cmax) / 2.0 + (np.arange(m) - (m - 1) / 2.0) * spacing
    out = []
    for c in cs:
        base = c * n
        t0, t1 = -math.inf, math.inf
        ok = True
        for a in range(2):
            if abs(u[a]) < 1e-12:
                if not lo[a] <= base[a] <= hi[a]:
                    ok = False
                continue
            ta, tb = (lo[a] - base[a]) / u[a], (hi[a] - base[a]) / u[a]
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if ok and t1 - t0 > 1e-9:
            out.append((base + t0 * u, base + t1 * u))
    return out


def _auto_spacing(mean_area_px: float) -> float:
    return max(2.0, 1.5 * math.sqrt(mean_area_px)) if _finite_positive(mean_area_px) else 2.0


def _lines(shape: tuple[int, int], s: GrainSizeSettings, spacing: float | None) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """All test lines used: ``(direction, p0, p1)``, without the short ones (``min_line_fraction``)."""
    out = []
    for theta in s.directions:
        segs = _line_segments(shape, theta, spacing, s.line_count)
        if not segs:
            continue
        lengths = np.array([float(np.hypot(*(p1 - p0))) for p0, p1 in segs])
        keep = lengths >= s.min_line_fraction * lengths.max() - 1e-9
        out += [(float(theta), p0, p1) for (p0, p1), k in zip(segs, keep) if k]
    return out


def _circle_placements(shape: tuple[int, int], s: GrainSizeSettings) -> tuple[float, list[tuple[float, float]]]:
    """Outer radius and the centres (x, y) of the three-circle placements; raises DataError when they do
    not fit."""
    h, w = shape
    g = s.circle_grid
    room = min(w, h) / (2.0 * g) - 0.5
    r = room - 0.5 if s.circle_radius is None else float(s.circle_radius)
    if s.circle_radius is None and r < 3.0:
        raise DataError(f"a {h} x {w} px field is too small for {g} x {g} three-circle placements "
                        "(circle_grid)")
    if r > room + 1e-9:
        raise DataError(f"circle radius {r:g} px: {g} x {g} placements of it do not fit a {h} x {w} px field "
                        f"(at most {max(room, 0):.4g} px)")
    centres = [((i + 0.5) * w / g - 0.5, (j + 0.5) * h / g - 0.5) for j in range(g) for i in range(g)]
    return r, centres


def _tile_edges(size: int, tiles: int) -> np.ndarray:
    return np.round(np.linspace(0, size, tiles + 1)).astype(int)


def test_pattern(shape: tuple[int, int], method: str = "intercept", settings: GrainSizeSettings | dict | None = None,
                 *, labels: np.ndarray | None = None) -> dict[str, Any]:
    """The test pattern of ``method`` on an image of ``shape`` in pixel coordinates (row, column), as
    napari Shapes data:

    - ``intercept``: ``{"kind": "lines", "lines": (n, 2, 2) end points [[y0, x0], [y1, x1]],
      "directions": (n,) degrees}``, the lines that are measured;
    - ``circles``: ``{"kind": "circles", "circles": (n, 3) [y, x, radius], "placements": (n,) index}``,
      three circles per placement;
    - ``planimetric``: ``{"kind": "tiles", "rectangles": (n, 2, 2) [[y0, x0], [y1, x1]]}``, the
      sub-fields of one image (pixel edges).

    With ``line_spacing`` auto the spacing comes from the grains of ``labels``."""
    s = resolve_settings(settings)
    if method not in METHODS:
        raise ConfigError(f"method: unknown value {method!r}; choose one of {', '.join(METHODS)}")
    h, w = int(shape[0]), int(shape[1])
    if method == "intercept":
        spacing = s.line_spacing
        if spacing is None and s.line_count is None:
            if labels is None:
                raise ConfigError("line_spacing auto needs the label image: give labels=, a line_spacing or a "
                                  "line_count")
            filled = fill_gaps(labels, s.gap_width)
            spacing = _auto_spacing(_planimetric_counts(filled, s.corner_quarter)["mean_area_px"])
        lines = _lines((h, w), s, spacing)
        arr = np.array([[[p0[1], p0[0]], [p1[1], p1[0]]] for _, p0, p1 in lines], dtype=np.float64).reshape(-1, 2, 2)
        return {"kind": "lines", "lines": arr, "directions": np.array([t for t, _, _ in lines], dtype=np.float64),
                "line_spacing": spacing}
    if method == "circles":
        r, centres = _circle_placements((h, w), s)
        rows = [[cy, cx, r * f] for cx, cy in centres for f in (1.0, 2.0 / 3.0, 1.0 / 3.0)]
        return {"kind": "circles", "circles": np.array(rows, dtype=np.float64).reshape(-1, 3),
                "placements": np.repeat(np.arange(len(centres)), 3)}
    ey, ex = _tile_edges(h, s.tiles), _tile_edges(w, s.tiles)
    rects = [[[ey[j] - 0.5, ex[i] - 0.5], [ey[j + 1] - 0.5, ex[i + 1] - 0.5]]
             for j in range(s.tiles) for i in range(s.tiles)]
    return {"kind": "tiles", "rectangles": np.array(rects, dtype=np.float64)}


test_pattern.__test__ = False  # a function named test_* that pytest must not collect


# ---------------------------------------------------------------------------------- counting on paths
@dataclass
class _Junctions:
    """The points where three or more grains meet: (x, y) of each and the grains that meet there."""

    x: np.ndarray
    y: np.ndarray
    grains: list
    #: how far along a path (px) a crossing can belong to a junction it passes: one grain size
    window: float = 0.0


def _junctions(filled: np.ndarray, grain_size_px: float = 0.0) -> _Junctions:
    """Every pixel corner where 3 or more grains meet (a 2 x 2 block with 3 or 4 different grains > 0);
    neighbouring corners (8-connected) are one junction, at their mean position, with all their grains."""
    a, b, c, d = filled[:-1, :-1], filled[:-1, 1:], filled[1:, :-1], filled[1:, 1:]
    k = ((a != 0).astype(np.int8) + ((b != 0) & (b != a)) + ((c != 0) & (c != a) & (c != b))
         + ((d != 0) & (d != a) & (d != b) & (d != c)))
    mask = k >= 3
    if not mask.any():
        return _Junctions(np.zeros(0), np.zeros(0), [], grain_size_px)
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    yy, xx = np.nonzero(mask)
    ids = lab[yy, xx] - 1
    cnt = np.bincount(ids, minlength=n)
    jx = np.bincount(ids, xx + 0.5, minlength=n) / cnt
    jy = np.bincount(ids, yy + 0.5, minlength=n) / cnt
    vals = np.stack([a[yy, xx], b[yy, xx], c[yy, xx], d[yy, xx]], axis=1).astype(np.int64)
    pairs = np.unique(np.stack([np.repeat(ids, 4), vals.ravel()], axis=1), axis=0)
    pairs = pairs[pairs[:, 1] != 0]
    splits = np.flatnonzero(np.diff(pairs[:, 0])) + 1
    grains = [frozenset(g.tolist()) for g in np.split(pairs[:, 1], splits)]
    return _Junctions(jx, jy, grains, grain_size_px)


@dataclass
class _PathCount:
    intersections: float = 0.0
    length_px: float = 0.0
    intercepts_px: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (x, y, count)


def _count_path(filled: np.ndarray, pos, n_samples: int, step: float, closed: bool, s: GrainSizeSettings,
                triple: float, near: list[tuple[float, frozenset]], window_px: float = 0.0) -> _PathCount:
    """Grain-boundary intersections along one sampled path (a line or a circle).

    ``pos(t)`` gives (x, y) at ``t`` in sample units along the path (sample ``k`` lies at ``k + 0.5``);
    ``near``: the junctions the path passes within ``triple_point_radius`` of, as (position along the path
    in sample units, grains that meet there); a crossing of two of a junction's grains up to ``window_px``
    along the path from it is a crossing of that junction's boundaries."""
    h, w = filled.shape
    xs, ys = pos(np.arange(n_samples) + 0.5)
    ix = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, w - 1)
    iy = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, h - 1)
    seq = filled[iy, ix]
    out = _PathCount()
    offset = 0
    cyclic = False
    if closed:
        changes = np.flatnonzero(seq != np.roll(seq, 1))
        if changes.size == 0:  # all in one grain (or all outside the field)
            out.length_px = n_samples * step if seq[0] != 0 else 0.0
            return out
        zeros = np.flatnonzero(seq == 0)
        if zeros.size:
            offset = int(zeros[0])
        else:  # start at the longest run, so the wrap-around falls on a crossing
            ends = np.r_[changes[1:], changes[0] + n_samples]
            offset = int(changes[int(np.argmax(ends - changes))])
            cyclic = True
        seq = np.roll(seq, -offset)
    nz = seq != 0
    if not nz.any():
        return out
    edges = np.flatnonzero(np.diff(np.r_[0, nz.astype(np.int8), 0]))
    # crossings: between two consecutive long runs of a piece of the path inside the field; the short runs
    # between them (a tangent hit, a corner clipped near a junction, a jagged boundary) are part of it
    events: list[list] = []  # [position in sample units of the rotated path, grains, piece, count]
    for pi, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
        out.length_px += (b - a) * step
        sub = seq[a:b]
        ch = np.flatnonzero(sub[1:] != sub[:-1]) + 1
        starts = np.r_[0, ch]
        ends = np.r_[ch, b - a]
        if starts.size < 2:
            continue
        long = (ends - starts) * step >= s.tangent_length
        if not cyclic:
            long[0] = long[-1] = True  # a line's ends are inside a grain, however short the run
        li = np.flatnonzero(long)
        if li.size == 0:
            li = np.arange(starts.size)
        runs = sub[starts]
        for i, j in zip(li[:-1], li[1:]):
            events.append([a + (ends[i] + starts[j]) / 2.0, frozenset(runs[i:j + 1].tolist()), pi, 1.0])
        if cyclic:
            i, j = li[-1], li[0]
            grains = frozenset(np.r_[runs[i:], runs[:j + 1]].tolist())
            events.append([(ends[i] + starts[j] + n_samples) / 2.0, grains, pi, 1.0])
    if not events:
        return out
    # E112's triple-point rule: where the path passes within triple_point_radius of a junction, the
    # crossings of that junction's boundaries there count 1.5 together (half the grains that meet)
    if near:
        t_ev = np.array([(e[0] + offset) % n_samples if closed else e[0] for e in events])
        window = max(4.0 * s.triple_point_radius + 1.0, window_px) / step
        owner = np.full(len(events), -1)
        best = np.full(len(events), np.inf)
        for ji, (tj, grains) in enumerate(near):
            dt = np.abs(t_ev - tj)
            if closed:
                dt = np.minimum(dt, n_samples - dt)
            for ei in np.flatnonzero((dt <= window) & (dt < best)):
                if events[ei][1] <= grains:
                    owner[ei], best[ei] = ji, dt[ei]
        merged: list[list] = []
        done: set[int] = set()
        for ei, e in enumerate(events):
            ji = int(owner[ei])
            if ji < 0:
                merged.append(e)
            elif ji not in done:
                done.add(ji)
                group = [events[k] for k in np.flatnonzero(owner == ji)]
                merged.append([float(np.mean([g[0] for g in group])), near[ji][1], e[2],
                               max(triple, len(near[ji][1]) / 2.0)])
        events = sorted(merged, key=lambda e: e[0])
    out.intersections = float(sum(e[3] for e in events))
    ex, ey = pos(np.array([e[0] for e in events]) + offset)
    out.events = [(float(x), float(y), e[3]) for x, y, e in zip(ex, ey, events)]
    for e0, e1 in zip(events[:-1], events[1:]):
        if e0[2] == e1[2]:
            out.intercepts_px.append((e1[0] - e0[0]) * step)
    if cyclic and len(events) >= 2:
        out.intercepts_px.append((events[0][0] + n_samples - events[-1][0]) * step)
    return out


def _line_count(filled: np.ndarray, p0: np.ndarray, p1: np.ndarray, s: GrainSizeSettings,
                junctions: _Junctions) -> _PathCount:
    d = p1 - p0
    length = float(np.hypot(*d))
    n = max(1, int(math.ceil(length / _STEP - 1e-9)))
    step = length / n
    u = d / length
    r = s.triple_point_radius
    rel_x, rel_y = junctions.x - p0[0], junctions.y - p0[1]
    along = rel_x * u[0] + rel_y * u[1]
    across = np.abs(rel_y * u[0] - rel_x * u[1])
    sel = np.flatnonzero((across <= r) & (along >= -r) & (along <= length + r))
    near = [(float(along[i]) / step, junctions.grains[i]) for i in sel]

    def pos(t):
        t = np.asarray(t, dtype=np.float64) * step
        return p0[0] + t * u[0], p0[1] + t * u[1]

    return _count_path(filled, pos, n, step, False, s, 1.5, near, junctions.window)


def _circle_count(filled: np.ndarray, cx: float, cy: float, r: float, s: GrainSizeSettings,
                  junctions: _Junctions) -> _PathCount:
    circ = 2.0 * math.pi * r
    n = max(8, int(math.ceil(circ / _STEP - 1e-9)))
    step = circ / n
    dx, dy = junctions.x - cx, junctions.y - cy
    sel = np.flatnonzero(np.abs(np.hypot(dx, dy) - r) <= s.triple_point_radius)
    angle = np.mod(np.arctan2(-dy[sel], dx[sel]), 2.0 * math.pi)
    near = [(float(a) * n / (2.0 * math.pi), junctions.grains[i]) for a, i in zip(angle, sel)]

    def pos(t):
        a = 2.0 * math.pi * np.asarray(t, dtype=np.float64) / n
        return cx + r * np.cos(a), cy - r * np.sin(a)

    return _count_path(filled, pos, n, step, True, s, s.circle_triple_point, near, junctions.window)


# ------------------------------------------------------------------------------------- per field
def _planimetric_counts(filled: np.ndarray, corner_quarter: bool) -> dict[str, float]:
    """Jeffries count of one (sub-)field: inside 1, cut by the edge 1/2, corners 1/4 with ``corner_quarter``."""
    a = astm_grain_size(filled, None)
    counted = a["grains_counted"]
    corners = {int(v) for v in (filled[0, 0], filled[0, -1], filled[-1, 0], filled[-1, -1]) if v}
    if corner_quarter:
        counted -= 0.25 * len(corners)
    area = float(np.count_nonzero(filled))
    return {"grains": a["grains"], "grains_inside": a["grains_inside"], "grains_on_edge": a["grains_on_edge"],
            "corner_grains": float(len(corners)), "grains_counted": counted, "area_px": area,
            "n_a_px": counted / area if area > 0 and counted > 0 else math.nan,
            "mean_area_px": area / counted if counted > 0 else math.nan}


def _grain_areas(filled: np.ndarray) -> np.ndarray:
    """Areas (px) of the grains not cut by the image edge."""
    flat = filled.ravel()
    ids, inv = np.unique(flat, return_inverse=True)
    area = np.bincount(inv.ravel(), minlength=ids.size).astype(np.float64)
    edge = np.unique(np.concatenate([filled[0], filled[-1], filled[:, 0], filled[:, -1]]))
    keep = (ids > 0) & ~np.isin(ids, edge)
    if not keep.any():  # every grain touches the edge: use them all
        keep = ids > 0
    return area[keep]


def _boundary_pairs(filled: np.ndarray, twin: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring pixel pairs (4-connected) of two different grains: (low label, high label, on a twin
    boundary)."""
    lo, hi, tw = [], [], []
    for a, b, ta, tb in ((filled[:, :-1], filled[:, 1:], None if twin is None else twin[:, :-1],
                          None if twin is None else twin[:, 1:]),
                         (filled[:-1], filled[1:], None if twin is None else twin[:-1],
                          None if twin is None else twin[1:])):
        m = (a != b) & (a > 0) & (b > 0)
        av, bv = a[m].astype(np.int64), b[m].astype(np.int64)
        lo.append(np.minimum(av, bv))
        hi.append(np.maximum(av, bv))
        tw.append((ta[m] | tb[m]) if twin is not None else np.zeros(av.size, dtype=bool))
    return np.concatenate(lo), np.concatenate(hi), np.concatenate(tw)


def _check_twin_mask(twin_boundaries: Any, shape: tuple[int, ...]) -> np.ndarray:
    tb = np.asarray(twin_boundaries)
    if tb.shape != tuple(shape):
        raise DataError(f"the twin-boundary mask has shape {tb.shape}, the labels {tuple(shape)}")
    return tb.astype(bool, copy=False)


def _twin_pairs(filled: np.ndarray, twin: np.ndarray, min_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbouring grain pairs: (pairs (n, 2), pixel edges between them, whether more than
    ``min_fraction`` of those edges have a twin-boundary pixel on either side)."""
    lo, hi, tw = _boundary_pairs(filled, twin)
    if lo.size == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    pairs, inv = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
    inv = inv.ravel()
    total = np.bincount(inv, minlength=len(pairs))
    twin_edges = np.bincount(inv, weights=tw.astype(np.float64), minlength=len(pairs))
    return pairs, total, twin_edges > min_fraction * total


def _check_min_fraction(min_fraction: float) -> None:
    if not 0.0 <= float(min_fraction) < 1.0:
        raise ConfigError(f"min_fraction: must be in [0, 1), got {min_fraction!r}")


def twin_boundary_fraction(labels: np.ndarray, twin_boundaries: np.ndarray, *, min_fraction: float = 0.5,
                           gap_width: float = 3.0) -> float:
    """Twin-boundary length / total grain-boundary length: the boundaries between the grains that
    :func:`merge_twins` merges (more than ``min_fraction`` twin boundary) are twin boundaries. Lengths are
    counted in pixel edges between two grains (thin gaps given to the nearest grain); NaN without any
    boundary."""
    _check_min_fraction(min_fraction)
    filled = fill_gaps(labels, gap_width)
    _, total, twin = _twin_pairs(filled, _check_twin_mask(twin_boundaries, filled.shape), min_fraction)
    return float(total[twin].sum() / total.sum()) if total.size else math.nan


def merge_twins(labels: np.ndarray, twin_boundaries: np.ndarray, *, min_fraction: float = 0.5,
                gap_width: float = 3.0) -> np.ndarray:
    """Merge every grain into its neighbour when more than ``min_fraction`` of the boundary between
    them is twin boundary (``twin_boundaries``: a bool mask of the twin-boundary pixels, on the gap
    between the two grains or on either side of their boundary).

    Chains merge together; each group takes the label of its largest grain (the parent; twins are the
    lamellae inside it). Returns a new label image of the same dtype; 0 stays 0."""
    lab = _check_labels(labels)
    tb = _check_twin_mask(twin_boundaries, lab.shape)
    _check_min_fraction(min_fraction)
    pairs, _, twin = _twin_pairs(fill_gaps(lab, gap_width), tb, min_fraction)
    out = np.asarray(labels).copy()
    merge = pairs[twin]
    if merge.size == 0:
        return out
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids, inv = np.unique(lab.ravel(), return_inverse=True)
    area = np.bincount(inv.ravel(), minlength=ids.size)
    a, b = np.searchsorted(ids, merge[:, 0]), np.searchsorted(ids, merge[:, 1])
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(ids.size, ids.size))
    _, comp = connected_components(graph, directed=False)
    # the parent of each group: its largest grain (ties: the lowest label)
    parent = np.full(comp.max() + 1, -1, dtype=np.int64)
    for idx in np.lexsort((ids, -area)):
        if parent[comp[idx]] < 0:
            parent[comp[idx]] = idx
    lut = ids[parent[comp]]
    lut[ids == 0] = 0
    return lut[inv.ravel()].reshape(lab.shape).astype(out.dtype, copy=False)


# ---------------------------------------------------------------------------------- distributions
def _log_histogram(values: np.ndarray, bins_per_decade: int) -> dict[str, Any]:
    v = values[np.isfinite(values) & (values > 0)]
    if v.size == 0:
        return {"edges": [], "counts": []}
    lo = math.floor(math.log10(v.min()) * bins_per_decade) / bins_per_decade
    hi = math.ceil(math.log10(v.max()) * bins_per_decade) / bins_per_decade
    if hi <= lo:
        hi = lo + 1.0 / bins_per_decade
    n = int(round((hi - lo) * bins_per_decade))
    edges = 10.0 ** np.linspace(lo, hi, n + 1)
    counts, _ = np.histogram(v, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist()}


def distribution_summary(values: np.ndarray, bins_per_decade: int = 10) -> dict[str, Any]:
    """Log-binned histogram, log-normal fit and bimodality of positive ``values`` (areas or lengths).

    ``lognormal_mu`` / ``lognormal_sigma`` are the mean and standard deviation (n - 1) of ``ln(values)``.
    ``bimodality_coefficient`` is Sarle's ``(g² + 1) / (κ + 3 (n-1)² / ((n-2)(n-3)))`` of ``ln(values)``
    (g: skewness, κ: excess kurtosis, both bias-corrected); ``duplex`` is True when it exceeds 5/9 (the
    value of a uniform distribution) and None with fewer than 20 values. Sarle's coefficient is chosen
    over a two-component Gaussian mixture because it is a closed formula: no iterative fit, no starting
    values, no random state, the same answer every time. On log areas a log-normal (unimodal) grain
    population gives about 1/3 and two well-separated populations (a duplex structure, E1181) give more
    than 5/9; a strongly skewed single population can also exceed it, so the flag asks for a look, it
    proves nothing.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    out: dict[str, Any] = {"n": int(v.size), **_log_histogram(v, bins_per_decade), "mean": math.nan,
                           "lognormal_mu": math.nan, "lognormal_sigma": math.nan,
                           "bimodality_coefficient": math.nan, "duplex": None}
    if v.size == 0:
        return out
    out["mean"] = float(v.mean())
    lv = np.log(v)
    out["lognormal_mu"] = float(lv.mean())
    if v.size >= 2:
        out["lognormal_sigma"] = float(lv.std(ddof=1))
    n = v.size
    if n >= 4 and float(np.ptp(lv)) > 1e-9:
        from scipy import stats

        g = float(stats.skew(lv, bias=False))
        kappa = float(stats.kurtosis(lv, fisher=True, bias=False))
        bc = (g * g + 1.0) / (kappa + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
        out["bimodality_coefficient"] = bc
        if n >= _MIN_GRAINS_DUPLEX:
            out["duplex"] = bool(bc > BIMODALITY_THRESHOLD)
    return out


def _distributions(areas: list[np.ndarray], intercepts: list[np.ndarray], pixel_sizes: list[float | None],
                   bins_per_decade: int) -> dict[str, Any]:
    known = all(p is not None for p in pixel_sizes)
    a = np.concatenate([ar * (p * p if known else 1.0) for ar, p in zip(areas, pixel_sizes)]) if areas else np.zeros(0)
    length_unit = "um" if known else "px"
    out: dict[str, Any] = {"grain_area": {**distribution_summary(a, bins_per_decade), "unit": length_unit + "^2"}}
    if intercepts:
        li = np.concatenate([np.asarray(x, dtype=np.float64) * (p if known else 1.0)
                             for x, p in zip(intercepts, pixel_sizes)])
        out["intercept_length"] = {**distribution_summary(li, bins_per_decade), "unit": length_unit}
    # E930 ALA: the largest grain, as the G of a mean grain area equal to it
    largest = float(a.max()) if a.size else math.nan
    out["ala"] = {"largest_area": largest, "unit": length_unit + "^2",
                  "G_ALA": g_from_na(1.0 / (largest * 1e-6)) if known and _finite_positive(largest) else math.nan}
    return out


# ------------------------------------------------------------------------------------------ the result
@dataclass
class GrainSizeResult:
    """An ASTM E112 grain-size measurement of one or several fields (see the module docstring).

    ``value`` is the measured quantity (``quantity``: ``N_A`` for planimetric, ``P_L`` for intercept and
    circles, in ``unit``: per mm² / per mm, or per px² / per px without a pixel size) and ``G`` its grain
    size number; ``ci95`` is the half width of its 95 % confidence interval, ``G_ci95`` the G of ``value
    ∓ ci95`` (low, high), ``relative_accuracy`` ``100 ci95 / value`` (%). ``measurement`` names what the
    ``n_measurements`` values behind the statistics are: ``field`` (several images), ``tile``, ``line``
    or ``placement``; ``ci_reason`` says why there is no interval when there is none. ``per_field``
    holds one dict per image with the same keys for that image alone, its measurement values and
    counts.
    """

    method: str
    settings: dict
    per_field: list
    G: float
    G_ci95: tuple
    value: float
    std: float
    ci95: float
    relative_accuracy: float
    n_measurements: int
    measurement: str
    quantity: str
    unit: str
    intersections: float = math.nan
    line_length_px: float = math.nan
    line_length_mm: float = math.nan
    grains_counted: float = math.nan
    mean_intercept: float = math.nan
    ci_reason: str | None = None
    distributions: dict = field(default_factory=dict)
    twins: dict | None = None

    def to_dict(self, *, per_field: bool = True) -> dict[str, Any]:
        """JSON-safe values: NaN and infinities as None, tuples and arrays as lists."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if not per_field:
            d.pop("per_field")
        return _json_safe(d)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


# ---------------------------------------------------------------------------------------- measurement
def _measure_field(labels: np.ndarray, px_um: float | None, method: str, s: GrainSizeSettings) -> dict[str, Any]:
    """One field: its own value, its sub-measurements (in px units) and counts."""
    filled = fill_gaps(labels, s.gap_width)
    counts = _planimetric_counts(filled, s.corner_quarter)
    if counts["grains"] == 0:
        raise DataError("labels hold no grains in the field (only unlabelled regions wider than gap_width)")
    f: dict[str, Any] = {"pixel_size_um": px_um, "grains": counts["grains"], "field_area_px": counts["area_px"],
                         "grains_counted": counts["grains_counted"]}
    areas = _grain_areas(filled)
    intercepts: list[float] = []
    if method == "planimetric":
        f["value_px"] = counts["n_a_px"]
        vals = []
        h, w = filled.shape
        ey, ex = _tile_edges(h, s.tiles), _tile_edges(w, s.tiles)
        for j in range(s.tiles):
            for i in range(s.tiles):
                sub = filled[ey[j]:ey[j + 1], ex[i]:ex[i + 1]]
                if min(sub.shape) < 2 or not sub.any():
                    continue
                c = _planimetric_counts(sub, s.corner_quarter)
                if math.isfinite(c["n_a_px"]):
                    vals.append(c["n_a_px"])
        f["values_px"] = vals
        f["tiles"] = s.tiles
    elif method == "intercept":
        junctions = _junctions(filled, math.sqrt(counts["mean_area_px"]) if counts["mean_area_px"] > 0 else 0.0)
        spacing = s.line_spacing
        if spacing is None and s.line_count is None:
            spacing = _auto_spacing(counts["mean_area_px"])
        f["line_spacing_px"] = spacing
        vals, total_p, total_l = [], 0.0, 0.0
        per_dir: dict[float, list[float]] = {}
        for theta, p0, p1 in _lines(filled.shape, s, spacing):
            c = _line_count(filled, p0, p1, s, junctions)
            if c.length_px <= 0:
                continue
            vals.append(c.intersections / c.length_px)
            total_p += c.intersections
            total_l += c.length_px
            intercepts += c.intercepts_px
            d = per_dir.setdefault(theta, [0.0, 0.0, 0])
            d[0] += c.intersections
            d[1] += c.length_px
            d[2] += 1
        if not vals:
            raise DataError("no test line lies in the field")
        f.update(values_px=vals, intersections=total_p, line_length_px=total_l, lines=len(vals),
                 value_px=total_p / total_l if total_l > 0 else math.nan,
                 directions={f"{t:g}": {"lines": d[2], "intersections": d[0], "line_length_px": d[1],
                                        "P_L_px": d[0] / d[1] if d[1] > 0 else math.nan}
                             for t, d in per_dir.items()})
    else:
        junctions = _junctions(filled, math.sqrt(counts["mean_area_px"]) if counts["mean_area_px"] > 0 else 0.0)
        r, centres = _circle_placements(filled.shape, s)
        vals, total_p, total_l = [], 0.0, 0.0
        for cx, cy in centres:
            p = length = 0.0
            for frac in (1.0, 2.0 / 3.0, 1.0 / 3.0):
                c = _circle_count(filled, cx, cy, r * frac, s, junctions)
                p += c.intersections
                length += c.length_px
            if length <= 0:
                continue
            vals.append(p / length)
            total_p += p
            total_l += length
        if not vals:
            raise DataError("no test circle lies in the field")
        f.update(values_px=vals, intersections=total_p, line_length_px=total_l, circle_radius_px=r,
                 placements=len(vals), value_px=total_p / total_l if total_l > 0 else math.nan)
    f["_areas_px"] = areas
    f["_intercepts_px"] = np.asarray(intercepts, dtype=np.float64)
    return f


def _to_unit(v: float, px_um: float | None, method: str) -> float:
    """A value per px (per px² for planimetric) in per mm (per mm²); unchanged without a pixel size."""
    if px_um is None:
        return v
    mm = px_um * 1e-3
    return v / (mm * mm) if method == "planimetric" else v / mm


def _g(v: float, method: str, known: bool) -> float:
    if not known:
        return math.nan
    return g_from_na(v) if method == "planimetric" else g_from_pl(v)


def _interval(value: float, ci: float, method: str, known: bool) -> tuple[float, float]:
    if not math.isfinite(ci):
        return (math.nan, math.nan)
    return (_g(value - ci, method, known), _g(value + ci, method, known))


def _interval_reason(value: float, ci: float, method: str, known: bool, reason: str | None) -> str | None:
    """``reason``, else why the G interval is missing although the value's interval exists: its lower end
    reaches 0, where G is not defined."""
    if reason or not known or not (math.isfinite(value) and math.isfinite(ci)) or value - ci > 0:
        return reason
    return (f"the 95 % interval of {_quantity(method)} reaches 0 (too few or too different measurements): "
            "no G interval")


def _quantity(method: str) -> str:
    return "N_A" if method == "planimetric" else "P_L"


def _unit_name(method: str, known: bool) -> str:
    return ("mm" if known else "px") + ("^-2" if method == "planimetric" else "^-1")


def _finish_field(f: dict[str, Any], method: str) -> dict[str, Any]:
    """The statistics of one field over its sub-measurements, in the output units."""
    px = f["pixel_size_um"]
    known = px is not None
    vals = [_to_unit(v, px, method) for v in f.pop("values_px")]
    value = _to_unit(f.pop("value_px"), px, method)
    st = field_statistics(vals)
    out = {"value": value, "quantity": _quantity(method), "unit": _unit_name(method, known), "G": _g(value, method, known), "G_ci95": _interval(value, st["ci95"], method, known),
           "ci95": st["ci95"], "relative_accuracy": 100.0 * st["ci95"] / value if _finite_positive(value) else math.nan,
           "std": st["std"], "n_measurements": st["n"], "measurement": _MEASUREMENT[method],
           "ci_reason": _interval_reason(value, st["ci95"], method, known, st["ci_reason"]), "values": vals, **f}
    if known:
        mm = px * 1e-3
        out["field_area_mm2"] = f["field_area_px"] * mm * mm
        if "line_length_px" in f:
            out["line_length_mm"] = f["line_length_px"] * mm
    if method != "planimetric":
        out["mean_intercept"] = 1.0 / value if _finite_positive(value) else math.nan
    return out


def _as_fields(labels: Any, pixel_size: Any, names: list[str]) -> tuple[list[np.ndarray], list[float | None]]:
    if isinstance(labels, (list, tuple)):
        if not labels:
            raise DataError("no label images given")
        fields_ = list(labels)
    else:
        fields_ = [labels]
    if isinstance(pixel_size, (list, tuple, np.ndarray)):
        pxs = list(pixel_size)
        if len(pxs) != len(fields_):
            raise DataError(f"{len(pxs)} pixel sizes for {len(fields_)} label images")
    else:
        pxs = [pixel_size] * len(fields_)
    pxs = [_check_pixel_size(p) for p in pxs]
    missing = sum(p is None for p in pxs)
    if 0 < missing < len(pxs):
        raise DataError(f"{missing} of {len(pxs)} label images have no pixel size: give one for every image or none")
    checked = []
    for name, lab in zip(names, fields_):
        try:
            checked.append(_check_labels(lab))
        except DataError as exc:
            if not name:
                raise
            raise DataError(f"{name}: {exc}") from None
    return checked, pxs


def _field_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is not None:
        if len(names) != n:
            raise DataError(f"{len(names)} names for {n} label images")
        return [str(v) for v in names]
    return [""] if n == 1 else [f"label image {i + 1}" for i in range(n)]


def _run(fields_: list[np.ndarray], pxs: list[float | None], method: str, s: GrainSizeSettings,
         names: list[str]) -> GrainSizeResult:
    raw = []
    for name, lab, px in zip(names, fields_, pxs):
        try:
            raw.append(_measure_field(lab, px, method, s))
        except DataError as exc:
            if not name:
                raise
            raise DataError(f"{name}: {exc}") from None
    areas = [f.pop("_areas_px") for f in raw]
    intercepts = [f.pop("_intercepts_px") for f in raw] if method == "intercept" else []
    per_field = [{"field": i, **_finish_field(f, method),
                  "distributions": _distributions([areas[i]], intercepts[i:i + 1], [pxs[i]], s.bins_per_decade)}
                 for i, f in enumerate(raw)]
    known = pxs[0] is not None
    quantity, unit = _quantity(method), _unit_name(method, known)
    if len(per_field) == 1:
        pf = per_field[0]
        value, std, ci, n, ci_reason = pf["value"], pf["std"], pf["ci95"], pf["n_measurements"], pf["ci_reason"]
        measurement = pf["measurement"]
    else:
        st = field_statistics([pf["value"] for pf in per_field])
        value, std, ci, n, ci_reason = st["mean"], st["std"], st["ci95"], st["n"], st["ci_reason"]
        measurement = "field"
    total = {k: float(sum(pf.get(k, 0.0) for pf in per_field))
             for k in ("intersections", "line_length_px", "line_length_mm", "grains_counted")}
    res = GrainSizeResult(
        method=method, settings=s.to_dict(), per_field=per_field, G=_g(value, method, known),
        G_ci95=_interval(value, ci, method, known), value=value, std=std, ci95=ci,
        relative_accuracy=100.0 * ci / value if _finite_positive(value) and math.isfinite(ci) else math.nan,
        n_measurements=n, measurement=measurement, quantity=quantity, unit=unit,
        grains_counted=total["grains_counted"], ci_reason=_interval_reason(value, ci, method, known, ci_reason),
        distributions=_distributions(areas, intercepts, pxs, s.bins_per_decade))
    if method != "planimetric":
        res.intersections = total["intersections"]
        res.line_length_px = total["line_length_px"]
        res.line_length_mm = total["line_length_mm"] if known else math.nan
        res.mean_intercept = 1.0 / value if _finite_positive(value) else math.nan
    return res


def grain_size(labels: np.ndarray | Sequence[np.ndarray], pixel_size: float | Sequence[float | None] | None = None,
               method: str = "planimetric", settings: GrainSizeSettings | dict | None = None, *,
               twin_boundaries: np.ndarray | Sequence[np.ndarray] | None = None, names: Sequence[str] | None = None,
               **overrides: Any) -> GrainSizeResult:
    """ASTM E112 grain size of one label image or of several (each a field), with its 95 % confidence
    interval.

    ``labels``: a 2-D integer array, or a list of them (fields); ``pixel_size``: µm per px, one for all or
    one per image, or None (then G is NaN and values, lengths and counts are in px). ``method``:
    ``planimetric``, ``intercept`` or ``circles``. ``settings`` (a :class:`GrainSizeSettings` or a dict)
    and keyword ``overrides`` set the method (``directions=(0, 90)``, ``line_spacing=40``...).
    ``twin_boundaries``: a bool mask of twin-boundary pixels per image; the result then has ``twins``
    (``G_twins_counted``, ``G_twins_excluded``, ``twin_boundary_fraction``) and its G is the one that
    ``settings.twins`` names. ``names`` (one per image, e.g. file names) start the messages of errors
    about one image (default: ``label image N`` when there are several).

    Bad input (not 2-D, not integers, empty, no grains, a pixel size <= 0) raises :class:`DataError`, a
    bad setting :class:`ConfigError`.
    """
    if method not in METHODS:
        raise ConfigError(f"method: unknown value {method!r}; choose one of {', '.join(METHODS)}")
    s = resolve_settings(settings, **overrides)
    n = len(labels) if isinstance(labels, (list, tuple)) else 1
    names_ = _field_names(names, n) if n else []
    fields_, pxs = _as_fields(labels, pixel_size, names_)
    if twin_boundaries is None:
        return _run(fields_, pxs, method, s, names_)
    masks = list(twin_boundaries) if isinstance(twin_boundaries, (list, tuple)) else [twin_boundaries]
    if len(masks) != len(fields_):
        raise DataError(f"{len(masks)} twin-boundary masks for {len(fields_)} label images")
    masks = [_check_twin_mask(m, lab.shape) for m, lab in zip(masks, fields_)]
    merged = [merge_twins(lab, m, gap_width=s.gap_width) for lab, m in zip(fields_, masks)]
    counted = _run(fields_, pxs, method, s, names_)
    excluded = _run(merged, pxs, method, s, names_)
    lengths = []  # (twin boundary, all boundaries) in pixel edges, per image
    for lab, m in zip(fields_, masks):
        _, total, twin = _twin_pairs(fill_gaps(lab, s.gap_width), m, 0.5)
        lengths.append((float(total[twin].sum()), float(total.sum())))
    edges = sum(t for _, t in lengths)
    twins = {"G_twins_counted": counted.G, "G_twins_excluded": excluded.G,
             "value_twins_counted": counted.value, "value_twins_excluded": excluded.value,
             "twin_boundary_fraction": sum(tw for tw, _ in lengths) / edges if edges else math.nan,
             "grains_twins_counted": float(sum(pf["grains"] for pf in counted.per_field)),
             "grains_twins_excluded": float(sum(pf["grains"] for pf in excluded.per_field))}
    res = excluded if s.twins == "exclude" else counted
    for pf, (tw, total) in zip(res.per_field, lengths):
        pf["twin_boundary_fraction"] = tw / total if total else math.nan
    for pf, c, e in zip(res.per_field, counted.per_field, excluded.per_field):
        pf["G_twins_counted"], pf["G_twins_excluded"] = c["G"], e["G"]
    res.twins = twins
    return res
