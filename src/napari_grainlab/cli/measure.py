"""``grainlab measure``: ASTM E112 grain size of label images (planimetric, intercept or three-circle) with
its 95 % confidence interval, and the mean grain size; optionally the grain tables.

Without ``--json`` it prints one line per file (and one for all files together when there are several):
grains, the measured quantity ± its 95 % CI, G ± its CI, the relative accuracy and the number of
measurements. ``--json`` prints ``{"method", "settings", "files": [...], "all": {...}}``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ..core.batch import BatchOptions
from ..core.grainsize_options import METHODS, GrainSizeSettings
from ._common import EXIT_OK, add_options, options_from_args, print_json

#: the columns of summary.csv, whatever the method (those a method does not measure stay empty)
SUMMARY_COLUMNS = (
    "labels", "output", "pixel_size_um", "grains", "mean_diameter", "median_diameter", "mean_diameter_inside",
    "unit", "grains_per_mm2", "astm_g", "method", "G", "G_ci95_low", "G_ci95_high", "quantity", "value",
    "value_unit", "ci95", "relative_accuracy", "n_measurements", "measurement", "intersections",
    "line_length_mm", "grains_counted", "G_ALA", "duplex", "ci_reason",
)
#: what a file's or all files' grain-size entry holds in the JSON output
_RESULT_KEYS = (
    "G", "G_ci95", "value", "quantity", "unit", "std", "ci95", "relative_accuracy", "n_measurements",
    "measurement", "ci_reason", "intersections", "line_length_px", "line_length_mm", "grains_counted",
    "mean_intercept", "line_spacing_px", "lines", "directions", "circle_radius_px", "placements", "tiles",
    "field_area_mm2", "distributions",
)
_NO_GRAINS = "no grains: every pixel is 0"


def _entry(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in _RESULT_KEYS if k in d}


def _no_grains_entry(method: str, known: bool) -> dict[str, Any]:
    quantity = "N_A" if method == "planimetric" else "P_L"
    unit = ("mm" if known else "px") + ("^-2" if method == "planimetric" else "^-1")
    return {"G": math.nan, "G_ci95": [math.nan, math.nan], "value": math.nan, "quantity": quantity, "unit": unit,
            "ci95": math.nan, "relative_accuracy": math.nan, "n_measurements": 0, "ci_reason": _NO_GRAINS}


def _csv_row(base: dict[str, Any], method: str, gs: dict[str, Any]) -> dict[str, Any]:
    low, high = (list(gs.get("G_ci95") or [math.nan, math.nan]) + [math.nan, math.nan])[:2]
    dist = gs.get("distributions") or {}
    duplex = (dist.get("grain_area") or {}).get("duplex")
    return {**base, "method": method, "G": gs.get("G"), "G_ci95_low": low, "G_ci95_high": high,
            "quantity": gs.get("quantity"), "value": gs.get("value"), "value_unit": gs.get("unit"),
            "ci95": gs.get("ci95"), "relative_accuracy": gs.get("relative_accuracy"),
            "n_measurements": gs.get("n_measurements"), "measurement": gs.get("measurement"),
            "intersections": gs.get("intersections"), "line_length_mm": gs.get("line_length_mm"),
            "grains_counted": gs.get("grains_counted"), "G_ALA": (dist.get("ala") or {}).get("G_ALA"),
            "duplex": "" if duplex is None else int(duplex), "ci_reason": gs.get("ci_reason") or ""}


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _table_line(name: str, grains: Any, gs: dict[str, Any]) -> list[str]:
    g, ci = gs.get("G"), gs.get("G_ci95") or [math.nan, math.nan]
    half = (ci[1] - ci[0]) / 2.0 if all(isinstance(v, float) and math.isfinite(v) for v in ci) else math.nan
    value = f"{_num(gs.get('value'), '.4g')} ± {_num(gs.get('ci95'), '.2g')} {gs.get('unit', '')}"
    g_text = f"{_num(g, '.2f')} ± {_num(half, '.2f')}" if math.isfinite(half) else _num(g, ".2f")
    return [name, _num(grains, ".0f"), f"{gs.get('quantity', '')} {value}", g_text,
            _num(gs.get("relative_accuracy"), ".1f"), str(gs.get("n_measurements", 0)),
            gs.get("ci_reason") or ""]


def _print_table(method: str, rows: list[list[str]], known: bool) -> None:
    header = ["file", "grains", "value ± 95 % CI", "G ± 95 % CI", "RA %", "n", ""]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"ASTM E112 {method}")
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) if i in (0, 2, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    if not known:
        print("no pixel size: G needs one (--pixel-size UM); values are per px")


def run(args: argparse.Namespace) -> int:
    from ..core.batch import output_stems, write_rows_csv
    from ..core.data.io import read_labels, read_pixel_size
    from ..core.errors import DataError
    from ..core.grainsize import grain_size
    from ..core.measure import grain_table, summarize, write_table_csv

    settings = options_from_args(GrainSizeSettings, args)
    method = args.method
    paths = [Path(p) for p in args.labels]
    stems = output_stems(paths)
    out = Path(args.out) if args.out else None
    files, images, pxs, names, with_grains = [], [], [], [], []
    for path, stem in zip(paths, stems):
        labels = read_labels(path)
        px = args.pixel_size or read_pixel_size(path)
        try:
            stats = summarize(labels, px)
        except DataError as exc:  # e.g. a label image 1 px wide: say which file
            raise DataError(f"{path}: {exc}") from None
        files.append({"labels": path.name, **({"output": stem} if out else {}), "pixel_size_um": px, **stats})
        if out:
            out.mkdir(parents=True, exist_ok=True)
            write_table_csv(out / f"{stem}_grains.csv", grain_table(labels, px), px)
        if labels.any():
            images.append(labels)
            pxs.append(px)
            names.append(str(path))
            with_grains.append(len(files) - 1)
        del labels
    known = all(p is not None for p in pxs) if pxs else args.pixel_size is not None
    if images:
        if 0 < sum(p is None for p in pxs) < len(pxs):
            missing = [n for n, p in zip(names, pxs) if p is None]
            raise DataError(f"{missing[0]}: no pixel size in its metadata while other files have one; give "
                            "--pixel-size UM")
        res = grain_size(images, pxs, method, settings, names=names)
        del images
        all_entry = _entry(res.to_dict(per_field=False))
        per_file = {i: _entry(pf) for i, pf in zip(with_grains, res.to_dict()["per_field"])}
    else:
        all_entry, per_file = _no_grains_entry(method, known), {}
    for i, f in enumerate(files):
        f["grain_size"] = per_file.get(i) or _no_grains_entry(method, f["pixel_size_um"] is not None)
    several = len(files) > 1
    if out:
        rows = [_csv_row({k: v for k, v in f.items() if k != "grain_size"}, method, f["grain_size"]) for f in files]
        if several:
            rows.append(_csv_row({"labels": "all", "grains": sum(f["grains"] for f in files)}, method, all_entry))
        write_rows_csv(out / "summary.csv", rows, columns=SUMMARY_COLUMNS)
    if args.json:
        print_json({"method": method, "settings": settings.to_dict(), "files": files, "all": all_entry})
    else:
        lines = [_table_line(f["labels"], f["grains"], f["grain_size"]) for f in files]
        if several:
            lines.append(_table_line("all", sum(f["grains"] for f in files), all_entry))
        _print_table(method, lines, known)
    return EXIT_OK


def register(sub) -> None:
    m = sub.add_parser("measure", help="ASTM E112 grain size (planimetric, intercept, three-circle) with a 95 %% "
                                       "confidence interval, and grain tables, of label images",
                       description="ASTM E112 grain size of label images with its 95 % confidence interval: "
                                   "over the files when there are several (each is a field), else over the "
                                   "sub-measurements of the one image (sub-fields, test lines or circle "
                                   "placements).")
    m.add_argument("labels", nargs="+", metavar="LABELS")
    m.add_argument("--method", choices=METHODS, default="planimetric",
                   help="planimetric (Jeffries), intercept (Heyn test lines) or circles (Abrams three-circle) "
                        "(default: planimetric)")
    m.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    m.add_argument("--out", metavar="DIR", help="write NAME_grains.csv and summary.csv here")
    add_options(m, BatchOptions, only=("pixel_size",), grouped=False)
    add_options(m, GrainSizeSettings, group_order=("Intercept", "Circles", "Planimetric", "Counting",
                                                   "Distributions"))
    m.set_defaults(func=run)
