"""Train-step throughput: the full data pipeline vs the model's bare forward + backward.

The full pipeline is ``fit()`` itself: patch sampling from annotated micrographs, augmentation (all
presets), target computation, synthetic micrographs mixed in at 50 %, the optimiser step and the
scheduler. The bare number times forward + backward + optimiser step on one constant random batch of
the same shape, on the same model. Target: pipeline / bare >= 0.8.

    python benchmarks/bench_train.py                       # CPU, efficientnet_lite0, 8 x 128²
    python benchmarks/bench_train.py --device cuda --batch-size 32 --patch-size 256 --workers 8
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def bare(cfg, steps: int, device) -> float:
    from napari_grainlab.core.models import ModelSpec, build_model
    from napari_grainlab.core.training import apply_stages, param_groups, trainable_stages
    from napari_grainlab.core.training.fit import _amp
    from napari_grainlab.core.training.losses import segmentation_loss

    model = build_model(ModelSpec(backbone=cfg.backbone, decoder_channels=cfg.decoder_channels)).to(device)
    apply_stages(model, trainable_stages(cfg.strategy, model.num_stages, 0, cfg.finetune_stages))
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.backbone_lr_factor, cfg.weight_decay, cfg.strategy))
    _, autocast, scaler = _amp(cfg, device)
    b, p = cfg.batch_size, cfg.patch_size
    batch = {"image": torch.rand(b, 1, p, p, device=device),
             "boundary": (torch.rand(b, 1, p, p, device=device) > 0.9).float(),
             "distance": torch.rand(b, 1, p, p, device=device), "valid": torch.ones(b, 1, p, p, device=device)}
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = segmentation_loss(model(batch["image"]), batch)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss.detach())  # wait for the last step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * b / (time.perf_counter() - t)


def pipeline(cfg, train, epochs: int) -> float:
    from napari_grainlab.core.training import Epoch, fit

    rates = [ev.images_per_s for ev in fit(cfg, train) if isinstance(ev, Epoch)]
    return float(np.median(rates[1:] if len(rates) > 1 else rates))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    from napari_grainlab.core.data.datasets import SegSample
    from napari_grainlab.core.synthetic import SynthParams, generate
    from napari_grainlab.core.training import TrainConfig, resolve_device

    train = []
    for i in range(8):
        s = generate(SynthParams.preset("sem", height=512, width=512), seed=i)
        img = s.image_float()
        lo, hi = np.percentile(img, (0.1, 99.9))
        train.append(SegSample(f"m{i}", np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32), s.labels, f"m{i}"))
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(backbone=args.backbone, weights="none", strategy="finetune", epochs=args.epochs,
                          steps_per_epoch=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
                          synthetic="randomized", synthetic_ratio=0.5, val_fraction=0, device=args.device,
                          workers=args.workers, out=tmp, log_every=10_000)
        full = pipeline(cfg, train, args.epochs)
        naked = bare(cfg, args.steps, device)
    amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    print(f"device {device} (amp {amp}), {args.backbone}, batch {args.batch_size} x {args.patch_size}² px, "
          f"{args.workers} loader workers, {torch.get_num_threads()} threads")
    print(f"bare forward+backward+step : {naked:8.1f} images/s")
    print(f"full pipeline (fit)        : {full:8.1f} images/s")
    print(f"ratio pipeline / bare      : {full / naked:8.2f}   (target >= 0.80)")


if __name__ == "__main__":
    main()
