"""Colour end to end on the data side: folders that mix grey and colour, patches of 1 or 3 channels,
every augmentation preset on colour, the colour preset, the grain diameter of a label image, rescaling."""
from __future__ import annotations

import cv2
import imageio.v3 as iio
import numpy as np
import pytest

from napari_grainlab.core.data import load_segmentation_folder, samples_from_arrays
from napari_grainlab.core.data.augment import PRESETS, ColourJitter, build_augmentation, sem_artifacts
from napari_grainlab.core.data.datasets import ClsSample, SegSample, rescale_sample, resize_labels
from napari_grainlab.core.data.patches import ClsPatchDataset, SegPatchDataset, SegTileDataset
from napari_grainlab.core.data.targets import mean_grain_diameter
from napari_grainlab.core.errors import DataError


def grid_labels(h: int = 96, w: int = 96, cell: int = 12) -> np.ndarray:
    """Square grains of side ``cell``, numbered 1..n."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy // cell) * (-(-w // cell)) + xx // cell + 1).astype(np.uint32)


def colour_of(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A tint-etched look: every grain one random colour, no boundary lines."""
    rng = np.random.default_rng(seed)
    table = rng.uniform(0.1, 0.9, (int(labels.max()) + 1, 3)).astype(np.float32)
    return table[labels]


def hue(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2HSV)[..., 0]


def test_folder_mixes_grey_and_colour(tmp_path):
    lab = grid_labels(48, 64)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    iio.imwrite(tmp_path / "images" / "tint.png", (colour_of(lab) * 255).astype(np.uint8))
    grey = (np.random.default_rng(1).random((48, 64)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "images" / "grey.png", np.dstack([grey] * 3))  # grey stored as RGB
    for name in ("tint", "grey"):
        iio.imwrite(tmp_path / "labels" / f"{name}.png", lab.astype(np.uint16))
    samples = {s.name: s for s in load_segmentation_folder(tmp_path)}
    assert samples["tint"].image.shape == (48, 64, 3) and samples["grey"].image.shape == (48, 64)
    assert samples["tint"].labels.shape == samples["grey"].labels.shape == (48, 64)


def test_seg_sample_shapes():
    lab = grid_labels(20, 20)
    SegSample("c", colour_of(lab), lab, "c")
    with pytest.raises(DataError, match="labels shape"):
        SegSample("c", colour_of(lab)[:10], lab, "c")
    with pytest.raises(DataError, match=r"\(H, W, 3\)"):
        SegSample("c", np.zeros((20, 20, 4), np.float32), lab, "c")


@pytest.mark.parametrize("in_chans", [1, 3])
def test_patches_take_the_models_channels(in_chans):
    lab = grid_labels()
    tint = colour_of(lab)
    grey = np.random.default_rng(2).random(lab.shape).astype(np.float32)
    samples = [SegSample("tint", tint, lab, "tint"), SegSample("grey", grey, lab, "grey")]
    aug = build_augmentation(PRESETS, patch_size=64)
    ds = SegPatchDataset(samples, 64, aug, length=12, seed=3, in_chans=in_chans)
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (in_chans, 64, 64) and item["boundary"].shape == (1, 64, 64)
        assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    tiles = SegTileDataset(samples, 64, in_chans=in_chans)
    first, second = tiles[0]["image"].numpy(), tiles[len(tiles) - 1]["image"].numpy()
    assert first.shape == second.shape == (in_chans, 64, 64)
    if in_chans == 3:
        np.testing.assert_array_equal(first, np.moveaxis(tint[:64, :64], -1, 0))  # colour as it is
        np.testing.assert_array_equal(second[0], second[2])  # grey replicated
        np.testing.assert_array_equal(second[0], grey[32:, 32:])
    else:
        lum = tint[:64, :64] @ np.array([0.2125, 0.7154, 0.0721], np.float32)
        np.testing.assert_allclose(first[0], lum, atol=1e-6)
    cls = ClsPatchDataset([ClsSample("t", tint, 0, "t"), ClsSample("g", grey, 1, "g")], 32, None, length=4,
                          in_chans=in_chans)
    assert cls[0]["image"].shape == (in_chans, 32, 32)


def test_patches_reject_other_channel_counts():
    lab = grid_labels(32, 32)
    with pytest.raises(DataError, match="in_chans"):
        SegPatchDataset([SegSample("a", colour_of(lab), lab, "a")], 32, in_chans=2)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_works_on_colour(preset):
    lab = grid_labels()
    img = colour_of(lab)
    aug = build_augmentation((preset,), patch_size=64, strength=2.0)
    changed = False
    for seed in range(12):
        aug.set_random_seed(seed)
        out = aug(image=img, mask=lab.astype(np.int32) + 1)
        assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.float32
        assert 0 <= out["image"].min() and out["image"].max() <= 1 and np.isfinite(out["image"]).all()
        assert out["mask"].shape == (64, 64)
        changed |= not np.array_equal(out["image"], img[16:80, 16:80])
    assert changed


def test_sem_artifacts_put_one_distortion_on_all_channels():
    g = np.random.default_rng(4).random((64, 64)).astype(np.float32) * 0.8
    probs = dict(shading=1, scratches=1, dust=1, charging=1, scan=1, line_noise=1)
    out = sem_artifacts(np.dstack([g, g, g]), np.random.default_rng(5), **probs)
    assert out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert np.abs(out[..., 0] - g).max() > 0.05  # something happened
    # a colour image: the same artefacts on each channel (a channel scaled by 1/2 gets the same places)
    c = np.dstack([g, 0.5 * g, g])
    out = sem_artifacts(c, np.random.default_rng(6), **probs)
    moved0, moved1 = np.abs(out[..., 0] - c[..., 0]) > 1e-3, np.abs(out[..., 1] - c[..., 1]) > 1e-3
    assert (moved0 & moved1).sum() > 0.8 * max(moved0.sum(), moved1.sum())


def test_colour_preset_changes_hue_and_leaves_grey_alone():
    lab = grid_labels(64, 64, 16)
    img = colour_of(lab, seed=7)
    grey = np.random.default_rng(8).random((64, 64)).astype(np.float32)
    aug = build_augmentation(("colour",))
    shifts = []
    for seed in range(20):
        aug.set_random_seed(seed)
        out = aug(image=img)["image"]
        assert out.shape == img.shape
        d = np.abs(hue(out) - hue(img))
        shifts.append(float(np.median(np.minimum(d, 360 - d))))
        aug.set_random_seed(seed)
        np.testing.assert_array_equal(aug(image=grey)["image"], grey)
    assert max(shifts) > 30  # hues rotate by tens of degrees
    # one rotation for the whole image: hue differences between grains survive (saturation kept away from 0)
    t = ColourJitter(hue=90, saturation=1.0, white_balance=0.0, p=1.0)
    out = t.apply(img, hue=60.0, sat=1.0, gains=None)
    d = np.mod(hue(out) - hue(img), 360)
    sat = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1] > 0.1
    np.testing.assert_allclose(d[sat], 60.0, atol=0.5)


def test_mean_grain_diameter():
    lab = grid_labels(120, 120, 12)
    assert mean_grain_diameter(lab) == pytest.approx(np.sqrt(4 * 144 / np.pi))
    # grains cut by the border are left out: a grid offset by 5 px has cut grains along the border
    cut = grid_labels(125, 125, 12)[5:, 5:]
    assert mean_grain_diameter(cut) == pytest.approx(np.sqrt(4 * 144 / np.pi))
    # a sparse annotation: only the annotated grains count, a few odd ones do not move the median
    sparse = np.where(lab % 3 == 0, lab, 0)
    sparse[60:84, 60:84] = 999  # one grain 4x larger
    assert mean_grain_diameter(sparse) == pytest.approx(np.sqrt(4 * 144 / np.pi))
    assert mean_grain_diameter(np.zeros((10, 10), np.uint32)) is None
    one = np.ones((30, 30), np.uint32)  # every grain touches the border: they count
    assert mean_grain_diameter(one) == pytest.approx(np.sqrt(4 * 900 / np.pi))
    with pytest.raises(DataError):
        mean_grain_diameter(np.zeros((3, 3, 3), np.uint32))


def test_rescale_sample_meets_the_target_diameter():
    lab = grid_labels(240, 240, 24)
    s = SegSample("a", colour_of(lab), lab, "a", pixel_size=0.5)
    d = mean_grain_diameter(lab)
    for target in (13.0, 40.0):
        r = rescale_sample(s, target / d)
        assert r.image.shape[:2] == r.labels.shape and r.image.ndim == 3 and r.labels.dtype == lab.dtype
        assert mean_grain_diameter(r.labels) == pytest.approx(target, rel=0.06)
        assert r.pixel_size == pytest.approx(0.5 * d / target)
        assert set(np.unique(r.labels)) <= set(np.unique(lab))  # nearest: no invented label values
    assert rescale_sample(s, 1.0) is s
    np.testing.assert_array_equal(resize_labels(lab, 0.5), lab[1::2, 1::2])  # nearest pixel centres
    np.testing.assert_array_equal(resize_labels(lab, 2.0), np.repeat(np.repeat(lab, 2, 0), 2, 1))


def test_samples_from_arrays_keeps_colour():
    lab = grid_labels(32, 32)
    rgb8 = (colour_of(lab) * 255).astype(np.uint8)
    s = samples_from_arrays([rgb8, np.dstack([rgb8[..., 0]] * 3)], [lab, lab])
    assert s[0].image.shape == (32, 32, 3) and s[1].image.shape == (32, 32)
