"""Patch and tile datasets for training and validation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from napari_grainlab.core.data.augment import build_augmentation
from napari_grainlab.core.data.datasets import ClsSample, SegSample
from napari_grainlab.core.data.io import DataError
from napari_grainlab.core.data.patches import (
    ClsPatchDataset,
    ClsTileDataset,
    SegPatchDataset,
    SegTileDataset,
    crop_window,
    grid_starts,
)
from napari_grainlab.core.synthetic import SynthParams, generate


class TinySynthetic:
    """A synthetic source as the engine expects: ``sample(rng, size) -> (image, labels)``."""

    def sample(self, rng, size):
        p = SynthParams(height=size, width=size)
        p.tessellation.grains = 12
        s = generate(p, seed=int(rng.integers(2**31)))
        return s.image_float(), s.labels


def voronoi_labels(h, w, n, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2)) * (h, w)
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    return (d.argmin(-1) + 1).astype(np.uint32)


def seg_sample(h=160, w=200, name="a", seed=0, annotated=None) -> SegSample:
    labels = voronoi_labels(h, w, 30, seed)
    if annotated is not None:
        labels = np.where(annotated, labels, 0).astype(np.uint32)
    image = np.random.default_rng(seed).random((h, w), dtype=np.float32)
    return SegSample(name, image, labels, name)


KEYS = ("image", "boundary", "distance", "valid")


def test_items_shapes_and_dtypes():
    ds = SegPatchDataset([seg_sample()], 64, build_augmentation(patch_size=64), length=12, seed=0)
    assert len(ds) == 12
    for i in range(len(ds)):
        item = ds[i]
        assert tuple(item) == KEYS
        for k in KEYS:
            assert item[k].shape == (1, 64, 64) and item[k].dtype == torch.float32
        assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
        assert set(torch.unique(item["valid"]).tolist()) <= {0.0, 1.0}
        assert not item["boundary"][item["valid"] == 0].any() and not item["distance"][item["valid"] == 0].any()
    with pytest.raises(IndexError):
        ds[12]


def test_valid_follows_the_annotation():
    yy, xx = np.mgrid[:160, :200]
    annotated = (xx < 90) | (yy > 120)  # partial annotation
    s = seg_sample(annotated=annotated)
    s.image = annotated.astype(np.float32)  # the image shows where the annotation is
    ds = SegPatchDataset([s], 48, None, length=30, seed=1)
    for i in range(len(ds)):
        item = ds[i]
        torch.testing.assert_close(item["valid"], item["image"])
        assert item["valid"].any()


def test_sparse_annotation_is_found():
    labels = np.zeros((600, 600), np.uint32)
    labels[410:430, 77:101] = 5  # a single small annotated grain in a large micrograph
    s = SegSample("big", np.random.default_rng(0).random((600, 600), dtype=np.float32), labels, "big")
    ds = SegPatchDataset([s], 64, build_augmentation(("geometric",), patch_size=64), length=20, seed=3)
    assert all(ds[i]["valid"].any() for i in range(len(ds)))


def test_samples_weighted_by_annotated_area():
    big = seg_sample(name="big", seed=1)  # fully annotated
    small_area = np.zeros((160, 200), bool)
    small_area[:40, :50] = True
    small = seg_sample(name="small", seed=2, annotated=small_area)
    big.image[:] = 0.25
    small.image[:] = 0.75
    ds = SegPatchDataset([big, small], 32, None, length=300, seed=0)
    from_small = np.mean([float(ds[i]["image"].mean()) > 0.5 for i in range(len(ds))])
    expected = small_area.sum() / (small_area.sum() + big.labels.size)  # 1 / 17
    assert abs(from_small - expected) < 0.05


def test_determinism_epochs_and_pickling():
    ds = SegPatchDataset([seg_sample()], 64, build_augmentation(patch_size=64), length=8, seed=7)
    a = ds[3]
    clone = pickle.loads(pickle.dumps(ds))
    for k in KEYS:
        torch.testing.assert_close(clone[3][k], a[k])
        torch.testing.assert_close(ds[3][k], a[k])
    assert not torch.equal(ds[4]["image"], a["image"])
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["image"], a["image"])
    ds.set_epoch(0)
    torch.testing.assert_close(ds[3]["image"], a["image"])
    other = SegPatchDataset([seg_sample()], 64, build_augmentation(patch_size=64), length=8, seed=8)
    assert not torch.equal(other[3]["image"], a["image"])


def test_small_images_are_padded_not_boundary():
    s = seg_sample(40, 50)
    ds = SegPatchDataset([s], 64, None, length=6, seed=0)
    for i in range(len(ds)):
        item = ds[i]
        assert int(item["valid"].sum()) == 40 * 50  # the whole image, nothing of the padding
        rows = item["valid"][0].any(1).nonzero().ravel()
        cols = item["valid"][0].any(0).nonzero().ravel()
        inside = item["boundary"][0, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        # the image edge next to the padding is no boundary: the outer ring has only shared edges
        edge_frac = torch.cat([inside[0], inside[-1], inside[:, 0], inside[:, -1]]).mean()
        assert edge_frac < 0.5


def test_rotation_context_and_fill():
    aug = build_augmentation(("geometric",), patch_size=48)
    aug.transforms[0].p = 1.0  # always rotate / zoom
    # real images: the patch is cut with a margin (mirrored beyond the image edge), so the rotation
    # fills nothing in (fill would be 0; this image is >= 0.5 everywhere)
    s = seg_sample(200, 200)
    s.image = 0.5 + 0.5 * s.image
    ds = SegPatchDataset([s], 48, aug, length=20, seed=0)
    assert ds.context > 48 * 1.4
    assert min(float(ds[i]["image"].min()) for i in range(len(ds))) > 0.49
    # synthetic patches come at the patch size: filled-in corners are outside and ignored
    ds = SegPatchDataset([], 48, aug, length=10, seed=0, synthetic=TinySynthetic(), synthetic_ratio=1.0)
    fractions = [1 - float(ds[i]["valid"].mean()) for i in range(len(ds))]
    assert max(fractions) > 0.05


def test_synthetic_mixing_ratio():
    real = seg_sample(96, 96)
    real.image[:] = 0.5  # flat: synthetic patches are the textured ones
    ds = SegPatchDataset([real], 32, None, length=120, seed=0, synthetic=TinySynthetic(), synthetic_ratio=0.3)
    synthetic = np.mean([float(ds[i]["image"].std()) > 0 for i in range(len(ds))])
    assert 0.18 < synthetic < 0.42
    only = SegPatchDataset([], 32, build_augmentation(patch_size=32), length=4, seed=0, synthetic=TinySynthetic(),
                           synthetic_ratio=1.0)
    item = only[2]
    assert item["image"].shape == (1, 32, 32) and item["valid"].any() and item["image"].std() > 0


def test_patch_dataset_errors():
    with pytest.raises(DataError, match="synthetic source"):
        SegPatchDataset([seg_sample()], 32, None, 4, 0, synthetic_ratio=0.5)
    with pytest.raises(DataError, match="no annotated samples"):
        SegPatchDataset([], 32, None, 4, 0, synthetic=TinySynthetic(), synthetic_ratio=0.5)
    with pytest.raises(DataError, match="patch_size"):
        SegPatchDataset([seg_sample()], 0, None, 4, 0)


def test_grid_starts():
    assert grid_starts(100, 128) == [0]
    assert grid_starts(256, 128) == [0, 128]
    assert grid_starts(300, 128) == [0, 128, 172]


def test_tiles_cover_each_image():
    samples = [seg_sample(150, 200, "a"), seg_sample(40, 50, "b", seed=1)]
    ds = SegTileDataset(samples, 64)
    assert len(ds) == 3 * 4 + 1
    canvas = np.zeros((150, 200), np.float32)
    for i, (k, y, x) in enumerate(ds.items):
        item = ds[i]
        assert tuple(item) == KEYS and item["image"].shape == (1, 64, 64)
        if k == 0:
            canvas[y:y + 64, x:x + 64] = item["image"][0].numpy()
            assert item["valid"].all()
    np.testing.assert_array_equal(canvas, samples[0].image)
    small = ds[len(ds) - 1]
    assert int(small["valid"].sum()) == 40 * 50
    np.testing.assert_array_equal(small["image"][0, :40, :50].numpy(), samples[1].image)


def test_crop_window_reflects_outside():
    img = np.arange(20, dtype=np.float32).reshape(4, 5)
    lab = np.ones((4, 5), np.uint32)
    out, l2, outside = crop_window(img, lab, -2, 3, 6, 4)
    assert out.shape == (6, 4) and outside.sum() == 6 * 4 - 4 * 2
    np.testing.assert_array_equal(out[2:, :2], img[:, 3:])
    np.testing.assert_array_equal(out[0, :2], img[2, 3:])  # mirrored about the top edge
    assert not l2[outside].any() and l2[~outside].all()
    inside, _, none = crop_window(img, lab, 1, 1, 2, 2)
    assert none is None and inside.shape == (2, 2)


def cls_samples():
    rng = np.random.default_rng(0)
    return [ClsSample(f"c{c}/{i}", rng.random((90 + 10 * i, 70), dtype=np.float32), c, f"m{i}")
            for c in range(2) for i in range(3)]


def test_classification_datasets():
    samples = cls_samples()
    ds = ClsPatchDataset(samples, 64, build_augmentation(patch_size=64), length=10, seed=0)
    item = ds[0]
    assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
    assert item["target"].dtype == torch.int64 and item["target"].ndim == 0
    torch.testing.assert_close(ds[5]["image"], ds[5]["image"])
    targets = {int(ds[i]["target"]) for i in range(len(ds))}
    assert targets == {0, 1}
    grid = ClsTileDataset(samples, 64)
    assert len(grid) == sum(len(grid_starts(s.image.shape[0], 64)) * len(grid_starts(70, 64)) for s in samples)
    assert [int(grid[i]["target"]) for i in range(len(grid))] == [samples[k].label for k, _, _ in grid.items]
    capped = ClsTileDataset(samples, 16, max_tiles=5)
    assert len(capped) == 5 * len(samples)
    centre = ClsTileDataset(samples, 128, mode="center")
    assert len(centre) == len(samples) and centre[0]["image"].shape == (1, 128, 128)
