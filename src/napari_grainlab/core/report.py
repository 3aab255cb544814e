"""Measurement reports: one self-contained HTML (or PDF) file with everything a grain-size measurement used
and found.

>>> from napari_grainlab.core.report import ReportInput, write_report
>>> write_report("a_report.html", [ReportInput(labels, "a", pixel_size=0.05, image=image)])  # doctest: +SKIP

A report on one micrograph shows the image, the grain overlay (the grain boundaries drawn on the image),
the grain-area histogram with its log-normal fit and the intercept-length histogram, a table of ASTM E112
G ± 95 % CI and relative accuracy by each method (planimetric, intercept, three circles), the grain
counts, ALA, the duplex flag, the twin results when a twin-boundary mask is given, the settings, the
pixel size and where it came from, the model (name and sha256 of its weights) when known, the package
version and the date. A report on several micrographs has one row per field and G ± CI over all fields
by each method, a small overlay per field and the distributions of all fields together.

HTML reports embed their pictures as base64 PNG (no other files); PDF reports hold the same content on
A4 pages (matplotlib's ``PdfPages``). Pictures are reduced so that their longest side is at most
``ReportOptions.max_side``. Every text that comes from the user (names, paths, titles, messages) is
HTML-escaped. Files are written to a temporary file in the same folder and renamed into place.

:func:`inputs_from_summary` reads the micrographs of a batch output folder (``summary.csv`` of
``grainlab predict``): each row's ``NAME_labels.tif``, its image (``path``), its pixel size and the model
recorded for it.

matplotlib is used through ``matplotlib.figure.Figure`` with the Agg canvas only (never pyplot), so
reports can be made in worker threads. No Qt or napari.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import hashlib
import html
import io
import json
import math
import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, GrainLabError
from .grainsize_options import METHODS, GrainSizeSettings, resolve_settings
from .report_options import REPORT_SUFFIXES, ReportOptions

__all__ = ["METHOD_LABELS", "REPORT_SUFFIXES", "Report", "ReportInput", "ReportOptions", "ReportProgress",
           "build_report", "draw_distribution", "inputs_from_summary", "iter_write_report", "model_info",
           "read_twin_mask", "report_html", "report_pdf", "twin_labels", "twin_mask", "write_index", "write_report"]

#: how the report names the E112 methods
METHOD_LABELS = {"planimetric": "Planimetric (Jeffries)", "intercept": "Lineal intercept (Heyn)",
                 "circles": "Three circles (Abrams)"}
#: the longest side of a field's overlay in a report on several micrographs (px)
THUMBNAIL_SIDE = 240
#: rows of the per-field table on one PDF page
PDF_ROWS_PER_PAGE = 40
_A4 = (8.27, 11.69)


# ---------------------------------------------------------------------------------------------- input
@dataclass
class ReportInput:
    """One micrograph for a report: its grain ``labels`` (2-D integers, 0 = unlabelled) and what is known
    about it. ``image`` (grey or colour, any dtype, same height and width as the labels, or the path of
    its file, read only while its pictures are made) is optional: without it ``image_note`` (or a default
    text) says why there is none. ``twins``: a twin-boundary mask
    (bool / 0-1 / Labels) or probability image of the labels' shape (see :func:`twin_mask`)."""

    labels: np.ndarray
    name: str
    pixel_size: float | None = None
    pixel_size_source: str = ""
    image: np.ndarray | str | os.PathLike | None = None
    image_note: str = ""
    twins: np.ndarray | None = None
    twins_source: str = ""
    model: str | None = None
    model_sha256: str | None = None
    labels_path: str = ""
    image_path: str = ""


@dataclass(frozen=True)
class ReportProgress:
    """``done`` of ``total`` steps of a report; ``message`` says what is being done."""

    done: int
    total: int
    message: str = ""

    def __str__(self) -> str:
        return f"[{self.done}/{self.total}] {self.message}"


@dataclass
class FieldReport:
    """What a report shows of one micrograph (made by :func:`build_report`)."""

    input: ReportInput
    shape: tuple[int, int]
    counts: dict[str, float]
    results: dict[str, Any]          # method -> GrainSizeResult, or the message of why it failed
    distributions: dict[str, Any]
    twin_mask_used: bool
    pictures: dict[str, np.ndarray]  # "image" (uint8 grey or RGB), "overlay", "thumbnail" (uint8 RGB)
    picture_note: str
    reduced_by: int


@dataclass
class Report:
    """A report ready to be written as HTML or PDF (see :func:`build_report`)."""

    title: str
    fields: list[FieldReport]
    combined: dict[str, Any]          # method -> GrainSizeResult over all fields, or a message; {} for one field
    combined_distributions: dict[str, Any]
    settings: dict[str, Any]
    options: dict[str, Any]
    version: str
    date: str
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ helpers
def _stopped(stop: Any) -> bool:
    if stop is None:
        return False
    is_set = getattr(stop, "is_set", None)
    return bool(is_set() if callable(is_set) else stop())


def twin_mask(array: Any, shape: tuple[int, int] | None = None, threshold: float = 0.5, *,
              name: str = "the twin-boundary mask") -> np.ndarray:
    """A bool twin-boundary mask from ``array``: bool as it is, integers (a 0 / 1 mask or Labels) where not
    0, floats (a probability in [0, 1]) where above ``threshold``. ``shape`` is the labels' shape: a
    different one raises :class:`DataError`."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise DataError(f"{name} must be one 2-D image, got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise DataError(f"{name} is {a.shape[0]} x {a.shape[1]} px, the labels {shape[0]} x {shape[1]} px")
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind in "iu":
        return a != 0
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise DataError(f"{name} holds NaN or infinite values")
        return a > float(threshold)
    raise DataError(f"{name} must be bool, integer or float, got {a.dtype}")


def twin_labels(labels: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The labels to measure with the twin-boundary ``mask``: every grain cut along the mask
    (:func:`~napari_grainlab.core.twins.split_at_twins`), so that ``grain_size(..., twin_boundaries=mask)``
    gives G with twins counted (the parts) and excluded (merged back) whether the labels are parent grains
    (a prediction: twins are part of their parent) or already have the twins as grains of their own."""
    if mask is None:
        return labels
    from .twins import split_at_twins

    split = split_at_twins(labels, mask)
    return split if split.any() else labels


def read_twin_mask(path: str | os.PathLike, shape: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """The twin-boundary mask in the TIFF / PNG file ``path`` (see :func:`twin_mask`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such twin-boundary file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise DataError(f"{path}: cannot read the twin-boundary image ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[:2] == tuple(shape):
        arr = arr[..., 0]
    return twin_mask(arr, shape, threshold, name=str(path))


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def _sha256_file(path: Path) -> str | None:
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with _HASH_LOCK:
            if key in _HASHES:
                return _HASHES[key]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = digest
    return digest


def model_info(model: Any) -> tuple[str | None, str | None]:
    """``(name, sha256 of the weights)`` of a model given as a built-in model's name, a checkpoint folder or
    a ``.safetensors`` / ``model.json`` file; what is not known is None (a name that is neither stays as
    given)."""
    if model is None or str(model).strip() == "":
        return None, None
    text = str(model)
    from .models.registry import is_registry_name, list_models

    if is_registry_name(text):
        entry = next((e for e in list_models() if e.name == text), None)
        return text, (entry.sha256 if entry is not None else None)
    p = Path(text).expanduser()
    weights = None
    if p.is_dir():
        for sub in ("", "best", "last"):
            if (p / sub / "model.safetensors").is_file():
                weights = p / sub / "model.safetensors"
                break
        name = p.name
    elif p.suffix in (".safetensors", ".json") and p.with_suffix(".safetensors").is_file():
        weights = p.with_suffix(".safetensors")
        name = p.parent.name
    else:
        return text, None
    return name, (_sha256_file(weights) if weights is not None else None)


def _grain_counts(labels: np.ndarray, px: float | None) -> dict[str, float]:
    from .measure import astm_grain_size

    a = astm_grain_size(labels, px)
    return {k: float(a[k]) for k in ("grains", "grains_inside", "grains_on_edge") if k in a}


def _reduce(a: np.ndarray, k: int, how: str) -> np.ndarray:
    """Block mean / max over ``k`` x ``k`` pixels (the last block may be smaller)."""
    if k <= 1:
        return a
    from skimage.measure import block_reduce

    block = (k, k) + ((1,) if a.ndim == 3 else ())
    if how == "max":
        return block_reduce(a, block, np.max)
    return block_reduce(a.astype(np.float32, copy=False), block, np.nanmean, cval=np.nan)


def _display_image(image: np.ndarray, shape: tuple[int, int], k: int) -> tuple[np.ndarray | None, str]:
    """The image reduced by ``k`` as float [0, 1] grey / RGB, or None and why it is not shown."""
    from .visualize import image_to_unit

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        return None, f"the image has shape {a.shape}, not one grey or colour plane: not shown"
    if a.shape[:2] != tuple(shape):
        return None, (f"the image is {a.shape[0]} x {a.shape[1]} px and the labels {shape[0]} x {shape[1]} px: "
                      "not shown")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        a = np.nan_to_num(a)
    small = _reduce(a.astype(np.float32) if a.dtype == np.bool_ else a, k, "mean")
    return image_to_unit(small, percentiles=(0.5, 99.5)), ""


def _pictures(inp: ReportInput, labels: np.ndarray, max_side: int) -> tuple[dict[str, np.ndarray], str, int]:
    """The reduced image (uint8 grey or RGB), the overlay (boundaries drawn on it) and the thumbnail overlay
    (uint8 RGB)."""
    from .visualize import boundary_mask, overlay_rgb

    h, w = labels.shape
    k = max(1, math.ceil(max(h, w) / max_side))
    edges = _reduce(boundary_mask(labels), k, "max").astype(bool)
    small_labels = labels[::k, ::k]
    note = inp.image_note
    unit = None
    image = inp.image
    if isinstance(image, (str, os.PathLike)):
        from .data.io import read_image

        try:
            image = read_image(image).data
        except (DataError, OSError) as exc:
            image = None
            note = f"the micrograph cannot be read ({exc}): the overlay shows the grains alone"
    if image is not None:
        unit, why = _display_image(image, (h, w), k)
        note = why or note
    elif not note:
        note = "no micrograph was given: the overlay shows the grains alone"
    out: dict[str, np.ndarray] = {}
    if unit is not None:
        out["image"] = np.round(unit * 255).astype(np.uint8)  # grey stays one channel (a third of the PNG)
        out["overlay"] = overlay_rgb(unit, small_labels, edges, alpha=0.15)
    else:
        out["overlay"] = overlay_rgb(np.zeros(small_labels.shape, np.float32), small_labels, edges, alpha=0.55)
    t = max(1, math.ceil(max(out["overlay"].shape[:2]) / THUMBNAIL_SIDE))
    out["thumbnail"] = out["overlay"][::t, ::t]
    return out, note, k


def _measure(labels: Any, px: Any, method: str, s: GrainSizeSettings, twins: Any, names: list[str] | None) -> Any:
    from .grainsize import grain_size

    try:
        return grain_size(labels, px, method, s, twin_boundaries=twins, names=names)
    except GrainLabError as exc:
        return str(exc)


def _distributions_of(results: dict[str, Any]) -> dict[str, Any]:
    """The distributions of a field (or of all fields): those of the intercept result (grain areas and
    intercept lengths) when it worked, else of the first method that did."""
    for method in ("intercept", *METHODS):
        r = results.get(method)
        if r is not None and not isinstance(r, str):
            return r.distributions
    return {}


def build_report(inputs: Sequence[ReportInput], settings: GrainSizeSettings | dict | None = None,
                 options: ReportOptions | None = None, *, notes: Sequence[str] = (), stop: Any = None,
                 progress: Callable[[ReportProgress], None] | None = None) -> Report | None:
    """Measure every input by the three E112 methods (and all of them together, when there are several)
    and make the pictures: a :class:`Report` for :func:`report_html` / :func:`report_pdf`.

    A method that cannot measure a field (circles that do not fit, no test line in the field) is shown
    with its reason; bad labels raise :class:`DataError` naming the input. ``notes`` are shown at the top.
    ``stop`` (an event or a callable) ends it early: then it returns None."""
    gen = _iter_build(inputs, settings, options, stop, notes=notes)
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(ev)


def _iter_build(inputs: Sequence[ReportInput], settings: Any, options: ReportOptions | None,
                stop: Any, extra_steps: int = 0, notes: Sequence[str] = ()) -> Generator[ReportProgress, None, Report | None]:
    """The work of :func:`build_report`, yielding progress; returns None when ``stop`` was set."""
    from .. import __version__
    from .grainsize import _check_labels

    inputs = list(inputs)
    if not inputs:
        raise DataError("no label images for the report")
    s = resolve_settings(settings)
    opts = (options or ReportOptions()).validate()
    several = len(inputs) > 1
    total = len(inputs) * (len(METHODS) + 1) + (len(METHODS) if several else 0) + extra_steps
    done = 0
    fields: list[FieldReport] = []
    masks: list[np.ndarray | None] = []
    for inp in inputs:
        try:
            labels = _check_labels(inp.labels)
        except DataError as exc:
            raise DataError(f"{inp.name}: {exc}") from None
        px = inp.pixel_size
        mask = twin_mask(inp.twins, labels.shape, opts.twin_threshold, name=f"{inp.name}: the twin-boundary mask") \
            if inp.twins is not None else None
        masks.append(mask)
        measured = twin_labels(labels, mask)
        results: dict[str, Any] = {}
        for method in METHODS:
            if _stopped(stop):
                return None
            yield ReportProgress(done, total, f"{inp.name}: {method}")
            results[method] = _measure(measured, px, method, s, mask, [inp.name])
            done += 1
        if isinstance(results["planimetric"], str):
            raise DataError(f"{inp.name}: {results['planimetric']}")
        yield ReportProgress(done, total, f"{inp.name}: pictures")
        pictures, note, k = _pictures(inp, labels, opts.max_side)
        done += 1
        fields.append(FieldReport(inp, tuple(labels.shape), _grain_counts(labels, px), results,
                                  _distributions_of(results), mask is not None, pictures, note, k))
    combined: dict[str, Any] = {}
    notes = list(notes)
    if several:
        all_masks = masks if all(m is not None for m in masks) else None
        if any(m is not None for m in masks) and all_masks is None:
            notes.append("twin-boundary masks were given for some fields only: the G of all fields counts twins "
                         "as grains")
        for method in METHODS:
            if _stopped(stop):
                return None
            yield ReportProgress(done, total, f"all fields: {method}")
            labels_all = [twin_labels(f.input.labels, m) if all_masks else f.input.labels
                          for f, m in zip(fields, masks)]
            combined[method] = _measure(labels_all, [f.input.pixel_size for f in fields], method, s, all_masks,
                                        [f.input.name for f in fields])
            done += 1
    title = (opts.title or "").strip() or (inputs[0].name if not several else "Grain size report")
    return Report(title, fields, combined, _distributions_of(combined) if several else {}, s.to_dict(),
                  opts.to_dict(), __version__, _dt.datetime.now().astimezone().isoformat(timespec="seconds"), notes)


# ------------------------------------------------------------------------------------------ figures
def draw_distribution(ax: Any, dist: dict[str, Any] | None, quantity: str, unit: str, *,
                      color: str = "#4c78a8", fit_color: str = "#e45756", text_color: str | None = None,
                      legend: bool = True) -> int:
    """Draw a log-binned histogram of ``dist`` (a ``grain_size`` distribution: ``edges``, ``counts``,
    ``lognormal_mu``, ``lognormal_sigma``) on the matplotlib axes ``ax`` with a log x axis and its log-normal
    fit (the expected count per bin), and a legend unless not ``legend``; returns the number of bars (0:
    nothing to draw)."""
    ax.clear()
    edges = np.asarray((dist or {}).get("edges") or [], dtype=float)
    counts = np.asarray((dist or {}).get("counts") or [], dtype=float)
    label_kw = {"color": text_color} if text_color else {}
    ax.set_xlabel(f"{quantity} ({unit.replace('^2', '²').replace('um', 'µm')})", fontsize=9, **label_kw)
    ax.set_ylabel("count", fontsize=9, **label_kw)
    if edges.size < 2 or counts.sum() <= 0:
        ax.text(0.5, 0.5, f"no {quantity}", transform=ax.transAxes, ha="center", va="center", **label_kw)
        ax.set_xticks([])
        ax.set_yticks([])
        return 0
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=color, edgecolor="white", linewidth=0.4,
           label=f"n = {int(counts.sum())}")
    ax.set_xscale("log")
    top = float(counts.max())
    mu, sigma = dist.get("lognormal_mu"), dist.get("lognormal_sigma")
    if mu is not None and sigma is not None and math.isfinite(mu) and math.isfinite(sigma) and sigma > 0:
        per_decade = np.log10(edges[1:] / edges[:-1]).mean()
        x = np.logspace(math.log10(edges[0]), math.log10(edges[-1]), 200)
        z = (np.log(x) - mu) / sigma
        expected = counts.sum() * np.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi)) * math.log(10) * per_decade
        top = max(top, float(expected.max()))
        ax.plot(x, expected, color=fit_color, linewidth=1.5,
                label=f"log-normal: median {_fmt(math.exp(mu), 3)}, σ(ln) {_fmt(sigma, 2)}")
    ax.set_xlim(edges[0], edges[-1])
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, top * 1.3)
    if legend:
        ax.legend(fontsize=7, frameon=False, loc="upper right", labelcolor=text_color or "black")
    return int(counts.size)


def _new_figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _distribution_figures(dist: dict[str, Any]) -> list[tuple[str, bytes]]:
    out = []
    for key, quantity in (("grain_area", "grain area"), ("intercept_length", "intercept length")):
        d = dist.get(key)
        if not d:
            continue
        fig = _new_figure((5.2, 3.0))
        draw_distribution(fig.add_subplot(111), d, quantity, d.get("unit", "px"))
        out.append((quantity, _figure_png(fig)))
    return out


# --------------------------------------------------------------------------------------------- text
def _fmt(v: Any, digits: int = 3) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 10 ** 6 or abs(x) < 10 ** -3):
        return f"{x:.{digits}g}"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _g_text(r: Any) -> tuple[str, str, str, str]:
    """(G, 95 % CI of G, value ± CI, relative accuracy) of a result as text."""
    lo, hi = r.G_ci95
    ci = f"{lo:.2f} – {hi:.2f}" if math.isfinite(lo) and math.isfinite(hi) else "n/a"
    unit = r.unit.replace("^-2", "⁻²").replace("^-1", "⁻¹")
    value = f"{r.quantity} {_fmt(r.value, 4)} ± {_fmt(r.ci95, 2)} {unit}"
    g = f"{r.G:.2f}" if math.isfinite(r.G) else "n/a"
    return g, ci, value, _fmt(r.relative_accuracy, 3) + (" %" if math.isfinite(r.relative_accuracy) else "")


def _method_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for method in METHODS:
        r = results.get(method)
        if r is None:
            continue
        if isinstance(r, str):
            rows.append({"method": method, "error": r})
            continue
        g, ci, value, ra = _g_text(r)
        rows.append({"method": method, "G": g, "G_raw": repr(float(r.G)), "ci": ci, "value": value, "ra": ra,
                     "n": f"{r.n_measurements} {r.measurement}{'s' if r.n_measurements != 1 else ''}",
                     "counted": _fmt(r.grains_counted, 4), "reason": r.ci_reason or ""})
    return rows


def _twin_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for method in METHODS:
        r = results.get(method)
        if r is None or isinstance(r, str) or not r.twins:
            continue
        t = r.twins
        rows.append({"method": method, "counted_raw": repr(float(t["G_twins_counted"])),
                     "excluded_raw": repr(float(t["G_twins_excluded"])), "counted": _fmt(t["G_twins_counted"], 4),
                     "excluded": _fmt(t["G_twins_excluded"], 4),
                     "fraction": _fmt(100 * t["twin_boundary_fraction"], 3) + " %",
                     "grains": f"{int(t['grains_twins_counted'])} → {int(t['grains_twins_excluded'])}"})
    return rows


def _grain_facts(counts: dict[str, float], dist: dict[str, Any]) -> list[tuple[str, str]]:
    area = dist.get("grain_area") or {}
    ala = dist.get("ala") or {}
    unit = (area.get("unit") or "px^2").replace("^2", "²").replace("um", "µm")
    duplex = area.get("duplex")
    facts = [("grains", f"{int(counts.get('grains', 0))} ({int(counts.get('grains_inside', 0))} inside, "
                        f"{int(counts.get('grains_on_edge', 0))} cut by the edge)")]
    if area:
        facts.append(("mean area of inner grains", f"{_fmt(area.get('mean'), 4)} {unit}"))
    if ala:
        facts.append(("ALA (E930): largest grain", f"{_fmt(ala.get('largest_area'), 4)} {unit}, "
                                                   f"G_ALA {_fmt(ala.get('G_ALA'), 3)}"))
    if area:
        bc = area.get("bimodality_coefficient")
        facts.append(("duplex (E1181 style)", ("n/a (fewer than 20 grains)" if duplex is None else
                                               ("yes" if duplex else "no")) +
                      f"; bimodality coefficient {_fmt(bc, 3)} (5/9 = 0.556)"))
    return facts


def _field_info(f: FieldReport) -> list[tuple[str, str]]:
    inp = f.input
    px = f"{_fmt(inp.pixel_size, 5)} µm" if inp.pixel_size else "unknown: values are per px and G is n/a"
    if inp.pixel_size and inp.pixel_size_source:
        px += f" (from {inp.pixel_size_source})"
    info = [("labels", inp.labels_path or inp.name), ("size", f"{f.shape[1]} x {f.shape[0]} px"), ("pixel size", px)]
    info.append(("micrograph", inp.image_path or ("given" if inp.image is not None else "none")))
    if f.reduced_by > 1:
        info.append(("pictures", f"reduced {f.reduced_by}x for the report"))
    if inp.model or inp.model_sha256:
        info.append(("model", inp.model or "unknown"))
        info.append(("model sha256", inp.model_sha256 or "unknown"))
    if f.twin_mask_used:
        info.append(("twin-boundary mask", inp.twins_source or "given"))
    return info


# --------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{margin-bottom:.3em}.meta,.note{color:#666}.error{color:#b00020}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.4em 1em .4em 0;vertical-align:top}figure img{max-width:100%;height:auto;
border:1px solid #ccc}figcaption{color:#555;font-size:.9em}.pics figure{max-width:49%}
img.thumb{max-width:240px;height:auto}
"""


def _table(rows: list[tuple[str, str]], cls: str) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _img(data: bytes, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _methods_html(results: dict[str, Any], caption: str) -> str:
    head = ("<tr><th>method</th><th>G</th><th>95 % CI of G</th><th>value ± 95 % CI</th><th>relative accuracy</th>"
            "<th>measurements</th><th>grains counted</th><th>note</th></tr>")
    body = []
    for row in _method_rows(results):
        label = _esc(METHOD_LABELS[row["method"]])
        if "error" in row:
            body.append(f'<tr data-method="{row["method"]}"><td>{label}</td>'
                        f'<td colspan="7" class="error">{_esc(row["error"])}</td></tr>')
            continue
        body.append(f'<tr data-method="{row["method"]}"><td>{label}</td>'
                    f'<td class="num g" data-g="{row["G_raw"]}">{_esc(row["G"])}</td>'
                    f'<td class="num">{_esc(row["ci"])}</td><td class="num">{_esc(row["value"])}</td>'
                    f'<td class="num">{_esc(row["ra"])}</td><td class="num">{_esc(row["n"])}</td>'
                    f'<td class="num">{_esc(row["counted"])}</td><td>{_esc(row["reason"])}</td></tr>')
    return (f'<table class="methods"><caption>{_esc(caption)}</caption>{head}{"".join(body)}</table>'
            '<p class="note">E112 asks for a relative accuracy of 10 % or better.</p>')


def _twins_html(results: dict[str, Any], settings: dict[str, Any]) -> str:
    rows = _twin_rows(results)
    if not rows:
        return ""
    body = "".join(f'<tr data-method="{r["method"]}"><td>{_esc(METHOD_LABELS[r["method"]])}</td>'
                   f'<td class="num" data-g="{r["counted_raw"]}">{_esc(r["counted"])}</td>'
                   f'<td class="num" data-g="{r["excluded_raw"]}">{_esc(r["excluded"])}</td>'
                   f'<td class="num">{_esc(r["fraction"])}</td><td class="num">{_esc(r["grains"])}</td></tr>'
                   for r in rows)
    shown = "excluded (twins merged into their parent grain)" if settings.get("twins") == "exclude" else "counted"
    return ("<h3>Twins</h3><table class=\"twins\"><tr><th>method</th><th>G, twins counted</th><th>G, twins excluded"
            "</th><th>twin-boundary fraction</th><th>grains (counted → excluded)</th></tr>" + body +
            f"</table><p class=\"note\">The G above has twins {_esc(shown)}.</p>")


def _field_html(f: FieldReport, settings: dict[str, Any], index: int) -> str:
    parts = [f'<section class="field" id="field-{index}">', f"<h2>{_esc(f.input.name)}</h2>",
             _table(_field_info(f), "info"), "<h3>ASTM E112 grain size</h3>",
             _methods_html(f.results, "G ± 95 % confidence interval by each method"),
             "<h3>Grains</h3>", _table(_grain_facts(f.counts, f.distributions), "grains"),
             _twins_html(f.results, settings), '<h3>Micrograph and grains</h3><div class="pics">']
    if "image" in f.pictures:
        parts.append(f"<figure>{_img(_png(f.pictures['image']), 'micrograph')}<figcaption>micrograph</figcaption>"
                     "</figure>")
    parts.append(f"<figure>{_img(_png(f.pictures['overlay']), 'grain overlay')}<figcaption>grain boundaries"
                 "</figcaption></figure></div>")
    if f.picture_note:
        parts.append(f'<p class="note picture-note">{_esc(f.picture_note)}</p>')
    parts.append(_distributions_html(f.distributions))
    parts.append("</section>")
    return "".join(parts)


def _distributions_html(dist: dict[str, Any]) -> str:
    figs = _distribution_figures(dist)
    if not figs:
        return ""
    return "<h3>Distributions</h3>" + "".join(
        f"<figure>{_img(png, name + ' histogram')}<figcaption>{_esc(name)}: log-binned histogram and log-normal fit"
        "</figcaption></figure>" for name, png in figs)


def _fields_table_html(report: Report) -> str:
    head = "<tr><th>field</th><th>overlay</th><th>grains</th><th>pixel size (µm)</th>" + "".join(
        f"<th>G {_esc(m)} ± 95 % CI</th>" for m in METHODS) + "<th>duplex</th></tr>"
    body = []
    for i, f in enumerate(report.fields):
        cells = [f'<td><a href="#field-{i}">{_esc(f.input.name)}</a></td>',
                 f"<td>{_img(_png(f.pictures['thumbnail']), 'overlay of ' + f.input.name, 'thumb')}</td>",
                 f'<td class="num">{int(f.counts.get("grains", 0))}</td>',
                 f'<td class="num">{_esc(_fmt(f.input.pixel_size, 4))}</td>']
        for m in METHODS:
            r = f.results[m]
            if isinstance(r, str):
                cells.append(f'<td class="error">{_esc(r)}</td>')
            else:
                g, ci, _, ra = _g_text(r)
                cells.append(f'<td class="num g" data-method="{m}" data-g="{float(r.G)!r}">{_esc(g)} '
                             f'({_esc(ci)}), RA {_esc(ra)}</td>')
        dup = (f.distributions.get("grain_area") or {}).get("duplex")
        cells.append(f"<td>{'n/a' if dup is None else ('yes' if dup else 'no')}</td>")
        body.append(f'<tr class="field-row">{"".join(cells)}</tr>')
    return f'<table class="fields">{head}{"".join(body)}</table>'


def _settings_html(report: Report) -> str:
    rows = [(k, ", ".join(_fmt(x, 4) for x in v) if isinstance(v, list) else
             ("auto" if v is None else str(v))) for k, v in report.settings.items()]
    rows += [(f"report: {k}", str(v)) for k, v in report.options.items() if k != "title"]
    return "<h2>Settings</h2>" + _table(rows, "settings")


def report_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    several = len(report.fields) > 1
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_esc(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_esc(report.title)}</h1>",
             f'<p class="meta">napari-grainlab {_esc(report.version)} · {_esc(report.date)} · ASTM E112 grain size'
             f'{" of " + str(len(report.fields)) + " fields" if several else ""}</p>']
    for note in report.notes:
        parts.append(f'<p class="note">{_esc(note)}</p>')
    if several:
        parts += ["<h2>All fields</h2>", _methods_html(report.combined, "G ± 95 % confidence interval over the "
                                                                        "fields (each micrograph is one field)"),
                  _twins_html(report.combined, report.settings), "<h2>Fields</h2>", _fields_table_html(report),
                  _distributions_html(report.combined_distributions)]
    for i, f in enumerate(report.fields):
        parts.append(_field_html(f, report.settings, i))
    parts += [_settings_html(report), "</body></html>"]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- PDF
def _text_lines(results: dict[str, Any]) -> list[str]:
    lines = [f"{'method':<24}{'G':>7}  {'95 % CI':<14}{'RA':>9}  {'n':<14}"]
    for row in _method_rows(results):
        label = METHOD_LABELS[row["method"]]
        if "error" in row:
            lines.append(f"{label:<24}{row['error'][:70]}")
        else:
            lines.append(f"{label:<24}{row['G']:>7}  {row['ci']:<14}{row['ra']:>9}  {row['n']:<14}")
    return lines


def _text_page(pdf: Any, title: str, blocks: list[tuple[str, list[str]]], head: str = "") -> None:
    fig = _new_figure(_A4)
    fig.set_layout_engine(None)
    y = 0.95
    fig.text(0.07, y, title[:80], fontsize=15, weight="bold", va="top")
    y -= 0.035
    if head:
        fig.text(0.07, y, head, fontsize=8, color="#555", va="top")
        y -= 0.03
    for heading, lines in blocks:
        if not lines:
            continue
        fig.text(0.07, y, heading, fontsize=11, weight="bold", va="top")
        y -= 0.024
        for line in lines:
            fig.text(0.07, y, line[:110], fontsize=7.5, family="monospace", va="top")
            y -= 0.0155
        y -= 0.012
    pdf.savefig(fig)


def _info_lines(rows: list[tuple[str, str]]) -> list[str]:
    return [f"{k + ':':<30}{v}" for k, v in rows]


def _settings_lines(report: Report) -> list[str]:
    rows = [(k, ", ".join(_fmt(x, 4) for x in v) if isinstance(v, list) else ("auto" if v is None else str(v)))
            for k, v in report.settings.items()]
    return _info_lines(rows)


def _pictures_page(pdf: Any, f: FieldReport) -> None:
    fig = _new_figure(_A4)
    pics = [("micrograph", f.pictures["image"])] if "image" in f.pictures else []
    pics.append(("grain boundaries", f.pictures["overlay"]))
    for i, (name, rgb) in enumerate(pics):
        ax = fig.add_subplot(len(pics), 1, i + 1)
        ax.imshow(rgb, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{f.input.name}: {name}", fontsize=10)
        ax.set_axis_off()
    if f.picture_note:
        fig.suptitle(f.picture_note, fontsize=8, color="#555")
    pdf.savefig(fig)


def _distributions_page(pdf: Any, dist: dict[str, Any], title: str) -> None:
    fig = _new_figure(_A4)
    keys = [(k, q) for k, q in (("grain_area", "grain area"), ("intercept_length", "intercept length")) if dist.get(k)]
    for i, (key, quantity) in enumerate(keys or [("grain_area", "grain area")]):
        ax = fig.add_subplot(2, 1, i + 1)
        d = dist.get(key) or {}
        draw_distribution(ax, d, quantity, d.get("unit", "px"))
        ax.set_title(f"{title}: {quantity}", fontsize=10)
    pdf.savefig(fig)


def report_pdf(report: Report) -> bytes:
    """The report as PDF: one field gives 3 pages (text, pictures, distributions); several give a text page
    with all fields, ``ceil(fields / PDF_ROWS_PER_PAGE)`` pages of per-field rows and a distributions page."""
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    head = f"napari-grainlab {report.version} · {report.date}"
    with PdfPages(buf, metadata={"Title": report.title, "Creator": f"napari-grainlab {report.version}"}) as pdf:
        if len(report.fields) == 1:
            f = report.fields[0]
            blocks = [("Micrograph", _info_lines(_field_info(f))), ("ASTM E112 grain size", _text_lines(f.results)),
                      ("Grains", _info_lines(_grain_facts(f.counts, f.distributions)))]
            twins = _twin_rows(f.results)
            if twins:
                blocks.append(("Twins (G counted / excluded, twin-boundary fraction)",
                               [f"{METHOD_LABELS[t['method']]:<24}{t['counted']:>7} / {t['excluded']:<7} "
                                f"{t['fraction']}" for t in twins]))
            blocks.append(("Settings", _settings_lines(report)))
            _text_page(pdf, report.title, blocks + [("Notes", report.notes)], head)
            _pictures_page(pdf, f)
            _distributions_page(pdf, f.distributions, f.input.name)
        else:
            blocks = [("All fields: ASTM E112 grain size", _text_lines(report.combined)),
                      ("Notes", report.notes), ("Settings", _settings_lines(report))]
            _text_page(pdf, report.title, blocks, head)
            rows = []
            for f in report.fields:
                gs = []
                for m in METHODS:
                    r = f.results[m]
                    gs.append("failed" if isinstance(r, str) else _g_text(r)[0])
                rows.append(f"{f.input.name[:34]:<36}{int(f.counts.get('grains', 0)):>7}  " +
                            "".join(f"{g:>13}" for g in gs))
            header = f"{'field':<36}{'grains':>7}  " + "".join(f"{'G ' + m:>13}" for m in METHODS)
            for start in range(0, len(rows), PDF_ROWS_PER_PAGE):
                _text_page(pdf, "Fields", [("", [header, *rows[start:start + PDF_ROWS_PER_PAGE]])])
            _distributions_page(pdf, report.combined_distributions, "all fields")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- write
def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise DataError(f"{path}: a report is .html or .pdf, not {suffix or 'a file without a suffix'}")
    return "pdf" if suffix == ".pdf" else "html"


def _write(path: Path, report: Report) -> Path:
    from ._io import atomic_write_bytes

    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a .html or .pdf file name")
    data = report_pdf(report) if _format_of(path) == "pdf" else report_html(report).encode("utf-8")
    atomic_write_bytes(path, data)
    return path


def iter_write_report(path: str | os.PathLike, inputs: Sequence[ReportInput],
                      settings: GrainSizeSettings | dict | None = None, options: ReportOptions | None = None, *,
                      notes: Sequence[str] = (), stop: Any = None) -> Generator[ReportProgress, None, Path | None]:
    """:func:`write_report` as a generator of :class:`ReportProgress` events (for a progress bar); returns
    the path written. ``stop`` (an event or a callable) cancels it before anything is written (then it
    returns None)."""
    path = Path(path)
    _format_of(path)
    report = yield from _iter_build(inputs, settings, options, stop, extra_steps=1, notes=notes)
    if report is None or _stopped(stop):
        return None
    total = len(report.fields) * (len(METHODS) + 1) + (len(METHODS) if len(report.fields) > 1 else 0) + 1
    yield ReportProgress(total - 1, total, f"writing {path.name}")
    _write(path, report)
    yield ReportProgress(total, total, f"wrote {path.name}")
    return path


def write_report(path: str | os.PathLike, inputs: Sequence[ReportInput] | Report,
                 settings: GrainSizeSettings | dict | None = None, options: ReportOptions | None = None, *,
                 notes: Sequence[str] = ()) -> Path:
    """Write the report on ``inputs`` (or a :class:`Report` made before) to ``path``: HTML for ``.html`` /
    ``.htm``, PDF for ``.pdf``; atomically (a temporary file in the same folder, then renamed)."""
    path = Path(path)
    _format_of(path)
    report = inputs if isinstance(inputs, Report) else build_report(inputs, settings, options, notes=notes)
    return _write(path, report)


def write_index(path: str | os.PathLike, entries: Sequence[tuple[str, str, Any]], title: str = "Grain size reports") -> Path:
    """An HTML index of reports: ``entries`` are ``(name, report file name relative to the index, G by the
    planimetric method or None)``."""
    from .. import __version__
    from ._io import atomic_write_text

    rows = "".join(f'<tr><td><a href="{_esc(Path(href).as_posix())}">{_esc(name)}</a></td>'
                   f'<td class="num">{_esc(_fmt(g, 4))}</td></tr>' for name, href, g in entries)
    date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>"
            f'<p class="meta">napari-grainlab {_esc(__version__)} · {_esc(date)}</p>'
            f'<table class="index"><tr><th>report</th><th>G (planimetric)</th></tr>{rows}</table></body></html>')
    path = Path(path)
    atomic_write_text(path, text)
    return path


# ----------------------------------------------------------------------------------- batch folders
def _record_model(folder: Path, stem: str) -> tuple[str | None, str | None]:
    record = folder / f".{stem}.grainlab.json"
    try:
        if not record.is_file() or record.stat().st_size > 1_000_000:
            return None, None
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None, None
    weights = ((data.get("model") or {}) if isinstance(data, dict) else {}).get("weights")
    if not isinstance(weights, str) or not weights:
        return None, None
    w = Path(weights)
    return w.parent.name or weights, (_sha256_file(w) if w.is_file() else None)


def inputs_from_summary(summary: str | os.PathLike, *, pixel_size: float | None = None,
                        with_images: bool = True) -> tuple[list[ReportInput], list[str]]:
    """The micrographs of a batch output folder, from its ``summary.csv`` (written by ``grainlab
    predict``): one :class:`ReportInput` per row with status ``ok`` (its ``NAME_labels.tif`` next to the
    summary, its image from the ``path`` column when it is still there, the pixel size of the row or of
    ``pixel_size``, the model of its record, its ``NAME_twin_boundary.tif`` when the model has a twin
    class); and one note per row left out (failed images).

    A summary that is not one of a batch, or a labels file it lists that is missing, raises
    :class:`DataError`."""
    from .data.io import read_labels, read_pixel_size

    summary = Path(summary)
    if summary.is_dir():
        summary = summary / "summary.csv"
    if not summary.is_file():
        raise DataError(f"{summary}: no such summary file")
    try:
        with open(summary, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{summary}: cannot read it as CSV ({exc})") from None
    if not rows or "output" not in rows[0]:
        raise DataError(f"{summary}: not the summary of a batch prediction (no 'output' column)")
    folder = summary.parent
    inputs, notes = [], []
    for row in rows:
        stem = (row.get("output") or "").strip()
        status = (row.get("status") or "ok").strip()
        if stem in ("", "all") or status != "ok":
            if stem and stem != "all":
                notes.append(f"{row.get('image') or stem}: not in the report ({row.get('error') or status})")
            continue
        labels_path = folder / f"{stem}_labels.tif"
        if not labels_path.is_file():
            raise DataError(f"{summary}: {labels_path.name} (listed for {row.get('image') or stem}) is missing")
        labels = read_labels(labels_path)
        px, source = pixel_size, "--pixel-size" if pixel_size else ""
        if px is None:
            try:
                px = float(row.get("pixel_size_um") or "nan")
                source = "summary.csv"
            except ValueError:
                px = math.nan
            if not math.isfinite(px) or px <= 0:
                px = read_pixel_size(labels_path)
                source = "labels TIFF metadata" if px else ""
        image, note, image_path = None, "", (row.get("path") or "").strip()
        if with_images:
            if not image_path:
                note = "summary.csv names no micrograph: the overlay shows the grains alone"
            elif not Path(image_path).is_file():
                note = f"the micrograph {image_path} is not there: the overlay shows the grains alone"
            else:
                image = Path(image_path)  # read when its pictures are made: one image in memory at a time
        model, sha = _record_model(folder, stem)
        twins, twins_path = None, folder / f"{stem}_twin_boundary.tif"
        if twins_path.is_file():  # a model with a twin class: its twin-boundary probability
            import tifffile

            try:
                twins = tifffile.imread(twins_path)
            except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
                raise DataError(f"{twins_path}: cannot read it ({type(exc).__name__}: {exc})") from None
        inputs.append(ReportInput(labels, stem, px, source, image, note, twins,
                                  twins_path.name if twins is not None else "", model=model, model_sha256=sha,
                                  labels_path=str(labels_path), image_path=image_path))
    if not inputs:
        raise DataError(f"{summary}: lists no image that was predicted (status ok)")
    return inputs, notes
