"""``grainlab export`` of a colour (3-channel) model, and its exports predicting colour micrographs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch

from napari_grainlab.cli import main

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("cli_export_colour")
    torch.manual_seed(0)
    model = build_model(ModelSpec(task="segment", backbone="test_efficientnet", decoder_channels=(16, 16, 8, 8, 8),
                                  in_chans=3)).eval()
    save_checkpoint(root / "seg", model, {"grain_diameter": 20.0})
    rgb = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(root / "colour.tif", rgb, photometric="rgb")
    return root


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_export_onnx_of_a_colour_model_predicts_colour_micrographs(colour_model, tmp_path, capsys):
    root = colour_model
    rc, out, err = _run(capsys, "export", root / "seg", "--format", "onnx", "--out", tmp_path / "c.onnx",
                        "--exporter", "torchscript")
    assert rc == 0, err
    assert "check 1x3x128x64" in out and "check 2x3x96x160" in out and "check passed" in out
    rc, out, err = _run(capsys, "predict-onnx", tmp_path / "c.onnx", root / "colour.tif", "--out", tmp_path / "o",
                        "--tile", "64", "--diameter", "40", "--overlay")
    assert rc == 0, err
    assert "grain diameter 40 px (given), scaled ×0.5" in err
    assert tifffile.imread(tmp_path / "o" / "colour_labels.tif").shape == (96, 128)
    overlay = tmp_path / "o" / "colour_overlay.png"
    assert overlay.is_file()
    with open(tmp_path / "o" / "summary.csv", newline="") as f:
        assert next(csv.DictReader(f))["scale"] == "0.5"


def test_export_bioimageio_of_a_colour_model(colour_model, tmp_path, capsys):
    try:
        import bioimageio.spec  # noqa: F401
        import yaml
    except ImportError:
        pytest.skip("bioimageio.spec is not installed (the 'bioimageio' extra)")
    root = colour_model
    pkg = tmp_path / "pkg"
    rc, out, err = _run(capsys, "export", root / "seg", "--format", "bioimageio", "--out", pkg,
                        "--exporter", "torchscript", "--name", "colour grains")
    assert rc == 0, err
    assert "validation: valid-format" in out or "validation: passed" in out
    rdf = yaml.safe_load((pkg / "rdf.yaml").read_text())
    axes = rdf["inputs"][0]["axes"]
    assert [a["type"] for a in axes] == ["batch", "channel", "space", "space"]
    assert axes[1]["channel_names"] == ["r", "g", "b"]
    x = np.load(pkg / "test_input.npy")
    assert x.shape[:2] == (1, 3)
    # the package's weights take colour micrographs in predict-onnx
    rc, out, err = _run(capsys, "predict-onnx", pkg / "weights.onnx", root / "colour.tif", "--out", tmp_path / "o",
                        "--tile", "64")
    assert rc == 0, err
    assert "grain diameter ≈ " in err  # the model's scale went along: the input's diameter was estimated
