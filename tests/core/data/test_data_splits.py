"""Group-aware splits: no source micrograph on both sides."""

from __future__ import annotations

import numpy as np
import pytest

from napari_grainlab.core.data.datasets import SegSample
from napari_grainlab.core.data.io import DataError
from napari_grainlab.core.data.splits import group_split, kfold_splits, spatial_split


def tiled_groups(seed: int) -> list[str]:
    """Tiles of micrographs: uneven numbers of tiles per source, shuffled."""
    rng = np.random.default_rng(seed)
    groups = [f"micrograph{g}" for g in range(int(rng.integers(2, 12))) for _ in range(int(rng.integers(1, 9)))]
    rng.shuffle(groups)
    return groups


@pytest.mark.parametrize("seed", range(25))
def test_no_source_micrograph_on_both_sides(seed):
    groups = tiled_groups(seed)
    for frac in (0.1, 0.2, 0.5, 0.9):
        tr, va = group_split(groups, frac, seed=seed)
        assert len(tr) and len(va)
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(groups)))
        assert not {groups[i] for i in tr} & {groups[i] for i in va}


def test_group_split_fraction_and_determinism():
    groups = [f"g{i}" for i in range(50)]
    tr, va = group_split(groups, 0.2, seed=3)
    assert len(va) == 10
    tr2, va2 = group_split(groups, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    others = {tuple(group_split(groups, 0.2, seed=s)[1]) for s in range(5)}
    assert len(others) > 1  # the seed matters
    # order of the samples does not change which groups are chosen
    perm = np.random.default_rng(0).permutation(50)
    _, va_perm = group_split([groups[i] for i in perm], 0.2, seed=3)
    assert {groups[perm[i]] for i in va_perm} == {groups[i] for i in va}


def test_group_split_large_groups():
    groups = ["big"] * 90 + ["a"] * 5 + ["b"] * 5
    tr, va = group_split(groups, 0.2, seed=0)
    assert {groups[i] for i in va} <= {"a", "b"}  # the big group never lands in validation
    tr, va = group_split(["x"] * 5 + ["y"] * 5, 0.1, seed=1)  # nothing fits: one group anyway
    assert len(va) == 5 and len(tr) == 5


def test_group_split_needs_two_groups():
    with pytest.raises(DataError, match="2 source micrographs"):
        group_split(["only"] * 4)
    with pytest.raises(DataError, match="val_fraction"):
        group_split(["a", "b"], 1.0)
    with pytest.raises(DataError, match="no samples"):
        group_split([])


@pytest.mark.parametrize("seed", range(10))
def test_kfold_partitions_groups(seed):
    groups = tiled_groups(seed + 100)
    n_groups = len(set(groups))
    k = min(3, n_groups)
    folds = kfold_splits(groups, k, seed=seed)
    assert len(folds) == k
    seen = np.concatenate([va for _, va in folds])
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(groups)))  # every sample validated once
    for tr, va in folds:
        assert len(va) and len(tr)
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(groups)))
        assert not {groups[i] for i in tr} & {groups[i] for i in va}
    # balanced: fold sizes differ by at most the largest group
    sizes = [len(va) for _, va in folds]
    largest = max(groups.count(g) for g in set(groups))
    assert max(sizes) - min(sizes) <= largest


def test_kfold_determinism_and_errors():
    groups = [f"g{i % 7}" for i in range(30)]
    a = kfold_splits(groups, 3, seed=4)
    b = kfold_splits(groups, 3, seed=4)
    for (t1, v1), (t2, v2) in zip(a, b):
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(t1, t2)
    with pytest.raises(DataError, match="at least 8"):
        kfold_splits(groups, 8)
    with pytest.raises(DataError, match="k >= 2"):
        kfold_splits(groups, 1)


def sample(h=100, w=60) -> SegSample:
    rng = np.random.default_rng(0)
    labels = (np.arange(h)[:, None] // 10 * 10 + np.arange(w)[None, :] // 10 + 5).astype(np.uint32)
    return SegSample("img", rng.random((h, w), dtype=np.float32), labels, "img", 0.5)


def test_spatial_split_cuts_the_longer_axis():
    s = sample()
    tr, va = spatial_split(s, 0.2)
    assert (tr.name, va.name) == ("img[top]", "img[bottom]")
    assert tr.image.shape == (80, 60) and va.image.shape == (20, 60)
    np.testing.assert_array_equal(np.concatenate([tr.image, va.image]), s.image)
    for part in (tr, va):
        ids = np.unique(part.labels)
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # relabelled
        assert part.group == "img" and part.pixel_size == 0.5
    wide = SegSample("w", s.image.T.copy(), s.labels.T.copy(), "w")
    tr, va = spatial_split(wide, 0.25)
    assert (tr.name, va.name) == ("w[left]", "w[right]") and va.image.shape == (60, 25)


def test_spatial_split_follows_the_annotation():
    s = sample()
    s.labels[70:] = 0  # only the top is annotated
    tr, va = spatial_split(s, 0.2)
    assert va.name == "img[top]" and va.labels.any() and tr.labels.any()
    s.labels[:] = 0
    s.labels[40:60] = 3  # annotation only in the middle: no split leaves both parts annotated
    with pytest.raises(DataError, match="img"):
        spatial_split(s, 0.2)
    with pytest.raises(DataError, match="too small"):
        spatial_split(sample(10, 5), 0.2)
