"""``grainlab retrain``: rounds on a dataset folder, --list, and one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_grainlab.cli import main

TINY = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "64", "--no-progress",
        "--device", "cpu"]


@pytest.fixture
def data(tmp_path):
    out = tmp_path / "ds"
    assert main(["synth", str(out), "--count", "2", "--size", "128"]) == 0
    return out


def test_two_rounds_then_list(data, capsys):
    assert main(["retrain", str(data), *TINY]) == 0
    out = capsys.readouterr().out
    assert "starting from the built-in model: generalist" in out and "round 1: validation F1" in out
    assert (data / "models" / "round-01" / "best" / "model.json").is_file()
    assert main(["retrain", str(data), *TINY]) == 0  # the next round starts from the newest one
    out = capsys.readouterr().out
    assert "starting from round 1" in out and "round 2" in out
    assert main(["retrain", str(data), "--list", "--json"]) == 0
    rounds = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in rounds] == [1, 2] and rounds[1]["base"] == rounds[0]["path"]
    assert main(["retrain", str(data), "--list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["round", "val"] and len(table) == 3


def test_errors_are_one_line(tmp_path, data, capsys):
    assert main(["retrain", str(tmp_path / "missing"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such dataset folder" in err[0]
    for f in (data / "labels").iterdir():  # nothing annotated
        tifffile.imwrite(f, np.zeros(tifffile.imread(f).shape, np.uint16))
    assert main(["retrain", str(data), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grainlab: error:") and "Traceback" not in err
    assert main(["retrain", str(data), "--epochs", "0"]) == 2  # argparse names the flag
    assert "--epochs" in capsys.readouterr().err
    assert main(["retrain", str(tmp_path / "empty"), "--list"]) == 0
    assert "no rounds" in capsys.readouterr().out
