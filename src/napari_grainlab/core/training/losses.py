"""Losses: boundary BCE + Dice (robust to the few boundary pixels), distance BCE, masked by annotation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    n = valid.sum()
    return (loss * valid).sum() / n.clamp_min(1.0)


def masked_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over annotated pixels, computed per image then averaged."""
    p = torch.sigmoid(logits) * valid
    t = target * valid
    dims = tuple(range(1, p.ndim))
    inter = (p * t).sum(dims)
    denom = p.sum(dims) + t.sum(dims)
    has = (valid.sum(dims) > 0).float()
    dice = 1.0 - (2 * inter + eps) / (denom + eps)
    return (dice * has).sum() / has.sum().clamp_min(1.0)


def segmentation_loss(logits: torch.Tensor, batch: dict, distance_weight: float = 1.0,
                      twin_weight: float = 1.0) -> torch.Tensor:
    """BCE + Dice on the boundary channel and BCE on the distance channel; unannotated pixels ignored.

    A model with a twin class (a third channel) adds BCE + Dice of that channel against
    ``batch["twin_boundary"]`` on the pixels of ``batch["twin_valid"]`` (0 on images without a twin
    mask, which then add nothing to it; Dice counts only the images that have one).
    """
    logits = logits.float()
    valid = batch["valid"]
    b = logits[:, 0:1]
    d = logits[:, 1:2]
    loss = (masked_bce(b, batch["boundary"], valid) + masked_dice(b, batch["boundary"], valid)
            + distance_weight * masked_bce(d, batch["distance"], valid))
    if logits.shape[1] >= 3 and "twin_boundary" in batch:
        t, tv = logits[:, 2:3], batch["twin_valid"]
        loss = loss + twin_weight * (masked_bce(t, batch["twin_boundary"], tv)
                                     + masked_dice(t, batch["twin_boundary"], tv))
    return loss


def classification_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with label smoothing; ``target`` is class indices or (mixup / cutmix) soft targets."""
    logits = logits.float()
    if target.ndim == 1:
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    k = logits.shape[1]
    soft = target * (1 - label_smoothing) + label_smoothing / k
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
