"""The grain scale on the command line: --diameter / --no-rescale, the per-image line and summary.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch

from napari_grainlab.cli import main

TILE = ["--tile", "64", "--overlap", "16", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def scaled_model(tmp_path_factory):
    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("scale")
    torch.manual_seed(0)
    model = build_model(ModelSpec(task="segment", backbone="test_efficientnet", decoder_channels=(16, 16, 8, 8, 8),
                                  in_chans=3)).eval()
    save_checkpoint(root / "seg", model, {"grain_diameter": 20.0})
    rgb = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(root / "colour.tif", rgb, photometric="rgb")
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_reports_and_records_the_grain_scale(scaled_model, tmp_path, capfd):
    model, image = scaled_model / "seg", scaled_model / "colour.tif"
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "a"), "--diameter", "40", *TILE]) == 0
    err = capfd.readouterr().err
    assert "colour.tif: grain diameter 40 px (given), scaled ×0.5" in err, err
    row = _rows(tmp_path / "a" / "summary.csv")[0]
    assert (row["diameter_px"], row["diameter_source"], row["scale"]) == ("40", "given", "0.5")
    labels = tifffile.imread(tmp_path / "a" / "colour_labels.tif")
    assert labels.shape == (96, 128)
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "b"), "--diameter", "40",
                 "--no-rescale", *TILE]) == 0
    assert "colour.tif: grain diameter 40 px (given), not scaled" in capfd.readouterr().err
    assert _rows(tmp_path / "b" / "summary.csv")[0]["scale"] == "1"


def test_eval_and_predict_onnx_take_the_diameter(scaled_model, tmp_path, capfd):
    import shutil

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    shutil.copy(scaled_model / "colour.tif", data / "images" / "a.tif")
    tifffile.imwrite(data / "labels" / "a.tif", (np.arange(96 * 128).reshape(96, 128) // 1000 + 1).astype(np.uint16))
    assert main(["eval", str(scaled_model / "seg"), str(data), "--diameter", "10", *TILE[:-1]]) == 0
    assert "a: grain diameter 10 px (given), scaled ×2" in capfd.readouterr().err
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "seg.onnx"
    assert main(["export", str(scaled_model / "seg"), "--format", "onnx", "--out", str(onnx)]) == 0
    capfd.readouterr()
    assert main(["predict-onnx", str(onnx), str(scaled_model / "colour.tif"), "--out", str(tmp_path / "o"),
                 "--diameter", "40", "--tile", "64"]) == 0
    assert "grain diameter 40 px (given), scaled ×0.5" in capfd.readouterr().err
    assert _rows(tmp_path / "o" / "summary.csv")[0]["scale"] == "0.5"
