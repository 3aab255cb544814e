"""The worker side of the Measure dock: one measurement of a labels array (no viewer: it runs in
a worker thread), and how its summary reads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.errors import DataError, GrainLabError
from ...core.measure import astm_grain_size, grain_table, summarize
from .._widgets import HINT_STYLE, fmt_number

#: the ASTM E112 methods the dock offers (label, core name)
METHODS = (("Planimetric (Jeffries)", "planimetric"), ("Lineal intercept (Heyn)", "intercept"),
           ("Three circles (Abrams)", "circles"))

__all__ = ["METHODS", "Measurement", "measure_labels", "summary_html"]


@dataclass(frozen=True)
class Measurement:
    """Everything the dock shows for one labels array."""

    table: dict[str, np.ndarray]
    summary: dict[str, Any]
    astm: dict[str, float]
    pixel_size: float | None
    shape: tuple[int, int]
    elapsed: float
    layer_id: int = 0
    #: the E112 method chosen, and its result (``GrainSizeResult.to_dict(per_field=False)``; None when it failed)
    method: str = "planimetric"
    grain_size: dict[str, Any] | None = None
    grain_size_error: str = ""

    @property
    def unit(self) -> str:
        return "µm" if self.pixel_size else "px"


def snapshot(data: Any, what: str) -> np.ndarray:
    """A copy of a layer's data (``what`` names it in the error), for a worker thread to take: a copy of a
    large label image (hundreds of MB above ~50 MP), or the read of a lazy (dask, zarr) one, would stall
    the GUI thread."""
    try:
        return np.array(data, copy=True)
    except (MemoryError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read {what}: {exc}") from exc


def measure_layer_data(data: Any, name: str, pixel_size: float | None, layer_id: int = 0,
                       method: str = "planimetric", twins: Any = None) -> Measurement:
    """:func:`measure_labels` of a :func:`snapshot` of a layer's (2-D) data and twin boundaries, taken here
    in the worker thread.  An edit made while the copy runs triggers the next measurement (the dock
    measures again after edits), so a half-copied stroke is never what stays shown."""
    labels = snapshot(data, name)
    twins = None if twins is None else snapshot(twins, "the twin-boundary layer")
    return measure_labels(labels, pixel_size, layer_id, method, twins)


def measure_labels(labels: np.ndarray, pixel_size: float | None, layer_id: int = 0,
                   method: str = "planimetric", twins: np.ndarray | None = None,
                   twin_threshold: float = 0.5) -> Measurement:
    """Grain table, summary and ASTM E112 numbers of ``labels`` by ``method``, with the 95 % confidence
    interval over the sub-fields / test lines / circle placements (runs in a worker thread).

    ``twins``: twin boundaries (a probability image, taken where above ``twin_threshold``, or a Labels /
    bool mask); G then excludes twins, and the result's ``twins`` holds G with twins counted too."""
    from ...core.grainsize import grain_size
    from ...core.report import twin_labels, twin_mask

    t0 = time.perf_counter()
    labels = np.asarray(labels)
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    table = grain_table(labels, pixel_size)
    summary = summarize(labels, pixel_size, table=table)
    astm = astm_grain_size(labels, pixel_size)
    result, error = None, ""
    if astm["grains"] > 0:
        try:
            mask = None if twins is None else twin_mask(twins, labels.shape, twin_threshold,
                                                        name="the twin-boundary layer")
            result = grain_size(twin_labels(labels, mask), pixel_size, method=method,
                                twin_boundaries=mask).to_dict(per_field=False)
        except GrainLabError as exc:  # e.g. a field too small for the test lines: the rest is still shown
            error = str(exc)
    return Measurement(table, summary, astm, pixel_size, tuple(labels.shape), time.perf_counter() - t0, layer_id,
                       method, result, error)


def _method_line(m: Measurement) -> str:
    label = dict((v, k) for k, v in METHODS).get(m.method, m.method)
    if m.grain_size_error:
        return f"{label}: <span style='{HINT_STYLE}'>{m.grain_size_error}</span>"
    r = m.grain_size
    if not r:
        return ""
    g, lo_hi, ra = r.get("G"), r.get("G_ci95") or (None, None), r.get("relative_accuracy")
    n = r.get("n_measurements") or 0
    if g is None:
        return f"{label}: G — <span style='{HINT_STYLE}'>(needs the pixel size)</span>"
    if lo_hi[0] is None or lo_hi[1] is None:
        why = r.get("ci_reason") or "no confidence interval"
        return f"{label}: G = <b>{fmt_number(g, 3)}</b> <span style='{HINT_STYLE}'>({why})</span>"
    half = (lo_hi[1] - lo_hi[0]) / 2
    return (f"{label}: G = <b>{fmt_number(g, 3)} ± {fmt_number(half, 2)}</b> (95 % CI, {n} {r.get('measurement', '')}"
            f"{'s' if n != 1 else ''}; relative accuracy {fmt_number(ra, 2)} %)")


def _twins_line(m: Measurement) -> str:
    t = (m.grain_size or {}).get("twins")
    if not t:
        return ""
    fraction = t.get("twin_boundary_fraction")
    share = f"; twin boundaries {fmt_number(100 * fraction, 2)} % of the boundary length" if fraction is not None else ""
    return (f"twins excluded: G = <b>{fmt_number(t.get('G_twins_excluded'), 3)}</b> "
            f"({int(t.get('grains_twins_excluded') or 0)} grains) · twins counted: G = "
            f"<b>{fmt_number(t.get('G_twins_counted'), 3)}</b> ({int(t.get('grains_twins_counted') or 0)} grains)"
            f"<span style='{HINT_STYLE}'>{share}</span>")


def summary_html(m: Measurement) -> str:
    """The dock's summary of ``m``: grain counts, mean and median diameter, ASTM E112 G."""
    unit = m.unit
    s, a = m.summary, m.astm
    n = int(a["grains"])
    lines = [f"<b>{n}</b> grain{'' if n == 1 else 's'} ({int(a['grains_inside'])} inside, "
             f"{int(a['grains_on_edge'])} on the edge)",
             f"mean ⌀ <b>{fmt_number(s['mean_diameter'])}</b> {unit} · "
             f"median {fmt_number(s['median_diameter'])} {unit}"]
    if m.pixel_size:
        lines.append(f"ASTM E112 G = <b>{fmt_number(a['astm_g'], 3)}</b> "
                     f"({fmt_number(a['grains_per_mm2'], 4)} grains/mm², planimetric)")
    else:
        lines.append(f"ASTM E112 G = — <span style='{HINT_STYLE}'>(needs the pixel size)</span>")
    method = _method_line(m)
    if method:
        lines.append(method)
    twins = _twins_line(m)
    if twins:
        lines.append(twins)
    return "<br>".join(lines)
