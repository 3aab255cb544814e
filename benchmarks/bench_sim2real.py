"""Sim-to-real check: a model trained only on domain-randomised synthetic data, evaluated on
micrographs from renderers it never saw, against the classical ridge + watershed baseline.

1. Trains a segmentation model (efficientnet_lite0 U-Net from ImageNet weights) on
   ``DomainRandomizer`` patches only (``TrainConfig(synthetic="randomized", synthetic_ratio=1)``),
   or loads ``--checkpoint DIR``.
2. Renders the foreign test sets of ``foreign_renderers.py`` (plus one set from the package's
   own generator with its default look, for reference).
3. Segments every image with the model (``segment_image``) and with ``classical_grains`` and
   prints, per set, the mean over its images of: boundary F1 (tolerance 2 px), grain-matching
   F1 (IoU 0.5), adapted Rand error, variation of information and the absolute relative error
   of the mean grain diameter, for model and baseline, and whether the model beats the
   baseline (better on at least 4 of the 5 metrics).

    python benchmarks/bench_sim2real.py [--out sim2real] [--epochs 8] [--steps 60]
        [--batch-size 8] [--patch-size 256] [--count 4] [--size 512] [--checkpoint DIR]

Writes ``OUT/model/`` (the checkpoint), ``OUT/sim2real.json`` (all numbers) and
``OUT/examples.png`` (image, ground truth, model, baseline for one image of each set).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foreign_renderers import KINDS, make_set

#: (key in segmentation_metrics, label, higher is better)
METRICS = (
    ("boundary_f1", "boundary F1 (tol 2)", True),
    ("grain_f1", "grain F1 (IoU 0.5)", True),
    ("adapted_rand_error", "adapted Rand error", False),
    ("vi", "variation of information", False),
    ("size_error", "|mean size error|", False),
)


def own_generator_set(n: int, size: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images of the package's own generator with its default SEM look (in-domain reference)."""
    from napari_grainlab.core.synthetic import SynthParams, generate
    from napari_grainlab.core.synthetic.randomize import percentile_stretch

    rng = np.random.default_rng([seed, 99])
    out = []
    for _ in range(n):
        p = SynthParams(height=size, width=size)
        p.tessellation.grains = None
        p.tessellation.mean_diameter = float(rng.uniform(35.0, 65.0))
        s = generate(p, seed=int(rng.integers(2**31 - 1)))
        out.append((percentile_stretch(s.image_float()), s.labels))
    return out


def train(out: Path, args) -> Path:
    from napari_grainlab.core.training import TrainConfig, fit

    cfg = TrainConfig(task="segment", backbone=args.backbone, weights=args.weights, strategy="finetune",
                      epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size,
                      patch_size=args.patch_size, lr=args.lr, synthetic="randomized", synthetic_ratio=1.0,
                      out=str(out), seed=args.seed, device=args.device, val_synthetic=args.val_synthetic,
                      monitor=args.monitor)
    t0 = time.perf_counter()
    for event in fit(cfg, train=[], val=None):
        if type(event).__name__ != "Step":
            print(event, flush=True)
    print(f"training took {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def _summary(m: dict) -> dict:
    rel = m.get("diameter_relative_error", math.nan)
    return {"boundary_f1": m["boundary_f1"], "grain_f1": m["grain_f1"],
            "adapted_rand_error": m["adapted_rand_error"], "vi": m["vi"],
            "size_error": abs(rel) if rel is not None and math.isfinite(rel) else math.nan}


def evaluate(model, items, tile: int, tta: bool) -> tuple[dict, dict, list]:
    """Mean metrics of model and baseline over ``items``; also the first image's label maps."""
    from napari_grainlab.core.inference import classical_grains, segment_image
    from napari_grainlab.core.metrics import segmentation_metrics

    per_model, per_base, first = [], [], None
    for image, truth in items:
        res = segment_image(model, image, tile=tile, overlap=64, tta=tta)
        base, _ = classical_grains(image)
        per_model.append(_summary(segmentation_metrics(res.labels, truth, 2)))
        per_base.append(_summary(segmentation_metrics(base, truth, 2)))
        if first is None:
            first = [image, truth, res.labels, base]
    mean = lambda rows: {k: float(np.nanmean([r[k] for r in rows])) for k, _, _ in METRICS}  # noqa: E731
    return mean(per_model), mean(per_base), first


def wins(model: dict, base: dict) -> int:
    return sum((model[k] > base[k]) if up else (model[k] < base[k]) for k, _, up in METRICS)


def examples_png(path: Path, firsts: dict) -> None:
    import imageio.v3 as iio
    from skimage.segmentation import find_boundaries

    rows = []
    for image, truth, pred, base in firsts.values():
        tiles = [np.repeat(image[..., None], 3, axis=2)]
        for lab, colour in ((truth, (1.0, 0.2, 0.1)), (pred, (0.1, 0.9, 0.2)), (base, (0.2, 0.5, 1.0))):
            t = np.repeat(image[..., None], 3, axis=2) * 0.7
            t[find_boundaries(lab, mode="inner")] = colour
            tiles.append(t)
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for t in tiles], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    iio.imwrite(path, (np.concatenate(rows, 0) * 255).round().astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("sim2real"), help="output folder")
    ap.add_argument("--checkpoint", type=Path, help="evaluate this model instead of training one")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60, help="steps per epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-synthetic", type=int, default=8, help="synthetic validation images")
    ap.add_argument("--monitor", default="val_loss",
                    help="validation metric that picks the best checkpoint (val_loss covers both output maps; "
                         "boundary_f1 only the boundary map, not the distance map the watershed markers come from)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--count", type=int, default=4, help="test images per set")
    ap.add_argument("--size", type=int, default=512, help="test image size in px")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args(argv)

    import torch

    from napari_grainlab.core.models import load_checkpoint

    if a.threads:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    folder = a.checkpoint if a.checkpoint is not None else train(a.out / "model", a)
    model, meta = load_checkpoint(folder)
    model.eval()

    sets = {"own generator (reference)": own_generator_set(a.count, a.size, 1000 + a.seed)}
    for kind in a.kinds:
        sets[f"foreign: {kind}"] = make_set(kind, a.count, a.size, seed=1000 + a.seed)

    results, firsts = {}, {}
    t0 = time.perf_counter()
    for name, items in sets.items():
        m, b, first = evaluate(model, items, a.tile, a.tta)
        results[name] = {"model": m, "baseline": b, "wins": wins(m, b), "beats_baseline": wins(m, b) >= 4}
        firsts[name] = first
    print(f"evaluation took {time.perf_counter() - t0:.0f} s ({a.count} images of {a.size} px per set)\n")

    head = f"{'set':32s} {'metric':26s} {'model':>8s} {'baseline':>9s}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        for key, label, up in METRICS:
            mv, bv = r["model"][key], r["baseline"][key]
            better = (mv > bv) if up else (mv < bv)
            print(f"{name:32s} {label:26s} {mv:8.3f} {bv:9.3f} {'*' if better else ''}")
        print(f"{name:32s} {'model beats baseline':26s} {'yes' if r['beats_baseline'] else 'no':>8s} "
              f"({r['wins']} of {len(METRICS)} metrics)")
        print()
    report = {"checkpoint": str(folder), "model": {k: meta.get(k) for k in ("backbone", "task") if k in meta},
              "count": a.count, "size": a.size, "seed": a.seed, "tta": a.tta, "results": results}
    (a.out / "sim2real.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    examples_png(a.out / "examples.png", firsts)
    print(f"numbers: {a.out / 'sim2real.json'}; examples: {a.out / 'examples.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
