"""``grainlab eval``: score a model on a labelled dataset folder; the metrics go to stdout as JSON.

Predicts exactly as ``grainlab predict`` does: the same flags, from
:class:`~napari_grainlab.core.inference.options.InferenceOptions`.
"""

from __future__ import annotations

import argparse
import sys

from ..core.inference.options import InferenceOptions
from ._common import EXIT_OK, UserError, add_options, nonnegative_int, options_from_args, print_json, scale_report
from ._data import load_training_data


def _mean_rows(rows: list[dict]) -> dict:
    import numpy as np

    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))] if rows else []
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in rows], dtype=float)
        out[k] = float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() else float("nan")
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.errors import DataError
    from ..core.inference import predict_array
    from ..core.models import load_checkpoint
    from ..core.training import resolve_device

    options = options_from_args(InferenceOptions, args)
    device = resolve_device(options.device)
    model, meta = load_checkpoint(args.model, device=device)
    task, samples, classes = load_training_data([args.data], model.task)
    results = {"model": str(args.model), "data": str(args.data), "task": task, "images": len(samples)}
    if options.histogram_match and not meta.get("histogram_reference"):
        raise UserError(f"{args.model}: the model has no intensity reference for --histogram-match")

    def predict(sample):
        # the same call as 'grainlab predict': tile (default: the model's), TTA, AdaBN and histogram matching
        # apply to segmentation and classification models alike
        def warn(message: str) -> None:
            print(f"grainlab: warning: {sample.name}: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

        try:
            res = predict_array(model, meta, sample.image, options, device=device, warn=warn)
        except DataError as exc:  # e.g. an image too small for the model: say which
            raise DataError(f"{sample.name}: {exc}") from None
        line = scale_report(res.scaling, rescale=options.rescale)
        if line:
            print(f"grainlab: {sample.name}: {line}", file=sys.stderr, flush=True)
        return res

    if task == "segment":
        from ..core.inference import classical_grains
        from ..core.metrics import segmentation_metrics

        per, base = [], []
        for s in samples:
            res = predict(s)
            m = segmentation_metrics(res.labels, s.labels, tolerance=args.tolerance)
            per.append({"image": s.name, **m})
            if args.baseline:
                labels, _ = classical_grains(s.image)
                base.append(segmentation_metrics(labels, s.labels, tolerance=args.tolerance))
        results["metrics"] = _mean_rows(per)
        if args.baseline:
            results["baseline_classical"] = _mean_rows(base)
        if args.per_image:
            results["per_image"] = per
    else:
        from ..core.metrics import classification_metrics

        names = meta.get("classes") or classes
        index = {n: i for i, n in enumerate(names)}
        y_true, y_pred = [], []
        for s in samples:
            true_name = classes[s.label]
            if true_name not in index:
                raise UserError(f"class '{true_name}' in the data is unknown to the model ({names})")
            y_true.append(index[true_name])
            y_pred.append(int(np.argmax(predict(s).class_probabilities)))
        results["metrics"] = classification_metrics(np.array(y_true), np.array(y_pred), len(names), names)
    print_json(results)
    return EXIT_OK


def register(sub) -> None:
    e = sub.add_parser("eval", help="score a model on a labelled dataset folder (JSON on stdout)")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--tolerance", type=nonnegative_int, default=2, metavar="PX", help="boundary F1 tolerance")
    e.add_argument("--baseline", action="store_true",
                   help="also score the classical ridge + watershed baseline (on colour images: the Lab "
                        "colour-gradient watershed)")
    e.add_argument("--per-image", action="store_true", help="include per-image metrics")
    add_options(e, InferenceOptions)
    e.set_defaults(func=run)
