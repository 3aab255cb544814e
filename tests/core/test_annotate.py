"""Headless tests of the annotation core: edits, statistics, dataset files."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import tifffile

from napari_grainlab.core import annotate as A
from napari_grainlab.core.data.datasets import group_of, load_classification_folder, load_segmentation_folder


def two_grains() -> np.ndarray:
    lab = np.zeros((40, 60), np.uint16)
    lab[5:35, 5:29] = 3
    lab[5:35, 31:55] = 7  # a 2 px unannotated gap between them (cols 29, 30)
    return lab


# ------------------------------------------------------------------------------ edits
def test_edit_apply_does_not_touch_input_and_between_roundtrips():
    lab = two_grains()
    before = lab.copy()
    edit = A.delete_grains(lab, [7])
    out = edit.apply(lab)
    np.testing.assert_array_equal(lab, before)
    assert not (out == 7).any() and (out == 3).sum() == (lab == 3).sum()
    assert edit.removed_ids == (7,)
    again = A.LabelEdit.between(lab, out)
    np.testing.assert_array_equal(again.apply(lab), out)
    assert not A.delete_grains(lab, [0, 99])  # nothing to delete: an empty edit


def test_merge_into_first_and_bridge_gap():
    lab = two_grains()
    plain = A.merge_grains(lab, [3, 7]).apply(lab)
    assert set(np.unique(plain)) == {0, 3}
    assert (plain[5:35, 29:31] == 0).all()  # gap kept without bridge
    bridged = A.merge_grains(lab, [7, 3], bridge=2).apply(lab)
    assert set(np.unique(bridged)) == {0, 7}
    assert (bridged[5:35, 29:31] == 7).all()  # the gap between the grains is filled
    assert (bridged[:5] == 0).all() and (bridged[:, :5] == 0).all()  # nothing outside
    assert not A.merge_grains(lab, [3, 3, 0])


def test_split_vertical_line_gives_two_touching_grains():
    lab = np.zeros((50, 50), np.uint32)
    lab[10:40, 10:40] = 5
    lab[0:5, 0:5] = 9
    edit = A.split_grain(lab, np.array([[2.0, 24.6], [47.0, 25.2]]))
    out = edit.apply(lab)
    assert len(edit.new_ids) == 1 and edit.new_ids[0] == 10  # above the maximum
    assert set(np.unique(out)) == {0, 5, 9, 10}
    # every grain pixel stays annotated: the cut goes to the sides
    assert ((out > 0) == (lab > 0)).all()
    # both pieces are single connected components, left and right of the line
    from scipy import ndimage as ndi
    for gid in (5, 10):
        assert ndi.label(out == gid)[1] == 1
    cols5, cols10 = np.nonzero(out == 5)[1], np.nonzero(out == 10)[1]
    assert cols5.max() < cols10.min() or cols10.max() < cols5.min()
    assert (out == 9).sum() == 25


def test_split_diagonal_polyline_and_partial_line():
    lab = np.zeros((64, 64), np.uint16)
    lab[8:56, 8:56] = 1
    out = A.split_grain(lab, np.array([[0, 0], [32, 30], [63, 63]])).apply(lab)
    assert set(np.unique(out)) == {0, 1, 2}
    assert min((out == 1).sum(), (out == 2).sum()) > 900
    # a line that ends inside the grain does not split it
    assert not A.split_grain(lab, np.array([[0, 30], [30, 30]]))


def test_split_only_crossed_grains():
    lab = two_grains()
    # crosses grain 3 from top to bottom, only nicks grain 7's corner
    out = A.split_grain(lab, np.array([[0, 15], [39, 15]])).apply(lab)
    assert len(np.unique(out)) == 4  # 0, 3, 7 and the new piece
    np.testing.assert_array_equal(out == 7, lab == 7)


def test_fill_holes_only_enclosed_by_one_grain():
    lab = np.zeros((40, 40), np.uint8)
    lab[5:25, 5:25] = 1
    lab[10:14, 10:14] = 0  # hole in grain 1
    lab[25:35, 5:25] = 2
    lab[24:26, 15:17] = 0  # a hole on the border of grains 1 and 2: not filled
    out = A.fill_holes(lab).apply(lab)
    assert (out[10:14, 10:14] == 1).all()
    assert (out[24:26, 15:17] == 0).all()
    assert (out[:5] == 0).all()  # the background touching the border stays
    small = A.fill_holes(lab, max_area=10).apply(lab)
    assert (small[10:14, 10:14] == 0).all()  # 16 px hole > max_area


def test_fill_unannotated_never_touches_annotation():
    lab = np.zeros((30, 30), np.uint16)
    lab[:, :10] = 4
    proposal = np.zeros((30, 30), np.uint32)
    proposal[:, :12] = 1  # mostly covered by the annotation: dropped (sliver)
    proposal[:, 12:20] = 2
    proposal[:, 20:] = 3
    edit = A.fill_unannotated(lab, proposal)
    out = edit.apply(lab)
    assert (out[:, :10] == 4).all()
    assert (out[:, 10:12] == 0).all()
    assert edit.new_ids == (5, 6)
    assert (out[:, 12:20] == 5).all() and (out[:, 20:] == 6).all()
    with pytest.raises(ValueError, match="shape"):
        A.fill_unannotated(lab, proposal[:10])


def test_stats():
    assert A.annotation_stats(np.zeros((4, 4), np.uint8)) == (0, 0.0)
    lab = two_grains()
    n, frac = A.annotation_stats(lab)
    assert n == 2 and frac == pytest.approx((lab > 0).mean())
    big = np.zeros((10, 10), np.int64)
    big[0, 0], big[5, 5] = 2**40, 3
    assert A.annotation_stats(big)[0] == 2


# ------------------------------------------------------------------------------ files
def test_save_reload_identical_and_training_loader(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, (64, 80)).astype(np.uint16)  # 12-bit in 16-bit
    lab = np.zeros((64, 80), np.uint32)
    lab[:32, :40], lab[32:, :40], lab[:, 40:70] = 70000, 2, 5  # an id > uint16
    img_path, lab_path = A.save_segmentation(tmp_path, "my micrograph.tif", image, lab, pixel_size=0.25)
    assert img_path.name == "my_micrograph.tif" and lab_path.parent.name == "labels"
    back = A.load_segmentation(tmp_path, "my micrograph.tif", shape=(64, 80))
    np.testing.assert_array_equal(back, lab)
    assert back.dtype == np.uint32
    small = lab.copy()
    small[small == 70000] = 9
    A.save_segmentation(tmp_path, "my micrograph.tif", image, small)
    back = A.load_segmentation(tmp_path, "my_micrograph", shape=(64, 80))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, small)
    # no temporaries left behind, and the training loader accepts the folder
    assert not list(tmp_path.rglob("*.part"))
    samples = load_segmentation_folder(tmp_path)
    assert len(samples) == 1 and samples[0].labels.shape == (64, 80)
    assert samples[0].pixel_size == pytest.approx(0.25)
    assert (samples[0].labels[:, 70:] == 0).all()  # not annotated stays 0
    assert len(np.unique(samples[0].labels)) == 4


def test_save_refuses_other_image_of_same_name_and_shape_mismatch(tmp_path):
    A.save_segmentation(tmp_path, "a", np.zeros((20, 20), np.uint8), np.ones((20, 20), np.uint16))
    with pytest.raises(ValueError, match="another image"):
        A.save_segmentation(tmp_path, "a", np.zeros((30, 20), np.uint8), np.ones((30, 20), np.uint16))
    with pytest.raises(ValueError, match="shape"):
        A.save_segmentation(tmp_path, "b", np.zeros((20, 20), np.uint8), np.ones((20, 21), np.uint16))
    with pytest.raises(ValueError, match="shape"):
        A.load_segmentation(tmp_path, "a", shape=(21, 20))
    assert A.load_segmentation(tmp_path, "missing") is None


def test_find_annotation_prefers_newest(tmp_path):
    import os
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        A.save_segmentation(folder, "x", np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint16))
    os.utime(a / "labels" / "x.tif", (1e9, 1e9))
    assert A.find_annotation("x", [a, None, b]) == b
    assert A.find_annotation("y", [a, b]) is None


def test_autosave_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(A.AUTOSAVE_ENV, str(tmp_path / "auto"))
    assert A.autosave_dir() == tmp_path / "auto"
    monkeypatch.delenv(A.AUTOSAVE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if A.sys.platform.startswith("linux"):
        assert A.autosave_dir() == tmp_path / "cache" / "napari-grainlab" / "autosave"


def test_safe_name():
    assert A.safe_name("sample 01.ome.tif") == "sample_01"
    assert A.safe_name("a/b\\c") == "a_b_c"
    assert A.safe_name("...") == "image"


def test_class_tiles():
    regions = np.zeros((100, 130), np.uint8)
    regions[:, :50] = 1
    regions[:, 50:] = 2
    regions[45:50, 45:50] = 0
    tiles = A.class_tiles(regions, 50, 0.9)
    # 2 x 2 whole tiles (the 30 px remainder is not used); tile (0, 0) is 99 % class 1
    assert tiles == [(0, 0, 1), (0, 1, 2), (1, 0, 1), (1, 1, 2)]
    regions[0:50, 50:100] = 1
    regions[0:40, 50:100] = 2  # 80 % class 2: below 90 %
    assert (0, 1, 2) not in A.class_tiles(regions, 50, 0.9)


def test_class_annotation_roundtrip_and_loader(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (128, 128)).astype(np.uint8)
    regions = np.zeros((128, 128), np.uint8)
    regions[:, :64] = 1
    regions[:, 64:] = 2
    ann = A.ClassAnnotation(classes=["ferrite", "pearlite"], regions=regions, tile=64)
    written = A.save_class_annotation(tmp_path, "m1", image, ann)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "ferrite/m1_r0_c0.tif", "ferrite/m1_r1_c0.tif", "pearlite/m1_r0_c1.tif", "pearlite/m1_r1_c1.tif"]
    A.save_class_annotation(tmp_path, "m2", image, A.ClassAnnotation(classes=["ferrite", "pearlite"],
                                                                     image_class="pearlite"))
    back = A.load_class_annotation(tmp_path, "m1", shape=(128, 128))
    assert back.classes == ["ferrite", "pearlite"] and back.image_class is None and back.tile == 64
    np.testing.assert_array_equal(back.regions, regions)
    assert A.load_class_annotation(tmp_path, "m2").image_class == "pearlite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the hidden regions folder is no class, no warning
        samples, classes = load_classification_folder(tmp_path)
    assert classes == ["ferrite", "pearlite"]
    assert len(samples) == 5
    assert {s.group for s in samples} == {"m1", "m2"}  # tiles stay in their micrograph's group
    assert group_of("m1_r1_c0") == "m1"
    # re-saving with fewer regions removes the stale tiles
    regions2 = regions.copy()
    regions2[:, 64:] = 0
    A.save_class_annotation(tmp_path, "m1", image, A.ClassAnnotation(["ferrite", "pearlite"], regions=regions2,
                                                                     tile=64))
    assert not list((tmp_path / "pearlite").glob("m1_*"))
    assert (tmp_path / "pearlite" / "m2.tif").is_file()
    # regions=None keeps (and re-exports) the saved regions; all-zero regions remove them
    A.save_class_annotation(tmp_path, "m1", image, A.ClassAnnotation(["ferrite", "pearlite"], image_class="ferrite",
                                                                     tile=64))
    np.testing.assert_array_equal(A.load_class_annotation(tmp_path, "m1").regions, regions2)
    assert len(list((tmp_path / "ferrite").glob("m1_r*"))) == 2 and (tmp_path / "ferrite" / "m1.tif").is_file()
    A.save_class_annotation(tmp_path, "m1", image, A.ClassAnnotation(["ferrite", "pearlite"],
                                                                     regions=np.zeros_like(regions2)))
    assert A.load_class_annotation(tmp_path, "m1").regions is None
    assert not list((tmp_path / "ferrite").glob("m1*"))
    meta = json.loads((tmp_path / "classes.json").read_text())
    assert meta["images"] == {"m2": "pearlite"}


def test_class_annotation_bad_inputs(tmp_path):
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="invalid class name"):
        A.save_class_annotation(tmp_path, "a", image, A.ClassAnnotation(["images", "b"]))
    with pytest.raises(ValueError, match="not one of"):
        A.save_class_annotation(tmp_path, "a", image, A.ClassAnnotation(["a", "b"], image_class="c"))
    with pytest.raises(ValueError, match="do not match"):
        A.save_class_annotation(tmp_path, "a", image, A.ClassAnnotation(["a"], regions=np.ones((8, 8), np.uint8)))
    assert A.load_class_annotation(tmp_path, "a") is None


def test_core_annotate_has_no_gui_imports():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(A))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"qtpy", "napari", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6"}


def test_class_order_is_stable_across_images(tmp_path):
    image = np.zeros((64, 64), np.uint8)
    r1 = np.ones((64, 64), np.uint8)  # all "b"
    A.save_class_annotation(tmp_path, "one", image, A.ClassAnnotation(["b"], regions=r1, tile=32))
    r2 = np.full((64, 64), 2, np.uint8)  # all "b" again, but "b" is the 2nd class here
    A.save_class_annotation(tmp_path, "two", image, A.ClassAnnotation(["a", "b"], regions=r2, tile=32))
    one, two = A.load_class_annotation(tmp_path, "one"), A.load_class_annotation(tmp_path, "two")
    assert one.classes == two.classes == ["b", "a"]
    assert (one.regions == 1).all() and (two.regions == 1).all()  # both mean "b"
    assert len(list((tmp_path / "b").glob("*.tif"))) == 8 and not (tmp_path / "a").exists()


def test_same_name_other_pixels_is_refused_on_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (32, 40), dtype=np.uint8)
    second = first.copy()
    second[5, 5] ^= 1  # one pixel differs: another micrograph
    labels = np.zeros((32, 40), np.uint32)
    labels[:10, :10] = 3
    A.save_segmentation(tmp_path, "m", first, labels)
    with pytest.raises(ValueError, match="another image"):
        A.save_segmentation(tmp_path, "m", second, labels)
    with pytest.raises(ValueError, match="another image"):
        A.load_segmentation(tmp_path, "m", shape=(32, 40), image=second)
    np.testing.assert_array_equal(A.load_segmentation(tmp_path, "m", shape=(32, 40), image=first), labels)
    # autosave names tell the two apart and are stable
    assert A.autosave_name("m", first) != A.autosave_name("m", second)
    assert A.autosave_name("m", first) == A.autosave_name("m", first.copy())


# ------------------------------------------------------------------ issue 14: fingerprints, backups, removal
def test_image_fingerprint_is_stable_and_tells_images_apart():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4095, (300, 500), dtype=np.uint16)
    fp = A.image_fingerprint(image)
    assert fp == A.image_fingerprint(image.copy()) == A.image_fingerprint(np.asfortranarray(image))
    assert fp != A.image_fingerprint(rng.integers(0, 4095, (300, 500), dtype=np.uint16))
    assert fp != A.image_fingerprint(image.astype(np.float32))  # same values, another pixel type
    assert fp != A.image_fingerprint(image[:, :499])  # another shape
    # a big image is fingerprinted from a sample (cheap on the GUI thread), still stable
    big = np.zeros((4096, 4096), np.uint8)
    big[::7, ::5] = 9
    assert A.image_fingerprint(big) == A.image_fingerprint(big.copy())
    assert A.image_fingerprint(big) != A.image_fingerprint(np.zeros_like(big))


def test_backup_labels_keeps_each_version_once_and_a_bounded_number(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 40), dtype=np.uint8)
    assert A.backup_labels(tmp_path, "m") is None  # nothing saved: nothing to keep
    paths = []
    for i in range(1, 6):
        labels = np.zeros((32, 40), np.uint32)
        labels[:i, :i] = i
        A.save_segmentation(tmp_path, "m", image, labels)
        stamp = 1_700_000_000 + 60 * i
        os.utime(tmp_path / "labels" / "m.tif", (stamp, stamp))
        paths.append(A.backup_labels(tmp_path, "m", keep=3))
        assert A.backup_labels(tmp_path, "m", keep=3) == paths[-1]  # the same version is kept once
    backups = sorted((tmp_path / "labels" / ".backup").iterdir())
    assert backups == paths[-3:] and all(p.name.startswith("m.") and p.suffix == ".tif" for p in backups)
    np.testing.assert_array_equal(tifffile.imread(backups[-1]), A.load_segmentation(tmp_path, "m"))
    # hidden: the training loader does not take backups for samples
    assert [s.name for s in load_segmentation_folder(tmp_path)] == ["m"]
    # another image's backups are not pruned by these
    A.save_segmentation(tmp_path, "m.b", image, np.ones((32, 40), np.uint32))
    A.backup_labels(tmp_path, "m.b", keep=1)
    A.backup_labels(tmp_path, "m", keep=1)
    names = sorted(p.name for p in (tmp_path / "labels" / ".backup").iterdir())
    assert len(names) == 2 and names[0].startswith("m.20") and names[1].startswith("m.b.")


def test_remove_annotation_removes_labels_image_and_classification(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    labels = np.zeros((64, 64), np.uint32)
    labels[:10, :10] = 1
    A.save_segmentation(tmp_path, "gone", image, labels)
    A.save_segmentation(tmp_path, "kept", image, labels)
    regions = np.ones((64, 64), np.uint8)
    cls = tmp_path / "classification"
    A.save_class_annotation(cls, "gone", image, A.ClassAnnotation(["a"], image_class="a", regions=regions, tile=32))
    A.save_class_annotation(cls, "kept", image, A.ClassAnnotation(["a"], image_class="a"))
    removed = A.remove_annotation(tmp_path, "gone")
    assert removed and all(not p.exists() for p in removed)
    assert A.load_segmentation(tmp_path, "gone") is None and not (tmp_path / "images" / "gone.tif").exists()
    assert A.load_class_annotation(cls, "gone").image_class is None
    assert not any(p.name.startswith("gone") for p in cls.rglob("*.tif"))
    # the other image's work is untouched
    assert A.load_segmentation(tmp_path, "kept") is not None
    assert A.load_class_annotation(cls, "kept").image_class == "a" and (cls / "a" / "kept.tif").is_file()
    assert A.remove_annotation(tmp_path, "never saved") == []
