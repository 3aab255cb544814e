"""The training loop: ``fit()`` is a generator of progress events with a stop flag.

No threads and no Qt in here: the CLI iterates it with a progress bar, the napari dock runs it in a
``thread_worker``. Stop requests are honoured between steps; the run then writes its ``last`` checkpoint and
keeps the ``best`` one.
"""
from __future__ import annotations

import itertools
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write_text, recover_folder, remove_part_files
from ..data.io import constant_image_message
from ..errors import CheckpointError, ConfigError, DataError
from ..inference.tiling import resolve_device  # one device check for training and prediction
from ..models import (
    ModelSpec,
    build_model,
    is_checkpoint,
    load_into,
    load_state_dict_file,
    resolve_weights,
    save_checkpoint,
)
from ..models.checkpoint import check_fit, copy_checkpoint, load_state, read_metadata
from .config import TrainConfig
from .events import (
    Checkpoint,
    CrossValidated,
    EarlyStopped,
    Epoch,
    Finished,
    FoldStarted,
    Started,
    Step,
    TrainWarning,
    Unfrozen,
)
from .losses import classification_loss, segmentation_loss
from .strategies import apply_stages, param_groups, trainable_stages


def _stopper(stop) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set
    return stop


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- data
def _groups(samples) -> list[str]:
    return [s.group for s in samples]


def _split(cfg: TrainConfig, train: list, val: list | None) -> tuple[list, list]:
    from ..data.splits import group_split, spatial_split

    if val is not None or not train or cfg.val_fraction == 0:
        return train, list(val or [])
    groups = _groups(train)
    if len(set(groups)) >= 2:
        tr, va = group_split(groups, cfg.val_fraction, seed=cfg.seed)
        return [train[i] for i in tr], [train[i] for i in va]
    if cfg.task == "segment" and len(train) == 1:
        a, b = spatial_split(train[0], cfg.val_fraction)
        return [a], [b]
    raise DataError("validation needs at least 2 source micrographs (or one segmentation image, which is split "
                    "spatially); add images, pass validation data, or set val_fraction to 0")


def _synthetic_val(source, n: int, size: int, seed: int, twins: bool = False):
    from ..data.datasets import SegSample

    rng = np.random.default_rng([seed, 7919])
    out = []
    with_twins = twins and callable(getattr(source, "sample_twins", None))
    for i in range(n):
        img, lab, tw = source.sample_twins(rng, size) if with_twins else (*source.sample(rng, size), None)
        out.append(SegSample(name=f"synthetic-val-{i}", image=img, labels=lab, group=f"synthetic-val-{i}",
                             pixel_size=None, twins=tw))
    return out


def _check_twin_data(train: list, source, warn: list) -> None:
    """With ``twin_class``: some training data must have twin ground truth (a twin mask or a synthetic
    source that draws them); images without a twin mask are named in a warning (their twin channel is
    not trained)."""
    synthetic = source is not None and callable(getattr(source, "sample_twins", None))
    missing = [s.name for s in train if getattr(s, "twins", None) is None]
    if not synthetic and len(missing) == len(train):
        raise DataError("twin_class: no training image has a twin-boundary mask (twins/NAME.tif next to images/ "
                        "and labels/) and no synthetic data is used; add masks, use synthetic data, or turn "
                        "twin_class off")
    if missing:
        shown = ", ".join(missing[:5]) + (f", … ({len(missing) - 5} more)" if len(missing) > 5 else "")
        warn.append(f"twin_class: {len(missing)} training image(s) have no twin-boundary mask and do not train the "
                    f"twin channel: {shown}")


def _default_steps(cfg: TrainConfig, train: list) -> int:
    pixels = sum(int(np.prod(np.shape(s.image)[:2])) for s in train) if train else 0
    steps = math.ceil(2 * pixels / (cfg.patch_size ** 2 * cfg.batch_size)) if pixels else 50
    return int(min(max(steps, 10), 500))


#: a training image is not enlarged beyond this many pixels (8192 x 8192) to meet the grain diameter
MAX_SCALED_PIXELS = 1 << 26


def _measured_diameter(samples) -> float | None:
    """The median over ``samples`` of their grain diameters (:func:`~..data.targets.mean_grain_diameter`)."""
    from ..data.targets import mean_grain_diameter

    values = [d for d in (mean_grain_diameter(s.labels) for s in samples) if d is not None]
    return float(np.median(values)) if values else None


def _to_grain_scale(samples: list, target: float, warn: list) -> list:
    """Each segmentation sample resized so that its grain diameter is about ``target`` px."""
    from ..data.datasets import rescale_sample
    from ..data.targets import mean_grain_diameter

    out = []
    for s in samples:
        d = mean_grain_diameter(s.labels)
        if d is None:
            warn.append(f"{s.name}: no annotated grain to measure; trained at its own scale")
            out.append(s)
            continue
        factor = target / d
        h, w = s.labels.shape
        cap = math.sqrt(MAX_SCALED_PIXELS / (h * w))
        if factor > max(cap, 1.0):
            warn.append(f"{s.name}: enlarging it {factor:.2g}x to grains of {target:g} px would make it larger than "
                        f"{MAX_SCALED_PIXELS:,} px; enlarged {max(cap, 1.0):.2g}x")
            factor = max(cap, 1.0)
        out.append(rescale_sample(s, factor) if abs(factor - 1.0) > 1e-3 else s)
    return out


def _checkpoint_diameter(weights: str) -> float | None:
    """The training grain scale (px) that the grainlab model at ``weights`` records, None when none."""
    if not is_checkpoint(weights):
        return None
    value = read_metadata(weights).get("grain_diameter")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _checkpoint_channels(weights: str) -> int | None:
    """The input channels of the grainlab model at ``weights`` (1 for older ones), None when it is none."""
    if not is_checkpoint(weights):
        return None
    spec = read_metadata(weights).get("spec")
    return int(spec.get("in_chans", 1)) if isinstance(spec, dict) else 1


def _loader(ds, batch_size: int, shuffle: bool, cfg: TrainConfig, device: torch.device):
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=cfg.workers,
                                       pin_memory=device.type == "cuda", drop_last=False,
                                       persistent_workers=False)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ------------------------------------------------------------------------------------------- metrics
def boundary_counts(logits: torch.Tensor, batch: dict, tolerance: int = 2, twin: bool = False) -> torch.Tensor:
    """(true positives of prediction, predicted, true positives of truth, true) for boundary F1.

    A predicted boundary pixel counts when a true boundary pixel lies within ``tolerance`` px (square
    neighbourhood) and vice versa; only annotated pixels take part.  ``twin=True``: the same counts for
    the twin channel (2) against ``twin_boundary`` on the pixels of ``twin_valid``.
    """
    channel, target, mask = ((2, "twin_boundary", "twin_valid") if twin else (0, "boundary", "valid"))
    valid = batch[mask] > 0.5
    pred = (logits[:, channel:channel + 1].float() > 0) & valid
    true = (batch[target] > 0.5) & valid
    k = 2 * tolerance + 1
    near_true = F.max_pool2d(true.float(), k, 1, tolerance) > 0
    near_pred = F.max_pool2d(pred.float(), k, 1, tolerance) > 0
    return torch.stack([(pred & near_true).sum(), pred.sum(), (true & near_pred).sum(), true.sum()]).double()


def f1_from_counts(c: torch.Tensor) -> dict:
    tp_p, n_p, tp_t, n_t = (float(x) for x in c)
    precision = tp_p / n_p if n_p else 0.0
    recall = tp_t / n_t if n_t else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"boundary_f1": f1, "boundary_precision": precision, "boundary_recall": recall}


@torch.no_grad()
def evaluate(model, loader, cfg: TrainConfig, device: torch.device, autocast, stop=None) -> dict:
    """Validation loss and metrics over ``loader`` (boundary F1 / accuracy and macro F1)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    counts = torch.zeros(4, dtype=torch.float64)
    twin_counts = torch.zeros(4, dtype=torch.float64)
    ys, ps = [], []
    stop = _stopper(stop)
    try:
        for batch in loader:
            batch = _to(batch, device)
            with autocast():
                out = model(batch["image"])
            if cfg.task == "segment":
                loss = segmentation_loss(out, batch)
                counts += boundary_counts(out, batch).cpu()
                if "twin_valid" in batch and out.shape[1] >= 3:
                    twin_counts += boundary_counts(out, batch, twin=True).cpu()
            else:
                loss = classification_loss(out, batch["target"])
                ys.append(batch["target"].cpu())
                ps.append(out.float().argmax(1).cpu())
            bs = batch["image"].shape[0]
            total += float(loss) * bs
            n += bs
            if stop():
                break
    finally:
        model.train(was)
    metrics = {"val_loss": total / max(n, 1)}
    if cfg.task == "segment":
        metrics.update(f1_from_counts(counts))
        if cfg.twin_class and twin_counts[3] > 0:  # validation images with twin boundaries in their masks
            metrics["twin_boundary_f1"] = f1_from_counts(twin_counts)["boundary_f1"]
    elif ys:
        from ..metrics import classification_metrics

        cm = classification_metrics(torch.cat(ys).numpy(), torch.cat(ps).numpy(), len(cfg.classes),
                                    class_names=list(cfg.classes))
        metrics.update({k: v for k, v in cm.items() if k in ("accuracy", "macro_f1")})
        metrics["confusion"] = cm.get("confusion")
    return metrics


# ------------------------------------------------------------------------------------- checkpointing
def _save_training_state(folder: Path, optimizer, state: dict) -> None:
    """Write the optimizer state and the run's progress into ``folder``, the new ``last/`` being written as one
    unit by :func:`save_checkpoint` (which syncs it and swaps it in)."""
    from safetensors.torch import save

    sd = optimizer.state_dict()
    tensors = {}
    scalars = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    (folder / "optimizer.safetensors").write_bytes(save(tensors) if tensors else save({"_": torch.zeros(1)}))
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]]
    (folder / "training_state.json").write_text(
        json.dumps({"param_groups": groups, "scalars": scalars, **state}, indent=2), encoding="utf-8")


def _clean_run_folder(out: Path) -> None:
    """Remove what a killed run left behind: half-written checkpoint folders (a folder moved away just
    before its replacement was renamed in is put back) and ``.part`` temporaries."""
    for sub in ("best", "last"):
        recover_folder(out / sub)
    for folder in (out, out / "best", out / "last"):
        remove_part_files(folder)


def _checkpoint_epoch(folder: Path) -> int | None:
    try:
        return int(read_metadata(folder).get("epoch"))
    except (CheckpointError, TypeError, ValueError):
        return None


def _resume_epoch(last_dir: Path) -> int:
    """The epochs completed by the run whose ``last/`` is ``last_dir``; CheckpointError for a folder whose parts
    are of different epochs (written by a version that did not write it as one unit, then killed)."""
    try:
        state_epoch = int(json.loads((last_dir / "training_state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{last_dir / 'training_state.json'}: unreadable training state ({exc})") from None
    weights_epoch = _checkpoint_epoch(last_dir)
    if weights_epoch != state_epoch:
        raise CheckpointError(f"{last_dir}: an incomplete checkpoint (weights of epoch {weights_epoch}, optimizer "
                              f"state of epoch {state_epoch}), left by a run killed while writing it; it cannot be "
                              f"resumed: train again, or start a new run from its weights (--weights {last_dir})")
    return state_epoch


def _load_training_state(folder: Path, optimizer) -> dict:
    from safetensors.torch import load_file

    meta = json.loads((folder / "training_state.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict = {}
    for key, v in tensors.items():
        if key == "_":
            continue
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for key, v in meta.pop("scalars").items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


# --------------------------------------------------------------------------------------------- model
def _make_model(cfg: TrainConfig, warn: list, in_chans: int = 1) -> tuple[torch.nn.Module, str]:
    spec = ModelSpec(task=cfg.task, backbone=cfg.backbone, num_classes=max(len(cfg.classes), 2),
                     classes=list(cfg.classes), dropout=cfg.dropout, decoder_channels=cfg.decoder_channels,
                     in_chans=in_chans, twin_class=cfg.twin_class and cfg.task == "segment")
    weights = str(cfg.weights)
    if cfg.strategy == "scratch":
        if weights.lower() not in ("none", "imagenet", "random", ""):
            warn.append(f"strategy scratch trains from random weights; --weights {weights} is ignored")
        return build_model(spec), "random initialisation (scratch)"
    if weights.lower() in ("none", "random", ""):
        warn.append(f"strategy {cfg.strategy} with random weights: the frozen layers will stay random")
        return build_model(spec), "random initialisation"
    if is_checkpoint(weights):
        model = build_model(spec)
        src = _checkpoint_channels(weights) or 1
        fresh = load_into(model, weights)
        desc = f"checkpoint {weights}"
        if src != in_chans:
            desc += f" (converted from {src} to {in_chans} input channels)"
        if fresh:
            desc += f" ({len(fresh)} tensors re-initialised)"
        return model, desc
    state, desc = resolve_weights(cfg.backbone, weights)
    return build_model(spec, state), desc


def _amp(cfg: TrainConfig, device: torch.device):
    if not cfg.amp or device.type != "cuda":
        return "off", (lambda: torch.autocast(device.type, enabled=False)), None
    if torch.cuda.is_bf16_supported():
        return "bf16", (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    scaler = torch.amp.GradScaler("cuda")
    return "fp16", (lambda: torch.autocast("cuda", dtype=torch.float16)), scaler


# ----------------------------------------------------------------------------------------------- fit
def fit(config: TrainConfig, train: Sequence | None = None, val: Sequence | None = None,
        stop=None) -> Iterator:
    """Train a model; yields :mod:`events` and returns (as the generator's value) the :class:`Finished` event.

    Parameters
    ----------
    config : TrainConfig
    train : list of ``SegSample`` / ``ClsSample`` (see :mod:`napari_grainlab.core.data`), may be empty for
        synthetic-only pre-training (segmentation).  Images are grey or colour (mixed is fine); the model takes
        ``config.channels`` channels (auto: 3 when any image is colour or the starting weights are a 3-channel
        grainlab model, else 1), and a grainlab model of the other channel count is converted
        (:func:`~napari_grainlab.core.models.networks.adapt_in_chans`).  With ``config.grain_diameter`` every
        segmentation sample (and ``val``) is resized so that its grains are that many px across; the checkpoint
        records the training scale as ``grain_diameter`` (that target, else the data's median grain diameter).
    val : optional validation samples; by default a group split of ``train`` (``config.val_fraction``), or
        synthetic validation images when training on synthetic data only.
    stop : a ``threading.Event`` or a callable returning True to stop after the current step.
    """
    from ..data.augment import build_augmentation

    cfg = config
    t_start = time.perf_counter()
    should_stop = _stopper(stop)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train = list(train or [])
    warnings: list[str] = []
    for sample in [*train, *(val or [])]:
        message = constant_image_message(sample.image, f"training image {getattr(sample, 'name', '?')!r}")
        if message:
            warnings.append(message)

    # ---- data
    # the grain scale to train at: the option, else (fine-tuning one of our models) the scale that model
    # learnt, so that its scale prior and the prediction-time rescaling stay valid
    target_diameter = cfg.grain_diameter
    if target_diameter is None and cfg.task == "segment" and cfg.strategy != "scratch":
        target_diameter = _checkpoint_diameter(str(cfg.weights))
    source = None
    ratio = cfg.synthetic_ratio
    if cfg.task == "segment":
        if not train:
            if cfg.synthetic == "none":
                raise DataError("no training data: give annotated images or enable synthetic data")
            ratio = 1.0
        if ratio > 0 and cfg.synthetic != "none":
            from .sources import synthetic_source

            source = synthetic_source(cfg.synthetic, diameter=target_diameter)
        elif ratio > 0:
            raise ConfigError("synthetic_ratio > 0 needs a synthetic source (synthetic=randomized or a preset)")
    else:
        if not train:
            raise DataError("no training data: classification needs images in class folders")
        if len(cfg.classes) < 2:
            raise DataError("classification needs at least 2 classes")
        bad = sorted({s.label for s in train} - set(range(len(cfg.classes))))
        if bad:
            raise DataError(f"class indices {bad} have no class name")
    from ..data.channels import is_colour

    colour_data = any(is_colour(np.asarray(s.image)) for s in [*train, *(val or [])]) or \
        getattr(source, "channels", 1) == 3
    colour_weights = cfg.strategy != "scratch" and _checkpoint_channels(str(cfg.weights)) == 3
    in_chans = cfg.in_chans(colour_data, colour_weights)
    measured_diameter = _measured_diameter(train) if cfg.task == "segment" else None
    if target_diameter is not None:
        if cfg.task == "segment":
            train = _to_grain_scale(train, target_diameter, warnings)
            val = _to_grain_scale(list(val), target_diameter, warnings) if val is not None else None
        else:
            warnings.append("grain_diameter applies to segmentation only; classification trains at the data's scale")
    train, val = _split(cfg, train, list(val) if val is not None else None)
    val_tile = cfg.val_tile or min(2 * cfg.patch_size, 512)
    if not val and source is not None and cfg.val_synthetic > 0 and cfg.val_fraction > 0:
        val = _synthetic_val(source, cfg.val_synthetic, val_tile, cfg.seed, twins=cfg.twin_class)
    if cfg.twin_class and cfg.task == "segment":
        _check_twin_data(train, source, warnings)
    steps = cfg.steps_per_epoch or _default_steps(cfg, train)
    augment = build_augmentation(cfg.augment, oriented_growth=cfg.oriented_growth,
                                 patch_size=cfg.patch_size) if cfg.augment else None
    if cfg.task == "segment":
        from ..data.patches import SegPatchDataset, SegTileDataset

        train_ds = SegPatchDataset(train, cfg.patch_size, augment, length=steps * cfg.batch_size, seed=cfg.seed,
                                   synthetic=source, synthetic_ratio=ratio, boundary_width=cfg.boundary_width,
                                   in_chans=in_chans, twin_class=cfg.twin_class)
        val_ds = SegTileDataset(val, val_tile, boundary_width=cfg.boundary_width, in_chans=in_chans,
                                twin_class=cfg.twin_class) if val else None
    else:
        from ..data.patches import ClsPatchDataset, ClsTileDataset

        train_ds = ClsPatchDataset(train, cfg.patch_size, augment, length=steps * cfg.batch_size, seed=cfg.seed,
                                   in_chans=in_chans)
        val_ds = ClsTileDataset(val, cfg.patch_size, in_chans=in_chans) if val else None

    # ---- model, optimiser, schedule
    model, weights_desc = _make_model(cfg, warnings, in_chans)
    model.to(device)
    stages = trainable_stages(cfg.strategy, model.num_stages, 0, cfg.finetune_stages, cfg.unfreeze_every)
    n_trainable = apply_stages(model, stages)
    groups = param_groups(model, cfg.lr, cfg.backbone_lr_factor, cfg.weight_decay, cfg.strategy)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * steps
    warmup = max(1, int(round(cfg.warmup_epochs * steps)))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    amp_name, autocast, scaler = _amp(cfg, device)

    out = Path(cfg.out) if cfg.out else Path(tempfile.mkdtemp(prefix="grainlab-run-"))
    out.mkdir(parents=True, exist_ok=True)
    best_dir, last_dir = out / "best", out / "last"
    monitor = cfg.monitor_metric
    higher = monitor != "val_loss" and not monitor.endswith("loss")
    if not val_ds:
        monitor, higher = "train_loss", False
        warnings.append("no validation data: the best checkpoint is chosen by training loss and early stopping "
                        "watches the training loss")
    start_epoch, best, best_epoch, best_metrics, bad_epochs, history = 0, None, 0, {}, 0, []
    _clean_run_folder(out)
    if cfg.resume:
        if not (last_dir / "training_state.json").is_file():
            raise CheckpointError(f"{out}: nothing to resume (no last/training_state.json)")
        completed = _resume_epoch(last_dir)
        state = load_state(last_dir)
        check_fit(model, {k: tuple(v.shape) for k, v in state.items()}, last_dir, "the training configuration")
        model.load_state_dict(state)
        del state
        st = _load_training_state(last_dir, optimizer)
        start_epoch = completed
        best, best_epoch, bad_epochs = st.get("best"), int(st.get("best_epoch", 0)), int(st.get("bad_epochs", 0))
        best_metrics, history = st.get("best_metrics", {}), st.get("history", [])
        if best_epoch == start_epoch and _checkpoint_epoch(best_dir) != best_epoch:
            copy_checkpoint(last_dir, best_dir)  # the run died after writing last/ and before best/ (same weights)
        scheduler.last_epoch = start_epoch * steps
        for g, base in zip(optimizer.param_groups, scheduler.base_lrs):
            g["lr"] = base * lr_lambda(scheduler.last_epoch)
        stages = trainable_stages(cfg.strategy, model.num_stages, start_epoch, cfg.finetune_stages,
                                  cfg.unfreeze_every)
        n_trainable = apply_stages(model, stages)

    hist_ref, synthetic_diameter = _histogram_reference(train, source, cfg.seed)
    if cfg.task != "segment":
        grain_diameter = None
    elif target_diameter is not None:
        grain_diameter = float(target_diameter)
    else:
        grain_diameter = measured_diameter if measured_diameter is not None else synthetic_diameter
    atomic_write_text(out / "config.json", cfg.to_json())
    yield Started(device=str(device), n_train=len(train), n_val=len(val), epochs=cfg.epochs, steps_per_epoch=steps,
                  trainable_params=n_trainable, total_params=sum(p.numel() for p in model.parameters()),
                  weights=weights_desc, amp=amp_name)
    for w in warnings:
        yield TrainWarning(message=w)

    def metadata(epoch: int, metrics: dict) -> dict:
        return {"training": cfg.to_dict(), "epoch": epoch, "metrics": metrics, "weights_source": weights_desc,
                "histogram_reference": hist_ref, "boundary_width": cfg.boundary_width,
                "grain_diameter": grain_diameter,
                "data": {"train_images": [s.name for s in train][:1000], "val_images": [s.name for s in val][:1000],
                         "synthetic": cfg.synthetic if source is not None else "none",
                         "synthetic_ratio": ratio if source is not None else 0.0,
                         "grain_diameter_measured": measured_diameter}}

    batch_size = cfg.batch_size
    loader = _loader(train_ds, batch_size, False, cfg, device)
    val_loader = _loader(val_ds, batch_size, False, cfg, device) if val_ds else None
    reason = "completed"
    step_times: list[float] = []
    val_seconds = 0.0
    global_step = start_epoch * steps
    epoch = start_epoch
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        new_stages = trainable_stages(cfg.strategy, model.num_stages, epoch, cfg.finetune_stages, cfg.unfreeze_every)
        if new_stages != stages:
            stages = new_stages
            n_trainable = apply_stages(model, stages)
            bad_epochs = 0
            yield Unfrozen(epoch=epoch + 1, trainable_stages=stages, trainable_params=n_trainable)
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        losses, seen, done = [], 0, 0
        it = iter(loader)
        while done < steps:
            if should_stop():
                reason = "stopped"
                break
            try:
                batch = next(it)
            except StopIteration:
                break
            t0 = time.perf_counter()
            batch = _to(batch, device)
            try:
                loss = _train_step(model, batch, optimizer, scaler, autocast, cfg)
            except Exception as exc:
                if not is_oom(exc) or batch_size == 1:
                    if is_oom(exc):
                        raise MemoryError(f"out of memory on {device} even with batch size 1 at patch size "
                                          f"{cfg.patch_size}; use a smaller --patch-size or the CPU") from None
                    raise
                optimizer.zero_grad(set_to_none=True)
                del batch
                _free_memory(device)
                batch_size = max(1, batch_size // 2)
                yield TrainWarning(message=f"out of memory on {device}: retrying with batch size {batch_size}")
                loader = _loader(train_ds, batch_size, False, cfg, device)
                it = iter(loader)
                continue
            scheduler.step()
            done += 1
            global_step += 1
            bs = batch["image"].shape[0]
            seen += bs
            losses.append(loss)
            dt = time.perf_counter() - t0
            step_times.append(dt)
            if global_step % cfg.log_every == 0:
                recent = step_times[-50:]
                per_step = sum(recent) / len(recent)
                remaining = total_steps - global_step
                yield Step(epoch=epoch + 1, step=global_step, total_steps=total_steps, loss=loss,
                           lr=optimizer.param_groups[-1]["lr"], images_per_s=bs / max(dt, 1e-9),
                           eta_s=remaining * per_step + val_seconds * (cfg.epochs - epoch))
        train_seconds = time.perf_counter() - t_epoch
        if not losses:
            break
        train_loss = float(np.mean(losses))
        _check_finite_weights(model)  # before anything is saved: a step can blow up the weights with a finite loss
        t_val = time.perf_counter()
        if val_loader is not None:
            metrics = evaluate(model, val_loader, cfg, device, autocast)
        else:
            metrics = {"val_loss": float("nan")}
        val_seconds = time.perf_counter() - t_val
        metrics["train_loss"] = train_loss
        value = metrics.get(monitor)
        if value is None:
            raise ConfigError(f"monitor: metric '{monitor}' is not computed (have {', '.join(metrics)})")
        improved = best is None or (value > best + cfg.min_delta if higher else value < best - cfg.min_delta)
        lrs = {"head": optimizer.param_groups[-1]["lr"], "backbone": optimizer.param_groups[0]["lr"]}
        per_epoch = train_seconds + val_seconds
        record = {"epoch": epoch + 1, "train_loss": train_loss, **{k: v for k, v in metrics.items()
                                                                     if k != "confusion"}, "lrs": lrs,
                  "seconds": per_epoch}
        history.append(record)
        if improved:
            best, best_epoch, best_metrics, bad_epochs = value, epoch + 1, dict(metrics), 0
        else:
            bad_epochs += 1
        # last/ first, as one unit with the optimizer state; then best/ (a resume restores best/ from last/ when
        # the run dies between the two), then the history
        progress = {"epoch": epoch + 1, "best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "best_metrics": best_metrics, "history": history}
        save_checkpoint(last_dir, model, metadata(epoch + 1, metrics),
                        extra=lambda folder, progress=progress: _save_training_state(folder, optimizer, progress))
        if improved:
            save_checkpoint(best_dir, model, metadata(epoch + 1, metrics))
        atomic_write_text(out / "history.json", json.dumps(history, indent=2, default=str))
        yield Epoch(epoch=epoch + 1, epochs=cfg.epochs, train_loss=train_loss,
                    val_loss=metrics.get("val_loss", float("nan")),
                    metrics={k: v for k, v in metrics.items() if k not in ("val_loss", "train_loss", "confusion")},
                    lrs=lrs, images_per_s=seen / max(train_seconds, 1e-9),
                    eta_s=per_epoch * (cfg.epochs - epoch - 1), improved=improved, seconds=per_epoch)
        if improved:
            yield Checkpoint(path=str(best_dir), kind="best", epoch=epoch + 1, metric=best)
        if reason == "stopped":
            break
        if bad_epochs >= cfg.patience and not (cfg.strategy == "gradual" and len(stages) < model.num_stages):
            reason = "early_stopped"
            yield EarlyStopped(epoch=epoch + 1, best_epoch=best_epoch, best_metric=best)
            break
    epochs_run = len(history) - (0 if not cfg.resume else 0)
    finished = Finished(best_path=str(best_dir) if best is not None else None,
                        last_path=str(last_dir) if (last_dir / "model.json").is_file() else None,
                        best_epoch=best_epoch, best_metric=best, best_metrics=best_metrics, epochs_run=epochs_run,
                        reason=reason, seconds=time.perf_counter() - t_start, history=history)
    yield finished
    return finished


def _check_finite_weights(model: torch.nn.Module) -> None:
    """Raise FloatingPointError when a parameter or buffer (BatchNorm statistics) is NaN / infinite."""
    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise FloatingPointError("training diverged (the model weights are no longer finite): "
                                         "lower the learning rate")


def _train_step(model, batch: dict, optimizer, scaler, autocast, cfg: TrainConfig) -> float:
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        if cfg.task == "segment":
            out = model(batch["image"])
            loss = segmentation_loss(out, batch)
        else:
            images, target = batch["image"], batch["target"]
            if cfg.mixup > 0 or cfg.cutmix > 0:
                from ..data.augment import mixup_cutmix

                images, target = mixup_cutmix(images, target, len(cfg.classes), alpha=cfg.mixup,
                                              cutmix_alpha=cfg.cutmix)
            out = model(images)
            loss = classification_loss(out, target, cfg.label_smoothing)
    if not torch.isfinite(loss):
        raise FloatingPointError("training diverged (loss is not finite): lower the learning rate")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def _histogram_reference(train: list, source, seed: int) -> tuple[list[float], float | None]:
    """Intensity quantiles of the training images (of synthetic samples for synthetic-only training), and the
    median grain diameter of those synthetic samples (None with training images)."""
    from ..data.targets import mean_grain_diameter
    from ..inference.adapt import intensity_quantiles

    images = [s.image for s in train[:64]]
    diameter = None
    if not images and source is not None:
        rng = np.random.default_rng([seed, 104729])
        drawn = [source.sample(rng, 256) for _ in range(8)]
        images = [img for img, _ in drawn]
        values = [d for d in (mean_grain_diameter(np.asarray(lab)) for _, lab in drawn) if d is not None]
        diameter = float(np.median(values)) if values else None
    if not images:
        return [], diameter
    return [float(v) for v in intensity_quantiles(images, n=256)], diameter


# ------------------------------------------------------------------------------------- cross-validation
def cross_validate(config: TrainConfig, samples: Sequence, k: int, stop=None) -> Iterator:
    """Group K-fold: one :func:`fit` per fold (``out/fold1`` …), then a :class:`CrossValidated` summary."""
    from ..data.splits import kfold_splits

    samples = list(samples)
    folds = kfold_splits(_groups(samples), k, seed=config.seed)
    should_stop = _stopper(stop)
    results = []
    base = Path(config.out) if config.out else Path(tempfile.mkdtemp(prefix="grainlab-cv-"))
    for i, (tr, va) in enumerate(folds):
        if should_stop():
            break
        cfg = config.replace(out=str(base / f"fold{i + 1}"), val_fraction=config.val_fraction or 0.2)
        yield FoldStarted(fold=i, k=k, n_train=len(tr), n_val=len(va))
        finished = None
        for ev in fit(cfg, [samples[j] for j in tr], [samples[j] for j in va], stop=stop):
            ev.fold = i
            if isinstance(ev, Finished):
                finished = ev
            yield ev
        if finished is not None and finished.best_metrics:
            results.append({k2: v for k2, v in finished.best_metrics.items() if isinstance(v, (int, float))})
    if results:
        keys = [k2 for k2 in results[0] if all(k2 in r for r in results)]
        mean = {k2: float(np.mean([r[k2] for r in results])) for k2 in keys}
        sd = {k2: float(np.std([r[k2] for r in results], ddof=1)) if len(results) > 1 else 0.0 for k2 in keys}
        summary = CrossValidated(k=k, per_fold=results, mean=mean, sd=sd)
        atomic_write_text(base / "cross_validation.json",
                          json.dumps({"k": k, "per_fold": results, "mean": mean, "sd": sd}, indent=2))
        yield summary


__all__ = ["DataError", "boundary_counts", "cross_validate", "evaluate", "fit", "is_oom", "load_state_dict_file",
           "resolve_device"]
