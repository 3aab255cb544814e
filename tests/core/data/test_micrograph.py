"""Micrographs as stored: vendor calibration (core/data/vendor.py), the SEM data bar cut off
(core/data/micrograph.py), grain labels as a calibrated TIFF (core/data/labels_tiff.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tifffile

from napari_grainlab.core.data.io import DataError, read_image, read_pixel_size
from napari_grainlab.core.data.labels_tiff import labels_table_path, write_labels_tiff
from napari_grainlab.core.data.micrograph import detect_data_bar, read_micrograph
from napari_grainlab.core.synthetic import SynthParams, generate


# ------------------------------------------------------------------------------------------ fixtures
def specimen(height=480, width=640, seed=1, bit_depth=8, style="sem"):
    return generate(SynthParams(height=height, width=width, bit_depth=bit_depth, style=style), seed=seed).image


def data_bar(width, rows, dtype=np.uint8, bg=0, fg=None, frame=False, aa=True):
    """An SEM info bar: two lines of text and a scale bar on a flat background."""
    top = float(np.iinfo(dtype).max)
    fg = (top if bg == 0 else 0.0) if fg is None else fg
    ink = np.zeros((rows, width), np.uint8)
    line = cv2.LINE_AA if aa else cv2.LINE_8
    cv2.putText(ink, "HV 15.00 kV  mag 5 000 x  WD 10.1 mm", (8, int(rows * 0.4)), cv2.FONT_HERSHEY_SIMPLEX,
                rows / 90, 255, 1, line)
    cv2.putText(ink, "det ETD  HFW 25.6 um  spot 3.0", (8, int(rows * 0.8)), cv2.FONT_HERSHEY_SIMPLEX,
                rows / 90, 255, 1, line)
    cv2.line(ink, (width - 200, rows - 12), (width - 40, rows - 12), 255, 3)
    if frame:
        cv2.rectangle(ink, (1, 1), (width - 2, rows - 2), 255, 1)
    a = ink / 255.0
    return np.round(bg * (1 - a) + fg * a).astype(dtype)


def fei_text(pixel_m=4.5e-9, res=(640, 480), databar=None):
    """An FEI / Thermo Fisher header as the instruments write it: INI sections, CRLF, blank lines."""
    lines = ["[User]", "Date=03/14/2024", "Time=10:12:31 AM", "User=supervisor", "UserText=", "",
             "[System]", "Type=SEM", "SystemType=Quanta FEG 250", "", "[Beam]", "HV=15000", "Spot=3",
             "Beam=EBeam", "", "[EBeam]", "HFW=2.88e-06", "WD=0.0101", "",
             "[Scan]", "InternalScan=true", "Dwelltime=3e-06", f"PixelWidth={pixel_m}", f"PixelHeight={pixel_m}",
             f"HorFieldsize={pixel_m * res[0]}", "", "[Image]", "DigitalContrast=1", "DigitalBrightness=0",
             f"ResolutionX={res[0]}", f"ResolutionY={res[1]}", "ZoomFactor=1", ""]
    if databar is not None:
        lines += ["[PrivateFei]", "BitShift=0", "DataBarSelected=1", f"DatabarHeight={databar}", ""]
    return "\r\n".join(lines)


def write_fei(path, image, bar_rows=60, **kw):
    """A FEI-style TIFF: the specimen, a data bar below it, the header in tag 34682, 72 dpi."""
    bar = data_bar(image.shape[1], bar_rows, image.dtype)
    stored = np.vstack([image, bar]) if bar_rows else image
    res = (image.shape[1], image.shape[0])
    tifffile.imwrite(path, stored, resolution=(72, 72), extratags=[(34682, "s", 0, fei_text(res=res, **kw), True)])
    return stored, bar


ZEISS = ("\r\n0\r\n0\r\nDP_DETECTOR_CHANNEL\r\nSignal A = SE2\r\nAP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 12.5 nm"
         "\r\nAP_WD\r\nWD = 8.5 mm\r\nSV_VERSION\r\nVersion = V06.00\r\n")


def tescan_blob(pixel_m=1.23e-8, strip=70):
    """Tag 50431 as Tescan writes it: a thumbnail image, then the header text."""
    thumb = b"\xff\x4f\xff\x51" + bytes(range(256)) + b"\xff\xd9"
    text = (f"[MAIN]\r\nAccFrames=1\r\nDate=2023-05-02\r\nDevice=MIRA3 LMH\r\nImageStripSize={strip}\r\n"
            f"Magnification=10000\r\nPixelSizeX={pixel_m}\r\nPixelSizeY={pixel_m}\r\n[SEM]\r\nHV=15000\r\n")
    return thumb + text.encode("ascii") + b"\x00"


# ---------------------------------------------------------------------------------------- vendors
def test_fei_pixel_size_and_data_bar_from_resolution_y(tmp_path):
    img = specimen()
    stored, bar = write_fei(tmp_path / "fei.tif", img)
    m = read_micrograph(tmp_path / "fei.tif")
    assert m.pixel_size_um == pytest.approx(4.5e-3) and m.unit == "µm" and m.source == "FEI Scan.PixelWidth"
    assert m.vendor == "FEI" and m.data_bar_source == "FEI Image.ResolutionY" and m.data_bar_rows == 60
    np.testing.assert_array_equal(m.image, img)
    np.testing.assert_array_equal(m.data_bar, bar)
    assert m.image.dtype == stored.dtype and not m.rgb
    assert m.vendor_metadata["Scan"]["PixelWidth"] == pytest.approx(4.5e-9)
    json.dumps(m.vendor_metadata)  # JSON-safe
    json.dumps(m.info())
    assert read_pixel_size(tmp_path / "fei.tif") == pytest.approx(4.5e-3)


def test_fei_without_a_bar_is_not_cut_even_when_the_bottom_looks_like_one(tmp_path):
    img = np.vstack([specimen(height=420), data_bar(640, 60)])  # ResolutionY says: all 480 rows are image
    tifffile.imwrite(tmp_path / "fei.tif", img, extratags=[(34682, "s", 0, fei_text(res=(640, 480)), True)])
    m = read_micrograph(tmp_path / "fei.tif")
    assert m.data_bar_rows == 0 and m.data_bar is None and m.image.shape == (480, 640)


def test_fei_databar_height_when_resolution_is_missing(tmp_path):
    img = specimen()
    stored = np.vstack([img, data_bar(640, 48)])
    text = fei_text(databar=48).replace("ResolutionY=480", "").replace("ResolutionX=640", "")
    tifffile.imwrite(tmp_path / "fei.tif", stored, extratags=[(34682, "s", 0, text, True)])
    m = read_micrograph(tmp_path / "fei.tif")
    assert m.data_bar_rows == 48 and m.data_bar_source == "FEI PrivateFei.DatabarHeight"


def test_fei_resized_after_acquisition_falls_back_to_the_pixels(tmp_path):
    img = specimen()
    stored = np.vstack([img, data_bar(640, 60)])
    tifffile.imwrite(tmp_path / "fei.tif", stored, extratags=[(34682, "s", 0, fei_text(res=(1280, 960)), True)])
    m = read_micrograph(tmp_path / "fei.tif")
    assert m.data_bar_rows == 60 and m.data_bar_source == "detected in the pixels"
    assert any("1280 px wide" in n for n in m.notes)


def test_zeiss_pixel_size_and_detected_bar(tmp_path):
    img = np.vstack([specimen(), data_bar(640, 70, bg=0, frame=True)])
    tifffile.imwrite(tmp_path / "zeiss.tif", img, extratags=[(34118, "s", 0, ZEISS, True)])
    m = read_micrograph(tmp_path / "zeiss.tif")
    assert m.pixel_size_um == pytest.approx(0.0125) and m.vendor == "Zeiss"
    assert m.source == "Zeiss ap_image_pixel_size" and m.data_bar_rows == 70
    assert m.vendor_metadata["ap_wd"] == ["WD", 8.5, "mm"]


def test_tescan_tag_gives_pixel_size_and_strip(tmp_path):
    img = np.vstack([specimen(), data_bar(640, 70, bg=255)])
    tifffile.imwrite(tmp_path / "t.tif", img, extratags=[(50431, 7, len(tescan_blob()), tescan_blob(), True)])
    m = read_micrograph(tmp_path / "t.tif")
    assert m.pixel_size_um == pytest.approx(0.0123) and m.vendor == "Tescan"
    assert m.data_bar_rows == 70 and m.data_bar_source == "Tescan ImageStripSize"
    assert m.vendor_metadata["Device"] == "MIRA3 LMH"
    assert read_pixel_size(tmp_path / "t.tif") == pytest.approx(0.0123)


def test_tescan_side_file(tmp_path):
    img = np.vstack([specimen(), data_bar(640, 64, bg=255)])
    tifffile.imwrite(tmp_path / "t.tif", img)
    (tmp_path / "t-tif.hdr").write_text("[MAIN]\nDevice=VEGA3\nImageStripSize=64\nMagnification=500\n"
                                        "PixelSizeX=2.5e-07\nPixelSizeY=2.5e-07\n")
    m = read_micrograph(tmp_path / "t.tif")
    assert m.pixel_size_um == pytest.approx(0.25) and m.data_bar_rows == 64
    assert "t-tif.hdr" in m.source


def test_jeol_side_file(tmp_path):
    img = np.vstack([specimen(height=960, width=1280), data_bar(1280, 64)])
    tifffile.imwrite(tmp_path / "j.tif", img)
    (tmp_path / "j.txt").write_text("$CM_FORMAT JEOL/SEM\n$CM_VERSION 1.0\n$CM_INSTRUMENT JSM-7800F\n"
                                    "$CM_FULL_SIZE 1280 960\n$CM_MAG 5000\n$$SM_MICRON_BAR 256\n"
                                    "$$SM_MICRON_MARKER 5um\n$SEM_DATA_VERSION 1\n")
    m = read_micrograph(tmp_path / "j.tif")
    assert m.pixel_size_um == pytest.approx(5 / 256) and m.vendor == "JEOL"
    assert m.data_bar_rows == 64 and m.data_bar_source == "JEOL $CM_FULL_SIZE"
    assert read_pixel_size(tmp_path / "j.tif") == pytest.approx(5 / 256)


@pytest.mark.parametrize("encoding", ["ascii", "utf-16"])
def test_hitachi_side_file(tmp_path, encoding):
    img = np.vstack([specimen(height=960, width=1280), data_bar(1280, 64)])
    tifffile.imwrite(tmp_path / "h.tif", img)
    text = ("[SemImageFile]\r\nInstructName=S-4800\r\nDataSize=1280x960\r\nPixelSize=24.8\r\n"
            "Magnification=5000\r\nImageName=h.tif\r\n")
    (tmp_path / "h.txt").write_bytes(text.encode(encoding))
    m = read_micrograph(tmp_path / "h.tif")
    assert m.pixel_size_um == pytest.approx(0.0248) and m.vendor == "Hitachi"
    assert m.data_bar_rows == 64 and m.data_bar_source == "Hitachi DataSize"


def test_a_notes_file_next_to_the_image_is_no_calibration(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", specimen())
    (tmp_path / "a.txt").write_text("PixelSize=5\nsample a, polished\n")
    assert read_pixel_size(tmp_path / "a.tif") is None


def test_imagej_resolution_and_plain_files(tmp_path):
    img = specimen()
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(1 / 0.2, 1 / 0.2), metadata={"unit": "um"})
    m = read_micrograph(tmp_path / "ij.tif")
    assert m.pixel_size_um == pytest.approx(0.2) and m.data_bar_rows == 0 and m.vendor == "ImageJ"
    tifffile.imwrite(tmp_path / "plain.tif", img)
    m = read_micrograph(tmp_path / "plain.tif")
    assert not m.calibrated and m.unit == "pixel" and m.data_bar_rows == 0 and m.source == ""


def test_colour_micrograph_keeps_its_channels(tmp_path):
    grey = np.vstack([specimen(), data_bar(640, 60)])
    rgb = np.dstack([grey, grey // 2, grey])
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    m = read_micrograph(tmp_path / "c.tif")
    assert m.rgb and m.image.shape == (480, 640, 3) and m.data_bar.shape == (60, 640, 3)


def test_grey_with_alpha_is_read_as_grey(tmp_path):
    """A grey + alpha file (an "LA" PNG as image editors save it, a 2-sample TIFF) is the grey micrograph; the
    alpha plane is dropped, as it is from RGBA."""
    from PIL import Image as PILImage

    grey = specimen()
    alpha = np.full_like(grey, 255)
    PILImage.fromarray(np.dstack([grey, alpha]), mode="LA").save(tmp_path / "la.png")
    tifffile.imwrite(tmp_path / "la.tif", np.dstack([grey, alpha]), photometric="minisblack",
                     extrasamples=["unassalpha"])
    for name in ("la.png", "la.tif"):
        m = read_micrograph(tmp_path / name, detect_bar=False)
        assert not m.rgb and m.image.shape == grey.shape, (name, m.image.shape)
        np.testing.assert_array_equal(m.image, grey)
        assert read_image(tmp_path / name).data.shape == grey.shape


def test_unreadable_bytes_name_the_format(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="not a PNG image: the file is corrupt or of another format"):
        read_micrograph(tmp_path / "text.png")


def test_stacks_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((5, 40, 50), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match="stack"):
        read_micrograph(tmp_path / "s.tif")


def test_read_image_uses_the_side_file_for_jpeg(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "j.jpg", specimen())
    (tmp_path / "j.txt").write_text("$CM_FORMAT JEOL/SEM\n$$SM_MICRON_BAR 200\n$$SM_MICRON_MARKER 1um\n")
    assert read_image(tmp_path / "j.jpg").pixel_size == pytest.approx(0.005)


# ------------------------------------------------------------------------------ data bar detection
@pytest.mark.parametrize("kind", ["black", "black-aliased", "white", "grey-framed", "16-bit", "rgb"])
def test_data_bars_are_found(kind):
    if kind == "16-bit":
        img = np.vstack([specimen(bit_depth=16), data_bar(640, 64, np.uint16)])
    elif kind == "white":
        img = np.vstack([specimen(), data_bar(640, 50, bg=255)])
    elif kind == "grey-framed":
        img = np.vstack([specimen(), data_bar(640, 70, bg=128, fg=255, frame=True)])
    else:
        img = np.vstack([specimen(), data_bar(640, 60, aa=kind != "black-aliased")])
        if kind == "rgb":
            img = np.dstack([img, img, img])
    assert detect_data_bar(img) == img.shape[0] - 480


@pytest.mark.parametrize("style, bit_depth", [("sem", 8), ("sem", 16), ("optical", 8), ("polarized", 8),
                                              ("ebsd", 8)])
def test_synthetic_micrographs_are_never_cut(style, bit_depth):
    for seed in range(3):
        assert detect_data_bar(specimen(seed=seed, bit_depth=bit_depth, style=style)) == 0


def test_dark_or_bright_bottoms_that_are_no_data_bar():
    img = specimen()
    rr, cc = np.mgrid[:480, :640]
    cases = {}
    a = img.copy()
    a[-80:] = 0
    cases["blank black strip"] = a
    a = img.copy()
    a[rr > 400 + 20 * np.sin(cc / 40)] = 0
    a[430:440, 100:110] = 255
    a[450:460, 300:330] = 255
    cases["dark region with a wavy edge and particles"] = a
    cases["vignette"] = (img * np.clip((480 - rr) / 100, 0, 1)).astype(np.uint8)
    a = img.copy()
    a[rr > 420 + 15 * np.cos(cc / 25)] = 255
    cases["saturated region"] = a
    a = img.copy()
    a[-80:] = 0
    a[-60:-50, 100:300] = 255
    cases["one blob on a flat strip"] = a
    cases["blank image"] = np.zeros((480, 640), np.uint8)
    cases["small image"] = np.vstack([img[:20, :64], data_bar(64, 8)])
    for name, a in cases.items():
        assert detect_data_bar(a) == 0, name


def test_no_detection_when_asked(tmp_path):
    img = np.vstack([specimen(), data_bar(640, 60)])
    tifffile.imwrite(tmp_path / "a.tif", img)
    assert read_micrograph(tmp_path / "a.tif").data_bar_rows == 60
    assert read_micrograph(tmp_path / "a.tif", detect_bar=False).data_bar_rows == 0


# --------------------------------------------------------------------------------- labels TIFF
@pytest.mark.parametrize("grains", [300, 70_000])
def test_labels_tiff_round_trip(tmp_path, grains):
    labels = np.arange(400 * 400, dtype=np.uint32).reshape(400, 400) % grains
    written = write_labels_tiff(tmp_path / "g.tif", labels, pixel_size_um=0.05)
    assert written == [tmp_path / "g.tif", labels_table_path(tmp_path / "g.tif")]
    assert labels_table_path(tmp_path / "g.tif").name == "g_grains.csv"
    assert read_pixel_size(tmp_path / "g.tif") == pytest.approx(0.05, rel=1e-6)
    back = tifffile.imread(tmp_path / "g.tif")
    assert back.dtype == (np.uint16 if grains < 65536 else np.uint32)
    np.testing.assert_array_equal(back, labels)
    m = read_micrograph(tmp_path / "g.tif")
    assert m.labels and m.data_bar_rows == 0 and m.pixel_size_um == pytest.approx(0.05, rel=1e-6)
    header = labels_table_path(tmp_path / "g.tif").read_text().splitlines()[0]
    assert "area [um^2]" in header
    assert not list(tmp_path.glob(".*.part"))


def test_labels_tiff_without_pixel_size_and_bad_labels(tmp_path):
    write_labels_tiff(tmp_path / "g.tif", np.ones((8, 8), np.int32), table=False)
    assert read_pixel_size(tmp_path / "g.tif") is None and not (tmp_path / "g_grains.csv").exists()
    with pytest.raises(DataError, match=">= 0"):
        write_labels_tiff(tmp_path / "n.tif", -np.ones((8, 8), np.int32))
    with pytest.raises(DataError, match="2-D"):
        write_labels_tiff(tmp_path / "n.tif", np.ones((2, 8, 8), np.int32))


# ------------------------------------------------------------------------------ batch prediction
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bar_model") / "seg"
    save_checkpoint(folder, build_model(ModelSpec(task="segment", backbone="resnet18",
                                                  decoder_channels=(16, 16, 8, 8, 8))).eval())
    return folder


def test_batch_prediction_leaves_the_data_bar_out_and_keeps_the_files_size(tmp_path, tiny_model):
    from napari_grainlab.core.batch import BatchOptions, predict_image_file
    from napari_grainlab.core.data.micrograph import read_specimen
    from napari_grainlab.core.models import load_checkpoint

    img = specimen(height=192, width=256)
    stored, _ = write_fei(tmp_path / "fei.tif", img, bar_rows=40)
    spec_img, m = read_specimen(tmp_path / "fei.tif")
    assert spec_img.data.shape == img.shape and m.data_bar_rows == 40 and spec_img.pixel_size == pytest.approx(4.5e-3)
    # normalised as read_image normalises a file of the specimen alone (the bar's text does not stretch it)
    tifffile.imwrite(tmp_path / "alone.tif", img)
    np.testing.assert_array_equal(spec_img.data, read_image(tmp_path / "alone.tif").data)

    model, meta = load_checkpoint(tiny_model)
    warnings = []
    opts = BatchOptions(tile=64, overlap=16, device="cpu", rescale=False)
    row, written = predict_image_file(model, meta, tmp_path / "fei.tif", tmp_path / "cut", options=opts,
                                      warn=warnings.append)
    labels = tifffile.imread(tmp_path / "cut" / "fei_labels.tif")
    boundary = tifffile.imread(tmp_path / "cut" / "fei_boundary.tif")
    assert labels.shape == boundary.shape == stored.shape  # aligned with the file as stored
    assert not labels[192:].any() and not boundary[192:].any() and labels[:192].any()
    assert row["data_bar_rows"] == 40 and row["pixel_size_um"] == pytest.approx(4.5e-3)
    assert len(warnings) == 1 and "40 rows are a data bar" in warnings[0] and "FEI" in warnings[0]

    keep = BatchOptions(tile=64, overlap=16, device="cpu", rescale=False, data_bar="keep")
    row_keep, _ = predict_image_file(model, meta, tmp_path / "fei.tif", tmp_path / "keep", options=keep)
    assert row_keep["data_bar_rows"] == 0
    assert tifffile.imread(tmp_path / "keep" / "fei_boundary.tif")[192:].any()  # the bar was predicted on


def test_batch_prediction_of_a_plain_micrograph_cuts_nothing(tmp_path, tiny_model):
    from napari_grainlab.core.batch import BatchOptions, predict_image_file
    from napari_grainlab.core.models import load_checkpoint

    img = specimen(height=128, width=128)
    tifffile.imwrite(tmp_path / "plain.tif", img)
    model, meta = load_checkpoint(tiny_model)
    warnings = []
    row, _ = predict_image_file(model, meta, tmp_path / "plain.tif", tmp_path / "o",
                                options=BatchOptions(tile=64, overlap=16, device="cpu", rescale=False),
                                warn=warnings.append)
    assert row["data_bar_rows"] == 0 and not warnings
    assert tifffile.imread(tmp_path / "o" / "plain_labels.tif").shape == img.shape
