"""Augmentation presets: labels move with the image, physics switches, Mixup / CutMix."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.measure import regionprops

from napari_grainlab.core.data.augment import (
    PoissonNoise,
    SEMArtifacts,
    build_augmentation,
    context_size,
    geometric,
    mixup_cutmix,
)
from napari_grainlab.core.data.io import DataError
from napari_grainlab.core.synthetic import SynthParams, generate


@pytest.fixture(scope="module")
def grains():
    p = SynthParams(height=128, width=128)
    p.tessellation.grains = 50
    return generate(p, seed=1)


@pytest.fixture(scope="module")
def elongated():
    p = SynthParams(height=192, width=192)
    p.tessellation.grains = 60
    p.tessellation.aspect_ratio = 4.0
    p.tessellation.orientation = 30.0
    p.tessellation.orientation_spread = 0.0
    return generate(p, seed=4).labels


def run(pipeline, image, labels, seed):
    pipeline.set_random_seed(seed)
    out = pipeline(image=image, mask=labels.astype(np.int32) + 1)
    return out["image"], out["mask"]


def geometric_only(oriented=False, p_affine=0.5):
    pipeline = A.Compose(geometric(oriented))
    pipeline.transforms[0].p = p_affine
    return pipeline


@pytest.mark.parametrize("seed", range(6))
def test_labels_stay_aligned_and_no_new_values(grains, seed):
    labels = grains.labels
    lut = np.random.default_rng(seed).uniform(0.1, 0.9, labels.max() + 1).astype(np.float32)
    image = lut[labels]  # an image that is a function of the labels
    img, mask = run(geometric_only(p_affine=1.0), image, labels, seed)
    assert img.dtype == np.float32 and mask.dtype == np.int32 and img.shape == mask.shape == labels.shape
    assert set(np.unique(mask)) <= set(np.unique(labels + 1)) | {0}
    assert (mask == 0).any()  # the rotation filled corners in: outside
    # away from label edges (where interpolation mixes grains) the image still matches its label
    uniform = (ndi.maximum_filter(mask, 5) == ndi.minimum_filter(mask, 5, mode="constant", cval=0)) & (mask > 0)
    assert uniform.mean() > 0.15  # enough pixels checked
    np.testing.assert_allclose(img[uniform], lut[mask[uniform] - 1], atol=1e-5)


def dominant_direction(labels: np.ndarray) -> float:
    """Mean grain elongation direction (degrees, modulo 180) from the labels."""
    props = [p for p in regionprops(labels) if p.area > 40 and p.eccentricity > 0.8]
    theta = np.array([p.orientation for p in props])
    w = np.array([p.area for p in props])
    return float(np.degrees(0.5 * np.arctan2((w * np.sin(2 * theta)).sum(), (w * np.cos(2 * theta)).sum())))


def angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def test_oriented_growth_keeps_the_direction(elongated):
    ref = dominant_direction(elongated)
    image = (elongated % 7).astype(np.float32) / 7
    oriented = build_augmentation(("geometric",), oriented_growth=True)
    default = build_augmentation(("geometric",))
    kept, changed = [], []
    for seed in range(16):
        _, mask = run(oriented, image, elongated, seed)
        kept.append(angle_diff(dominant_direction(np.maximum(mask - 1, 0)), ref))
        _, mask = run(default, image, elongated, seed)
        changed.append(angle_diff(dominant_direction(np.maximum(mask - 1, 0)), ref))
    assert max(kept) < 2.0
    assert max(changed) > 20.0
    names = {type(t).__name__ for t in oriented.transforms}
    assert not names & {"RandomRotate90", "Rotate", "Transpose", "HorizontalFlip", "VerticalFlip"}
    assert all(t.rotate == (0.0, 0.0) for t in oriented.transforms if isinstance(t, A.Affine))


def test_full_pipeline_float_in_float_out(grains):
    image = grains.image_float()
    pipeline = build_augmentation(patch_size=96)
    shapes = set()
    for seed in range(8):
        img, mask = run(pipeline, image, grains.labels, seed)
        assert img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
        assert set(np.unique(mask)) <= set(np.unique(grains.labels + 1)) | {0}
        shapes.add(img.shape)
    assert shapes == {(96, 96)}
    a, _ = run(pipeline, image, grains.labels, 3)
    b, _ = run(pipeline, image, grains.labels, 3)
    np.testing.assert_array_equal(a, b)  # seeded: reproducible


def test_presets_and_errors():
    names = [type(t).__name__ for t in build_augmentation(("noise", "geometric")).transforms]
    assert names.index("Affine") < names.index("PoissonNoise")  # geometry first whatever the order given
    assert "SEMArtifacts" not in names and "InvertImg" not in names
    assert "InvertImg" in [type(t).__name__ for t in build_augmentation(("invert",)).transforms]
    with pytest.raises(DataError, match="unknown preset"):
        build_augmentation(("geometric", "warp"))
    with pytest.raises(DataError, match="strength"):
        build_augmentation(strength=5)


def test_context_size():
    assert context_size(None, 256) == 256
    assert context_size(build_augmentation(("intensity",)), 256) == 256
    c = context_size(build_augmentation(), 256)
    assert c >= 256 * np.sqrt(2) / 0.8 and (c - 256) % 2 == 0
    assert context_size(build_augmentation(oriented_growth=True), 256) == 320  # zoom-out only


def test_poisson_noise():
    flat = np.full((128, 128), 0.5, np.float32)
    out = A.Compose([PoissonNoise(dose=(100.0, 100.0), p=1.0)], seed=0)(image=flat)["image"]
    assert abs(out.mean() - 0.5) < 0.01
    assert out.var() == pytest.approx(0.5 / 100, rel=0.1)  # counts / dose: variance lam / dose**2
    low = A.Compose([PoissonNoise(dose=(4.0, 4.0), p=1.0)], seed=0)(image=flat)["image"]
    np.testing.assert_allclose(low * 4, np.round(low * 4), atol=1e-5)  # exact Poisson counts


def test_sem_artifacts(grains):
    image = grains.image_float()
    t = A.Compose([SEMArtifacts(strength=1.0, shading=1, scratches=1, dust=1, charging=1, scan=1, line_noise=1,
                                p=1.0)], seed=2)
    out = t(image=image)["image"]
    assert out.dtype == np.float32 and out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert np.abs(out - image).mean() > 0.005
    t.set_random_seed(2)
    np.testing.assert_array_equal(t(image=image)["image"], out)


def test_mixup_and_cutmix():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 16, 16, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mixed, soft = mixup_cutmix(x, y, 3, alpha=0.4, cutmix_alpha=0.0, prob=1.0, generator=g)
    lam = float(soft[0, 0])  # sample 0 (class 0) is paired with sample 5 (class 2)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    cut, soft = mixup_cutmix(x, y, 3, alpha=0.0, cutmix_alpha=1.0, prob=1.0, generator=g)
    from_self = torch.isclose(cut, x)
    from_partner = torch.isclose(cut, x.flip(0))
    assert bool((from_self | from_partner).all())
    lam = float(soft[0, 0])
    assert float(from_self[0].float().mean()) == pytest.approx(lam, abs=1e-6)
    same, soft = mixup_cutmix(x, y, 3, prob=0.0, label_smoothing=0.3)
    torch.testing.assert_close(same, x)
    torch.testing.assert_close(soft[0], torch.tensor([0.8, 0.1, 0.1]))
    a = mixup_cutmix(x, y, 3, prob=1.0, generator=torch.Generator().manual_seed(5))
    b = mixup_cutmix(x, y, 3, prob=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    with pytest.raises(DataError, match="classes"):
        mixup_cutmix(x, y + 5, 3)
