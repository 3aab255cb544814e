"""Bad inputs give one clear line (issue 14, items 7-10): corrupt TIFFs, degenerate and constant images,
degenerate label images, scheduler addresses, edited model descriptions and summary.csv."""

from __future__ import annotations

import csv
import gc
import json
import logging
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainlab.core.batch import BatchError, BatchImageFailed, BatchOptions, run_batch
from napari_grainlab.core.errors import DataError

OPTS = BatchOptions(tile=64, overlap=16, device="cpu")


# ---------------------------------------------------------------------------------------- files
def _plain_tiff(path: Path, side: int = 128) -> bytearray:
    tifffile.imwrite(path, (np.arange(side * side) % 251).astype(np.uint8).reshape(side, side))
    return bytearray(path.read_bytes())


def _ifd_entries(data: bytearray) -> list[int]:
    """Byte offsets of the entries of the first IFD of a little-endian classic TIFF."""
    offset = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[offset:offset + 2])[0]
    return [offset + 2 + 12 * k for k in range(count)]


def truncated_tiff(path: Path) -> Path:
    data = _plain_tiff(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    return path


def bad_tag_types_tiff(path: Path) -> Path:
    """Every tag of the first page has data type 0: tifffile logs a line per tag and reads shape (0,)."""
    data = _plain_tiff(path)
    for entry in _ifd_entries(data):
        data[entry + 2:entry + 4] = b"\0\0"
    path.write_bytes(bytes(data))
    return path


def zero_width_tiff(path: Path) -> Path:
    data = _plain_tiff(path)
    for entry in _ifd_entries(data):
        if struct.unpack("<H", data[entry:entry + 2])[0] == 256:  # ImageWidth
            data[entry + 8:entry + 12] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    return path


def missing_bytecounts_tiff(path: Path) -> Path:
    """A 128 x 128 image whose StripByteCounts tag is unreadable: tifffile guesses and logs errors."""
    data = _plain_tiff(path)
    for entry in _ifd_entries(data):
        if struct.unpack("<H", data[entry:entry + 2])[0] == 279:  # StripByteCounts
            data[entry + 2:entry + 4] = b"\0\0"
    path.write_bytes(bytes(data))
    return path


def huge_claim_tiff(path: Path) -> Path:
    """A 512-byte file whose header describes an uncompressed 60000 x 60000 px image (3.6 GB)."""
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    data = bytearray(path.read_bytes())
    for entry in _ifd_entries(data):
        if struct.unpack("<H", data[entry:entry + 2])[0] in (256, 257, 278):  # width, length, rows per strip
            data[entry + 2:entry + 12] = struct.pack("<HII", 4, 1, 60000)
    path.write_bytes(bytes(data))
    return path


def test_a_header_claiming_gigabytes_in_a_small_file_is_refused_before_reading(tmp_path):
    from napari_grainlab.core.data.io import read_image

    path = huge_claim_tiff(tmp_path / "x.tif")
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(info.value) == (f"{path}: not a readable TIFF (truncated or corrupt: its header describes an image of "
                               f"shape (60000, 60000) (3,600,000,000 bytes) in a file of {path.stat().st_size:,} bytes)")


CORRUPT = {"truncated": truncated_tiff, "bad tag types": bad_tag_types_tiff, "zero width": zero_width_tiff,
           "missing byte counts": missing_bytecounts_tiff}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_a_corrupt_tiff_is_one_line_saying_what_is_wrong_and_tifffile_stays_quiet(kind, tmp_path, capfd, caplog):
    from napari_grainlab.core.data.io import read_image, read_labels, read_pixel_size

    path = CORRUPT[kind](tmp_path / "x.tif")
    caplog.set_level(logging.DEBUG)
    for read in (read_image, read_labels):
        with pytest.raises(DataError) as info:
            read(path)
        text = str(info.value)
        assert text.startswith(f"{path}: not a readable TIFF (truncated or corrupt: "), text
        assert "\n" not in text and "the image is empty" not in text and len(text) < 300, text
    if kind == "truncated":
        assert "failed to read 16384 bytes, got" in text  # tifffile's reason
    try:
        read_pixel_size(path)
    except DataError as exc:
        assert "not a readable TIFF" in str(exc)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    err = capfd.readouterr().err
    assert err == "", err


def test_tifffile_logs_outside_our_reads_are_left_alone(tmp_path, caplog):
    from napari_grainlab.core.data.io import read_image

    path = bad_tag_types_tiff(tmp_path / "x.tif")
    with pytest.raises(DataError):
        read_image(path)
    caplog.set_level(logging.DEBUG)
    with tifffile.TiffFile(path) as tif:  # a reader of the user's own: tifffile's log is theirs
        tif.series  # noqa: B018
    assert [r for r in caplog.records if r.name == "tifffile"]


def test_a_good_tiff_still_reads(tmp_path):
    from napari_grainlab.core.data.io import read_image

    path = tmp_path / "ok.tif"
    _plain_tiff(path)
    assert read_image(path).data.shape == (128, 128)


# ------------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("bad_inputs_models")
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(root / "seg", seg)
    cls = build_model(ModelSpec(task="classify", backbone="resnet18", num_classes=2,
                                classes=["ferrite", "pearlite"])).eval()
    save_checkpoint(root / "cls", cls, {"training": {"patch_size": 64}})
    return root


@pytest.fixture(scope="module")
def loaded(models):
    from napari_grainlab.core.models import load_checkpoint

    return load_checkpoint(models / "seg", device="cpu")


@pytest.fixture(scope="module")
def micrograph(tmp_path_factory) -> Path:
    from napari_grainlab.core._io import write_tiff
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    root = tmp_path_factory.mktemp("bad_inputs_images")
    img = generate(SynthParams(height=96, width=96, tessellation=TessellationParams(grains=20)), seed=0).image
    write_tiff(root / "good.tif", img, pixel_size_um=0.1)
    return root / "good.tif"


def read_summary(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# --------------------------------------------------------------------------- degenerate images
@pytest.mark.parametrize("shape", [(1, 1), (31, 200), (200, 8)])
def test_predict_array_refuses_an_image_smaller_than_the_model_can_see(loaded, shape):
    from napari_grainlab.core.inference import predict_array

    model, meta = loaded
    with pytest.raises(DataError) as info:
        predict_array(model, meta, np.random.default_rng(0).random(shape, dtype=np.float32), OPTS.inference())
    text = str(info.value)
    assert f"{shape[0]} x {shape[1]} px" in text and "at least 32 x 32 px" in text and "\n" not in text, text


def test_predict_array_takes_the_smallest_image_it_can_see(loaded):
    from napari_grainlab.core.inference import predict_array

    model, meta = loaded
    res = predict_array(model, meta, np.random.default_rng(0).random((32, 40), dtype=np.float32), OPTS.inference())
    assert res.labels.shape == (32, 40)


def test_predict_onnx_refuses_a_tiny_image_before_running_the_network():
    from napari_grainlab.core.onnx_predict import OnnxModel, predict_onnx

    model = OnnxModel.__new__(OnnxModel)  # the check comes before onnxruntime is needed
    model.task, model.meta, model.classes, model.multiple = "segment", {}, (), 64
    with pytest.raises(DataError) as info:
        predict_onnx(model, np.zeros((40, 40), np.float32))
    assert "40 x 40 px" in str(info.value) and "at least 64 x 64 px" in str(info.value)


def test_a_constant_image_warns_and_still_predicts(loaded):
    from napari_grainlab.core.inference import predict_array

    model, meta = loaded
    warnings: list[str] = []
    res = predict_array(model, meta, np.full((64, 64), 0.5, np.float32), OPTS.inference(), warn=warnings.append)
    assert res.labels.shape == (64, 64)
    assert len(warnings) == 1 and "constant" in warnings[0] and "\n" not in warnings[0], warnings
    warnings.clear()
    predict_array(model, meta, np.random.default_rng(0).random((64, 64), dtype=np.float32), OPTS.inference(),
                  warn=warnings.append)
    assert warnings == []


def test_a_constant_image_warns_without_a_callback(loaded):
    from napari_grainlab.core.inference import predict_array

    model, meta = loaded
    with pytest.warns(UserWarning, match="constant"):
        predict_array(model, meta, np.zeros((64, 64), np.float32), OPTS.inference())


def test_constant_image_message():
    from napari_grainlab.core.data.io import constant_image_message

    assert "a.tif" in constant_image_message(np.zeros((8, 8)), "a.tif")
    assert constant_image_message(np.eye(8), "a.tif") is None


def test_batch_reports_a_tiny_image_as_an_error_row_and_a_constant_one_as_a_warning(models, micrograph, tmp_path):
    from napari_grainlab.core._io import write_tiff

    src = tmp_path / "in"
    src.mkdir()
    write_tiff(src / "tiny.tif", np.array([[0.5]], np.float32))
    write_tiff(src / "flat.tif", np.full((64, 64), 0.3, np.float32))
    shutil.copy(micrograph, src / "good.tif")
    events = list(run_batch(models / "seg", [src], tmp_path / "out", workers=1, options=OPTS))
    failed = [e for e in events if isinstance(e, BatchImageFailed)]
    assert [Path(e.path).name for e in failed] == ["tiny.tif"]
    assert "1 x 1 px" in failed[0].error and "at least 32 x 32 px" in failed[0].error
    done = {Path(e.path).name: e for e in events if hasattr(e, "warnings")}
    assert any("constant" in w for w in done["flat.tif"].warnings) and not done["good.tif"].warnings
    _, rows = read_summary(tmp_path / "out" / "summary.csv")
    status = {r["image"]: r["status"] for r in rows}
    assert status == {"flat.tif": "ok", "good.tif": "ok", "tiny.tif": "error"}


# ------------------------------------------------------------------------------- label images
@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1)])
def test_measuring_a_one_pixel_thin_label_image_is_refused(shape):
    from napari_grainlab.core.measure import astm_grain_size, summarize

    labels = np.ones(shape, np.uint32)
    for fn in (summarize, astm_grain_size):
        with pytest.raises(DataError) as info:
            fn(labels, 0.1)
        assert f"{shape[0]} x {shape[1]} px" in str(info.value), str(info.value)


def test_a_small_real_label_image_is_still_measured():
    from napari_grainlab.core.measure import summarize

    labels = np.array([[1, 1, 2], [1, 2, 2], [3, 3, 3]], np.uint32)
    assert summarize(labels, 0.1)["grains"] == 3
    assert summarize(np.zeros((0, 4), np.uint32))["grains"] == 0  # empty: no grains, as before


# ------------------------------------------------------------------------------------ CSV, columns
def test_summary_csv_quotes_a_message_with_a_comma(models, micrograph, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    truncated_tiff(src / "cut.tif")
    shutil.copy(micrograph, src / "good.tif")
    list(run_batch(models / "seg", [src], tmp_path / "out", workers=1, options=OPTS))
    _, rows = read_summary(tmp_path / "out" / "summary.csv")
    cut = next(r for r in rows if r["image"] == "cut.tif")
    assert cut["status"] == "error"
    assert "failed to read 16384 bytes, got" in cut["error"] and ";" not in cut["error"], cut


def test_write_rows_csv_keeps_commas_and_quotes(tmp_path):
    from napari_grainlab.core.batch import write_rows_csv

    write_rows_csv(tmp_path / "s.csv", [{"a": 'x, "y"', "b": 1.5}, {"a": "multi\nline", "b": float("nan")}])
    header, rows = read_summary(tmp_path / "s.csv")
    assert header == ["a", "b"]
    assert rows == [{"a": 'x, "y"', "b": "1.5"}, {"a": "multi line", "b": ""}]


def _seg_header(out: Path) -> list[str]:
    return read_summary(out / "summary.csv")[0]


def test_summary_columns_do_not_depend_on_failures(models, micrograph, tmp_path):
    from napari_grainlab.core.measure import summarize

    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    shutil.copy(micrograph, good)
    bad.write_bytes(b"II*\0 not a tiff at all")
    headers = []
    for name, inputs in {"all ok": [good], "one failed": [good, bad], "all failed": [bad]}.items():
        out = tmp_path / name
        list(run_batch(models / "seg", inputs, out, workers=1, options=OPTS))
        headers.append(_seg_header(out))
    assert headers[0] == headers[1] == headers[2], headers
    stats = list(summarize(np.ones((4, 4), np.uint32), 0.1))
    scale = ["diameter_px", "diameter_source", "scale"]  # the grain scale of each image
    assert headers[0] == ["image", "output", "pixel_size_um", "data_bar_rows", *stats, *scale, "status", "error",
                          "path"]


def test_classification_summary_columns_come_from_the_model(models, micrograph, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\0 not a tiff at all")
    list(run_batch(models / "cls", [bad], tmp_path / "failed", workers=1, options=OPTS))
    list(run_batch(models / "cls", [micrograph], tmp_path / "ok", workers=1, options=OPTS))
    expected = ["image", "output", "pixel_size_um", "data_bar_rows", "class", "p_ferrite", "p_pearlite", "status",
                "error", "path"]
    assert _seg_header(tmp_path / "failed") == _seg_header(tmp_path / "ok") == expected


# ------------------------------------------------------------------------- edited model.json
def test_an_edited_model_json_is_one_batch_error_naming_the_model_once(models, micrograph, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(models / "seg", edited)
    meta = json.loads((edited / "model.json").read_text())
    meta["spec"]["task"] = "foo"
    (edited / "model.json").write_text(json.dumps(meta))
    events = []
    with pytest.raises(BatchError) as info:
        for ev in run_batch(edited, [micrograph], tmp_path / "out", workers=1, options=OPTS):
            events.append(ev)
    assert not [e for e in events if isinstance(e, BatchImageFailed)]  # reported once, by the BatchError
    text = str(info.value)
    assert "foo" in text and text.count(str(edited)) <= 1 and "\n" not in text, text


# ------------------------------------------------------------------------------- the scheduler
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["not an address", "tcp://", "tcp://host:notaport", "tcp://host:70000",
                                     "ftp://host:8786", "tcp://a b:8786"])
def test_a_malformed_scheduler_address_is_refused_up_front(models, micrograph, tmp_path, address, capfd):
    with pytest.raises(BatchError) as info:
        list(run_batch(models / "seg", [micrograph], tmp_path / "out", scheduler=address, options=OPTS))
    text = str(info.value)
    assert repr(address) in text and "tcp://HOST:PORT" in text and "\n" not in text, text
    gc.collect()  # a half-made distributed.Client would complain here, in its __del__
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_scheduler_address_where_nothing_listens_fails_with_one_line(models, micrograph, tmp_path, capfd):
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(BatchError) as info:
        list(run_batch(models / "seg", [micrograph], tmp_path / "out", scheduler=address, options=OPTS))
    text = str(info.value)
    assert text.startswith(f"cannot reach the Dask scheduler at {address}: ") and "\n" not in text, text
    assert "nothing listens" in text, text
    gc.collect()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize("address, expected", [
    ("tcp://10.0.0.5:8786", ("tcp", "10.0.0.5", 8786)),
    (" 10.0.0.5:8786 ", ("tcp", "10.0.0.5", 8786)),
    ("tls://[::1]:8786", ("tls", "::1", 8786)),
    ("TCP://Host-1.example.org:1", ("tcp", "Host-1.example.org", 1)),
])
def test_scheduler_addresses_that_are_fine(address, expected):
    from napari_grainlab.core.batch import parse_scheduler_address

    assert parse_scheduler_address(address) == expected
