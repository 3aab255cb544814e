"""Accuracy and speed of the model-free grain-scale estimate (``core.inference.scale.estimate_diameter``).

Synthetic micrographs of known mean equivalent-circle diameter (8-150 px) in five looks: optical dark
lines, SEM bright edges, SEM grooves, boundary-free BSE channelling contrast, and flat colour grains
(a random colour per grain, shading, blur and noise). Prints, per look, the ratios estimate / truth and
the error ratio exp(median |log(est / true)|), and the time of one 1024 x 1024 estimate (grey and
colour).

With ``--model NAME_OR_PATH`` (e.g. ``generalist``) it also prints the same ratios for the diameter after
the model-based refinement (``core.inference._rescale.refine_factor``: model diameter / chosen factor), and
the time the refinement adds to one 1024 x 1024 prediction.

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py [--seeds 2] [--model generalist]
"""
from __future__ import annotations

import argparse
import colorsys
import time

import numpy as np
from scipy import ndimage as ndi

from napari_grainlab.core.inference.scale import estimate_diameter
from napari_grainlab.core.synthetic import SEMParams, SynthParams, TessellationParams, generate

DIAMETERS = (8, 16, 32, 64, 100, 150)
LOOKS = {
    "optical": dict(style="optical"),
    "sem_bright": dict(style="sem", sem=SEMParams(edge_mode="bright", edge_strength=0.5)),
    "sem_groove": dict(style="sem", sem=SEMParams(edge_mode="groove")),
    "bse": dict(style="sem", sem=SEMParams(edge_strength=0.0, shadowing=0.0, channelling=0.5, scratches=0.0,
                                           dust=0.0, charging=0.0)),
}


def mean_diameter(labels: np.ndarray) -> float:
    """Mean equivalent-circle diameter of the grains not cut by the border (all grains when < 10 are inside)."""
    try:
        from napari_grainlab.core.data.targets import mean_grain_diameter
    except ImportError:
        pass
    else:
        return float(mean_grain_diameter(labels))
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inner = ~np.isin(ids, border)
    c = counts[inner] if inner.sum() >= 10 else counts
    return float(np.mean(np.sqrt(4 * c / np.pi)))


def colour_look(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(labels.max()) + 1
    cols = np.array([colorsys.hsv_to_rgb(rng.random(), 0.5 + 0.4 * rng.random(), 0.5 + 0.4 * rng.random())
                     for _ in range(n)], np.float32)
    img = cols[labels]
    h, w = labels.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = img * (0.85 + 0.15 * (xx + yy)[..., None] / 2)
    img = ndi.gaussian_filter(img, (1, 1, 0)) + 0.02 * rng.standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def refiner(name: str):
    """``image, estimate -> refined diameter`` with the model ``name`` (None: no refinement)."""
    from napari_grainlab.core.inference._rescale import _clamp, model_grain_diameter, refine_factor
    from napari_grainlab.core.inference.tiling import model_multiple, predict_tiled
    from napari_grainlab.core.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(name)
    d_model, multiple = model_grain_diameter(meta, model), model_multiple(model)

    def probe(crop: np.ndarray) -> np.ndarray:
        return predict_tiled(model, crop, device="cpu", activation="sigmoid", out_channels=2)

    def refined(image: np.ndarray, estimate: float) -> float:
        f0 = _clamp(d_model / estimate, image.shape, multiple)
        return d_model / refine_factor(image, f0, probe, multiple)[0]

    return refined


def report(ratios: dict[str, list[tuple[int, float]]], title: str) -> None:
    print(f"{title:<11} error ratio   est/true per diameter {DIAMETERS}")
    every = []
    for look, v in ratios.items():
        r = np.array([x for _, x in v])
        every += list(np.abs(np.log(r)))
        per_d = " ".join(f"{np.exp(np.mean(np.log([x for dd, x in v if dd == d]))):.2f}" for d in DIAMETERS)
        print(f"{look:<11} x{np.exp(np.median(np.abs(np.log(r)))):.2f}        {per_d}")
    print(f"all looks   x{np.exp(np.median(every)):.2f} (median), x{np.exp(np.max(every)):.2f} (worst)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--model", default=None, help="also measure the model-based refinement with this model")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    refine = refiner(args.model) if args.model else None
    ratios: dict[str, list[tuple[int, float]]] = {k: [] for k in [*LOOKS, "colour"]}
    after: dict[str, list[tuple[int, float]]] = {k: [] for k in [*LOOKS, "colour"]}
    for d in DIAMETERS:
        size = 384 if d <= 16 else (640 if d <= 64 else 1024)
        for look, kw in LOOKS.items():
            for seed in range(args.seeds):
                p = SynthParams(height=size, width=size, tessellation=TessellationParams(grains=None,
                                                                                     mean_diameter=float(d)), **kw)
                s = generate(p, seed=seed)
                true = mean_diameter(s.labels)
                pictures = [(look, s.image_float())]
                if look == "bse":
                    pictures.append(("colour", colour_look(s.labels, rng)))
                for name, picture in pictures:
                    est = estimate_diameter(picture)
                    ratios[name].append((d, est / true))
                    if refine is not None:
                        after[name].append((d, refine(picture, est) / true))
    report(ratios, "look")
    if refine is not None:
        report(after, "refined")
    s = generate(SynthParams(height=1024, width=1024, tessellation=TessellationParams(grains=None,
                                                                                  mean_diameter=40.0)), seed=0)
    img = s.image_float()
    for name, picture in (("1024 x 1024", img), ("1024 x 1024 colour", colour_look(s.labels, rng))):
        estimate_diameter(picture)
        t0 = time.perf_counter()
        for _ in range(5):
            estimate_diameter(picture)
        print(f"time for {name}: {(time.perf_counter() - t0) / 5 * 1000:.0f} ms")
        if refine is not None:
            est = estimate_diameter(picture)
            refine(picture, est)
            t0 = time.perf_counter()
            refine(picture, est)
            print(f"refinement of {name}: {(time.perf_counter() - t0) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
