"""grainlab train / predict / eval / measure, including the one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainlab.cli import main

FAST = ["--backbone", "resnet18", "--weights", "none", "--strategy", "scratch", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "64", "--device", "cpu", "--no-progress"]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("grainlab: error:")]
    assert len(lines) >= 1, err
    return lines[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    assert main(["synth", str(root / "sem"), "--count", "3", "--size", "96", "--grains", "25",
                 "--pixel-size", "0.1", "--no-progress"]) == 0
    return root


@pytest.fixture(scope="module")
def model(data):
    out = data / "model"
    assert main(["train", str(data / "sem"), "--out", str(out), *FAST]) == 0
    return out


def test_train_writes_best_and_last_checkpoints(model, data):
    for kind in ("best", "last"):
        meta = json.loads((model / kind / "model.json").read_text())
        assert meta["backbone"] == "resnet18" and meta["training"]["epochs"] == 1
    assert (model / "config.json").is_file() and (model / "history.json").is_file()


def test_train_refuses_a_non_empty_out(data, capsys):
    assert main(["train", str(data / "sem"), "--out", str(data / "model"), *FAST]) == 2
    assert "--overwrite" in one_error_line(capsys.readouterr().err)


def test_predict_writes_labels_boundary_and_grain_table(model, data, tmp_path, capsys):
    images = sorted((data / "sem" / "images").iterdir())
    assert main(["predict", str(model), str(images[0]), str(images[1]), "--out", str(tmp_path), "--tile", "64",
                 "--overlay", "--no-progress"]) == 0
    stem = images[0].stem
    labels = tifffile.imread(tmp_path / f"{stem}_labels.tif")
    boundary = tifffile.imread(tmp_path / f"{stem}_boundary.tif")
    assert labels.shape == (96, 96) and labels.dtype == np.uint32 and labels.max() >= 1
    assert boundary.dtype == np.float32 and 0 <= boundary.min() and boundary.max() <= 1
    header = (tmp_path / f"{stem}_grains.csv").read_text().splitlines()[0]
    assert "equivalent_diameter [um]" in header  # pixel size taken from the TIFF metadata
    assert (tmp_path / f"{stem}_overlay.png").is_file()
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and "astm_g" in summary[0]


def test_predict_reports_a_bad_image_and_goes_on(model, data, tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    good = sorted((data / "sem" / "images").iterdir())[0]
    assert main(["predict", str(model), str(bad), str(good), "--out", str(tmp_path / "o"), "--tile", "64",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "broken.tif" in one_error_line(err)
    assert (tmp_path / "o" / f"{good.stem}_labels.tif").is_file()


def test_eval_prints_metrics_as_json(model, data, capsys):
    assert main(["eval", str(model), str(data / "sem"), "--tile", "64", "--baseline"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 3 and out["task"] == "segment"
    for key in ("boundary_f1", "adapted_rand_error", "vi", "grain_f1"):
        assert key in out["metrics"] and key in out["baseline_classical"]


def test_measure_gives_astm_g_with_a_pixel_size(data, capsys):
    labels = sorted((data / "sem" / "labels").iterdir())[0]
    assert main(["measure", str(labels)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["unit"] == "um" and np.isfinite(row["astm_g"]) and row["grains"] > 10
    assert main(["measure", str(labels), "--pixel-size", "0.2"]) == 0
    row2 = json.loads(capsys.readouterr().out)
    assert row2["astm_g"] == pytest.approx(row["astm_g"] - 2.0, abs=0.01)  # 2x larger pixels: G drops by 2


def test_kfold_prints_mean_and_sd(data, tmp_path, capsys):
    assert main(["train", str(data / "sem"), "--out", str(tmp_path / "cv"), "--kfold", "3", *FAST]) == 0
    out = capsys.readouterr().out
    assert "3-fold cross-validation" in out and "±" in out
    assert json.loads((tmp_path / "cv" / "cross_validation.json").read_text())["k"] == 3


def _folder(root: Path, images: list, labels: list) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, (im, lab) in enumerate(zip(images, labels)):
        tifffile.imwrite(root / "images" / f"a{i}.tif", im)
        if lab is not None:
            tifffile.imwrite(root / "labels" / f"a{i}.tif", lab)
    return root


@pytest.mark.parametrize("case, expected", [
    ("unknown-backbone", "unknown backbone"),
    ("empty-labels", "no annotated pixels"),
    ("shape-mismatch", "does not match"),
    ("one-class", "one class"),
    ("unreadable", "a0.tif"),
    ("missing-weights", "not found"),
])
def test_bad_training_input_is_one_line_and_exit_2(case, expected, data, tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 255).astype(np.uint8)
    lab = np.repeat(np.arange(1, 5, dtype=np.uint16), 16)[None].repeat(64, 0)
    args = list(FAST)
    folder = str(data / "sem")
    if case == "unknown-backbone":
        args[1] = "resnet1888"
    elif case == "empty-labels":
        folder = str(_folder(tmp_path / "d", [img, img], [np.zeros_like(lab), np.zeros_like(lab)]))
    elif case == "shape-mismatch":
        folder = str(_folder(tmp_path / "d", [img], [lab[:32]]))
    elif case == "one-class":
        (tmp_path / "d" / "only").mkdir(parents=True)
        tifffile.imwrite(tmp_path / "d" / "only" / "x.tif", img)
        folder = str(tmp_path / "d")
    elif case == "unreadable":
        d = _folder(tmp_path / "d", [img], [lab])
        (d / "images" / "a0.tif").write_bytes(b"not a tiff")
        folder = str(d)
    elif case == "missing-weights":
        args[3], args[5] = "/nonexistent/w.safetensors", "finetune"
    assert main(["train", folder, "--out", str(tmp_path / "m"), *args]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert expected in line, line


def test_predict_refuses_a_pickle_model(tmp_path, capsys):
    p = tmp_path / "model.pth"
    p.write_bytes(b"\x80\x04K\x01.")
    img = tmp_path / "x.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    assert main(["predict", str(p), str(img), "--out", str(tmp_path / "o")]) == 2
    assert "pickle" in one_error_line(capsys.readouterr().err)
