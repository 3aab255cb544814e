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


def test_diameter_auto_is_the_estimate_and_bad_text_names_it(scaled_model, tmp_path, capfd):
    model, image = scaled_model / "seg", scaled_model / "colour.tif"
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "a"), "--diameter", "AUTO",
                 "--min-size", "auto", *TILE]) == 0
    err = capfd.readouterr().err
    assert "colour.tif: grain diameter ≈ " in err and "(estimated)" in err, err
    assert _rows(tmp_path / "a" / "summary.csv")[0]["diameter_source"] == "estimated"
    rc = main(["predict", str(model), str(image), "--out", str(tmp_path / "b"), "--diameter", "big", *TILE])
    err = capfd.readouterr().err
    assert rc == 2 and "argument --diameter: expected a number, got 'big' (or auto)" in err, err


def test_the_options_parser_takes_auto_for_optional_fields_only():
    import argparse

    from napari_grainlab.cli._common import add_options, options_from_args
    from napari_grainlab.core.inference.options import InferenceOptions

    parser = argparse.ArgumentParser()
    add_options(parser, InferenceOptions)
    opts = options_from_args(InferenceOptions, parser.parse_args(["--diameter", "auto", "--tile", "Auto"]))
    assert opts.diameter is None and opts.tile is None
    opts = options_from_args(InferenceOptions, parser.parse_args(["--diameter", "35.5", "--tile", "64"]))
    assert opts.diameter == 35.5 and opts.tile == 64
    with pytest.raises(SystemExit):  # a field without special text (overlap) takes numbers only
        parser.parse_args(["--overlap", "auto"])


def test_an_image_not_rescaled_says_why(scaled_model, tmp_path, capfd):
    from napari_grainlab.core.models import load_checkpoint, save_checkpoint

    model, image = scaled_model / "seg", scaled_model / "colour.tif"
    # within 5 % of the model's 20 px: not resampled
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "a"), "--diameter", "20.5", *TILE]) == 0
    assert "colour.tif: grain diameter 20 px (given), not scaled (change under 5 %)" in capfd.readouterr().err
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "b"), "--diameter", "40",
                 "--no-rescale", *TILE]) == 0
    assert "grain diameter 40 px (given), not scaled (rescaling off)" in capfd.readouterr().err
    # a model that records no training scale (an older checkpoint)
    net, meta = load_checkpoint(model, device="cpu")
    old = tmp_path / "old"
    assert meta.get("grain_diameter") == 20.0
    save_checkpoint(old, net, {})
    assert main(["predict", str(old), str(image), "--out", str(tmp_path / "c"), "--diameter", "40", *TILE]) == 0
    assert "grain diameter 40 px (given), not scaled (the model records no training scale)" in capfd.readouterr().err
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    tifffile.imwrite(data / "images" / "a.tif", tifffile.imread(image), photometric="rgb")
    tifffile.imwrite(data / "labels" / "a.tif", (np.arange(96 * 128).reshape(96, 128) // 1000 + 1).astype(np.uint16))
    assert main(["eval", str(model), str(data), "--diameter", "19.5", *TILE[:-1]]) == 0
    assert "a: grain diameter 20 px (given), not scaled (change under 5 %)" in capfd.readouterr().err
