"""Label-aware augmentation presets (albumentations) and Mixup / CutMix for classification.

A pipeline is data: :func:`build_augmentation` returns an ``albumentations.Compose`` assembled
from small preset functions.  Images are float32 (H, W) (grey) or (H, W, 3) (colour) in [0, 1] in
and out, and every preset works on both: the brightness, contrast, gamma, blur and noise transforms
act on every channel alike (the noise is drawn per channel, as a colour sensor's is), the SEM
artefacts put the same distortion on all channels, and inversion inverts the luminance of a colour
image exactly (its hues turn to their complements, harmless for colour maps that are arbitrary
anyway).  Grain labels travel
as the ``mask`` target (int32, nearest-neighbour interpolation), shifted by one so that areas a
rotation fills in come out as 0 ("outside", see :mod:`.patches`).

Presets
-------
geometric
    flips, 90° rotations, free rotation and scale (0.8 - 1.25).  ``oriented_growth=True`` keeps
    only transforms that map every direction onto itself: the 180° rotation (both flips at once)
    and scaling.  A single flip maps a direction at angle θ to -θ (or 180° - θ), which changes any
    growth direction that is not exactly along an image axis, so single flips are off as well.
intensity
    brightness, contrast, gamma.
noise
    probe blur (Gaussian or motion), Poisson shot noise at a random dose, Gaussian noise.
sem
    :class:`SEMArtifacts`: the synthetic renderer's scan and specimen effects on a real image.
colour
    :class:`ColourJitter`: hue rotation, saturation and white balance of colour images (grey
    images pass unchanged); see the class for why these and not channel shuffles.
invert
    contrast inversion (not in the defaults; used for domain randomisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from ..errors import DataError
from ..synthetic.render import _charging, _draw_dust, _draw_scratches, _scan_shifts, _shading
from .channels import is_colour, luminance

__all__ = [
    "DEFAULT_PRESETS",
    "PRESETS",
    "Clip",
    "ColourJitter",
    "PoissonNoise",
    "SEMArtifacts",
    "build_augmentation",
    "colour",
    "context_size",
    "geometric",
    "intensity",
    "invert",
    "mixup_cutmix",
    "noise",
    "sem",
    "sem_artifacts",
]

DEFAULT_PRESETS = ("geometric", "intensity", "noise", "sem", "colour")


# ---------------------------------------------------------------------------------------- transforms
class Clip(A.ImageOnlyTransform):
    """Clip the image to [0, 1] as float32 (always applied)."""

    def __init__(self, p: float = 1.0):
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class PoissonNoise(A.ImageOnlyTransform):
    """Shot noise: scale [0, 1] intensities to a random dose (counts at full scale, log-uniform in
    ``dose``), draw Poisson counts and scale back (exact below 12 counts, the Gaussian limit
    above, like the renderer)."""

    def __init__(self, dose: tuple[float, float] = (20.0, 1000.0), p: float = 0.5):
        super().__init__(p=p)
        if not 0 < dose[0] <= dose[1]:
            raise DataError(f"PoissonNoise: dose must be a range of positive numbers, got {dose}")
        self.dose = (float(dose[0]), float(dose[1]))

    def get_params(self) -> dict[str, Any]:
        lo, hi = math.log(self.dose[0]), math.log(self.dose[1])
        return {"dose": math.exp(self.random_generator.uniform(lo, hi)),
                "seed": int(self.random_generator.integers(0, 2**63 - 1))}

    def apply(self, img: np.ndarray, dose: float = 100.0, seed: int = 0, **params: Any) -> np.ndarray:
        rng = np.random.default_rng(seed)
        lam = np.clip(img, 0.0, None).astype(np.float32) * np.float32(dose)
        counts = lam + np.sqrt(lam) * rng.standard_normal(lam.shape, dtype=np.float32)
        low = lam < 12.0
        if low.any():
            counts[low] = rng.poisson(lam[low])
        return counts / np.float32(dose)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("dose",)


def _shift_rows(img: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift every row by its sub-pixel amount (``out(x) = in(x - s)``, linear interpolation)."""
    h, w = img.shape
    xs = np.arange(w, dtype=np.float32)[None, :] - shifts[:, None]
    x0 = np.floor(xs)
    fr = xs - x0
    x0 = x0.astype(np.int64)
    i0 = np.clip(x0, 0, w - 1)
    i1 = np.clip(x0 + 1, 0, w - 1)
    return (1.0 - fr) * np.take_along_axis(img, i0, 1) + fr * np.take_along_axis(img, i1, 1)


def sem_artifacts(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0, shading: float = 0.3,
                  scratches: float = 0.3, dust: float = 0.2, charging: float = 0.2, scan: float = 0.3,
                  line_noise: float = 0.3, max_shift: float = 0.75) -> np.ndarray:
    """SEM / specimen artefacts of the synthetic renderer on an existing float image.

    Each effect happens with its probability (``shading``, ``scratches``, …) at a random strength
    scaled by ``strength``: shading (multiplicative, smooth), polishing scratches, dust and
    contamination, charging streaks along the scan, scan-line shifts (jitter + drift, at most
    ``max_shift`` px so that pixel-accurate labels stay valid) and line brightness noise.  A colour
    ``(H, W, 3)`` image gets the same artefacts (places, strengths, shifts) on all three channels;
    dust takes grey levels from the luminance.

    Returns
    -------
    float32 (H, W) or (H, W, 3) in [0, 1], a new array
    """
    img = np.array(image, dtype=np.float32, copy=True)
    args = (strength, shading, scratches, dust, charging, scan, line_noise, max_shift)
    if is_colour(img):
        seed = int(rng.integers(0, 2**63 - 1))  # one draw of every effect, replayed on each channel
        mean = float(luminance(img).mean())
        for c in range(3):
            img[..., c] = _sem_plane(np.ascontiguousarray(img[..., c]), np.random.default_rng(seed), mean, *args)
        return img
    if img.ndim != 2:
        raise DataError(f"sem_artifacts: expected an (H, W) or (H, W, 3) image, got shape {img.shape}")
    return _sem_plane(img, rng, float(img.mean()), *args)


def _sem_plane(img: np.ndarray, rng: np.random.Generator, mean: float, strength: float, shading: float,
               scratches: float, dust: float, charging: float, scan: float, line_noise: float,
               max_shift: float) -> np.ndarray:
    """:func:`sem_artifacts` on one float32 plane (changed in place where it can be); ``mean`` sets the dust
    levels.  The random draws depend on the shape only, so a replay with the same seed repeats them."""
    h, w = img.shape
    s = float(strength)
    if rng.random() < shading:
        gy, gx = _shading(rng, h, w, s * rng.uniform(0.1, 0.4))
        img *= 1.0 + gy[:, None] + gx[None, :]
    if rng.random() < scratches:
        _draw_scratches(rng, img, s * rng.uniform(0.1, 0.6), mean)
    if rng.random() < dust:
        _draw_dust(rng, img, s * rng.uniform(0.1, 0.6), bright=min(1.0, mean + 0.45), dark=0.05,
                   size=rng.uniform(1.5, 4.0))
    if rng.random() < charging:
        _charging(rng, img, s * rng.uniform(0.05, 0.4))
    if rng.random() < scan:
        shifts = _scan_shifts(rng, h, s * rng.uniform(0.1, 0.4), s * rng.uniform(0.0, 0.5))
        if shifts is not None:
            img = _shift_rows(img, np.clip(shifts, -max_shift, max_shift))
    if rng.random() < line_noise:
        img += (s * rng.uniform(0.005, 0.03) * rng.standard_normal(h)).astype(np.float32)[:, None]
    np.clip(img, 0.0, 1.0, out=img)
    return img.astype(np.float32, copy=False)


class SEMArtifacts(A.ImageOnlyTransform):
    """Albumentations wrapper of :func:`sem_artifacts` (image only; labels stay valid)."""

    def __init__(self, strength: float = 1.0, shading: float = 0.3, scratches: float = 0.3, dust: float = 0.2,
                 charging: float = 0.2, scan: float = 0.3, line_noise: float = 0.3, p: float = 0.5):
        super().__init__(p=p)
        self.strength = float(strength)
        self.shading, self.scratches, self.dust = float(shading), float(scratches), float(dust)
        self.charging, self.scan, self.line_noise = float(charging), float(scan), float(line_noise)

    def get_params(self) -> dict[str, Any]:
        return {"seed": int(self.random_generator.integers(0, 2**63 - 1))}

    def apply(self, img: np.ndarray, seed: int = 0, **params: Any) -> np.ndarray:
        return sem_artifacts(img, np.random.default_rng(seed), self.strength, self.shading, self.scratches,
                             self.dust, self.charging, self.scan, self.line_noise)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "shading", "scratches", "dust", "charging", "scan", "line_noise")


_LUMINANCE = np.array([0.2125, 0.7154, 0.0721])  # BT.709, as channels.luminance


class ColourJitter(A.ImageOnlyTransform):
    """Colour changes that happen to real colour micrographs; grey ``(H, W)`` images pass unchanged.

    - **hue rotation** (uniform in ±``hue`` degrees, in HSV): the colour of a tint- (colour-) etched
      grain is an interference colour of its oxide / sulphide film, whose thickness depends on the
      grain's orientation *and* on the etching time, temperature and reagent, so one lab's grains are
      another lab's grains with every hue shifted; in polarised light (anodised aluminium) turning the
      analyser or the sensitive-tint plate rotates all colours, and an EBSD-IPF-like map's colour key is
      a convention.  What separates grains is the hue *difference*, which a rotation keeps.
    - **saturation** (a factor log-uniform in [1 / ``saturation``, ``saturation``]): a thinner film,
      a weaker stain or a less crossed polariser gives paler colours.
    - **white balance** (per-channel gains ``exp(N(0, white_balance))``, scaled to keep the luminance of
      white): the lamp's colour temperature and the camera's white balance.

    Brightness and contrast belong to the ``intensity`` preset.  Not used: channel shuffles and
    independent per-channel curves, which give colour relations that no etch, illumination or camera
    produces (a grain pair that differs in red only could come out differing in blue only).
    """

    def __init__(self, hue: float = 180.0, saturation: float = 1.5, white_balance: float = 0.08, p: float = 0.5):
        super().__init__(p=p)
        if not (0 <= hue <= 180 and saturation >= 1 and white_balance >= 0):
            raise DataError(f"ColourJitter: need 0 <= hue <= 180, saturation >= 1, white_balance >= 0; got hue={hue}, "
                            f"saturation={saturation}, white_balance={white_balance}")
        self.hue, self.saturation, self.white_balance = float(hue), float(saturation), float(white_balance)

    def get_params(self) -> dict[str, Any]:
        g = self.random_generator
        gains = np.exp(g.normal(0.0, self.white_balance, 3)) if self.white_balance > 0 else np.ones(3)
        log_s = math.log(self.saturation)
        return {"hue": float(g.uniform(-self.hue, self.hue)), "sat": math.exp(g.uniform(-log_s, log_s)),
                "gains": (gains / float(gains @ _LUMINANCE)).astype(np.float32)}

    def apply(self, img: np.ndarray, hue: float = 0.0, sat: float = 1.0, gains: np.ndarray | None = None,
              **params: Any) -> np.ndarray:
        if not is_colour(img):
            return img
        hsv = cv2.cvtColor(np.clip(img, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2HSV)  # H in [0, 360)
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue), np.float32(360.0))
        hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(sat), 0.0, 1.0)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if gains is not None:
            out *= np.asarray(gains, dtype=np.float32)
        return np.clip(out, 0.0, 1.0)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("hue", "saturation", "white_balance")


# ------------------------------------------------------------------------------------------ presets
def geometric(oriented_growth: bool = False, strength: float = 1.0) -> list:
    """Free rotation and scale 0.8 - 1.25 (``strength`` scales the zoom range), flips, 90° rotations.

    With ``oriented_growth`` only scaling and the 180° rotation, which keep every direction.
    Areas a rotation or zoom-out fills in get image 0 and mask 0 (outside).  The warp comes first:
    :func:`build_augmentation` crops the patch right after it, so the flips work on the patch.
    """
    lo, hi = 0.8 ** strength, 1.25 ** strength
    affine = dict(scale=(lo, hi), keep_ratio=True, balanced_scale=True, interpolation=cv2.INTER_LINEAR,
                  mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0)
    if oriented_growth:
        return [A.Affine(rotate=0.0, p=0.5, **affine),
                A.Sequential([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=0.5)]
    return [A.Affine(rotate=(-45.0, 45.0), p=0.5, **affine),
            A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]


def intensity(strength: float = 1.0) -> list:
    """Brightness, contrast and gamma."""
    s = float(strength)
    g = 0.35 * s
    return [A.RandomBrightnessContrast(brightness_limit=0.15 * s, contrast_limit=0.25 * s, p=0.5),
            A.RandomGamma(gamma_limit=(100.0 / (1 + g), 100.0 * (1 + g)), p=0.4)]


def noise(strength: float = 1.0) -> list:
    """Probe blur (Gaussian or motion), Poisson shot noise, Gaussian noise."""
    s = float(strength)
    out = []
    if s > 0:
        out.append(A.OneOf([A.GaussianBlur(blur_limit=0, sigma_limit=(0.3, 0.3 + 0.9 * s), p=1.0),
                            A.MotionBlur(blur_limit=(3, 5), p=1.0)], p=0.25))
        out.append(PoissonNoise(dose=(20.0 / s, 2000.0 / s), p=0.3))
    out.append(A.GaussNoise(std_range=(0.005 * s, 0.05 * s), p=0.3))
    return out


def sem(strength: float = 1.0) -> list:
    """SEM artefacts of the synthetic renderer (:class:`SEMArtifacts`)."""
    return [SEMArtifacts(strength=strength, p=0.5)]


def invert() -> list:
    """Contrast inversion (half of the time)."""
    return [A.InvertImg(p=0.5)]


def colour(strength: float = 1.0) -> list:
    """Hue rotation (up to ±180° at strength 1), saturation (x 1/1.5 .. 1.5) and white balance of colour images
    (:class:`ColourJitter`); nothing happens to grey images."""
    s = float(strength)
    return [ColourJitter(hue=min(180.0, 180.0 * s), saturation=1.0 + 0.5 * s, white_balance=0.08 * s, p=0.5)]


PRESETS = ("geometric", "sem", "colour", "intensity", "invert", "noise")  # the order they are applied in


def build_augmentation(presets: Sequence[str] | str = DEFAULT_PRESETS, oriented_growth: bool = False,
                       patch_size: int | None = None, strength: float = 1.0) -> A.Compose:
    """An augmentation pipeline from named presets.

    Parameters
    ----------
    presets : names from :data:`PRESETS`; applied in that order (geometry first, noise last)
        whatever order they are given in
    oriented_growth : keep growth directions (see :func:`geometric`)
    patch_size : when given, the geometric stage ends with a centre crop to this size, so the
        patch sampler can pass a larger window (:func:`context_size`) and rotations fill nothing
        in, and the remaining stages work on the final patch only
    strength : magnitude of the intensity, colour, noise and artefact effects and of the zoom (0 .. 2)

    Use as ``out = aug(image=image, mask=labels.astype(np.int32) + 1)``.
    """
    names = (presets,) if isinstance(presets, str) else tuple(presets)
    unknown = sorted(set(names) - set(PRESETS))
    if unknown:
        raise DataError(f"augmentation: unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if not 0 <= strength <= 2:
        raise DataError(f"augmentation: strength must be in [0, 2], got {strength}")
    if patch_size is not None and (isinstance(patch_size, bool) or int(patch_size) != patch_size or patch_size < 1):
        raise DataError(f"augmentation: patch_size must be a positive integer, got {patch_size!r}")
    geo = geometric(oriented_growth, strength) if "geometric" in names else []
    transforms = [t for t in geo if isinstance(t, A.Affine)]  # the warps that need a margin
    if patch_size is not None:
        transforms.append(A.CenterCrop(int(patch_size), int(patch_size), pad_if_needed=True,
                                       border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0))
    transforms += [t for t in geo if not isinstance(t, A.Affine)]
    for name in ("sem", "colour", "intensity", "invert", "noise"):
        if name in names:
            transforms += invert() if name == "invert" else {"sem": sem, "colour": colour, "intensity": intensity,
                                                              "noise": noise}[name](strength)
    transforms.append(Clip())
    return A.Compose(transforms)


def _rotation_factor(lo: float, hi: float) -> float:
    """Largest ``|cos θ| + |sin θ|`` for θ in [lo, hi] degrees: the window a rotated square needs."""
    theta = np.radians(np.linspace(lo, hi, 91))
    return float(np.max(np.abs(np.cos(theta)) + np.abs(np.sin(theta))))


def _walk(transform) -> list:
    out = [transform]
    for t in getattr(transform, "transforms", ()) or ():
        out += _walk(t)
    return out


def context_size(augment, patch_size: int) -> int:
    """Size of the window to crop so that ``augment`` (rotations, zoom-out) fills nothing into the
    central ``patch_size`` square.  ``patch_size`` when ``augment`` is None or has no rotation."""
    factor = 1.0
    for t in _walk(augment) if augment is not None else ():
        if isinstance(t, A.Affine):
            rot = tuple(t.rotate) if isinstance(t.rotate, (tuple, list)) else (t.rotate, t.rotate)
            scale = t.scale if isinstance(t.scale, dict) else {"x": t.scale, "y": t.scale}
            smin = min(min(np.atleast_1d(v)) for v in scale.values())
            factor *= _rotation_factor(*rot) / min(1.0, float(smin))
        elif isinstance(t, (A.Rotate, A.SafeRotate)):
            factor *= _rotation_factor(*t.limit)
    size = int(math.ceil(patch_size * min(factor, 3.0) - 1e-6))
    return size + (size - patch_size) % 2


# --------------------------------------------------------------------------------- Mixup / CutMix
def mixup_cutmix(images: torch.Tensor, targets: torch.Tensor, num_classes: int, alpha: float = 0.2,
                 cutmix_alpha: float = 1.0, prob: float = 0.5, switch_prob: float = 0.5,
                 label_smoothing: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-level Mixup or CutMix, pairing each image with the batch in reverse order.

    With probability ``prob`` the batch is mixed: CutMix (a box of area ``1 - lam`` from the
    partner, ``lam ~ Beta(cutmix_alpha, cutmix_alpha)``, corrected to the clipped box) with
    probability ``switch_prob`` when both are enabled, else Mixup (``lam ~ Beta(alpha, alpha)``).
    An ``alpha`` of 0 disables that method.

    Returns
    -------
    images : mixed copy (N, C, H, W)
    soft_targets : float (N, num_classes), label-smoothed one-hot targets mixed with ``lam``
    """
    if images.ndim != 4:
        raise DataError(f"mixup_cutmix: images must be N x C x H x W, got shape {tuple(images.shape)}")
    if targets.ndim != 1 or targets.shape[0] != images.shape[0]:
        raise DataError(f"mixup_cutmix: targets must have shape ({images.shape[0]},), got {tuple(targets.shape)}")
    if num_classes < 2:
        raise DataError(f"mixup_cutmix: num_classes must be >= 2, got {num_classes}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise DataError(f"mixup_cutmix: target classes must be in 0..{num_classes - 1}")
    off = label_smoothing / num_classes
    soft = torch.full((targets.shape[0], num_classes), off, dtype=torch.float32, device=images.device)
    soft.scatter_(1, targets.long().view(-1, 1).to(images.device), 1.0 - label_smoothing + off)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    use_mixup, use_cutmix = alpha > 0, cutmix_alpha > 0
    if not (use_mixup or use_cutmix) or rng.random() >= prob:
        return images.clone(), soft
    cut = use_cutmix and (not use_mixup or rng.random() < switch_prob)
    partner = images.flip(0)
    if cut:
        lam = float(rng.beta(cutmix_alpha, cutmix_alpha))
        h, w = images.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
        out = images.clone()
        out[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        lam = float(rng.beta(alpha, alpha))
        out = images * lam + partner * (1.0 - lam)
    return out, soft * lam + soft.flip(0) * (1.0 - lam)
