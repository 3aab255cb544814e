"""The worker side of the Measure dock: one measurement of a labels array (no viewer: it runs in
a worker thread), and how its summary reads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.measure import astm_grain_size, grain_table, summarize
from .._widgets import HINT_STYLE, fmt_number

__all__ = ["Measurement", "measure_labels", "summary_html"]


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

    @property
    def unit(self) -> str:
        return "µm" if self.pixel_size else "px"


def measure_labels(labels: np.ndarray, pixel_size: float | None, layer_id: int = 0) -> Measurement:
    """Grain table, summary and ASTM E112 numbers of ``labels`` (runs in a worker thread)."""
    t0 = time.perf_counter()
    labels = np.asarray(labels)
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    table = grain_table(labels, pixel_size)
    summary = summarize(labels, pixel_size)
    astm = astm_grain_size(labels, pixel_size)
    return Measurement(table, summary, astm, pixel_size, tuple(labels.shape), time.perf_counter() - t0, layer_id)


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
    return "<br>".join(lines)
