"""Dataset folders, groups and in-memory samples."""

from __future__ import annotations

import json
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_grainlab.core._io import write_tiff
from napari_grainlab.core.data.datasets import (
    DataWarning,
    detect_task,
    group_of,
    load_classification_folder,
    load_segmentation_folder,
    samples_from_arrays,
)
from napari_grainlab.core.data.io import DataError


def grid_labels(h=40, w=48, cell=8) -> np.ndarray:
    return (np.arange(h)[:, None] // cell * 100 + np.arange(w)[None, :] // cell + 1).astype(np.uint16)


def image(seed=0, h=40, w=48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (h, w)).astype(np.uint16)


def make_seg_folder(root, names=("a", "b"), labelled=None):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, n in enumerate(names):
        write_tiff(root / "images" / f"{n}.tif", image(i), pixel_size_um=0.5)
        if labelled is None or n in labelled:
            tifffile.imwrite(root / "labels" / f"{n}.tif", grid_labels())
    return root


def test_loads_pairs_with_pixel_size(tmp_path):
    root = make_seg_folder(tmp_path / "ds", ("a", "b", "c"))
    samples = load_segmentation_folder(root)
    assert [s.name for s in samples] == ["a", "b", "c"]
    s = samples[0]
    assert s.image.dtype == np.float32 and s.labels.dtype == np.uint32 and s.image.shape == s.labels.shape
    assert s.pixel_size == pytest.approx(0.5) and s.labels.max() == 30 and s.group == "a"
    assert detect_task(root) == "segment"


def test_missing_orphan_and_empty_labels_warn(tmp_path):
    root = make_seg_folder(tmp_path / "ds", ("a", "b", "c", "d"), labelled=("a", "b"))
    tifffile.imwrite(root / "labels" / "orphan.tif", grid_labels())
    tifffile.imwrite(root / "labels" / "b.tif", np.zeros((40, 48), np.uint16))  # nothing annotated
    (root / "images" / ".hidden.tif").write_bytes(b"x")
    (root / "images" / "notes.txt").write_text("not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = load_segmentation_folder(root)
    assert [s.name for s in samples] == ["a"]
    text = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any("2 image(s) have no labels" in t and "c, d" in t for t in text)
    assert any("1 label file(s) have no image" in t and "orphan" in t for t in text)
    assert any("no annotated pixel" in t and "b" in t for t in text)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="images/ and labels/"):
        load_segmentation_folder(tmp_path)
    root = make_seg_folder(tmp_path / "nopairs", ("a",), labelled=())
    tifffile.imwrite(root / "labels" / "z.tif", grid_labels())
    with pytest.raises(DataError, match="no image in images/ has a label file"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_segmentation_folder(root)
    root = make_seg_folder(tmp_path / "empty", ("a", "b"))
    for n in ("a", "b"):
        tifffile.imwrite(root / "labels" / f"{n}.tif", np.zeros((40, 48), np.uint8))
    with pytest.raises(DataError, match="no annotated pixels in"):
        load_segmentation_folder(root)
    root = make_seg_folder(tmp_path / "mismatch", ("a",))
    tifffile.imwrite(root / "labels" / "a.tif", grid_labels(30, 48))
    with pytest.raises(DataError, match=r"a\.tif.*\(30, 48\).*\(40, 48\)"):
        load_segmentation_folder(root)
    root = make_seg_folder(tmp_path / "dup", ("a",))
    iio.imwrite(root / "images" / "a.png", image().astype(np.uint8))
    with pytest.raises(DataError, match="two files named 'a'"):
        load_segmentation_folder(root)


@pytest.mark.parametrize("name, group", [("steel_tile3", "steel"), ("steel-crop01", "steel"), ("s_r2_c5", "s"),
                                         ("s_x0_y512", "s"), ("s_patch7", "s"), ("synth_0003", "synth_0003"),
                                         ("plain", "plain"), ("tile3", "tile3")])
def test_group_of(name, group):
    assert group_of(name) == group


def test_groups_from_suffix_csv_and_dataset_json(tmp_path):
    names = ("m1_tile0", "m1_tile1", "m2_tile0", "other")
    root = make_seg_folder(tmp_path / "ds", names)
    assert [s.group for s in load_segmentation_folder(root)] == ["m1", "m1", "m2", "other"]
    (root / "groups.csv").write_text("name,group\nother,m2\nm1_tile1.tif,m9\n")
    assert [s.group for s in load_segmentation_folder(root)] == ["m1", "m9", "m2", "m2"]
    (root / "groups.csv").unlink()
    (root / "dataset.json").write_text(json.dumps({"kind": "synthetic", "items": [{"name": n} for n in names]}))
    assert [s.group for s in load_segmentation_folder(root)] == list(names)  # independent micrographs
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json"):
        load_segmentation_folder(root)


def make_cls_folder(root, classes=("ferrite", "pearlite"), per_class=3):
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            tifffile.imwrite(root / cls / f"m{i}_tile{c}.tif", image(10 * c + i, 32, 36))
    return root


def test_classification_folder(tmp_path):
    root = make_cls_folder(tmp_path / "cls", ("pearlite", "ferrite", "bainite"))
    (root / "empty_class").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples, classes = load_classification_folder(root)
    assert classes == ["bainite", "ferrite", "pearlite"]
    assert any("empty_class" in str(w.message) for w in caught)
    assert len(samples) == 9
    assert [s.label for s in samples] == [0] * 3 + [1] * 3 + [2] * 3
    assert samples[0].name == "bainite/m0_tile2" and samples[0].image.dtype == np.float32
    # tiles of one micrograph share a group across classes
    assert samples[0].group == samples[3].group == "m0"
    assert detect_task(root) == "classify"


def test_classification_one_class(tmp_path):
    root = make_cls_folder(tmp_path / "one", ("only",))
    with pytest.raises(DataError, match="one class only"):
        load_classification_folder(root)


def test_detect_task_errors(tmp_path):
    with pytest.raises(DataError, match="expected images/NAME.tif"):
        detect_task(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no labels/"):
        detect_task(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        detect_task(tmp_path / "missing")


def test_samples_from_arrays():
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3)).astype(np.uint8)
    lab = grid_labels().astype(np.int64)
    samples = samples_from_arrays([image(), rgb], [lab, lab.astype(np.int32)], names=["x_tile1", "y"],
                                  pixel_sizes=[0.2, None])
    assert [s.name for s in samples] == ["x_tile1", "y"] and [s.group for s in samples] == ["x", "y"]
    assert samples[0].pixel_size == 0.2 and samples[1].pixel_size is None
    assert samples[0].image.shape == (40, 48) and samples[1].image.shape == (40, 48, 3)  # colour stays colour
    for s in samples:
        assert s.image.dtype == np.float32 and s.labels.shape == (40, 48)
        assert 0 <= s.image.min() and s.image.max() <= 1 and s.labels.dtype == np.uint32
    one = samples_from_arrays(image(), lab)  # a single pair
    assert len(one) == 1 and one[0].name == "image0"
    stack = samples_from_arrays(np.stack([image(1), image(2)]), np.stack([lab, lab]))
    assert len(stack) == 2


def test_samples_from_arrays_errors_and_empty():
    lab = grid_labels()
    with pytest.raises(DataError, match=r"\(40, 48\).*\(40, 40\)"):
        samples_from_arrays([image(0, 40, 40)], [lab])
    with pytest.raises(DataError, match="2 images but 1 label"):
        samples_from_arrays([image(), image()], [lab])
    with pytest.raises(DataError, match="no annotated pixels"):
        samples_from_arrays([image()], [np.zeros_like(lab)])
    with pytest.warns(DataWarning, match="1 image"):
        out = samples_from_arrays([image(), image()], [lab, np.zeros_like(lab)])
    assert len(out) == 1
    with pytest.raises(DataError, match="negative"):
        samples_from_arrays([image()], [lab.astype(np.int32) - 5])
