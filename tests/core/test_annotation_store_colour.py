"""Colour micrographs in the dataset folder: RGB TIFFs (core/_io.write_tiff), annotation saving
(core/annotate.py, core/annotation_store.py) and overlays (core/visualize.py) keep the colour."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_grainlab.core import _io
from napari_grainlab.core import annotate as A
from napari_grainlab.core.annotation_store import AnnotationStore
from napari_grainlab.core.data.io import read_image
from napari_grainlab.core.errors import DataError
from napari_grainlab.core.visualize import image_to_unit, overlay_rgb, preview_grid


def colour(seed: int = 0, shape=(48, 64), dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random((*shape, 3), dtype=np.float32)
    return rng.integers(0, 255, (*shape, 3), dtype=dtype)


def grains(*ids: int, shape=(48, 64)) -> np.ndarray:
    lab = np.zeros(shape, np.uint32)
    for i, gid in enumerate(ids):
        lab[4 + 10 * i: 12 + 10 * i, 4:40] = gid
    return lab


def photometric(path) -> str:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].photometric.name


# ---------------------------------------------------------------------------------- write_tiff
def test_write_tiff_writes_h_w_3_as_rgb_and_grey_as_minisblack(tmp_path):
    rgb = colour()
    _io.write_tiff(tmp_path / "c.tif", rgb, pixel_size_um=0.5)
    assert photometric(tmp_path / "c.tif") == "RGB"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif"), rgb)
    img = read_image(tmp_path / "c.tif")
    assert img.data.shape == (48, 64, 3) and img.pixel_size == pytest.approx(0.5)
    _io.write_tiff(tmp_path / "g.tif", rgb[..., 0])
    assert photometric(tmp_path / "g.tif") == "MINISBLACK"
    # rgb=False: three grey planes whatever the shape; rgb=True needs (H, W, 3)
    _io.write_tiff(tmp_path / "planes.tif", rgb, rgb=False)
    assert photometric(tmp_path / "planes.tif") == "MINISBLACK"
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        _io.write_tiff(tmp_path / "bad.tif", rgb[..., 0], rgb=True)
    _io.atomic_write_tiff(tmp_path / "f.tif", colour(dtype=np.float32), compression="zlib")
    assert photometric(tmp_path / "f.tif") == "RGB"
    assert tifffile.imread(tmp_path / "f.tif").dtype == np.float32


# ---------------------------------------------------------------------------------- annotate files
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_colour_micrograph_is_saved_as_an_rgb_image_with_its_labels(tmp_path, dtype):
    image = colour(dtype=dtype)
    img_path, lab_path = A.save_segmentation(tmp_path, "etched.png", image, grains(1, 2), pixel_size=0.25)
    assert img_path == tmp_path / "images" / "etched.tif"
    assert photometric(img_path) == "RGB"
    stored = tifffile.imread(img_path)
    assert stored.shape == (48, 64, 3) and stored.dtype == image.dtype
    np.testing.assert_array_equal(stored, image)
    assert read_image(img_path).data.shape == (48, 64, 3)  # the dataset folder keeps the colour
    np.testing.assert_array_equal(A.load_segmentation(tmp_path, "etched", shape=image.shape, image=image),
                                  grains(1, 2))
    # another colour micrograph of the same name is recognised as such (same size, other pixels)
    other = colour(seed=5, dtype=dtype)
    with pytest.raises(DataError, match="another image"):
        A.save_segmentation(tmp_path, "etched", other, grains(1))
    with pytest.raises(DataError, match="another image"):
        A.load_segmentation(tmp_path, "etched", image=other)
    # the grey version of the image is not mistaken for another one of a different size
    with pytest.raises(DataError, match="does not match"):
        A.save_segmentation(tmp_path, "etched", image, grains(1, shape=(40, 64)))


def test_colour_fingerprints_and_bad_shapes():
    image = colour()
    assert A.image_fingerprint(image) == A.image_fingerprint(image.copy())
    assert A.image_fingerprint(image) != A.image_fingerprint(image[..., ::-1])
    assert A.image_fingerprint(image) != A.image_fingerprint(np.ascontiguousarray(image[..., 0]))
    assert A.autosave_name("x", image) != A.autosave_name("x", colour(seed=1))
    for bad in (np.zeros((8, 8, 4), np.uint8), np.zeros((2, 8, 8), np.uint8), np.zeros(8, np.uint8)):
        with pytest.raises(DataError, match=r"\(H, W, 3\)"):
            A.image_fingerprint(bad)


def test_classification_exports_of_a_colour_image_are_rgb(tmp_path):
    image = colour(shape=(64, 64))
    regions = np.zeros((64, 64), np.uint8)
    regions[:32, :32] = 1
    ann = A.ClassAnnotation(classes=["ferrite", "pearlite"], image_class="pearlite", regions=regions, tile=32)
    written = A.save_class_annotation(tmp_path, "m", image, ann)
    whole = tmp_path / "pearlite" / "m.tif"
    tile = tmp_path / "ferrite" / "m_r0_c0.tif"
    assert set(written) == {whole, tile}
    assert photometric(whole) == "RGB" and photometric(tile) == "RGB"
    np.testing.assert_array_equal(tifffile.imread(tile), image[:32, :32])
    loaded = A.load_class_annotation(tmp_path, "m", shape=image.shape)
    np.testing.assert_array_equal(loaded.regions, regions)


# ---------------------------------------------------------------------------------- the store
def test_the_store_saves_and_finds_the_work_on_a_colour_micrograph(tmp_path):
    spare = tmp_path / "autosave"
    image = colour(dtype=np.float32)
    store = AnnotationStore(fallback_dir=lambda: spare)
    store.open("tint", image, pixel_size=0.5)
    saved, where = store.find_saved()
    assert saved is None and where is None
    store.adopt(saved, where)
    assert store.saved.shape == (48, 64)  # labels are one plane of the image's height and width
    # an autosave without a dataset folder goes to the per-user folder, in colour
    job = store.snapshot(grains(1), None, auto=True)
    assert store.record(store.write(job).job)
    assert photometric(spare / "images" / f"{store.autosave_name}.tif") == "RGB"
    # a save into the dataset folder: images/NAME.tif is RGB
    store.set_folder(tmp_path / "ds")
    job = store.snapshot(grains(1, 2), None)
    result = store.write(job)
    assert result.folder == tmp_path / "ds" and store.record(result.job)
    assert not store.has_unsaved_changes(grains(1, 2), ())
    assert photometric(tmp_path / "ds" / "images" / "tint.tif") == "RGB"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ds" / "images" / "tint.tif"), image)
    # opened again (a new session), the labels are found for these pixels, not for another colour image
    again = AnnotationStore(tmp_path / "ds", fallback_dir=lambda: spare)
    again.open("tint", image.copy())
    found, where = again.find_saved(prefer_dataset=True)
    assert where == tmp_path / "ds"
    np.testing.assert_array_equal(found, grains(1, 2))
    warnings = []
    other = AnnotationStore(tmp_path / "ds", fallback_dir=lambda: spare, warn=warnings.append)
    other.open("tint", colour(seed=3, dtype=np.float32))
    assert other.find_saved(prefer_dataset=True) == (None, None)
    assert warnings and "another image" in warnings[0]


# ---------------------------------------------------------------------------------- overlays
def test_overlays_of_a_colour_image_keep_its_colour():
    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 0] = 200  # red
    labels = np.zeros((20, 30), np.uint32)
    labels[:, 15:] = 1
    unit = image_to_unit(image)
    assert unit.shape == (20, 30, 3) and unit[0, 0, 0] == pytest.approx(200 / 255)
    out = overlay_rgb(image, labels, alpha=0.0)
    assert out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out[5, 3], [200, 0, 0])  # untinted, not made grey
    np.testing.assert_array_equal(out[5, 14], [255, 217, 0])  # the boundary colour
    stretched = image_to_unit(image.astype(np.float32), percentiles=(1, 99))
    assert stretched.shape == (20, 30, 3) and stretched[..., 0].max() == 1.0 and stretched[..., 1].max() == 0.0
    grid = preview_grid([(image, labels)], gap=2)
    np.testing.assert_array_equal(grid[5, 3], [200, 0, 0])
    with pytest.raises(DataError, match="differ in shape"):
        overlay_rgb(image, labels[:, :20])
    with pytest.raises(DataError):
        image_to_unit(np.zeros((4, 4, 2)))
