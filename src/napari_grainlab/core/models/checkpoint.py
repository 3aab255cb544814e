"""Checkpoints: ``model.safetensors`` + ``model.json`` in one folder (the contract). Never pickle.

``model.json`` records the architecture (:class:`ModelSpec`), the task and classes, the input
normalisation, the outputs, the training configuration, metrics and the intensity reference used for
histogram matching. A training run folder holds ``best/`` and ``last/``; loading the run folder loads
``best``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .._io import atomic_write_bytes, atomic_write_text
from ..errors import CheckpointError
from .networks import SEG_OUTPUTS, ModelSpec, build_model

FORMAT = "napari-grainlab-model"
FORMAT_VERSION = 1




def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """Resolve ``path`` (folder, run folder, .safetensors or .json) to (weights, metadata) files."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / "model.json").is_file():
            p = p / "model.json"
        elif (p / "best" / "model.json").is_file():
            p = p / "best" / "model.json"
        elif (p / "last" / "model.json").is_file():
            p = p / "last" / "model.json"
        else:
            raise CheckpointError(f"{path}: no model.json in this folder (nor in best/ or last/)")
    if p.suffix == ".safetensors":
        meta = p.with_suffix(".json")
        weights = p
    elif p.suffix == ".json":
        meta = p
        weights = p.with_suffix(".safetensors")
    elif p.suffix in (".pth", ".pt", ".pkl", ".bin", ".ckpt"):
        raise CheckpointError(f"{p.name}: pickle-based files are not napari-grainlab models; models are "
                              "model.safetensors + model.json")
    else:
        raise CheckpointError(f"{path}: not a model (expected a folder with model.safetensors + model.json)")
    if not meta.is_file():
        raise CheckpointError(f"{meta}: metadata file missing")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file missing")
    return weights, meta


def is_checkpoint(path: str | Path) -> bool:
    try:
        checkpoint_files(path)
        return True
    except (CheckpointError, OSError):
        return False


def read_metadata(path: str | Path) -> dict:
    _, meta = checkpoint_files(path)
    try:
        data = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta}: unreadable metadata ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{meta}: not a napari-grainlab model description")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{meta}: written by a newer napari-grainlab (format {data['format_version']})")
    return data


def save_checkpoint(folder: str | Path, model, metadata: dict | None = None) -> Path:
    """Write ``model`` and its metadata to ``folder`` atomically (weights first, description last)."""
    from safetensors.torch import save

    from ... import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_grainlab_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "spec": model.spec.to_dict(),
        "task": model.task,
        "backbone": model.spec.backbone,
        "classes": list(model.spec.classes),
        "outputs": list(SEG_OUTPUTS) if model.task == "segment" else list(model.spec.classes),
        "input": {"channels": model.spec.in_chans, "range": [0.0, 1.0],
                  "normalization": "per-image percentile stretch (0.1, 99.9) to [0, 1], then (x - mean) / std",
                  "mean": float(model.in_mean), "std": float(model.in_std),
                  "size_multiple": int(model.stride)},
    })
    atomic_write_bytes(folder / "model.safetensors", save(state, metadata={"format": FORMAT}))
    atomic_write_text(folder / "model.json", json.dumps(meta, indent=2, default=_jsonable))
    return folder


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights, _ = checkpoint_files(path)
    try:
        return dict(load_file(str(weights)))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a corrupt file
        raise CheckpointError(f"{weights}: corrupt weights file ({str(exc).splitlines()[0]})") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model stored at ``path``; returns ``(model in eval mode, metadata)``."""
    meta = read_metadata(path)
    spec = ModelSpec.from_dict(meta.get("spec", {}))
    model = build_model(spec)
    state = load_state(path)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{path}: weights do not match the described architecture "
                              f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected)")
    model.to(device).eval()
    return model, meta


def load_into(model, path: str | Path) -> list[str]:
    """Initialise ``model`` from one of our checkpoints (e.g. synthetic pre-training -> real fine-tuning).

    The backbones must agree. Tensors whose shape differs (a classification head with other classes) are
    left at their fresh initialisation; their names are returned.
    """
    meta = read_metadata(path)
    if meta.get("backbone") != model.spec.backbone or meta.get("task") != model.task:
        raise CheckpointError(f"{path}: a {meta.get('task')} model on {meta.get('backbone')} cannot initialise a "
                              f"{model.task} model on {model.spec.backbone}")
    state = load_state(path)
    own = model.state_dict()
    fresh = [k for k, v in own.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in fresh}, strict=False)
    return fresh
