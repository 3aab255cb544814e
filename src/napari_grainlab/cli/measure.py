"""``grainlab measure``: ASTM E112 grain size of label images (planimetric, intercept or three-circle) with
its 95 % confidence interval, and the mean grain size; optionally the grain tables.

Without ``--json`` it prints one line per file (and one for all files together when there are several):
grains, the measured quantity ± its 95 % CI, G ± its CI, the relative accuracy and the number of
measurements. ``--json`` prints ``{"method", "settings", "files": [...], "all": {...}}``.

``--report PATH.html|PATH.pdf`` writes one measurement report on all the files (``--report DIR``: one
per file and an ``index.html``), ``--rois DIR`` one ImageJ ROI zip per file, ``--twins`` takes one
twin-boundary mask per file and ``--from-summary OUT/summary.csv`` measures the labels of a
``grainlab predict`` output folder (with their micrographs and model, for the report).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ..core.batch import BatchOptions
from ..core.grainsize_options import METHODS, GrainSizeSettings
from ..core.report_options import REPORT_SUFFIXES, ReportOptions
from ._common import EXIT_OK, UserError, add_options, errors_about, options_from_args, print_json

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
    "field_area_mm2", "distributions", "twins", "twin_boundary_fraction", "G_twins_counted", "G_twins_excluded",
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


def _report_target(text: str | None) -> tuple[Path | None, bool]:
    """``--report``: (path, is a folder). A name ending in .html / .htm / .pdf is one file, an existing
    folder or a name without a suffix a folder (one report per file and an index)."""
    if not text:
        return None, False
    path = Path(text)
    if path.suffix.lower() in REPORT_SUFFIXES:
        return path, False
    if path.is_dir() or not path.suffix:
        if path.exists() and not path.is_dir():
            raise UserError(f"--report: {path} exists and is not a folder")
        return path, True
    raise UserError(f"--report: {path}: give a .html or .pdf file, or a folder")


def _per_file(flag: str, values: list[str] | None, count: int) -> list[str | None]:
    if not values:
        return [None] * count
    if len(values) != count:
        raise UserError(f"{flag}: {len(values)} file{'s' if len(values) != 1 else ''} for {count} labels "
                        f"file{'s' if count != 1 else ''}; give one per labels file, in the same order")
    return list(values)


def _sources(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """What to measure: per file its path, labels and pixel size (and for the report its image, model...),
    from the LABELS arguments or from ``--from-summary``; plus the notes for the report."""
    from ..core.data.io import read_image, read_labels, read_pixel_size
    from ..core.report import inputs_from_summary

    if args.from_summary:
        if args.labels:
            raise UserError("give LABELS files or --from-summary, not both")
        if args.images:
            raise UserError("--images: with --from-summary the micrographs are those that summary.csv names")
        with errors_about(args.from_summary):
            inputs, notes = inputs_from_summary(args.from_summary, pixel_size=args.pixel_size,
                                                with_images=bool(args.report))
        return [{"path": Path(inp.labels_path), "labels": inp.labels, "px": inp.pixel_size, "input": inp,
                 "twins": inp.twins} for inp in inputs], notes
    if not args.labels:
        raise UserError("give one or more LABELS files, or --from-summary OUT/summary.csv")
    paths = [Path(p) for p in args.labels]
    images = _per_file("--images", args.images, len(paths))
    out = []
    for path, image in zip(paths, images):
        labels = read_labels(path)
        px = args.pixel_size or read_pixel_size(path)
        source = "--pixel-size" if args.pixel_size else ("labels file metadata" if px else "")
        item: dict[str, Any] = {"path": path, "labels": labels, "px": px, "source": source, "image_path": image}
        if args.report and image:
            item["image"] = read_image(image).data
            if item["image"].shape[:2] != labels.shape:
                h, w = item["image"].shape[:2]
                raise UserError(f"--images: {image} is {h} x {w} px, {path} {labels.shape[0]} x {labels.shape[1]} px")
        out.append(item)
    return out, []


def _report_inputs(items: list[dict[str, Any]], stems: list[str], masks: list[Any], model: str | None,
                   twin_paths: list[str | None], notes: list[str]) -> list[Any]:
    """The report's inputs (files without grains are left out, with a note in ``notes``)."""
    from ..core.report import ReportInput, model_info

    name, sha = model_info(model) if model else (None, None)
    inputs = []
    for item, stem, mask, twin_path in zip(items, stems, masks, twin_paths):
        if not item["labels"].any():
            notes.append(f"{item['path'].name}: {_NO_GRAINS}, not in the report")
            continue
        inp = item.get("input")
        if inp is None:
            image = item.get("image")
            note = "" if image is not None else "no micrograph was given (--images): the overlay shows the grains alone"
            inp = ReportInput(item["labels"], stem, item["px"], item.get("source", ""), image, note,
                              labels_path=str(item["path"]), image_path=item.get("image_path") or "")
        if twin_path:
            inp.twins, inp.twins_source = mask, twin_path
        if name:
            inp.model, inp.model_sha256 = name, sha
        inputs.append(inp)
    return inputs


def _write_reports(target: Path, folder: bool, inputs: list[Any], settings: GrainSizeSettings,
                   options: ReportOptions, notes: list[str]) -> list[Path]:
    import sys

    from ..core.report import build_report, write_index, write_report

    if not inputs:
        raise UserError("--report: no file with grains to report on")
    written = []
    if not folder:
        with errors_about(target):
            written.append(write_report(target, inputs, settings, options, notes=notes))
    else:
        target.mkdir(parents=True, exist_ok=True)
        entries = []
        for inp in inputs:
            report = build_report([inp], settings, options, notes=notes)
            path = target / f"{inp.name}_report.html"
            with errors_about(path):
                written.append(write_report(path, report))
            g = report.fields[0].results["planimetric"]
            entries.append((inp.name, path.name, None if isinstance(g, str) else g.G))
        with errors_about(target / "index.html"):
            written.append(write_index(target / "index.html", entries, (options.title or "").strip() or "Grain size reports"))
    for path in written:
        print(f"wrote {path}", file=sys.stderr, flush=True)
    return written


def run(args: argparse.Namespace) -> int:
    from ..core.batch import output_stems, write_rows_csv
    from ..core.errors import DataError
    from ..core.grainsize import grain_size
    from ..core.measure import grain_table, summarize, write_table_csv

    settings = options_from_args(GrainSizeSettings, args)
    report_options = options_from_args(ReportOptions, args).validate()
    report_target, report_folder = _report_target(args.report)
    method = args.method
    items, notes = _sources(args)
    paths = [it["path"] for it in items]
    twin_paths = _per_file("--twins", args.twins, len(items))
    stems = [it["input"].name for it in items] if args.from_summary else output_stems(paths)
    masks: list[Any] = [None] * len(items)
    from ..core.report import read_twin_mask, twin_labels, twin_mask

    if args.twins:
        masks = [read_twin_mask(tp, it["labels"].shape, report_options.twin_threshold)
                 for tp, it in zip(twin_paths, items)]
    elif items and all(it.get("twins") is not None for it in items):  # --from-summary, a model with twins
        masks = [twin_mask(it["twins"], it["labels"].shape, report_options.twin_threshold,
                           name=f"{it['path'].name}: the twin-boundary map") for it in items]
    with_twins = all(m is not None for m in masks) and bool(masks)
    out = Path(args.out) if args.out else None
    rois = Path(args.rois) if args.rois else None
    files, images, pxs, names, with_grains, image_masks = [], [], [], [], [], []
    for item, stem, mask in zip(items, stems, masks):
        path, labels, px = item["path"], item["labels"], item["px"]
        try:
            stats = summarize(labels, px)
        except DataError as exc:  # e.g. a label image 1 px wide: say which file
            raise DataError(f"{path}: {exc}") from None
        files.append({"labels": path.name, **({"output": stem} if out else {}), "pixel_size_um": px, **stats})
        if out:
            out.mkdir(parents=True, exist_ok=True)
            write_table_csv(out / f"{stem}_grains.csv", grain_table(labels, px), px)
        if rois:
            from ..core.rois import labels_to_roi_zip

            with errors_about(rois / f"{stem}_rois.zip"):
                rois.mkdir(parents=True, exist_ok=True)
                labels_to_roi_zip(labels, rois / f"{stem}_rois.zip", px)
        if labels.any():
            images.append(twin_labels(labels, mask) if with_twins else labels)
            pxs.append(px)
            names.append(str(path))
            image_masks.append(mask)
            with_grains.append(len(files) - 1)
    known = all(p is not None for p in pxs) if pxs else args.pixel_size is not None
    if images:
        if 0 < sum(p is None for p in pxs) < len(pxs):
            missing = [n for n, p in zip(names, pxs) if p is None]
            raise DataError(f"{missing[0]}: no pixel size in its metadata while other files have one; give "
                            "--pixel-size UM")
        res = grain_size(images, pxs, method, settings, names=names,
                         twin_boundaries=image_masks if with_twins else None)
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
    if report_target is not None:
        inputs = _report_inputs(items, stems, masks, args.model, twin_paths, notes)
        _write_reports(report_target, report_folder, inputs, settings, report_options, notes)
    if args.json:
        print_json({"method": method, "settings": settings.to_dict(), "files": files, "all": all_entry})
    else:
        lines = [_table_line(f["labels"], f["grains"], f["grain_size"]) for f in files]
        if several:
            lines.append(_table_line("all", sum(f["grains"] for f in files), all_entry))
        _print_table(method, lines, known)
        twins = all_entry.get("twins")
        if twins:
            print(f"twins: G {_num(twins.get('G_twins_excluded'), '.2f')} excluded, "
                  f"{_num(twins.get('G_twins_counted'), '.2f')} counted; twin-boundary fraction "
                  f"{_num(100 * twins['twin_boundary_fraction'] if twins.get('twin_boundary_fraction') is not None else None, '.1f')} %")
    return EXIT_OK


def register(sub) -> None:
    m = sub.add_parser("measure", help="ASTM E112 grain size (planimetric, intercept, three-circle) with a 95 %% "
                                       "confidence interval, and grain tables, of label images",
                       description="ASTM E112 grain size of label images with its 95 % confidence interval: "
                                   "over the files when there are several (each is a field), else over the "
                                   "sub-measurements of the one image (sub-fields, test lines or circle "
                                   "placements).")
    m.add_argument("labels", nargs="*", metavar="LABELS", help="label images (TIFF / PNG, 0 = unlabelled)")
    m.add_argument("--method", choices=METHODS, default="planimetric",
                   help="planimetric (Jeffries), intercept (Heyn test lines) or circles (Abrams three-circle) "
                        "(default: planimetric)")
    m.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    m.add_argument("--out", metavar="DIR", help="write NAME_grains.csv and summary.csv here")
    m.add_argument("--from-summary", metavar="SUMMARY",
                   help="measure the labels of a 'grainlab predict' output folder: its summary.csv (or the folder) "
                        "names them, their micrographs, pixel sizes and model")
    m.add_argument("--report", metavar="PATH",
                   help="write a measurement report: PATH.html or PATH.pdf for all the files in one, or a folder "
                        "for one HTML report per file and an index.html")
    m.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="the micrographs of the labels files, one per file in the same order, for the report's "
                        "pictures (without them the report shows the grains alone)")
    m.add_argument("--twins", nargs="+", metavar="MASK",
                   help="a twin-boundary mask or probability TIFF / PNG per labels file, in the same order: G is "
                        "then given with twins excluded (merged into their parent grain) and counted")
    m.add_argument("--model", metavar="MODEL",
                   help="the model that made the labels (a built-in name or a model folder), named in the report "
                        "with the sha256 of its weights (--from-summary: read from the batch's records)")
    m.add_argument("--rois", metavar="DIR", help="write NAME_rois.zip here: one ImageJ / Fiji polygon ROI per grain")
    add_options(m, BatchOptions, only=("pixel_size",), grouped=False)
    add_options(m, GrainSizeSettings, group_order=("Intercept", "Circles", "Planimetric", "Counting",
                                                   "Distributions"))
    add_options(m, ReportOptions)
    m.set_defaults(func=run)
