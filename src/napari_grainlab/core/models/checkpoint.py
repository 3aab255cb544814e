"""Checkpoints: ``model.safetensors`` + ``model.json`` in one folder (the contract). Never pickle.

``model.json`` records the architecture (:class:`ModelSpec`), the task and classes, the input
normalisation, the outputs, the training configuration, metrics and the intensity reference used for
histogram matching. A training run folder holds ``best/`` and ``last/``; loading the run folder loads
``best``.

A checkpoint folder is written as one unit (:func:`~napari_grainlab.core._io.atomic_write_folder`): a
kill at any moment leaves the old or the new folder, never the weights of one epoch next to the
description or optimizer state of another. Loading checks that the weights fit the network that
``model.json`` describes before any tensor is copied (:func:`check_fit`), so a mismatch is one line.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import atomic_write_folder
from ..errors import CheckpointError, ModelError

if TYPE_CHECKING:
    import torch

# torch and the networks are imported inside the functions that build or load a network: finding a
# checkpoint's files and reading its description (checkpoint_files, read_metadata, weight_shapes)
# stays torch-free, so the docks can check a model before the engine has loaded

FORMAT = "napari-grainlab-model"
FORMAT_VERSION = 1
#: the files of the checkpoint contract
MODEL_FILES = ("model.safetensors", "model.json")


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """Resolve ``path`` (folder, run folder, .safetensors or .json, or a built-in model's registry name such as
    ``generalist``, see :mod:`.registry`) to (weights, metadata) files."""
    from .registry import resolve_model

    p = resolve_model(path)
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
    """Whether ``path`` is one of our checkpoints. A registry name whose weights are missing or corrupt raises
    its one-line :class:`~napari_grainlab.core.errors.WeightsError` instead of answering False, so that the
    caller reports that rather than "not a model"."""
    try:
        checkpoint_files(path)
        return True
    except OSError:
        return False
    except CheckpointError:
        from .registry import is_registry_name

        if is_registry_name(path):
            raise
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


def save_checkpoint(folder: str | Path, model, metadata: dict | None = None,
                    extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``model`` and its metadata to ``folder`` as one unit (weights first, description last).

    The files go to a new folder next to ``folder``, which then replaces it whole
    (:func:`~napari_grainlab.core._io.atomic_write_folder`). ``extra``, when given, is called with the new
    folder to write more files of the same unit (a training run's optimizer state). Other files already
    in ``folder`` are kept; temporaries (``.*.part``) left by a killed write are not.
    """
    from safetensors.torch import save

    from ... import __version__
    from .networks import seg_outputs

    folder = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    mean, std = model.input_stats()
    meta.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_grainlab_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "spec": model.spec.to_dict(),
        "task": model.task,
        "backbone": model.spec.backbone,
        "classes": list(model.spec.classes),
        "outputs": list(getattr(model, "outputs", seg_outputs(model.spec.twin_class))) if model.task == "segment"
        else list(model.spec.classes),
        "input": {"channels": model.spec.in_chans, "range": [0.0, 1.0],
                  "normalization": "per-image percentile stretch (0.1, 99.9) to [0, 1], then (x - mean) / std",
                  "mean": _per_channel(mean), "std": _per_channel(std), "size_multiple": int(model.stride)},
    })
    with atomic_write_folder(folder) as new:
        (new / "model.safetensors").write_bytes(save(state, metadata={"format": FORMAT}))
        (new / "model.json").write_text(json.dumps(meta, indent=2, default=_jsonable), encoding="utf-8")
        if extra is not None:
            extra(new)
        _carry_over(folder, new)
    return folder


def copy_checkpoint(source: str | Path, folder: str | Path) -> Path:
    """Write the model files of checkpoint ``source`` to ``folder`` as one unit (other files there are kept)."""
    weights, meta = checkpoint_files(source)
    folder = Path(folder)
    with atomic_write_folder(folder) as new:
        shutil.copyfile(weights, new / "model.safetensors")
        shutil.copyfile(meta, new / "model.json")
        _carry_over(folder, new)
    return folder


def _carry_over(old: Path, new: Path) -> None:
    """Keep the files of ``old`` that the new folder does not replace (hard links where possible)."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        target = new / entry.name
        if os.path.lexists(target) or (entry.name.startswith(".") and entry.name.endswith(".part")):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _per_channel(values: list[float]) -> float | list[float]:
    """One number for a grey model (as older model.json files have it), one per channel for a colour one."""
    return values[0] if len(values) == 1 else values


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


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(int(n)) for n in shape) + "]"


def misfit(model_shapes: Mapping[str, tuple], weight_shapes: Mapping[str, tuple]) -> str:
    """What keeps weights of ``weight_shapes`` (name -> shape) from loading into a network of ``model_shapes``:
    counts with one example each, e.g. ``12 missing keys such as 'encoder.conv1.weight'``; '' when they fit."""
    missing = [k for k in model_shapes if k not in weight_shapes]
    unexpected = sorted(k for k in weight_shapes if k not in model_shapes)
    other = [k for k in model_shapes if k in weight_shapes and tuple(model_shapes[k]) != tuple(weight_shapes[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s such as' if len(missing) > 1 else ''} '{missing[0]}'")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key{'s such as' if len(unexpected) > 1 else ''} "
                     f"'{unexpected[0]}'")
    if other:
        k = other[0]
        parts.append(f"{len(other)} of different shape{' such as' if len(other) > 1 else ''} '{k}' "
                     f"({_shape_text(weight_shapes[k])} in the weights, {_shape_text(model_shapes[k])} in the model)")
    return ", ".join(parts)


def check_fit(model, weight_shapes: Mapping[str, tuple], path: str | Path, described_by: str = "model.json") -> None:
    """Raise :class:`CheckpointError` (one line) unless weights of ``weight_shapes`` fit ``model`` exactly.

    ``described_by`` says where the model's backbone came from (``model.json``, the training configuration).
    """
    text = misfit({k: tuple(v.shape) for k, v in model.state_dict().items()}, weight_shapes)
    if text:
        raise CheckpointError(f"{path}: the weights do not fit backbone {model.spec.backbone} ({described_by}): "
                              f"{text}")


def weight_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the checkpoint's weights, read from the file's header only."""
    from safetensors import safe_open

    weights, _ = checkpoint_files(path)
    try:
        with safe_open(str(weights), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a corrupt file
        raise CheckpointError(f"{weights}: corrupt weights file ({str(exc).splitlines()[0] if str(exc) else exc})"
                              ) from None


def _model_of(meta: dict, path: str | Path, device: str | torch.device | None = None):
    """The (untrained) network that ``model.json`` describes; its faults as one-line CheckpointErrors."""
    import torch

    from .networks import ModelSpec, build_model

    spec_dict = meta.get("spec")
    if not isinstance(spec_dict, dict):
        raise CheckpointError(f"{path}: model.json does not describe the network (no 'spec')")
    try:
        spec = ModelSpec.from_dict(spec_dict)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: model.json: unusable 'spec' ({' '.join(str(exc).split())})") from None
    top = meta.get("backbone")
    if top is not None and top != spec.backbone:
        raise CheckpointError(f"{path}: model.json names backbone {top} but its spec {spec.backbone}")
    try:
        if device is None:
            return build_model(spec)
        with torch.device(device):
            return build_model(spec)
    except ModelError as exc:
        raise CheckpointError(f"{path}: model.json: {exc}") from None


def check_checkpoint(path: str | Path) -> dict:
    """Check without loading any tensor that ``path`` is a model whose weights fit its description.

    Reads ``model.json`` and the weights file's header, builds the described network without memory
    (PyTorch's meta device) and compares names and shapes; returns the metadata. Raises the one-line
    :class:`CheckpointError` that :func:`load_checkpoint` would.
    """
    meta = read_metadata(path)
    model = _model_of(meta, path, device="meta")
    check_fit(model, weight_shapes(path), path)
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model stored at ``path``; returns ``(model in eval mode, metadata)``.

    Weights that do not fit the network described in ``model.json`` (another backbone, other decoder
    channels) raise a one-line :class:`CheckpointError` naming the backbone and the mismatch, before
    anything is loaded into the network.
    """
    meta = read_metadata(path)
    model = _model_of(meta, path)
    state = load_state(path)
    check_fit(model, {k: tuple(v.shape) for k, v in state.items()}, path)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, meta


def load_into(model, path: str | Path) -> list[str]:
    """Initialise ``model`` from one of our checkpoints (e.g. synthetic pre-training -> real fine-tuning).

    The backbones must agree. A checkpoint of the other input channel count (1 <-> 3) is converted in the
    layers that see the image (:func:`~.networks.adapt_in_chans`), so an older grey model can be fine-tuned
    on colour data and the other way round. A segmentation head of another output count (a model without
    the twin class initialising one with it, or the other way round) keeps the channels both have
    (boundary, distance); the twin channel of the new head starts fresh. Tensors whose shape still differs
    (a classification head with other classes) are left at their fresh initialisation; their names are
    returned (a partly copied head among them).
    """
    from .networks import adapt_in_chans

    meta = read_metadata(path)
    if meta.get("backbone") != model.spec.backbone or meta.get("task") != model.task:
        raise CheckpointError(f"{path}: a {meta.get('task')} model on {meta.get('backbone')} cannot initialise a "
                              f"{model.task} model on {model.spec.backbone}")
    state = load_state(path)
    spec = meta.get("spec")
    src = int(spec.get("in_chans", 1)) if isinstance(spec, dict) else 1
    if src != model.spec.in_chans:
        state = adapt_in_chans(state, src, model)
    own = model.state_dict()
    if model.task == "segment":
        for key in ("head.weight", "head.bias"):
            if key in state and key in own and state[key].shape[1:] == own[key].shape[1:] \
                    and state[key].shape[0] != own[key].shape[0]:
                n = min(state[key].shape[0], own[key].shape[0])
                merged = own[key].clone()
                merged[:n] = state[key][:n]
                state[key] = merged  # the shared output channels; the others keep their fresh values
    fresh = [k for k, v in own.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in fresh}, strict=False)
    return fresh
