"""Turn an experiment's ``results.jsonl`` into a Markdown report with plots (mean ± sd over folds).

Every number in the report is computed here from the stored runs; the interpretation is the
optional hand-written findings file the configuration names (``findings = "FILE.md"``), included
verbatim, so regenerating the report after more runs never loses it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ..errors import ExperimentError
from .runner import CONFIG, load_results, override_tag

METRIC_NAMES = {"boundary_f1": "boundary F1", "grain_f1": "grain F1 (IoU ≥ 0.5)",
                "adapted_rand_error": "adapted Rand error", "diameter_relative_error": "mean-diameter error"}
STRATEGY_NAMES = {"scratch": "scratch (random init)", "frozen": "ImageNet, frozen backbone",
                  "finetune": "ImageNet, fine-tune last stages", "gradual": "ImageNet, gradual unfreezing"}
MODE_NAMES = {"none": "off", "adabn": "AdaBN", "histogram": "histogram matching", "both": "AdaBN + histogram"}


def _stats(values) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _fmt(mean: float, sd: float) -> str:
    return "–" if not math.isfinite(mean) else f"{mean:.3f} ± {sd:.3f}"


class _Results:
    def __init__(self, rows: dict[str, dict], folds: int):
        self.rows = rows
        self.folds = folds

    def values(self, pattern: str, metric: str, key: str = "metrics") -> list[float | None]:
        """``pattern`` with ``{f}`` for the fold: the metric of each finished fold (None if missing)."""
        out = []
        for f in range(self.folds):
            row = self.rows.get(pattern.format(f=f))
            out.append(None if row is None else (row.get(key) or {}).get(metric))
        return out

    def stats(self, pattern: str, metric: str, key: str = "metrics"):
        return _stats(self.values(pattern, metric, key))

    def paired(self, a: str, b: str, metric: str, key_a: str = "metrics", key_b: str = "metrics") -> tuple:
        """Fold-wise ``a - b``: mean, sd, folds where a > b, folds compared."""
        va, vb = self.values(a, metric, key_a), self.values(b, metric, key_b)
        d = [x - y for x, y in zip(va, vb) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
        m, s, n = _stats(d)
        return m, s, sum(1 for x in d if x > 0), n


def _diffs(res: _Results, a: str, b: str, metrics) -> list[str]:
    """One cell per metric: the fold-wise paired difference ``a - b`` of two run-id patterns."""
    return [_diff(*res.paired(a, b, m)) for m in metrics]


def _diff(m: float, s: float, wins: int, n: int) -> str:
    if not n:
        return "–"
    return f"{m:+.3f} ± {s:.3f} ({wins}/{n} folds higher)"


def _plot_curves(path: Path, series: list[tuple[str, list, list, list]], metrics, title: str,
                 hlines: list[tuple[str, dict]] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (label, xs, means, sds) in enumerate(series):
            ok = [j for j, m in enumerate(means[metric]) if math.isfinite(m)]
            if not ok:
                continue
            ax.errorbar([xs[j] for j in ok], [means[metric][j] for j in ok], yerr=[sds[metric][j] for j in ok],
                        marker="o", capsize=3, label=label, color=f"C{i}")
        for j, (label, val) in enumerate(hlines):
            m, s = val[metric]
            if math.isfinite(m):
                ax.axhline(m, ls="--", color=f"C{len(series) + j}", label=label)
                ax.axhspan(m - s, m + s, color=f"C{len(series) + j}", alpha=0.12)
        ax.set_xscale("log")
        xs_all = sorted({x for _, xs, _, _ in series for x in xs})
        ax.set_xticks(xs_all)
        ax.set_xticklabels([str(x) for x in xs_all])
        ax.set_xlabel("labelled target images")
        ax.set_ylabel(METRIC_NAMES.get(metric, metric))
        lows = [m - s for _, _, means, sds in series for m, s in zip(means[metric], sds[metric]) if math.isfinite(m)]
        lows += [val[metric][0] - val[metric][1] for _, val in hlines if math.isfinite(val[metric][0])]
        ax.set_ylim(max(0.0, math.floor(10 * min(lows, default=0.0) - 0.5) / 10), 1)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_bars(path: Path, groups: list[str], bars: list[tuple[str, list[tuple[float, float]]]], ylabel: str,
               title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) * len(bars) / 2 + 2), 3.8))
    width = 0.8 / max(1, len(bars))
    x = np.arange(len(groups))
    for i, (label, vals) in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, [v[0] for v in vals], width, yerr=[v[1] for v in vals],
               capsize=3, label=label, color=f"C{i}")
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve(res: _Results, pattern: str, counts, metrics):
    means = {m: [] for m in metrics}
    sds = {m: [] for m in metrics}
    for n in counts:
        for m in metrics:
            mean, sd, _ = res.stats(pattern.replace("{n}", str(n)), m)
            means[m].append(mean)
            sds[m].append(sd)
    return means, sds


def _budget(over: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(over.items()))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])


def _scale_sentence(rows: dict[str, dict]) -> str:
    """How the scored images met the network's grain scale, from what the result rows record."""
    scales = {r.get("eval_scale") for r in rows.values() if r.get("action") == "eval"}
    if scales == {"labels"}:
        return ("Each is predicted at its true grain scale (the median grain diameter of its labels, as a user's "
                "`--diameter` would give it), so the automatic scale estimate does not enter the comparison.")
    if scales == {None}:
        return ("Each is predicted at its automatically estimated grain scale (these runs predate scoring at the "
                "true scale), so the estimate's error is part of every score.")
    return ("Some runs predicted each image at its true grain scale (from its labels), the older ones at the "
            "automatically estimated scale; the scores are not all comparable.")


def write_report(out: str | Path, report: str | Path, *, findings: str | Path | None = None,
                 command: str = "") -> Path:
    """Write ``report`` (Markdown) and its figures (``<report stem>/``) from the results in ``out``."""
    out, report = Path(out), Path(report)
    cfg_path = out / CONFIG
    if not cfg_path.exists():
        raise ExperimentError(f"{out} holds no experiment results (no {CONFIG})")
    stored = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg = stored["experiment"]
    rows = load_results(out)
    if not rows:
        raise ExperimentError(f"{out} holds no finished runs yet")
    res = _Results(rows, cfg["folds"])
    figdir = report.parent / report.stem
    figdir.mkdir(parents=True, exist_ok=True)
    rel = figdir.name
    metrics = [m for m in cfg["metrics"] if m in METRIC_NAMES] or ["boundary_f1", "grain_f1"]
    env = max((r.get("environment") or {} for r in rows.values()), key=len)
    wall = sum(r.get("seconds", 0.0) for r in rows.values())
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rows.values())
    from ..training.config import TrainConfig

    t = TrainConfig(**cfg["training"]).to_dict()
    lines = [f"# Experiment report: {cfg['name']}{' (quick)' if cfg.get('quick') else ''}", ""]
    lines += [
        "Which training recipe to trust when labels are scarce, measured with this project's own engine "
        "on synthetic micrographs. Every score is on held-out images of the **target** look, never seen "
        f"in training, as the mean ± sd over {cfg['folds']} group folds (each fold holds out a different "
        "third or fifth of the target micrographs; the labelled training images of a fold are the first *n* of "
        "a fixed random order of the rest, so larger *n* contain the smaller sets).", "",
        f"- **Source look:** {cfg['source'].get('description') or cfg['source']['preset']} "
        f"(preset `{cfg['source']['preset']}`, mean diameter {cfg['source']['mean_diameter']:g} px).",
        f"- **Target look (held out):** {cfg['target'].get('description') or cfg['target']['preset']} "
        f"(preset `{cfg['target']['preset']}`, mean diameter {cfg['target']['mean_diameter']:g} px"
        + (", " + ", ".join(f"`{k}` = {v}" for k, v in cfg['target'].get('set', {}).items())
           if cfg['target'].get('set') else "") + ").",
        f"- **Images:** {cfg['image_size']}² px; {cfg['target_images']} target, {cfg['source_images']} source. "
        + _scale_sentence(rows),
        f"- **Training budget per run:** {t.get('epochs')} epochs × {t.get('steps_per_epoch')} steps × batch "
        f"{t.get('batch_size')} of {t.get('patch_size')}² patches, backbone `{t.get('backbone', 'efficientnet_lite0')}`, "
        f"lr {t.get('lr')}, augmentation {', '.join(t.get('augment', [])) or 'none'}; all labelled images train "
        "(fixed budget, no early stopping). Pre-training: "
        f"{cfg['pretrain_steps']} steps.",
        f"- **Machine:** {env.get('cpu_cores', '?')} CPU cores, device `{env.get('device', '?')}`"
        + (f" ({env['gpu']})" if env.get("gpu") else "") + f", torch {env.get('torch', '?')}.",
        f"- **Cost:** {len(rows)} runs; their run times add up to {wall / 60:.1f} min ({cpu / 60:.1f} CPU-min)"
        + (f", with {env['workers']} runs at a time ({env.get('threads_per_worker', '?')} PyTorch thread(s) "
           "each)" if env.get("workers") else "") + ".",
        f"- **Reproduce:** `{command or 'grainlab experiment CONFIG --out DIR --report REPORT'}` (runs what the "
        "output folder does not hold yet; add `--report-only` to rebuild this page from the stored results "
        "alone, without training).", ""]
    if findings and Path(findings).exists():
        lines += [Path(findings).read_text(encoding="utf-8").strip(), ""]
    by_study = stored.get("by_study", {})
    for st in cfg["studies"]:
        name, kind = st["name"], st["kind"]
        if name not in by_study:
            continue
        counts = st.get("label_counts", cfg["label_counts"])
        if kind == "learning_curve":
            strategies = st.get("strategies", ["scratch", "frozen", "finetune", "gradual"])
            over = st.get("training", {})
            tag = override_tag(over)
            series, trows = [], []
            for s in strategies:
                init = "scratch" if s == "scratch" else "imagenet"
                pat = f"train/{init}/{s}{tag}/n{{n}}/f{{f}}"
                means, sds = _curve(res, pat, counts, metrics)
                series.append((STRATEGY_NAMES.get(s, s), counts, means, sds))
                for i, n in enumerate(counts):
                    trows.append([STRATEGY_NAMES.get(s, s), str(n)] + [_fmt(means[m][i], sds[m][i]) for m in metrics])
            fig = figdir / f"{name}.png"
            if over:
                # the same strategies at the shared budget, for comparison
                for s in strategies:
                    init = "scratch" if s == "scratch" else "imagenet"
                    means, sds = _curve(res, f"train/{init}/{s}/n{{n}}/f{{f}}", counts, metrics)
                    series.append((STRATEGY_NAMES.get(s, s) + " (shared budget)", counts, means, sds))
                    for i, n in enumerate(counts):
                        trows.append([STRATEGY_NAMES.get(s, s) + " (shared budget)", str(n)]
                                     + [_fmt(means[m][i], sds[m][i]) for m in metrics])
                series[:len(strategies)] = [(label + f" ({_budget(over)})", *rest)
                                            for label, *rest in series[:len(strategies)]]
                trows = [[r[0] + f" ({_budget(over)})" if "(shared budget)" not in r[0] else r[0], *r[1:]]
                         for r in trows]
            _plot_curves(fig, series, metrics, "Learning curves on the held-out target look")
            title = (f"## Learning curves with a different training budget: {_budget(over)} (`{name}`)" if over
                     else f"## Learning curves: scratch vs ImageNet frozen / fine-tune / gradual (`{name}`)")
            lines += [title, "", f"![learning curves]({rel}/{fig.name})", ""]
            lines += _table(["strategy", "labels"] + [METRIC_NAMES[m] for m in metrics], trows)
            if over:
                drows = []
                for s in strategies:
                    init = "scratch" if s == "scratch" else "imagenet"
                    for n in counts:
                        drows.append([f"{s}: {_budget(over)} − shared budget", str(n)] + _diffs(
                            res, f"train/{init}/{s}{tag}/n{n}/f{{f}}", f"train/{init}/{s}/n{n}/f{{f}}", metrics))
                lines += ["Fold-wise differences:", ""]
                lines += _table(["comparison", "labels"] + [METRIC_NAMES[m] for m in metrics], drows)
            if "scratch" in strategies and not over:
                drows = []
                for s in strategies:
                    if s == "scratch":
                        continue
                    for n in counts:
                        drows.append([f"{s} − scratch", str(n)] + _diffs(
                            res, f"train/imagenet/{s}/n{n}/f{{f}}", f"train/scratch/scratch/n{n}/f{{f}}", metrics))
                lines += ["Fold-wise differences (paired on the same training images and test fold):", ""]
                lines += _table(["comparison", "labels"] + [METRIC_NAMES[m] for m in metrics], drows)
        elif kind in ("pretraining", "transfer"):
            pre = "synthetic" if kind == "pretraining" else "source"
            s = st.get("strategy", "finetune")
            label_pre = ("ImageNet → synthetic grains → target" if pre == "synthetic"
                         else "ImageNet → source look → target")
            series = []
            for label, init in (("ImageNet → target", "imagenet"), (label_pre, pre)):
                means, sds = _curve(res, f"train/{init}/{s}/n{{n}}/f{{f}}", counts, metrics)
                series.append((label, counts, means, sds))
            zero = {m: res.stats(f"eval/{pre}/none/f{{f}}", m)[:2] for m in metrics}
            hl = [(f"{'synthetic' if pre == 'synthetic' else 'source-look'} model, no target labels", zero)]
            fig = figdir / f"{name}.png"
            title = ("Synthetic pre-pretraining" if pre == "synthetic" else "Cross-material transfer")
            _plot_curves(fig, series, metrics, title + f" ({s})", hl)
            head = ("## Synthetic pre-pretraining of the same backbone" if pre == "synthetic"
                    else "## Cross-material transfer: pre-train on the source look, fine-tune on the target")
            lines += [f"{head} (`{name}`)", "", f"![{title}]({rel}/{fig.name})", ""]
            trows = [["no target labels (zero-shot)", "0", *[_fmt(*zero[m]) for m in metrics]]]
            if pre == "source":
                ins = {m: res.stats("eval/source@source/none/f{f}", m)[:2] for m in metrics}
                trows.insert(0, ["source model on held-out **source** images", "0", *[_fmt(*ins[m]) for m in metrics]])
            drows = []
            for i, n in enumerate(counts):
                for label, _, means, sds in series:
                    trows.append([label, str(n)] + [_fmt(means[m][i], sds[m][i]) for m in metrics])
                drows.append([f"{pre} − ImageNet only", str(n)] + _diffs(
                    res, f"train/{pre}/{s}/n{n}/f{{f}}", f"train/imagenet/{s}/n{n}/f{{f}}", metrics))
            lines += _table(["recipe", "labels"] + [METRIC_NAMES[m] for m in metrics], trows)
            lines += ["Fold-wise differences:", ""]
            lines += _table(["comparison", "labels"] + [METRIC_NAMES[m] for m in metrics], drows)
        elif kind == "adaptation":
            models = st.get("models", ["source"])
            modes = st.get("modes", ["none", "adabn", "histogram", "both"])
            trows, drows, bars = [], [], []
            for model in models:
                label = "source-look model" if model == "source" else "synthetic-pretrained model"
                vals = []
                for mode in modes:
                    row = [label, MODE_NAMES.get(mode, mode)]
                    for m in metrics:
                        row.append(_fmt(*res.stats(f"eval/{model}/{mode}/f{{f}}", m)[:2]))
                    trows.append(row)
                    vals.append(res.stats(f"eval/{model}/{mode}/f{{f}}", metrics[0])[:2])
                    if mode != "none":
                        drows.append([label, f"{MODE_NAMES.get(mode, mode)} − off"] + _diffs(
                            res, f"eval/{model}/{mode}/f{{f}}", f"eval/{model}/none/f{{f}}", metrics))
                bars.append((label, vals))
            fig = figdir / f"{name}.png"
            _plot_bars(fig, [MODE_NAMES.get(m, m) for m in modes], bars, METRIC_NAMES[metrics[0]],
                       "Domain adaptation on the target look (no target labels)")
            lines += [f"## Domain adaptation: AdaBN and histogram matching (`{name}`)", "",
                      f"![adaptation]({rel}/{fig.name})", ""]
            lines += _table(["model", "adaptation"] + [METRIC_NAMES[m] for m in metrics], trows)
            lines += ["Fold-wise differences:", ""]
            lines += _table(["model", "comparison"] + [METRIC_NAMES[m] for m in metrics], drows)
        elif kind == "leakage":
            lines += [f"## Leakage: random split of augmented tiles vs group split (`{name}`)", "",
                      f"{st.get('images', 4)} labelled target micrographs, {st.get('tiles_per_image', 16)} "
                      f"overlapping, flipped / rotated, intensity- and noise-augmented {st.get('tile', 128)}² tiles "
                      f"each, split {int(100 * (1 - st.get('val_fraction', 0.25)))}/"
                      f"{int(100 * st.get('val_fraction', 0.25))} either at random or by source micrograph. The "
                      "model is chosen on the validation tiles and scored on them, on tiles cut the same way from the "
                      "fold's held-out micrographs (the honest counterpart of the validation score: same tile size, "
                      "same augmentation) and on those micrographs whole.", ""]
            variants = [("", "micrographs that differ only in their grains")]
            if float(st.get("session_variation", 0.0)) > 0:
                variants.append(("@session", "every micrograph from its own acquisition session (exposure, focus "
                                             f"and noise drawn per micrograph, strength {st['session_variation']:g})"))
            for tag, what in variants:
                trows, bars = [], []
                for split, label in (("random", "random split of augmented tiles"),
                                     ("group", "group split by source micrograph")):
                    pat = f"leakage/{split}{tag}/f{{f}}"
                    row = [label]
                    pair = []
                    for m in metrics:
                        v = res.stats(pat, m, "val")[:2]
                        te = res.stats(pat, m, "test_tiles")[:2]
                        gap = res.paired(pat, pat, m, "val", "test_tiles")
                        row += [_fmt(*v), _fmt(*te), _diff(*gap)]
                        if m == metrics[0]:
                            pair = [v, te, res.stats(pat, m)[:2]]
                    trows.append(row)
                    bars.append((label, pair))
                fig = figdir / f"{name}{tag.replace('@', '-')}.png"
                _plot_bars(fig, ["validation tiles", "tiles of new micrographs", "whole new micrographs"], bars,
                           METRIC_NAMES[metrics[0]], "Leakage: " + ("one acquisition session per micrograph"
                                                                     if tag else "micrographs differ only in grains"))
                lines += [f"### {what[0].upper()}{what[1:]}", "", f"![leakage]({rel}/{fig.name})", ""]
                head = ["split"]
                for m in metrics:
                    head += [f"validation {METRIC_NAMES[m]}", f"new-micrograph tiles {METRIC_NAMES[m]}",
                             "validation − new (optimism)"]
                lines += _table(head, trows)
                wrows = []
                for split, label in (("random", "random split"), ("group", "group split")):
                    wrows.append([label] + [_fmt(*res.stats(f"leakage/{split}{tag}/f{{f}}", m)[:2]) for m in metrics])
                lines += ["Scored on the held-out micrographs whole:", ""]
                lines += _table(["model chosen with", *[METRIC_NAMES[m] for m in metrics]], wrows)
    # the raw per-run results next to the figures, so every number above can be checked
    atomic_write_text(figdir / "results.jsonl",
                      "".join(json.dumps(rows[k], allow_nan=False) + "\n" for k in sorted(rows)))
    lines += [f"_Generated by `grainlab experiment` from {len(rows)} runs on {time.strftime('%Y-%m-%d')}; "
              f"per-run results in [{rel}/results.jsonl]({rel}/results.jsonl)._", ""]
    atomic_write_text(report, "\n".join(lines))
    return report


__all__ = ["write_report"]
