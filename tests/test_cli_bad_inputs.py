"""The command line on bad inputs (issue 14, items 7-10): one line each, no log noise, no tracebacks."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainlab.cli import main

TILE = ["--tile", "64", "--overlap", "16", "--device", "cpu", "--no-progress"]
BACKBONE = "test_efficientnet"


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.startswith("grainlab: error:")]


def warning_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.startswith("grainlab: warning:")]


def summary(out: Path) -> tuple[list[str], list[dict]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    torch.manual_seed(0)
    net = build_model(ModelSpec(task="segment", backbone=BACKBONE, decoder_channels=(16, 16, 8, 8, 8))).eval()
    return save_checkpoint(tmp_path_factory.mktemp("cli_bad") / "seg", net)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    from napari_grainlab.core._io import write_tiff
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    path = tmp_path_factory.mktemp("cli_bad_images") / "good.tif"
    img = generate(SynthParams(height=96, width=96, tessellation=TessellationParams(grains=20)), seed=0).image
    write_tiff(path, img, pixel_size_um=0.2)
    return path


def _corrupt_tiff(path: Path) -> Path:
    """A 256 x 256 tiled TIFF whose tags all have data type 0: tifffile logs a line per tag and reads shape (0,)."""
    import struct

    tifffile.imwrite(path, (np.arange(256 * 256) % 251).astype(np.uint8).reshape(256, 256), tile=(64, 64))
    data = bytearray(path.read_bytes())
    offset = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[offset:offset + 2])[0]):
        entry = offset + 2 + 12 * k
        data[entry + 2:entry + 4] = b"\0\0"
    path.write_bytes(bytes(data))
    return path


def _truncated_tiff(path: Path) -> Path:
    tifffile.imwrite(path, np.zeros((128, 128), np.uint8) + np.arange(128, dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_predict_reports_corrupt_tiffs_in_one_line_each_without_tifffile_noise(model, good, tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(good, src / "good.tif")
    _corrupt_tiff(src / "tags.tif")
    _truncated_tiff(src / "cut.tif")
    out = tmp_path / "out"
    assert main(["predict", str(model), str(src), "--out", str(out), "--workers", "1", *TILE]) == 2
    captured = capfd.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and err == error_lines(captured.err), captured.err  # nothing from tifffile
    assert all("not a readable TIFF (truncated or corrupt: " in ln for ln in err), err
    assert not any("the image is empty" in ln for ln in err), err
    _, rows = summary(out)
    cut = next(r for r in rows if r["image"] == "cut.tif")
    assert "bytes, got" in cut["error"] and ";" not in cut["error"], cut  # the comma stays a comma


def test_predict_refuses_a_one_pixel_image_and_warns_on_a_constant_one(model, good, tmp_path, capfd):
    from napari_grainlab.core._io import write_tiff

    tiny, flat = tmp_path / "tiny.tif", tmp_path / "flat.tif"
    write_tiff(tiny, np.array([[0.5]], np.float32))
    write_tiff(flat, np.full((80, 80), 0.5, np.float32))
    out = tmp_path / "out"
    assert main(["predict", str(model), str(tiny), "--out", str(out), *TILE]) == 2
    err = capfd.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    assert str(tiny) in lines[0] and "1 x 1 px" in lines[0] and "at least 32 x 32 px" in lines[0], lines
    _, rows = summary(out)
    assert rows[0]["status"] == "error" and rows[0]["grains"] == ""  # no 1.13 px grain

    assert main(["predict", str(model), str(flat), "--out", str(tmp_path / "flat"), *TILE]) == 0
    err = capfd.readouterr().err
    warnings = warning_lines(err)
    assert len(warnings) == 1 and str(flat) in warnings[0] and "constant" in warnings[0], err
    assert not error_lines(err) and "UserWarning" not in err, err


def test_measure_refuses_a_one_pixel_label_image(tmp_path, capfd):
    path = tmp_path / "dot.tif"
    tifffile.imwrite(path, np.ones((1, 1), np.uint16))
    assert main(["measure", str(path)]) == 2
    err = capfd.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and str(path) in lines[0] and "1 x 1 px" in lines[0], err

    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.array([[1, 1, 2], [1, 2, 2], [3, 3, 3]], np.uint16))
    assert main(["measure", str(small), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["files"][0]["grains"] == 3


def test_eval_warns_once_on_a_constant_image(model, tmp_path, capfd):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    tifffile.imwrite(data / "images" / "flat.tif", np.full((64, 64), 100, np.uint8))
    labels = np.ones((64, 64), np.uint16)
    labels[:, 32:] = 2
    tifffile.imwrite(data / "labels" / "flat.tif", labels)
    assert main(["eval", str(model), str(data), *TILE[:-1]]) == 0
    err = capfd.readouterr().err
    warnings = [w for w in warning_lines(err) if "constant" in w]
    assert len(warnings) == 1 and "flat" in warnings[0], err
    assert "UserWarning" not in err, err


def test_eval_names_an_image_too_small_for_the_model(model, tmp_path, capfd):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(data / "images" / "small.tif", rng.integers(0, 255, (16, 48), dtype=np.uint8))
    tifffile.imwrite(data / "labels" / "small.tif", np.ones((16, 48), np.uint16))
    assert main(["eval", str(model), str(data), *TILE[:-1]]) == 2
    lines = error_lines(capfd.readouterr().err)
    assert len(lines) == 1 and "small" in lines[0] and "16 x 48 px" in lines[0], lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["not an address", "closed port"])
def test_a_bad_scheduler_is_one_line_without_a_traceback(model, good, tmp_path, capfd, address):
    if address == "closed port":
        address = f"tcp://127.0.0.1:{_free_port()}"
    assert main(["predict", str(model), str(good), "--out", str(tmp_path / "o"), "--scheduler", address,
                 *TILE]) == 2
    import gc

    gc.collect()  # where a half-made distributed.Client printed "Exception ignored in: ... __del__"
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and len(error_lines(err)) == 1, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if address.startswith("tcp://"):
        assert f"cannot reach the Dask scheduler at {address}: nothing listens" in err, err
    else:
        assert "'not an address' is not an address" in err and "tcp://HOST:PORT" in err, err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_edited_model_json_is_reported_once(model, good, tmp_path, capfd, workers):
    edited = tmp_path / "edited"
    shutil.copytree(model, edited)
    meta = json.loads((edited / "model.json").read_text())
    meta["spec"]["task"] = "foo"
    (edited / "model.json").write_text(json.dumps(meta))
    images = [str(good)] * 1 if workers == "1" else [str(good), str(shutil.copy(good, tmp_path / "again.tif"))]
    assert main(["predict", str(edited), *images, "--out", str(tmp_path / "o"), "--workers", workers, *TILE]) == 2
    err = capfd.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and "foo" in lines[0], err
    assert lines[0].count(str(edited)) <= 1, lines[0]
    assert "Traceback" not in err, err


def test_summary_columns_are_the_same_when_every_image_fails(model, good, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\0garbage")
    assert main(["predict", str(model), str(good), "--out", str(tmp_path / "ok"), *TILE]) == 0
    assert main(["predict", str(model), str(bad), "--out", str(tmp_path / "failed"), *TILE]) == 2
    assert main(["predict", str(model), str(good), str(bad), "--out", str(tmp_path / "mixed"), "--workers", "1",
                 *TILE]) == 2
    headers = [summary(tmp_path / name)[0] for name in ("ok", "failed", "mixed")]
    assert headers[0] == headers[1] == headers[2] and {"grains", "astm_g", "error"} <= set(headers[0]), headers


def test_predict_onnx_keeps_the_columns_and_lists_the_failures(model, good, tmp_path, capfd):
    pytest.importorskip("onnxruntime")
    from napari_grainlab.core._io import write_tiff

    onnx = tmp_path / "seg.onnx"
    assert main(["export", str(model), "--format", "onnx", "--out", str(onnx)]) == 0
    tiny, bad = tmp_path / "tiny.tif", tmp_path / "bad.tif"
    write_tiff(tiny, np.zeros((8, 8), np.float32))
    bad.write_bytes(b"II*\0garbage")
    capfd.readouterr()
    assert main(["predict-onnx", str(onnx), str(good), str(tiny), str(bad), "--out", str(tmp_path / "o"),
                 "--tile", "64", "--overlap", "16"]) == 2
    err = capfd.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 2 and "8 x 8 px" in lines[0] and "not a readable TIFF" in lines[1], err
    assert "constant" not in err  # an 8 x 8 px image is refused before the constant warning
    header, rows = summary(tmp_path / "o")
    assert main(["predict", str(model), str(good), "--out", str(tmp_path / "p"), *TILE]) == 0
    assert header == summary(tmp_path / "p")[0]
    assert [r["status"] for r in rows] == ["ok", "error", "error"]
