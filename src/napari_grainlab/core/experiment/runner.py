"""Run an experiment: plan every training / evaluation run of its studies, execute them, keep the results.

Runs are named by *what* they compute, not by the study that asks for them
(``train/imagenet/finetune/n5/f2``: fine-tune from ImageNet on 5 labelled target images, fold 2), so
studies that share a run share its result. Every finished run is appended to ``OUT/results.jsonl``;
an interrupted experiment resumes where it stopped. :func:`run_experiment` is a generator of typed
events, like :func:`~napari_grainlab.core.training.fit`, and checks ``stop`` between runs and steps.

Evaluation is always on held-out *target* images of the fold (group K-fold over source
micrographs), scored with :func:`~napari_grainlab.core.metrics.segmentation_metrics` after the
same prediction pipeline as ``grainlab predict``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ..errors import ExperimentError
from .config import METRICS, ExperimentConfig

RESULTS = "results.jsonl"
CONFIG = "config.json"
#: how evaluation runs choose the grain scale of each image, recorded in every result row (``eval_scale``):
#: ``labels``: its true scale, from its labels (rows without the key predate it: the automatic estimate)
EVAL_SCALE = "labels"


# ------------------------------------------------------------------------------------------ events
@dataclass
class ExperimentStarted:
    total: int
    done: int
    out: str
    device: str

    def __str__(self):
        extra = f" ({self.done} already done)" if self.done else ""
        return f"experiment: {self.total} runs{extra} on {self.device}; results in {self.out}"


@dataclass
class RunStarted:
    index: int
    total: int
    id: str

    def __str__(self):
        return f"[{self.index + 1}/{self.total}] {self.id}"


@dataclass
class RunDone:
    index: int
    total: int
    id: str
    row: dict = field(repr=False)
    seconds: float = 0.0

    def __str__(self):
        m = self.row.get("metrics", {})
        bits = [f"{k} {m[k]:.3f}" for k in ("boundary_f1", "grain_f1") if isinstance(m.get(k), float)]
        if "val" in self.row:
            bits.insert(0, f"val boundary_f1 {self.row['val'].get('boundary_f1', float('nan')):.3f}")
        return f"[{self.index + 1}/{self.total}] {self.id}: {', '.join(bits) or 'done'} ({self.seconds:.0f} s)"


@dataclass
class ExperimentFinished:
    out: str
    runs: int
    seconds: float
    stopped: bool = False

    def __str__(self):
        how = "stopped" if self.stopped else "finished"
        return f"experiment {how}: {self.runs} runs in {self.seconds / 60:.1f} min; results in {self.out}"


# ------------------------------------------------------------------------------------------ data
def _render(material, size: int, seeds) -> list:
    from ..data.datasets import SegSample
    from ..synthetic import generate
    from ..synthetic.randomize import percentile_stretch

    p = material.params(size)
    out = []
    for i, seed in enumerate(seeds):
        s = generate(p, seed=int(seed))
        img = percentile_stretch(s.image_float()).astype(np.float32)
        name = f"{material.name}-{i:03d}"
        out.append(SegSample(name=name, image=img, labels=s.labels.astype(np.uint32), group=name))
    return out


class ExperimentData:
    """The synthetic images of an experiment, made on first use and the same on every call."""

    def __init__(self, cfg: ExperimentConfig):
        from ..data.splits import kfold_splits

        self.cfg = cfg
        self._target = None
        self._source = None
        self._source_test = None
        self.folds = kfold_splits([f"t{i}" for i in range(cfg.target_images)], cfg.folds, seed=cfg.seed)

    @property
    def target(self) -> list:
        if self._target is None:
            base = 1_000_003 * (self.cfg.seed + 1)
            self._target = _render(self.cfg.target, self.cfg.image_size, range(base, base + self.cfg.target_images))
        return self._target

    @property
    def source(self) -> list:
        if self._source is None:
            base = 2_000_003 * (self.cfg.seed + 1)
            self._source = _render(self.cfg.source, self.cfg.image_size, range(base, base + self.cfg.source_images))
        return self._source

    @property
    def source_test(self) -> list:
        """Held-out images of the source look (the in-domain reference of the transfer study)."""
        if self._source_test is None:
            base = 3_000_003 * (self.cfg.seed + 1)
            n = len(self.folds[0][1])
            self._source_test = _render(self.cfg.source, self.cfg.image_size, range(base, base + n))
        return self._source_test

    def pool(self, fold: int) -> list:
        """The fold's training images in a fixed random order: n labels are the first n (nested subsets)."""
        train_idx = self.folds[fold][0]
        rng = np.random.default_rng([self.cfg.seed, fold, 17])
        return [self.target[i] for i in rng.permutation(train_idx)]

    def test(self, fold: int) -> list:
        return [self.target[i] for i in self.folds[fold][1]]


# ------------------------------------------------------------------------------------------ plan
@dataclass
class Run:
    id: str
    action: str  # pretrain | train | eval | leakage
    fold: int | None = None
    n: int | None = None
    init: str | None = None  # imagenet | scratch | synthetic | source
    strategy: str | None = None
    mode: str = "none"  # adaptation mode of an evaluation
    model: str | None = None  # evaluated pretrained model
    on: str = "target"  # evaluated look (eval)
    split: str | None = None  # leakage: random | group
    needs: tuple[str, ...] = ()
    overrides: dict = field(default_factory=dict)  # the study's own training options


def _train_id(init: str, strategy: str, n: int, fold: int, tag: str = "") -> str:
    return f"train/{init}/{strategy}{tag}/n{n}/f{fold}"


def override_tag(overrides: dict) -> str:
    """The run-id suffix of a study's own training options (``@epochs=20,lr=0.003``; empty without)."""
    return "@" + ",".join(f"{k}={overrides[k]}" for k in sorted(overrides)) if overrides else ""


def plan(cfg: ExperimentConfig) -> tuple[list[Run], dict[str, list[str]]]:
    """Every run the studies need (de-duplicated, pre-training first) and each study's run ids."""
    runs: dict[str, Run] = {}
    by_study: dict[str, list[str]] = {}

    def add(run: Run, study: str) -> None:
        runs.setdefault(run.id, run)
        by_study.setdefault(study, []).append(run.id)

    folds = range(cfg.folds)
    for st in cfg.studies:
        counts = tuple(st.get("label_counts", cfg.label_counts))
        if st.kind == "learning_curve":
            over = dict(st.get("training", {}))
            for s in st.get("strategies", ["scratch", "frozen", "finetune", "gradual"]):
                init = "scratch" if s == "scratch" else "imagenet"
                for f in folds:
                    for n in counts:
                        add(Run(_train_id(init, s, n, f, override_tag(over)), "train", f, n, init, s, overrides=over),
                            st.name)
        elif st.kind in ("pretraining", "transfer"):
            pre = "synthetic" if st.kind == "pretraining" else "source"
            s = st.get("strategy", "finetune")
            add(Run(f"pretrain/{pre}", "pretrain", init=pre), st.name)
            for f in folds:
                add(Run(f"eval/{pre}/none/f{f}", "eval", f, 0, model=pre, needs=(f"pretrain/{pre}",)), st.name)
                if pre == "source":
                    add(Run(f"eval/source@source/none/f{f}", "eval", f, 0, model="source", on="source",
                            needs=("pretrain/source",)), st.name)
                for n in counts:
                    add(Run(_train_id("imagenet", s, n, f), "train", f, n, "imagenet", s), st.name)
                    add(Run(_train_id(pre, s, n, f), "train", f, n, pre, s, needs=(f"pretrain/{pre}",)), st.name)
        elif st.kind == "adaptation":
            for model in st.get("models", ["source"]):
                if model not in ("source", "synthetic"):
                    raise ExperimentError(f"[studies.{st.name}] models are source and/or synthetic, got {model!r}")
                add(Run(f"pretrain/{model}", "pretrain", init=model), st.name)
                for mode in st.get("modes", ["none", "adabn", "histogram", "both"]):
                    for f in folds:
                        add(Run(f"eval/{model}/{mode}/f{f}", "eval", f, 0, mode=mode, model=model,
                                needs=(f"pretrain/{model}",)), st.name)
        elif st.kind == "leakage":
            variants = [("", 0.0)]
            if float(st.get("session_variation", 0.0)) > 0:
                variants.append(("@session", float(st.get("session_variation"))))
            for tag, session in variants:
                for split in ("random", "group"):
                    for f in folds:
                        add(Run(f"leakage/{split}{tag}/f{f}", "leakage", f, split=split,
                                overrides={"session_variation": session}), st.name)
    order = sorted(runs.values(), key=lambda r: (r.action != "pretrain", r.fold or 0, r.n or 0, r.id))
    return order, by_study


# ------------------------------------------------------------------------------------------ metrics
SCORED = METRICS


def evaluate_model(model_dir: str | Path, samples: list, *, mode: str = "none", device="cpu",
                   stop: Callable[[], bool] | None = None) -> dict:
    """Mean segmentation metrics of a checkpoint on ``samples`` (prediction as in ``grainlab predict``).

    Each image is predicted at its true grain scale, measured on its labels, as when a user gives
    ``--diameter``: the studies compare training strategies, and an error of the automatic scale estimate
    (benchmarked on its own: ``tests/core/inference/test_scale.py``, ``benchmarks/bench_real.py``) would
    only add noise to them, at several times the cost (the estimate runs the network at up to five scales).
    """
    from ..data.targets import mean_grain_diameter
    from ..inference import predict_array
    from ..metrics import segmentation_metrics
    from ..models import load_checkpoint

    model, meta = load_checkpoint(model_dir, device=device)
    rows = []
    for s in samples:
        if stop is not None and stop():
            raise _Stopped
        tile = min(512, max(s.image.shape))
        res = predict_array(model, meta, s.image, adabn=mode in ("adabn", "both"),
                            histogram_match=mode in ("histogram", "both"), tile=tile, device=device,
                            diameter=mean_grain_diameter(s.labels))
        m = segmentation_metrics(res.labels, s.labels)
        rows.append([float(m[k]) for k in SCORED])
    arr = np.array(rows, dtype=float).reshape(-1, len(SCORED))
    finite = np.isfinite(arr)
    counts = finite.sum(axis=0)
    mean = np.where(counts > 0, np.where(finite, arr, 0).sum(axis=0) / np.maximum(counts, 1), np.nan)
    return {k: float(v) for k, v in zip(SCORED, mean)}


class _Stopped(Exception):
    pass


# ------------------------------------------------------------------------------------------ runner
def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def load_results(out: str | Path) -> dict[str, dict]:
    """The finished runs in ``OUT/results.jsonl`` by id (a damaged line is ignored)."""
    path = Path(out) / RESULTS
    rows = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                rows[row["id"]] = row
    return rows


def _environment(device) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cpu_cores": os.cpu_count(),
           "machine": platform.machine(), "device": str(device)}
    if getattr(device, "type", str(device)) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class _Runner:
    def __init__(self, cfg: ExperimentConfig, out: Path, device: str, stop: Callable[[], bool]):
        from ..training import resolve_device

        self.cfg = cfg
        self.out = out
        self.device = resolve_device(device)
        self.device_name = device
        self.stop = stop
        self.data = ExperimentData(cfg)
        self.work = out / "models"

    # -- training
    def _fit(self, cfg, train, val=None) -> str:
        from ..training import Finished, fit

        finished = None
        for ev in fit(cfg, train, val, stop=self.stop):
            if isinstance(ev, Finished):
                finished = ev
        if self.stop():
            raise _Stopped
        if finished is None:
            raise ExperimentError(f"training into {cfg.out} finished without a model")
        path = finished.best_path or finished.last_path
        if not path:
            raise ExperimentError(f"training into {cfg.out} saved no model")
        return path

    def _train_cfg(self, out: Path, **changes):
        return self.cfg.train_config(out=str(out), device=self.device_name, **changes)

    def pretrained(self, name: str) -> str:
        return str(self.work / f"pretrain-{name}" / "model")

    def do_pretrain(self, run: Run) -> dict:
        target = self.work / f"pretrain-{run.init}"
        tmp = self.work / f".tmp-pretrain-{run.init}"
        shutil.rmtree(tmp, ignore_errors=True)
        st = next((s for s in self.cfg.studies if s.kind == "pretraining"), None) if run.init == "synthetic" else None
        epochs = max(1, int(self.cfg.training.get("epochs", 5)))
        steps = max(1, math.ceil(self.cfg.pretrain_steps / epochs))
        if run.init == "synthetic":
            source = (st.get("synthetic", "randomized") if st else "randomized")
            cfg = self._train_cfg(tmp, strategy="finetune", weights="imagenet", synthetic=source,
                                  synthetic_ratio=1.0, epochs=epochs, steps_per_epoch=steps, seed=self.cfg.seed,
                                  val_fraction=0.2)
            path = self._fit(cfg, [])
        else:
            cfg = self._train_cfg(tmp, strategy="finetune", weights="imagenet", synthetic="none", synthetic_ratio=0.0,
                                  epochs=epochs, steps_per_epoch=steps, seed=self.cfg.seed, val_fraction=0.2)
            path = self._fit(cfg, self.data.source)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, target / "model")
        shutil.rmtree(tmp, ignore_errors=True)
        return {"model": str((target / "model").relative_to(self.out))}

    def do_train(self, run: Run) -> dict:
        weights = {"imagenet": "imagenet", "scratch": "none"}.get(run.init) or self.pretrained(run.init)
        train = self.data.pool(run.fold)[: run.n]
        with tempfile.TemporaryDirectory(prefix="grainlab-exp-", dir=self.work) as tmp:
            cfg = self._train_cfg(Path(tmp) / "run", strategy=run.strategy, weights=weights, synthetic="none",
                                  synthetic_ratio=0.0, val_fraction=0.0, seed=self.cfg.seed + run.fold,
                                  **run.overrides)
            path = self._fit(cfg, train)
            metrics = evaluate_model(path, self.data.test(run.fold), device=self.device, stop=self.stop)
        return {"metrics": metrics, "train_images": [s.name for s in train]}

    def do_eval(self, run: Run) -> dict:
        samples = self.data.source_test if run.on == "source" else self.data.test(run.fold)
        return {"metrics": evaluate_model(self.pretrained(run.model), samples, mode=run.mode, device=self.device,
                                          stop=self.stop)}

    def do_leakage(self, run: Run) -> dict:
        st = next(s for s in self.cfg.studies if s.kind == "leakage")
        m = int(st.get("images", 4))
        per = int(st.get("tiles_per_image", 16))
        tile = int(st.get("tile", 128))
        val_fraction = float(st.get("val_fraction", 0.25))
        sources = self.data.pool(run.fold)[:m]
        tests = self.data.test(run.fold)
        session = float(run.overrides.get("session_variation", 0.0))
        if session > 0:
            # every micrograph its own acquisition session (exposure, focus, noise), as in a real lab
            sources = [session_look(s, session, seed=(self.cfg.seed, run.fold, 0, i)) for i, s in enumerate(sources)]
            tests = [session_look(s, session, seed=(self.cfg.seed, run.fold, 1, i)) for i, s in enumerate(tests)]
        tiles = augmented_tiles(sources, per, tile, seed=self.cfg.seed + run.fold)
        train, val = split_tiles(tiles, run.split, val_fraction, seed=self.cfg.seed + run.fold)
        with tempfile.TemporaryDirectory(prefix="grainlab-exp-", dir=self.work) as tmp:
            cfg = self._train_cfg(Path(tmp) / "run", strategy=st.get("strategy", "finetune"), weights="imagenet",
                                  synthetic="none", synthetic_ratio=0.0, patch_size=tile,
                                  seed=self.cfg.seed + run.fold, **st.get("training", {}))
            path = self._fit(cfg, train, val)
            val_metrics = evaluate_model(path, val, device=self.device, stop=self.stop)
            test_metrics = evaluate_model(path, tests, device=self.device, stop=self.stop)
            # tiles of the held-out micrographs made the same way: the validation score's honest counterpart
            test_tiles = augmented_tiles(tests, max(1, per // 4), tile,
                                         seed=self.cfg.seed + run.fold + 1000)
            tile_metrics = evaluate_model(path, test_tiles, device=self.device, stop=self.stop)
        return {"val": val_metrics, "test_tiles": tile_metrics, "metrics": test_metrics, "train_tiles": len(train),
                "val_tiles": len(val)}


def session_look(sample, strength: float, seed) -> object:
    """``sample`` as if imaged in its own session: a random gamma, contrast and offset, probe blur and
    noise level (``strength`` 1: gamma x/÷ 1.5, blur up to 1.5 px, noise sd up to 0.06). Labels unchanged."""
    from scipy import ndimage as ndi

    from ..data.datasets import SegSample

    rng = np.random.default_rng(list(np.atleast_1d(seed)) + [303])
    img = np.clip(sample.image.astype(np.float32), 0, 1)
    img = img ** np.float32(np.exp(rng.normal(0, 0.4 * strength)))
    img = (img - 0.5) * np.float32(np.exp(rng.normal(0, 0.25 * strength))) + 0.5 + np.float32(rng.normal(0, 0.08 * strength))
    sigma = rng.uniform(0, 1.5 * strength)
    if sigma > 0.2:
        img = ndi.gaussian_filter(img, sigma)
    img = img + rng.normal(0, rng.uniform(0, 0.06 * strength), img.shape).astype(np.float32)
    return SegSample(name=sample.name, image=np.clip(img, 0, 1).astype(np.float32), labels=sample.labels,
                     group=sample.group, pixel_size=sample.pixel_size)


def augmented_tiles(samples: list, per_image: int, tile: int, seed: int) -> list:
    """``per_image`` overlapping random crops of each sample, flipped / rotated and with intensity and
    noise augmentation: the tile set a naive pipeline makes *before* splitting. Each tile keeps its
    source micrograph as ``group``."""
    from ..data.augment import build_augmentation
    from ..data.datasets import SegSample

    aug = build_augmentation(("intensity", "noise"))
    rng = np.random.default_rng([seed, 101])
    aug.set_random_seed(int(rng.integers(2**31 - 1)))
    out = []
    for s in samples:
        h, w = s.image.shape
        if h < tile or w < tile:
            raise ExperimentError(f"leakage tiles of {tile} px do not fit in {h}x{w} images")
        for j in range(per_image):
            y, x = int(rng.integers(0, h - tile + 1)), int(rng.integers(0, w - tile + 1))
            img = s.image[y:y + tile, x:x + tile]
            lab = s.labels[y:y + tile, x:x + tile]
            k = int(rng.integers(4))
            img, lab = np.rot90(img, k), np.rot90(lab, k)
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            img = np.clip(aug(image=np.ascontiguousarray(img, dtype=np.float32))["image"], 0, 1).astype(np.float32)
            out.append(SegSample(name=f"{s.name}-t{j:02d}", image=img, labels=np.ascontiguousarray(lab),
                                 group=s.group))
    return out


def split_tiles(tiles: list, how: str, val_fraction: float, seed: int) -> tuple[list, list]:
    """``random``: tiles shuffled and split regardless of their source (leaks); ``group``: whole source
    micrographs on one side (:func:`~napari_grainlab.core.data.splits.group_split`)."""
    from ..data.splits import group_split

    if how == "random":
        idx = np.random.default_rng([seed, 202]).permutation(len(tiles))
        n_val = max(1, round(val_fraction * len(tiles)))
        va, tr = idx[:n_val], idx[n_val:]
    elif how == "group":
        tr, va = group_split([t.group for t in tiles], val_fraction, seed=seed)
    else:
        raise ExperimentError(f"unknown split {how!r}")
    return [tiles[i] for i in sorted(tr)], [tiles[i] for i in sorted(va)]


#: study options that change what a run computes (the others only choose which runs a study asks for)
_RUN_OPTIONS = {"pretraining": ("synthetic",), "leakage": ("images", "tiles_per_image", "tile", "val_fraction",
                                                          "strategy", "training", "session_variation")}


def fingerprint(cfg: ExperimentConfig) -> dict:
    """What the stored results depend on: data, training and the run-defining study options.

    Adding a study, a strategy or a label count to a configuration keeps the finished runs.
    """
    d = cfg.to_dict()
    d.pop("studies")
    d.pop("name")
    d["runs"] = {s.kind: {k: s.options[k] for k in _RUN_OPTIONS.get(s.kind, ()) if k in s.options}
                 for s in cfg.studies if s.kind in _RUN_OPTIONS}
    return d


_WORKER: dict = {}


def _worker_init(cfg: ExperimentConfig, out: str, device: str, threads: int) -> None:
    """Set up a worker process: its torch threads and its own copy of the experiment's data."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    torch.set_num_threads(max(1, threads))
    _WORKER["runner"] = _Runner(cfg, Path(out), device, lambda: False)


def _worker_run(run: Run) -> dict:
    runner = _WORKER["runner"]
    t1, c1 = time.perf_counter(), time.process_time()
    extra = getattr(runner, f"do_{run.action}")(run)
    return {**extra, "seconds": time.perf_counter() - t1, "cpu_seconds": time.process_time() - c1}


def run_experiment(cfg: ExperimentConfig, out: str | Path, *, device: str = "auto", overwrite: bool = False,
                   only: list[str] | None = None, workers: int = 1, threads: int | None = None,
                   stop=None) -> Iterator:
    """Run (or resume) ``cfg`` into ``out``; yields :class:`ExperimentStarted`, :class:`RunStarted`,
    :class:`RunDone` and :class:`ExperimentFinished`.

    ``only`` limits the experiment to the named studies (and the runs they need). ``overwrite`` discards
    earlier results in ``out``; without it, results of a *different* configuration are an error and
    those of this one are kept and skipped. ``workers`` > 1 runs that many runs at once in worker
    processes with ``threads`` torch threads each (default: the CPU cores shared out), which uses a
    multi-core CPU far better than one process; ``stop`` then lets the runs in progress finish.
    """
    from ..training.fit import _stopper

    should_stop = _stopper(stop)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExperimentError(f"{out} exists and is not a folder")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ExperimentError(f"workers must be a whole number >= 1, got {workers!r}")
    t0 = time.perf_counter()
    runs, by_study = plan(cfg)
    if only:
        unknown = [s for s in only if s not in by_study]
        if unknown:
            raise ExperimentError(f"no study named {', '.join(unknown)}; the config has {', '.join(by_study)}")
        wanted = {i for s in only for i in by_study[s]}
        wanted |= {n for r in runs if r.id in wanted for n in r.needs}
        runs = [r for r in runs if r.id in wanted]
    stored = fingerprint(cfg)
    old = out / CONFIG
    if overwrite and out.exists():
        for name in (RESULTS, CONFIG):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "models", ignore_errors=True)
    elif old.exists():
        try:
            previous = json.loads(old.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous is not None and previous.get("fingerprint") != stored:
            raise ExperimentError(f"{out} holds results of a different configuration; use another output folder "
                                  "or overwrite")
    runner = _Runner(cfg, out, device, should_stop)
    runner.work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(old, json.dumps({"experiment": cfg.to_dict(), "fingerprint": stored, "by_study": by_study},
                                      indent=2))
    results = load_results(out)
    env = _environment(runner.device)
    index = {r.id: i for i, r in enumerate(runs)}
    todo = [r for r in runs if r.id not in results]
    workers = min(workers, max(1, len(todo)))
    per = threads or max(1, (os.cpu_count() or 1) // workers)
    if workers > 1:
        env["workers"] = workers
        env["threads_per_worker"] = per
    yield ExperimentStarted(total=len(runs), done=len(runs) - len(todo), out=str(out), device=env["device"])
    done_ids = set(results)

    def record(run: Run, extra: dict) -> RunDone:
        row = {"id": run.id, "action": run.action, "fold": run.fold, "n": run.n, "init": run.init,
               "strategy": run.strategy, "mode": run.mode, "model": run.model, "on": run.on, "split": run.split,
               **extra, "eval_scale": EVAL_SCALE, "environment": env}
        results[run.id] = _jsonable(row)
        done_ids.add(run.id)
        atomic_write_text(out / RESULTS, "".join(json.dumps(results[k], allow_nan=False) + "\n" for k in results))
        return RunDone(index=index[run.id], total=len(runs), id=run.id, row=row, seconds=row["seconds"])

    def check_needs(run: Run) -> None:
        missing = [n for n in run.needs if n not in done_ids and n not in index]
        if missing:
            raise ExperimentError(f"{run.id} needs {', '.join(missing)} first")

    stopped = False
    if workers == 1:
        for run in todo:
            if should_stop():
                stopped = True
                break
            check_needs(run)
            yield RunStarted(index=index[run.id], total=len(runs), id=run.id)
            t1, c1 = time.perf_counter(), time.process_time()
            try:
                extra = getattr(runner, f"do_{run.action}")(run)
            except _Stopped:
                stopped = True
                break
            extra.update(seconds=time.perf_counter() - t1, cpu_seconds=time.process_time() - c1)
            yield record(run, extra)
    else:
        import concurrent.futures as cf
        import multiprocessing

        pending = list(todo)
        running: dict = {}
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_worker_init, initargs=(cfg, str(out), device, per))
        try:
            while pending or running:
                if not stopped and should_stop():
                    stopped = True  # no new runs; the ones in progress finish and are kept
                    pending.clear()
                while len(running) < workers and pending:
                    ready = next((r for r in pending if all(n in done_ids for n in r.needs)), None)
                    if ready is None:
                        break
                    check_needs(ready)
                    pending.remove(ready)
                    running[pool.submit(_worker_run, ready)] = ready
                    yield RunStarted(index=index[ready.id], total=len(runs), id=ready.id)
                if not running:
                    raise ExperimentError(f"{pending[0].id} waits for {', '.join(pending[0].needs)}, which failed")
                finished, _ = cf.wait(list(running), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    run = running.pop(fut)
                    yield record(run, fut.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    yield ExperimentFinished(out=str(out), runs=len(done_ids & {r.id for r in runs}),
                             seconds=time.perf_counter() - t0, stopped=stopped)


__all__ = ["ExperimentData", "ExperimentFinished", "ExperimentStarted", "Run", "RunDone", "RunStarted",
           "augmented_tiles", "evaluate_model", "session_look", "load_results", "plan", "run_experiment", "split_tiles"]
