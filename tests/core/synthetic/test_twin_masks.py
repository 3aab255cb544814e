"""Twin-boundary masks: the generator's convention, the dataset writer and reader, and the twin statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_grainlab.core.data.datasets import load_segmentation_folder, parent_grains, samples_from_arrays
from napari_grainlab.core.data.targets import inner_edges, twin_boundaries
from napari_grainlab.core.errors import DataError
from napari_grainlab.core.synthetic import SynthParams, generate
from napari_grainlab.core.synthetic.dataset import write_dataset
from napari_grainlab.core.twins import split_at_twins, twin_statistics


def twinned(size=96, grains=12, fraction=0.9):
    p = SynthParams.preset("sem-twins", height=size, width=size)
    p.tessellation.grains = grains
    p.tessellation.twin_fraction = fraction
    return p


def _same_label_other_band(labels, bands, mask):
    """For every mask pixel: whether a 4-neighbour has the same label and another twin band."""
    ok = np.zeros(mask.shape, dtype=bool)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        lab = np.roll(labels, (dy, dx), axis=(0, 1))
        band = np.roll(bands, (dy, dx), axis=(0, 1))
        valid = np.ones(mask.shape, dtype=bool)
        if dy == 1:
            valid[0] = False
        elif dy == -1:
            valid[-1] = False
        if dx == 1:
            valid[:, 0] = False
        elif dx == -1:
            valid[:, -1] = False
        ok |= valid & (lab == labels) & (band != bands)
    return ok[mask]


def test_twins_are_part_of_their_parent_grain_and_the_mask_marks_their_interfaces():
    s = generate(twinned(), seed=1)
    tb = s.twin_boundaries
    assert tb.dtype == bool and tb.shape == s.labels.shape
    assert tb.sum() > 100
    # every twin-boundary pixel lies inside a grain, next to a pixel of the same grain in another band
    assert (s.labels[tb] > 0).all()
    assert _same_label_other_band(s.labels, s.twins, tb).all()
    # twins keep their parent's label: no label changes across a twin band edge, so the grain boundaries
    # (label edges) are not twin boundaries except where a twin line ends on the grain boundary
    assert (tb & inner_edges(s.labels)).sum() < 0.2 * tb.sum()
    # each side of each interface: inside and outside the twin bands
    assert (tb & (s.twins > 0)).any() and (tb & (s.twins == 0)).any()
    # no twins drawn: no mask
    p = twinned(fraction=0.0)
    assert generate(p, seed=1).twin_boundaries is None


def test_twin_boundaries_of_a_hand_made_band():
    labels = np.ones((8, 10), dtype=np.uint32)
    labels[:, 5:] = 2
    bands = np.zeros_like(labels, dtype=np.uint8)
    bands[3:5, :] = 1  # a band across both grains
    tb = twin_boundaries(labels, bands)
    assert tb[2:6].all() and not tb[:2].any() and not tb[6:].any()
    with pytest.raises(DataError):
        twin_boundaries(labels, bands[:4])


def test_synth_writes_aligned_twin_masks_and_the_loader_reads_them(tmp_path):
    out = tmp_path / "twins_data"
    list(write_dataset(out, twinned(), count=2, seed=5))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["twins"] == "twins"
    from napari_grainlab.core.synthetic.generate import item_seed

    for i, item in enumerate(meta["items"]):
        mask = tifffile.imread(out / "twins" / f"{item['name']}.tif")
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        s = generate(twinned(), item_seed(5, i))
        np.testing.assert_array_equal(mask.astype(bool), s.twin_boundaries)
        labels = tifffile.imread(out / "labels" / f"{item['name']}.tif")
        assert mask.shape == labels.shape
        assert _same_label_other_band(labels.astype(np.int64), s.twins, mask > 0).all()
    samples = load_segmentation_folder(out)
    assert len(samples) == 2 and all(x.twins is not None and x.twins.dtype == bool for x in samples)
    first = generate(twinned(), item_seed(5, 0))
    np.testing.assert_array_equal(samples[0].twins, first.twin_boundaries)
    # parent grains stay as they are (the mask lies inside the grains, nothing is merged)
    assert samples[0].labels.max() == first.labels.max()

    # without twins: no twins/ folder, no masks
    plain = tmp_path / "plain"
    list(write_dataset(plain, twinned(fraction=0.0), count=1, seed=5))
    assert not (plain / "twins").exists()
    assert json.loads((plain / "dataset.json").read_text())["twins"] is None
    assert load_segmentation_folder(plain)[0].twins is None


def test_a_real_folder_may_have_twin_masks_for_some_images(tmp_path):
    out = tmp_path / "real"
    list(write_dataset(out, twinned(), count=2, seed=2))
    (out / "twins" / "synth_0001.tif").unlink()
    samples = {s.name: s for s in load_segmentation_folder(out)}
    assert samples["synth_0000"].twins is not None and samples["synth_0001"].twins is None
    tifffile.imwrite(out / "twins" / "synth_0001.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="mask shape"):
        load_segmentation_folder(out)


def _grid_with_twins():
    """4 x 4 grains of 16 px, each with a twin band of rows 6-9 (labels: parents)."""
    yy, xx = np.mgrid[0:64, 0:64]
    parents = (yy // 16 * 4 + xx // 16 + 1).astype(np.uint32)
    bands = (((yy % 16) >= 6) & ((yy % 16) < 10)).astype(np.uint8)
    return parents, bands


def test_labels_that_number_twins_as_grains_are_merged_into_their_parents():
    parents, bands = _grid_with_twins()
    mask = twin_boundaries(parents, bands)
    separate = split_at_twins(parents, mask)  # twins as grains of their own
    assert separate.max() == 16 * 3
    merged = parent_grains(separate, mask)
    # the same partition as the parents
    pairs = set(zip(merged.ravel().tolist(), parents.ravel().tolist()))
    assert len(pairs) == 16 and merged.max() == 16
    # parent labels are left alone
    assert parent_grains(parents, mask) is parents
    sample = samples_from_arrays([np.random.default_rng(0).random((64, 64))], [separate], twins=[mask])[0]
    assert sample.labels.max() == 16 and sample.twins.sum() == mask.sum()


def test_twin_statistics_count_and_exclude_twins():
    parents, bands = _grid_with_twins()
    mask = twin_boundaries(parents, bands)
    stats = twin_statistics(parents, mask.astype(np.float32), pixel_size=1.0)
    assert stats["twinned_grains"] == 16
    assert stats["grains_twins_counted"] == 48
    assert stats["G_twins_counted"] > stats["G_twins_excluded"] + 1.0  # three times the grains: +1.6 G
    assert 0.3 < stats["twin_boundary_fraction"] < 0.7
    none = twin_statistics(parents, np.zeros(parents.shape, np.float32), pixel_size=1.0)
    assert none["twin_boundary_fraction"] == 0.0 and none["twinned_grains"] == 0
    assert none["G_twins_counted"] == pytest.approx(none["G_twins_excluded"])
    assert np.isnan(twin_statistics(parents, mask.astype(np.float32))["G_twins_counted"])  # no pixel size
