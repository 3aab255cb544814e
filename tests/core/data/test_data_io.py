"""Readers: images of any dtype to float32 [0, 1], pixel size from metadata, label images."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from skimage.metrics import adapted_rand_error

from napari_grainlab.core._io import write_tiff
from napari_grainlab.core.data.io import (
    DataError,
    boundary_mask_to_instances,
    is_boundary_mask,
    labels_from_array,
    normalize_intensity,
    read_image,
    read_labels,
    read_pixel_size,
    to_grayscale,
)
from napari_grainlab.core.synthetic import SynthParams, generate


@pytest.fixture(scope="module")
def grains():
    p = SynthParams(height=128, width=160)
    p.tessellation.grains = 40
    return generate(p, seed=3)


def ramp(dtype=np.uint8, top=255) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((48, 64)) * top).astype(dtype)


# ------------------------------------------------------------------------------------------ images
def test_8bit_16bit_float_look_alike(tmp_path):
    base = ramp(np.float64, 1.0)
    as8 = np.round(base * 255).astype(np.uint8)
    as12 = as8.astype(np.uint16) * 16  # 12-bit data in a 16-bit container
    asf = as8.astype(np.float32) * 0.37 - 12.0  # float with an arbitrary offset and scale
    iio.imwrite(tmp_path / "a.png", as8)
    tifffile.imwrite(tmp_path / "b.tif", as12)
    tifffile.imwrite(tmp_path / "c.tif", asf)
    imgs = [read_image(tmp_path / n) for n in ("a.png", "b.tif", "c.tif")]
    assert [i.original_dtype for i in imgs] == ["uint8", "uint16", "float32"]
    for im in imgs:
        assert im.data.dtype == np.float32 and im.data.shape == (48, 64)
        assert im.data.min() == 0.0 and im.data.max() == 1.0
    np.testing.assert_allclose(imgs[0].data, imgs[1].data, atol=1e-6)
    np.testing.assert_allclose(imgs[0].data, imgs[2].data, atol=1e-5)


def test_normalize_matches_numpy_percentiles():
    rng = np.random.default_rng(1)
    for arr in (rng.integers(100, 4000, (60, 70)).astype(np.uint16), rng.integers(-50, 90, (33, 20)).astype(np.int16),
                rng.integers(0, 256, (15, 17)).astype(np.uint8)):
        lo, hi = np.percentile(arr, (0.1, 99.9))
        expect = np.clip((arr - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(normalize_intensity(arr), expect, atol=1e-6)
        lo, hi = np.percentile(arr, (5, 60))
        np.testing.assert_allclose(normalize_intensity(arr, 5, 60), np.clip((arr - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_normalize_constant_and_outliers():
    assert not normalize_intensity(np.full((8, 9), 7, np.uint16)).any()
    spike = np.zeros((100, 100), np.float32)
    spike[0, 0] = 5.0  # percentile range empty: falls back to min / max
    out = normalize_intensity(spike)
    assert out[0, 0] == 1.0 and out.sum() == 1.0
    with pytest.raises(DataError, match="NaN"):
        normalize_intensity(np.array([[1.0, np.nan]]))
    with pytest.raises(DataError, match="low < high"):
        normalize_intensity(np.ones((2, 2)), 50, 10)


def test_bool_image(tmp_path):
    b = ramp() > 128
    tifffile.imwrite(tmp_path / "b.tif", b)
    im = read_image(tmp_path / "b.tif")
    np.testing.assert_array_equal(im.data, b.astype(np.float32))


def test_equal_channel_rgb_is_grey_and_colour_stays_colour(tmp_path):
    gray = ramp()
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    iio.imwrite(tmp_path / "rgba.png", np.dstack([rgb, np.full(gray.shape, 77, np.uint8)]))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    iio.imwrite(tmp_path / "gray.png", gray)
    ref = read_image(tmp_path / "gray.png").data
    for name in ("rgb.png", "rgba.png", "rgb.tif", "planar.tif"):  # equal channels: grey (H, W)
        data = read_image(tmp_path / name).data
        assert data.shape == gray.shape, name
        np.testing.assert_allclose(data, ref, atol=1e-5, err_msg=name)
    # pure colours: read as colour (H, W, 3); to_grayscale gives luminance (green brightest, blue darkest)
    colours = np.zeros((3, 8, 3), np.uint8)
    for c in range(3):
        colours[c, :, c] = 255
    iio.imwrite(tmp_path / "colours.png", np.repeat(colours, 4, axis=0))
    d = read_image(tmp_path / "colours.png").data
    assert d.shape == (12, 8, 3) and d.dtype == np.float32
    np.testing.assert_array_equal(d[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(d[4, 0], [0, 1, 0])
    np.testing.assert_array_equal(d[8, 0], [0, 0, 1])
    lum = to_grayscale(iio.imread(tmp_path / "colours.png"))
    assert lum.shape == (12, 8)
    red, green, blue = lum[0, 0], lum[4, 0], lum[8, 0]
    assert green > red > blue


def test_colour_file_read_as_colour_one_range_for_all_channels(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(20, 200, (30, 40, 3)).astype(np.uint16) * 100  # 16-bit colour, not equal channels
    rgb[..., 2] //= 2  # a bluish-poor tint: the blue channel stays darker after normalisation
    tifffile.imwrite(tmp_path / "tint.tif", rgb, photometric="rgb")
    iio.imwrite(tmp_path / "tint.png", (rgb // 100).astype(np.uint8))
    for name in ("tint.tif", "tint.png"):
        d = read_image(tmp_path / name).data
        assert d.shape == (30, 40, 3) and d.dtype == np.float32, name
        assert 0 <= d.min() and d.max() <= 1
        assert d[..., 2].mean() < 0.7 * d[..., 0].mean(), name  # one range for all channels keeps the hue
    np.testing.assert_allclose(read_image(tmp_path / "tint.tif").data, normalize_intensity(rgb), atol=1e-6)
    # RGBA: alpha dropped
    iio.imwrite(tmp_path / "tint_a.png", np.dstack([(rgb // 100).astype(np.uint8), np.full((30, 40), 9, np.uint8)]))
    np.testing.assert_allclose(read_image(tmp_path / "tint_a.png").data, read_image(tmp_path / "tint.png").data)


def test_singleton_axes_squeezed_and_stacks_rejected(tmp_path):
    a = ramp()
    tifffile.imwrite(tmp_path / "lead.tif", a[None])
    tifffile.imwrite(tmp_path / "trail.tif", a[:, :, None], photometric="minisblack")
    ref = normalize_intensity(a)
    for name in ("lead.tif", "trail.tif"):
        np.testing.assert_allclose(read_image(tmp_path / name).data, ref, atol=1e-6)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([a] * 5), photometric="minisblack")
    with pytest.raises(DataError, match=r"stack\.tif.*\(5, 48, 64\)"):
        read_image(tmp_path / "stack.tif")


def test_multi_page_tiff_takes_first_series(tmp_path):
    a = ramp()
    with tifffile.TiffWriter(tmp_path / "two.tif") as w:
        w.write(a)
        w.write(np.zeros((8, 8), np.uint8))  # e.g. a thumbnail
    np.testing.assert_allclose(read_image(tmp_path / "two.tif").data, normalize_intensity(a))


def test_bad_files_raise_data_error_naming_the_file(tmp_path):
    (tmp_path / "corrupt.tif").write_bytes(b"this is not a tiff file")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "image.xyz").write_bytes(b"123")
    f = ramp().astype(np.float32)
    f[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f)
    tifffile.imwrite(tmp_path / "cplx.tif", np.ones((4, 4), np.complex64))
    for name in ("corrupt.tif", "corrupt.png", "empty.tif", "image.xyz", "missing.tif", "nan.tif", "cplx.tif"):
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            read_image(tmp_path / name)


def test_constant_image_is_zeros(tmp_path):
    tifffile.imwrite(tmp_path / "flat.tif", np.full((10, 12), 900, np.uint16))
    im = read_image(tmp_path / "flat.tif")
    assert im.data.shape == (10, 12) and not im.data.any() and np.isfinite(im.data).all()


# -------------------------------------------------------------------------------------- pixel size
@pytest.mark.parametrize("size", [0.0125, 0.5, 3.7, 250.0])
def test_own_writer_pixel_size_round_trip(tmp_path, size):
    write_tiff(tmp_path / "a.tif", ramp(np.uint16, 4000), pixel_size_um=size)
    assert read_pixel_size(tmp_path / "a.tif") == pytest.approx(size, rel=1e-6)
    assert read_image(tmp_path / "a.tif").pixel_size == pytest.approx(size, rel=1e-6)


@pytest.mark.parametrize("unit, factor", [("um", 1.0), ("micron", 1.0), ("\\u00B5m", 1.0), ("nm", 1e-3),
                                          ("mm", 1e3)])
def test_imagej_pixel_size(tmp_path, unit, factor):
    tifffile.imwrite(tmp_path / "ij.tif", ramp(), imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": unit})
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx(0.25 * factor, rel=1e-6)


def test_imagej_pixel_unit_gives_none(tmp_path):
    tifffile.imwrite(tmp_path / "ij.tif", ramp(), imagej=True, resolution=(2.0, 2.0), metadata={"unit": "pixel"})
    assert read_pixel_size(tmp_path / "ij.tif") is None


def test_vendor_sem_tags(tmp_path):
    fei = "[User]\nDate=12/01/2024\n[Scan]\nPixelWidth=2.5e-09\nHorFieldsize=2.56e-06\n"
    tifffile.imwrite(tmp_path / "fei.tif", ramp(), resolution=(72, 72), extratags=[(34682, "s", 0, fei, True)])
    assert read_pixel_size(tmp_path / "fei.tif") == pytest.approx(2.5e-3)
    zeiss = "\r\n0\r\nAP_PIXEL_SIZE\r\nPixel Size = 3.5 nm\r\nAP_WD\r\nWD = 5.1 mm\r\n"
    tifffile.imwrite(tmp_path / "zeiss.tif", ramp(), extratags=[(34118, "s", 0, zeiss, True)])
    assert read_pixel_size(tmp_path / "zeiss.tif") == pytest.approx(3.5e-3)
    zeiss_um = "\r\n0\r\nAP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 1.25 um\r\n"
    tifffile.imwrite(tmp_path / "zeiss2.tif", ramp(), extratags=[(34118, "s", 0, zeiss_um, True)])
    assert read_pixel_size(tmp_path / "zeiss2.tif") == pytest.approx(1.25)


def test_resolution_units_and_defaults(tmp_path):
    tifffile.imwrite(tmp_path / "inch.tif", ramp(), resolution=(25400 / 2.0, 25400 / 2.0), resolutionunit="INCH")
    assert read_pixel_size(tmp_path / "inch.tif") == pytest.approx(2.0)
    tifffile.imwrite(tmp_path / "cm.tif", ramp(), resolution=(1e4 / 0.8, 1e4 / 0.8), resolutionunit="CENTIMETER")
    assert read_pixel_size(tmp_path / "cm.tif") == pytest.approx(0.8)
    tifffile.imwrite(tmp_path / "dpi.tif", ramp(), resolution=(300, 300), resolutionunit="INCH")
    assert read_pixel_size(tmp_path / "dpi.tif") is None  # a print default, no calibration
    tifffile.imwrite(tmp_path / "huge.tif", ramp(), resolution=(1e-6, 1e-6), resolutionunit="CENTIMETER")
    assert read_pixel_size(tmp_path / "huge.tif") is None  # implausible
    tifffile.imwrite(tmp_path / "none.tif", ramp())
    assert read_pixel_size(tmp_path / "none.tif") is None
    iio.imwrite(tmp_path / "a.png", ramp())
    assert read_pixel_size(tmp_path / "a.png") is None


# ------------------------------------------------------------------------------------------ labels
def test_instance_labels_relabelled(tmp_path, grains):
    lab = grains.labels.astype(np.int64) * 1000 + 7
    lab[:20] = 0  # not annotated
    tifffile.imwrite(tmp_path / "l.tif", lab.astype(np.uint32))
    out = read_labels(tmp_path / "l.tif", shape=lab.shape)
    assert out.dtype == np.uint32
    assert np.array_equal(out == 0, lab == 0)
    ids = np.unique(out[out > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert len(ids) == len(np.unique(lab[lab > 0]))
    # the mapping is one to one
    pairs = np.unique(np.stack([lab.ravel(), out.ravel()]), axis=1)
    assert pairs.shape[1] == len(ids) + 1
    for dtype in (np.uint8, np.uint16, np.int32):
        small = (grains.labels % 200).astype(dtype)
        np.testing.assert_array_equal(labels_from_array(small, detect_boundaries=False) > 0, small > 0)
    np.testing.assert_array_equal(labels_from_array(np.array([[0.0, 3.0], [3.0, 8.0]])), [[0, 1], [1, 2]])


def test_palette_png_labels_keep_indices(tmp_path, grains):
    lab = (grains.labels % 250).astype(np.uint8)
    PILImage.fromarray(lab, mode="L").convert("P").save(tmp_path / "p.png")
    assert PILImage.open(tmp_path / "p.png").mode == "P"
    out = read_labels(tmp_path / "p.png")
    assert out.ndim == 2
    assert np.array_equal(out > 0, lab > 0)


@pytest.mark.parametrize("polarity", ["bool", "255", "inverted"])
def test_boundary_mask_converted_to_instances(tmp_path, grains, polarity):
    bnd = grains.boundaries
    arr = {"bool": bnd, "255": bnd.astype(np.uint8) * 255, "inverted": (~bnd).astype(np.uint8) * 255}[polarity]
    tifffile.imwrite(tmp_path / "b.tif", arr)
    out = read_labels(tmp_path / "b.tif")
    assert out.dtype == np.uint32 and out.min() >= 1  # covers the whole image
    n_true = len(np.unique(grains.labels))
    assert abs(int(out.max()) - n_true) <= 0.1 * n_true
    assert adapted_rand_error(grains.labels, out)[0] < 0.05


def test_boundary_detection_leaves_painted_grains_alone(grains):
    painted = np.isin(grains.labels, [3, 9, 17]).astype(np.uint8) * 5  # partial annotation, one value
    assert not is_boundary_mask(painted > 0)
    out = labels_from_array(painted)
    np.testing.assert_array_equal(out, (painted > 0).astype(np.uint32))


def test_boundary_mask_to_instances_simple():
    mask = np.zeros((9, 12), bool)
    mask[:, 5] = True  # one line splits the image into two grains
    mask[4, 0:5] = True  # and the left half again
    out = boundary_mask_to_instances(mask)
    assert out.max() == 3 and out.min() == 1
    assert len(np.unique(out[:, 7:])) == 1
    assert out[0, 0] != out[8, 0]


def test_bad_labels(tmp_path):
    with pytest.raises(DataError, match="negative"):
        labels_from_array(np.full((4, 4), -1, np.int16))
    with pytest.raises(DataError, match="non-integer"):
        labels_from_array(np.full((4, 4), 1.5))
    iio.imwrite(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"rgb\.png.*RGB"):
        read_labels(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "l.tif", np.ones((10, 12), np.uint16))
    with pytest.raises(DataError, match=r"l\.tif.*\(10, 12\).*\(12, 10\)"):
        read_labels(tmp_path / "l.tif", shape=(12, 10))
    (tmp_path / "x.tif").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"x\.tif"):
        read_labels(tmp_path / "x.tif")
