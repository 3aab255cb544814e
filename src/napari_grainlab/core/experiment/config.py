"""Experiment configuration: one TOML file describes the materials, the training budget and the studies.

A configuration has a ``[quick]`` table whose keys replace the top-level ones (and whose
``[quick.training]`` table updates ``[training]``) when the experiment runs with ``quick=True``:
the same grid on fewer images, folds and steps, sized for two CPU cores.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..errors import ConfigError, ExperimentError, GrainLabError, ParameterError
from ..synthetic.params import SynthParams
from ..training.config import STRATEGIES, TrainConfig

#: the kinds of study an experiment can hold, in the order the report shows them
STUDY_KINDS = ("learning_curve", "pretraining", "transfer", "adaptation", "leakage")
ADAPT_MODES = ("none", "adabn", "histogram", "both")
#: the scores an experiment can report (means over the test images of a fold)
METRICS = ("boundary_f1", "grain_f1", "adapted_rand_error", "diameter_relative_error")




@dataclass
class Material:
    """A synthetic "material": a generator preset plus parameter overrides (``section.field = value``)."""

    name: str
    preset: str = "sem"
    mean_diameter: float = 24.0
    set: dict = field(default_factory=dict)
    description: str = ""

    def params(self, size: int) -> SynthParams:
        try:
            p = SynthParams.preset(self.preset, height=int(size), width=int(size))
        except ParameterError as exc:
            raise ExperimentError(f"material {self.name!r}: {exc}") from None
        p.tessellation.grains = None
        p.tessellation.mean_diameter = float(self.mean_diameter)
        for key, value in self.set.items():
            section, _, name = str(key).rpartition(".")
            target = getattr(p, section, None) if section else p
            if target is None or not hasattr(target, name):
                raise ExperimentError(f"material {self.name!r}: unknown generator parameter {key!r}")
            setattr(target, name, value)
        try:
            p.validate()
        except ParameterError as exc:
            raise ExperimentError(f"material {self.name!r}: {exc}") from None
        return p


@dataclass
class Study:
    name: str
    kind: str
    options: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.options.get(key, default)


@dataclass
class ExperimentConfig:
    """A parsed experiment file (see ``experiments/*.toml``)."""

    name: str
    source: Material
    target: Material
    image_size: int = 256
    target_images: int = 40
    source_images: int = 40
    folds: int = 3
    label_counts: tuple[int, ...] = (1, 2, 5, 10, 25)
    seed: int = 0
    metrics: tuple[str, ...] = ("boundary_f1", "grain_f1")
    training: dict = field(default_factory=dict)
    pretrain_steps: int = 150
    studies: list[Study] = field(default_factory=list)
    quick: bool = False
    path: str = ""
    findings: str = ""  # hand-written interpretation included in the report (path relative to the config)

    def train_config(self, **changes) -> TrainConfig:
        """The shared training options with ``changes`` on top."""
        opts = {**self.training, **changes}
        try:
            return TrainConfig(**opts)
        except (TypeError, ConfigError) as exc:
            raise ExperimentError(f"[training]: {exc}") from None

    def findings_path(self) -> Path | None:
        """The findings file, resolved next to the configuration file (None when not set)."""
        if not self.findings:
            return None
        p = Path(self.findings)
        return p if p.is_absolute() or not self.path else Path(self.path).parent / p

    def study(self, name: str) -> Study | None:
        return next((s for s in self.studies if s.name == name), None)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "quick": self.quick, "image_size": self.image_size,
            "target_images": self.target_images, "source_images": self.source_images, "folds": self.folds,
            "label_counts": list(self.label_counts), "seed": self.seed, "metrics": list(self.metrics),
            "pretrain_steps": self.pretrain_steps, "training": self.training,
            "source": vars(self.source), "target": vars(self.target),
            "studies": [{"name": s.name, "kind": s.kind, **s.options} for s in self.studies],
        }


def _positive_int(d: dict, key: str, default: int, minimum: int = 1) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ExperimentError(f"{key} must be a whole number >= {minimum}, got {v!r}")
    return v


def _material(name: str, d) -> Material:
    if not isinstance(d, dict):
        raise ExperimentError(f"[materials.{name}] must be a table")
    unknown = set(d) - {"preset", "mean_diameter", "set", "description"}
    if unknown:
        raise ExperimentError(f"[materials.{name}]: unknown key(s) {', '.join(sorted(unknown))}")
    md = d.get("mean_diameter", 24.0)
    if isinstance(md, bool) or not isinstance(md, (int, float)) or not math.isfinite(md) or md < 4:
        raise ExperimentError(f"[materials.{name}] mean_diameter must be a number >= 4 px, got {md!r}")
    if not isinstance(d.get("set", {}), dict):
        raise ExperimentError(f"[materials.{name}] set must be a table of generator parameters")
    m = Material(name=name, preset=str(d.get("preset", "sem")), mean_diameter=float(md),
                 set=dict(d.get("set", {})), description=str(d.get("description", "")))
    m.params(64)  # validates preset and overrides now, not in the middle of a run
    return m


def _merge_quick(data: dict) -> dict:
    quick = data.get("quick") or {}
    if not isinstance(quick, dict):
        raise ExperimentError("[quick] must be a table")
    out = copy.deepcopy({k: v for k, v in data.items() if k != "quick"})
    for k, v in quick.items():
        if k in ("training", "studies") and isinstance(v, dict):
            base = out.setdefault(k, {})
            for kk, vv in v.items():
                if k == "studies" and isinstance(vv, dict):
                    base.setdefault(kk, {}).update(vv)
                else:
                    base[kk] = vv
        else:
            out[k] = v
    return out


def parse_config(data: dict, *, quick: bool = False, path: str = "") -> ExperimentConfig:
    """An :class:`ExperimentConfig` from the parsed TOML ``data`` (``quick`` applies the ``[quick]`` table)."""
    if quick:
        data = _merge_quick(data)
    known = {"name", "materials", "image_size", "target_images", "source_images", "folds", "label_counts", "seed",
             "metrics", "training", "pretrain_steps", "studies", "quick", "description", "findings"}
    unknown = set(data) - known
    if unknown:
        raise ExperimentError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    mats = data.get("materials") or {}
    for role in ("source", "target"):
        if role not in mats:
            raise ExperimentError(f"[materials.{role}] is missing (the look trained on and the held-out look)")
    size = _positive_int(data, "image_size", 256, 64)
    if size % 32:
        raise ExperimentError(f"image_size must be a multiple of 32, got {size}")
    counts = data.get("label_counts", [1, 2, 5, 10, 25])
    if (not isinstance(counts, list) or not counts
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts)):
        raise ExperimentError(f"label_counts must be a list of whole numbers >= 1, got {counts!r}")
    metrics = data.get("metrics", ["boundary_f1", "grain_f1"])
    if (not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics)
            or set(metrics) - set(METRICS)):
        raise ExperimentError(f"metrics must be a non-empty list of {', '.join(METRICS)}, got {metrics!r}")
    if not isinstance(data.get("training", {}), dict):
        raise ExperimentError("[training] must be a table of training options")
    cfg = ExperimentConfig(
        name=str(data.get("name", Path(path).stem or "experiment")),
        source=_material("source", mats["source"]), target=_material("target", mats["target"]),
        image_size=size, target_images=_positive_int(data, "target_images", 40, 2),
        source_images=_positive_int(data, "source_images", 40, 2), folds=_positive_int(data, "folds", 3, 2),
        label_counts=tuple(sorted(set(counts))), seed=_positive_int(data, "seed", 0, 0),
        metrics=tuple(metrics),
        training=dict(data.get("training") or {}), pretrain_steps=_positive_int(data, "pretrain_steps", 150),
        quick=quick, path=str(path), findings=str(data.get("findings", "")))
    if "out" in cfg.training or "resume" in cfg.training:
        raise ExperimentError("[training] must not set out or resume (each run has its own folder)")
    cfg.train_config()  # validates the shared training options
    pool = cfg.target_images - math.ceil(cfg.target_images / cfg.folds)
    if max(cfg.label_counts) > pool:
        raise ExperimentError(f"label_counts up to {max(cfg.label_counts)} need at least that many training images "
                              f"per fold, but {cfg.target_images} target images in {cfg.folds} folds leave {pool}; "
                              "raise target_images")
    studies = data.get("studies") or {}
    if not isinstance(studies, dict) or not studies:
        raise ExperimentError("no [studies.NAME] tables: nothing to run")
    for name, opts in studies.items():
        if not isinstance(opts, dict) or "kind" not in opts:
            raise ExperimentError(f"[studies.{name}] needs kind = one of {', '.join(STUDY_KINDS)}")
        opts = dict(opts)
        kind = opts.pop("kind")
        if kind not in STUDY_KINDS:
            raise ExperimentError(f"[studies.{name}] kind {kind!r} is not one of {', '.join(STUDY_KINDS)}")
        _check_study(name, kind, opts, cfg)
        if "training" in opts:
            if not isinstance(opts["training"], dict):
                raise ExperimentError(f"[studies.{name}] training must be a table of training options")
            try:
                cfg.train_config(**opts["training"])
            except ExperimentError as exc:
                raise ExperimentError(f"[studies.{name}] {exc}") from None
        bad = [n for n in opts.get("label_counts", []) if n not in cfg.label_counts]
        if bad:
            raise ExperimentError(f"[studies.{name}] label_counts {bad} are not in the top-level label_counts")
        if kind in ("leakage", "pretraining") and any(st.kind == kind for st in cfg.studies):
            raise ExperimentError(f"[studies.{name}]: only one {kind} study per experiment")
        cfg.studies.append(Study(name=str(name), kind=kind, options=opts))
    cfg.studies.sort(key=lambda s: STUDY_KINDS.index(s.kind))
    return cfg


def _names(name: str, opts: dict, key: str, allowed: tuple[str, ...]) -> None:
    if key not in opts:
        return
    v = opts[key]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise ExperimentError(f"[studies.{name}] {key} must be a non-empty list of names from {', '.join(allowed)}")
    for x in v:
        if x not in allowed:
            one = {"strategies": "strategy", "modes": "mode", "models": "model"}[key]
            raise ExperimentError(f"[studies.{name}] {one} {x!r} is not one of {', '.join(allowed)}")


def _check_study(name: str, kind: str, opts: dict, cfg: ExperimentConfig) -> None:
    """One-line errors for study options that would otherwise fail half-way through an experiment."""
    _names(name, opts, "strategies", STRATEGIES)
    _names(name, opts, "modes", ADAPT_MODES)
    _names(name, opts, "models", ("source", "synthetic"))
    if "strategy" in opts and opts["strategy"] not in STRATEGIES:
        raise ExperimentError(f"[studies.{name}] strategy {opts['strategy']!r} is not one of {', '.join(STRATEGIES)}")
    counts = opts.get("label_counts", [])
    if not isinstance(counts, list) or any(isinstance(n, bool) or not isinstance(n, int) for n in counts):
        raise ExperimentError(f"[studies.{name}] label_counts must be a list of whole numbers")
    if kind == "pretraining" and "synthetic" in opts:
        from ..training.sources import synthetic_source

        try:
            synthetic_source(str(opts["synthetic"]))
        except GrainLabError as exc:
            raise ExperimentError(f"[studies.{name}] {exc}") from None
    if kind == "leakage":
        for key, lo in (("images", 2), ("tiles_per_image", 1), ("tile", 32)):
            v = opts.get(key, {"images": 4, "tiles_per_image": 16, "tile": 128}[key])
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ExperimentError(f"[studies.{name}] {key} must be a whole number >= {lo}, got {v!r}")
        if opts.get("tile", 128) > cfg.image_size or opts.get("tile", 128) % 32:
            raise ExperimentError(f"[studies.{name}] tile must be a multiple of 32 and at most image_size "
                                  f"({cfg.image_size}), got {opts.get('tile', 128)}")
        pool = cfg.target_images - math.ceil(cfg.target_images / cfg.folds)
        if opts.get("images", 4) > pool:
            raise ExperimentError(f"[studies.{name}] images must be at most the {pool} training images of a fold")
        for key, lo, hi, default in (("val_fraction", 0.0, 1.0, 0.25), ("session_variation", 0.0, 3.0, 0.0)):
            v = opts.get(key, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ExperimentError(f"[studies.{name}] {key} must be a number, got {v!r}")
            if not (lo < v < hi if key == "val_fraction" else lo <= v <= hi):
                raise ExperimentError(f"[studies.{name}] {key} must be in {'(' if key == 'val_fraction' else '['}"
                                      f"{lo:g}, {hi:g}{')' if key == 'val_fraction' else ']'}, got {v}")


def load_config(path: str | Path, *, quick: bool = False) -> ExperimentConfig:
    """Read and check an experiment file."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ExperimentError(f"{p}: no such experiment file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(data, quick=quick, path=str(p))


__all__ = ["ADAPT_MODES", "ExperimentConfig", "ExperimentError", "Material", "STUDY_KINDS", "Study",
           "load_config", "parse_config"]
