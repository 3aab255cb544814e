"""Score models and the classical baseline on real labelled micrographs (issue 13, item 5).

    python benchmarks/bench_real.py --data ~/grainlab-realdata [--model NAME_OR_PATH ...] [--diameter auto|labels|PX]
        [--few-shot 1,3,8] [--max-images N] [--out results.json]

``--data`` holds one dataset folder per source (``SOURCE/images/NAME.tif|png`` + ``SOURCE/labels/NAME.tif``,
see docs/real_data.md for the sources and how to rebuild the folder); nothing is fetched. For every source
and method (``classical`` always, plus each ``--model``: a grainlab model folder or a registry name such as
``generalist``) it prints and stores, averaged over the source's images:

- boundary F1 at 2 px tolerance (:func:`napari_grainlab.core.metrics.boundary_f1`); unlabelled pixels (0)
  and a 3 px band around them are not scored;
- ΔG = G(pred) - G(true), the ASTM E112 planimetric grain size number difference
  (:func:`napari_grainlab.core.measure.astm_grain_size`, the prediction restricted to the labelled field);
  it does not depend on the pixel size, so sources without one are scored at 1 µm/px;
- the grain-count ratio (E112 counted grains, pred / true).

``--few-shot K,...`` fine-tunes each ``--model`` on the first K images of a source (sorted by name) with
``--few-shot-epochs`` epochs and scores the remaining images (slow on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_grainlab.core.data.channels import is_colour, luminance
from napari_grainlab.core.data.datasets import load_segmentation_folder
from napari_grainlab.core.errors import DataError, GrainLabError
from napari_grainlab.core.measure import astm_grain_size
from napari_grainlab.core.metrics import boundary_f1

TOLERANCE = 2.0


# ----------------------------------------------------------------------------------------------- data

def find_sources(root: str | Path) -> list[Path]:
    """The dataset folders (with ``images/`` and ``labels/``) directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"{root}: no such folder (see docs/real_data.md for how to build it)")
    found = sorted(p for p in root.iterdir() if (p / "images").is_dir() and (p / "labels").is_dir())
    if not found:
        raise SystemExit(f"{root}: no source folder with images/ and labels/ inside")
    return found


def load_source(folder: Path, max_images: int | None = None) -> list:
    """The annotated samples of one source, sorted by name, at most ``max_images``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = sorted(load_segmentation_folder(folder), key=lambda s: s.name)
    return samples[:max_images] if max_images else samples


# ------------------------------------------------------------------------------------------ scoring

def _restrict(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """The prediction inside the labelled field (``true > 0``), so both G numbers measure the same area."""
    if (true > 0).all():
        return pred
    return np.where(true > 0, pred, 0)


def scored_region(true: np.ndarray) -> np.ndarray | None:
    """Where boundaries are scored: the labelled field less a band of ``TOLERANCE + 1`` px along unlabelled
    areas, so the edge of an unlabelled area is neither a boundary to find nor one to avoid (None: all)."""
    unlabelled = true == 0
    if not unlabelled.any():
        return None
    r = int(math.ceil(TOLERANCE)) + 1
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ~ndi.binary_dilation(unlabelled, structure=yy * yy + xx * xx <= r * r)


def score_image(pred: np.ndarray, true: np.ndarray, pixel_size: float | None = None) -> dict:
    """Boundary F1 (2 px), ASTM ΔG and the grain-count ratio of one prediction against its labels."""
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise DataError(f"prediction {pred.shape} and labels {true.shape} differ in shape")
    inside = _restrict(pred, true)
    m = boundary_f1(pred, true, TOLERANCE, valid=scored_region(true))
    ps = float(pixel_size) if pixel_size else 1.0
    g_true = astm_grain_size(true, ps)
    g_pred = astm_grain_size(inside, ps)
    ratio = g_pred["grains_counted"] / g_true["grains_counted"] if g_true["grains_counted"] else math.nan
    return {"boundary_f1": float(m["f1"]), "boundary_precision": float(m["precision"]),
            "boundary_recall": float(m["recall"]),
            "delta_g": float(g_pred["astm_g"] - g_true["astm_g"]), "count_ratio": float(ratio),
            "g_true": float(g_true["astm_g"]), "grains_true": g_true["grains_counted"],
            "grains_pred": g_pred["grains_counted"]}


def _mean(values) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def summarise(rows: list[dict]) -> dict:
    """Per-source means of the per-image scores (``abs_delta_g`` is the mean of |ΔG|)."""
    return {"n_images": len(rows),
            "boundary_f1": _mean(r["boundary_f1"] for r in rows),
            "delta_g": _mean(r["delta_g"] for r in rows),
            "abs_delta_g": _mean(abs(r["delta_g"]) for r in rows),
            "count_ratio": _mean(r["count_ratio"] for r in rows),
            "seconds_per_image": _mean(r["seconds"] for r in rows)}


# ------------------------------------------------------------------------------------------ methods

def classical(image: np.ndarray) -> tuple[np.ndarray, str]:
    """The classical baseline; returns (labels, the input it used: ``grey`` / ``colour`` / ``luminance``).

    Colour images go to :func:`classical_grains` as colour (the colour-gradient watershed) where it takes
    colour, otherwise as their luminance.
    """
    from napari_grainlab.core.inference import classical_grains

    if not is_colour(image):
        return classical_grains(image)[0], "grey"
    try:
        return classical_grains(image)[0], "colour"
    except DataError:  # a grey-only classical baseline
        return classical_grains(luminance(image).astype(np.float32))[0], "luminance"


def resolve_model(name_or_path: str) -> Path:
    """A model folder from a path or a registry name (``generalist``)."""
    try:
        from napari_grainlab.core.models import registry
    except ImportError:
        registry = None
    if registry is not None and registry.is_registry_name(name_or_path):
        return Path(registry.resolve_model(name_or_path))
    path = Path(name_or_path)
    if not path.exists():
        hint = "" if registry is not None else " (this install has no model registry)"
        raise SystemExit(f"{name_or_path}: neither a model folder nor a known model name{hint}")
    return path


def model_channels(meta: dict) -> int:
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    for value in (meta.get("in_chans"), spec.get("in_chans"), (meta.get("input") or {}).get("channels")):
        if value:
            return int(value)
    return 1


def _options_have(name: str) -> bool:
    from napari_grainlab.core.inference.options import InferenceOptions

    return name in {f.name for f in dataclasses.fields(InferenceOptions)}


class ModelMethod:
    """A loaded checkpoint scored through :func:`~napari_grainlab.core.inference.predict_array`."""

    def __init__(self, name: str, path: Path, diameter: str | None = None):
        from napari_grainlab.core.models.checkpoint import load_checkpoint

        self.name, self.path = name, Path(path)
        self.model, self.meta = load_checkpoint(self.path)
        self.channels = model_channels(self.meta)
        self.overrides: dict = {}
        #: ``--diameter labels``: each image's own labels give its grain diameter (an oracle, to separate
        #: the scale estimate's error from the network's)
        self.wants_labels = diameter is not None and diameter.startswith("labels")
        self.labels_factor = float(diameter.partition("x")[2] or 1.0) if self.wants_labels else 1.0
        if diameter is not None:
            if not _options_have("diameter"):
                raise SystemExit("--diameter: this install's prediction takes no grain diameter")
            if not self.wants_labels:
                self.overrides["diameter"] = diameter if diameter == "auto" else float(diameter)

    def __call__(self, image: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, str]:
        from napari_grainlab.core.data.targets import mean_grain_diameter
        from napari_grainlab.core.inference import predict_array

        used = "colour" if is_colour(image) else "grey"
        if is_colour(image) and self.channels == 1:
            image, used = luminance(image).astype(np.float32), "luminance"
        overrides = dict(self.overrides)
        if self.wants_labels:
            if labels is None:
                raise GrainLabError(f"{self.name}: --diameter labels needs the image's labels")
            overrides["diameter"] = mean_grain_diameter(labels) * self.labels_factor
        res = predict_array(self.model, self.meta, image, **overrides)
        self.last_scaling = res.scaling
        return res.labels, used


def run_method(method, samples: list) -> tuple[dict, list[dict]]:
    """Score ``method`` (image -> (labels, input used)) on ``samples``; returns (summary, per-image rows)."""
    rows = []
    used = set()
    for s in samples:
        t0 = time.perf_counter()
        labels, how = method(s.image, s.labels) if getattr(method, "wants_labels", False) else method(s.image)
        seconds = time.perf_counter() - t0
        used.add(how)
        row = {"name": s.name, **score_image(labels, s.labels, s.pixel_size), "seconds": seconds}
        scaling = getattr(method, "last_scaling", None)
        if scaling is not None:  # the grain diameter prediction used, and the labels' own (median ECD)
            from napari_grainlab.core.data.targets import mean_grain_diameter

            row.update(diameter_used=scaling.diameter, diameter_source=scaling.source,
                       diameter_labels=mean_grain_diameter(s.labels), scale_factor=scaling.factor)
        rows.append(row)
    return {**summarise(rows), "input": "/".join(sorted(used))}, rows


# ------------------------------------------------------------------------------------------ few-shot

def fine_tune(path: Path, shots: list, epochs: int, out: Path, device: str = "auto") -> Path:
    """Fine-tune the model at ``path`` on the labelled ``shots``; returns the best checkpoint folder."""
    from napari_grainlab.core.models.checkpoint import read_metadata
    from napari_grainlab.core.training.config import TrainConfig
    from napari_grainlab.core.training.fit import fit

    meta = read_metadata(path)
    side = min(min(s.image.shape[:2]) for s in shots)
    patch = max(32, min(256, side // 32 * 32))
    cfg = TrainConfig(backbone=meta.get("backbone", TrainConfig.backbone), weights=str(path),
                      strategy="finetune", epochs=epochs, patch_size=patch, batch_size=4, val_fraction=0.0,
                      device=device, out=str(out), workers=0)
    gen = fit(cfg, shots, val=shots)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            finished = stop.value
            break
    best = getattr(finished, "best_path", None) or getattr(finished, "last_path", None)
    if not best:
        raise GrainLabError(f"fine-tuning {path} on {len(shots)} images gave no checkpoint")
    return Path(best)


def few_shot(model: str, path: Path, samples: list, ks: list[int], epochs: int, diameter: str | None) -> dict:
    """For each k: fine-tune on the first k samples, score the rest (k >= number of samples is skipped)."""
    out = {}
    for k in ks:
        if k >= len(samples):
            out[str(k)] = {"skipped": f"needs more than {k} images, the source has {len(samples)}"}
            continue
        with tempfile.TemporaryDirectory(prefix="bench_real_") as tmp:
            best = fine_tune(path, samples[:k], epochs, Path(tmp))
            summary, rows = run_method(ModelMethod(f"{model}+ft{k}", best, diameter), samples[k:])
        out[str(k)] = {**summary, "train": [s.name for s in samples[:k]], "images": rows}
    return out


# -------------------------------------------------------------------------------------------- report

def evaluate(data: str | Path, models: list[str] = (), *, diameter: str | None = None, max_images: int | None = None,
             few_shot_ks: list[int] = (), few_shot_epochs: int = 5, log=print) -> dict:
    """Score every source under ``data``; returns the JSON-able result (see the module docstring)."""
    methods: dict = {"classical": classical}
    paths = {}
    for m in models:
        paths[m] = resolve_model(m)
        methods[m] = ModelMethod(m, paths[m], diameter)
    result = {"data": str(Path(data).resolve()), "tolerance_px": TOLERANCE, "diameter": diameter,
              "methods": list(methods), "sources": {}}
    for folder in find_sources(data):
        samples = load_source(folder, max_images)
        src = {"n_images": len(samples), "methods": {}}
        for name, method in methods.items():
            summary, rows = run_method(method, samples)
            src["methods"][name] = {**summary, "images": rows}
            log(f"{folder.name:<22} {name:<14} F1 {summary['boundary_f1']:.3f}  dG {summary['delta_g']:+.2f}  "
                f"count x{summary['count_ratio']:.2f}  ({len(rows)} images)")
        if few_shot_ks:
            src["few_shot"] = {m: few_shot(m, paths[m], samples, list(few_shot_ks), few_shot_epochs, diameter)
                               for m in models}
        result["sources"][folder.name] = src
    return result


def _diameters(method: dict) -> str:
    """``used/labels=ratio`` of each image a model predicted (the grain diameter prediction used, px, and the
    labels' median equivalent-circle diameter); empty for the classical baseline."""
    parts = []
    for row in method.get("images", ()):
        used, labelled = row.get("diameter_used"), row.get("diameter_labels")
        if used and labelled:
            parts.append(f"{used:.1f}/{labelled:.1f}={used / labelled:.2f}")
    return ("   " + ", ".join(parts)) if parts else ""


def _same_images(src: dict, model: str, tuned: dict) -> str:
    """Zero-shot and classical F1 / ΔG on the images a few-shot row scored (the ones not trained on)."""
    names = {r["name"] for r in tuned.get("images", ())}
    parts = []
    for label, method in (("zero-shot", model), ("classical", "classical")):
        rows = [r for r in src["methods"].get(method, {}).get("images", ()) if r["name"] in names]
        if rows:
            parts.append(f"{label} {_mean(r['boundary_f1'] for r in rows):.3f} / "
                         f"{_mean(r['delta_g'] for r in rows):+.2f}")
    return ("   same images: " + ", ".join(parts)) if parts else ""


def table(result: dict) -> str:
    """Source x method table: boundary F1, ΔG (mean, mean |ΔG|), grain-count ratio."""
    lines = [f"{'source':<22} {'method':<14} {'n':>3} {'F1@2px':>7} {'dG':>6} {'|dG|':>5} {'count':>6}  input"
             "   diameter used / labels' median (per image)", "-" * 110]
    for sname, src in result["sources"].items():
        for mname, m in src["methods"].items():
            lines.append(f"{sname:<22} {mname:<14} {m['n_images']:>3} {m['boundary_f1']:>7.3f} {m['delta_g']:>+6.2f} "
                         f"{m['abs_delta_g']:>5.2f} {m['count_ratio']:>6.2f}  {m['input']:<8}{_diameters(m)}")
        for mname, curve in (src.get("few_shot") or {}).items():
            for k, m in curve.items():
                if "skipped" in m:
                    continue
                lines.append(f"{sname:<22} {mname + ' ft' + k:<14} {m['n_images']:>3} {m['boundary_f1']:>7.3f} "
                             f"{m['delta_g']:>+6.2f} {m['abs_delta_g']:>5.2f} {m['count_ratio']:>6.2f}  {m['input']:<8}"
                             f"{_same_images(src, mname, m)}")
    return "\n".join(line.rstrip() for line in lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _ks(text: str) -> list[int]:
    try:
        ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError("few-shot sizes must be >= 1")
    return ks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of source folders (docs/real_data.md)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME_OR_PATH",
                    help="a grainlab model folder or registry name (repeatable); the classical baseline always runs")
    ap.add_argument("--diameter", default=None, metavar="auto|labels[xK]|PX",
                    help="grain diameter passed to prediction ('labels': each image's labelled median diameter, "
                         "'labelsxK': K times that; oracles that separate the scale estimate's error from the "
                         "network's)")
    ap.add_argument("--few-shot", type=_ks, default=[], metavar="K,...", help="fine-tune on K images, score the rest")
    ap.add_argument("--few-shot-epochs", type=int, default=5, metavar="E")
    ap.add_argument("--max-images", type=int, default=None, metavar="N", help="at most N images per source")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    if a.few_shot and not a.model:
        ap.error("--few-shot needs a --model to fine-tune")
    if a.diameter is not None and a.diameter.startswith("labels"):
        try:
            if a.diameter != "labels" and (not a.diameter.startswith("labelsx") or float(a.diameter[7:]) <= 0):
                raise ValueError
        except ValueError:
            ap.error(f"--diameter: expected 'labels' or 'labelsxK' (K > 0), got {a.diameter!r}")
    elif a.diameter not in (None, "auto"):
        try:
            if float(a.diameter) <= 0:
                raise ValueError
        except ValueError:
            ap.error(f"--diameter: expected 'auto', 'labels' or a positive number of px, got {a.diameter!r}")
    t0 = time.perf_counter()
    try:
        result = evaluate(a.data, a.model, diameter=a.diameter, max_images=a.max_images, few_shot_ks=a.few_shot,
                          few_shot_epochs=a.few_shot_epochs)
    except GrainLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result["seconds"] = time.perf_counter() - t0
    print()
    print(table(result))
    if a.out:
        Path(a.out).write_text(json.dumps(_jsonable(result), indent=1), encoding="utf-8")
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
