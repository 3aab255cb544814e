"""``grainlab models`` lists the registry; registry names work as MODEL arguments."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from napari_grainlab.cli import main
from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint


@pytest.fixture
def registry(tmp_path, monkeypatch):
    torch.manual_seed(0)
    tiny = save_checkpoint(tmp_path / "tiny", build_model(ModelSpec(backbone="resnet18", decoder_channels=(8,))))
    root = tmp_path / "pkg"
    (root / "fake").mkdir(parents=True)
    for name in ("model.safetensors", "model.json"):
        shutil.copy(tiny / name, root / "fake" / name)
    digest = hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    (root / "registry.json").write_text(json.dumps({"format": "napari-grainlab-registry", "models": {
        "fake": {"file": "fake/model.safetensors", "sha256": digest, "channels": 1, "grain_diameter": 24.0,
                 "description": "a test model"},
        "later": {"url": "https://example.org/later.safetensors", "sha256": "0" * 64, "channels": 3,
                  "description": "not downloaded"}}}))
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(root / "registry.json"))
    monkeypatch.setenv("GRAINLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return root


def test_models_lists_the_registry(registry, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "channels", "scale"]
    fake = next(line for line in lines if line.startswith("fake"))
    assert "24 px" in fake and "bundled" in fake and "a test model" in fake and "MB" in fake
    later = next(line for line in lines if line.startswith("later"))
    assert "not installed" in later


def test_models_json(registry, capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["fake", "later"]
    assert rows[0]["installed"] == "bundled" and rows[0]["size"] > 0 and rows[0]["channels"] == 1
    assert rows[1]["installed"] == "not installed" and rows[1]["url"].endswith("later.safetensors")


def test_eval_with_a_registry_name_that_is_not_downloaded_is_one_line(registry, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(url, timeout=None):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    (registry / "data").mkdir()
    assert main(["eval", "later", str(registry / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "https://example.org/later.safetensors" in err[0]


def test_predict_with_a_registry_name(registry, tmp_path, capsys):
    """``grainlab predict NAME IMAGE --out DIR`` loads the built-in model, not a folder called NAME."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    image = tmp_path / "micrograph.tif"
    tifffile.imwrite(image, (rng.random((64, 64)) * 255).astype(np.uint8))
    assert main(["predict", "fake", str(image), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert (tmp_path / "out" / "micrograph_labels.tif").is_file()
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "micrograph" in summary
