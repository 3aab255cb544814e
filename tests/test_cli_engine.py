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
    assert main(["measure", str(labels), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["files"][0]
    assert row["unit"] == "um" and np.isfinite(row["astm_g"]) and row["grains"] > 10
    assert np.isfinite(row["grain_size"]["G"])
    assert main(["measure", str(labels), "--pixel-size", "0.2", "--json"]) == 0
    row2 = json.loads(capsys.readouterr().out)["files"][0]
    assert row2["astm_g"] == pytest.approx(row["astm_g"] - 2.0, abs=0.01)  # 2x larger pixels: G drops by 2
    assert row2["grain_size"]["G"] == pytest.approx(row["grain_size"]["G"] - 2.0, abs=0.01)


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


# ------------------------------------------------------------------------------ review fixes
def _model_variant(model: Path, dest: Path, *, drop_reference=False, nan_weights=False) -> Path:
    """A copy of the trained model's best checkpoint, without its intensity reference or with NaN weights."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(model / "best", dest)
    if drop_reference:
        meta = json.loads((dest / "model.json").read_text())
        meta.pop("histogram_reference", None)
        (dest / "model.json").write_text(json.dumps(meta))
    if nan_weights:
        state = load_file(str(dest / "model.safetensors"))
        for v in state.values():
            if v.is_floating_point():
                v.fill_(float("nan"))
        save_file(state, str(dest / "model.safetensors"))
    return dest


def test_predict_gives_inputs_with_the_same_stem_their_own_outputs(model, data, tmp_path, capsys):
    src = sorted((data / "sem" / "images").iterdir())
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    a1 = tmp_path / "d1" / "a.tif"
    a2 = tmp_path / "d2" / "a.tif"
    a1.write_bytes(src[0].read_bytes())
    a2.write_bytes(src[1].read_bytes())
    import imageio.v3 as iio

    a3 = tmp_path / "d1" / "A.png"
    iio.imwrite(a3, (tifffile.imread(src[2]) >> 8).astype(np.uint8) if tifffile.imread(src[2]).dtype == np.uint16
                else tifffile.imread(src[2]))
    out = tmp_path / "o"
    assert main(["predict", str(model / "best"), str(a1), str(a2), str(a3), "--out", str(out), "--tile", "64",
                 "--device", "cpu", "--no-progress"]) == 0
    for stem in ("a", "a_2", "A_3"):
        assert (out / f"{stem}_labels.tif").is_file() and (out / f"{stem}_grains.csv").is_file()
    np.testing.assert_array_equal(tifffile.imread(out / "a_labels.tif").shape, (96, 96))
    rows = [ln.split(",") for ln in (out / "summary.csv").read_text().splitlines()]
    col = rows[0].index("output")
    assert [r[col] for r in rows[1:]] == ["a", "a_2", "A_3"]
    assert [r[rows[0].index("image")] for r in rows[1:]] == ["a.tif", "a.tif", "A.png"]


@pytest.mark.parametrize("argv, expected", [
    (["measure", "{labels}", "--pixel-size", "inf"], "--pixel-size: expected a finite number"),
    (["measure", "{labels}", "--pixel-size", "nan"], "--pixel-size: expected a finite number"),
    (["measure", "{labels}", "--pixel-size", "1e200"], "--pixel-size: must be at most"),
    (["predict", "{model}", "{image}", "--out", "{tmp}", "--tile", "16"], "--tile: must be at least 32"),
    (["eval", "{model}", "{sem}", "--tile", "16"], "--tile: must be at least 32"),
    (["predict", "{model}", "{image}", "--out", "{tmp}", "--device", "foo"], "device: unknown device 'foo'"),
    (["eval", "{model}", "{sem}", "--device", "foo"], "device: unknown device 'foo'"),
    (["train", "{sem}", "--out", "{tmp}/w", *FAST, "--device", "foo"], "device: 'foo' is not one of"),
    (["train", "{sem}", "--out", "{tmp}/w", *FAST, "--weight-decay", "-1"], "--weight-decay: must be >= 0"),
    (["train", "{sem}", "--out", "{tmp}/w", *FAST, "--weight-decay", "nan"], "--weight-decay: expected a finite"),
    (["train", "{sem}", "--out", "{tmp}/w", *FAST, "--lr", "inf"], "--lr: expected a finite number"),
    (["train", "{sem}", "--out", "{tmp}/w", *FAST, "--backbone-lr-factor", "nan"], "expected a finite number"),
    (["train", "{sem}", "--out", "{tmp}/w", *FAST, "--mixup", "inf"], "--mixup: expected a finite number"),
])
def test_bad_numbers_and_devices_are_one_line_and_exit_2(argv, expected, model, data, tmp_path, capsys):
    fill = {"labels": str(sorted((data / "sem" / "labels").iterdir())[0]), "model": str(model / "best"),
            "image": str(sorted((data / "sem" / "images").iterdir())[0]), "sem": str(data / "sem"),
            "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert expected in one_error_line(err)
    assert not (tmp_path / "w" / "best").exists()


def test_measure_json_has_null_instead_of_nan(data, tmp_path, capsys):
    zeros = tmp_path / "zeros.tif"
    tifffile.imwrite(zeros, np.zeros((16, 16), np.uint16))
    assert main(["measure", str(zeros), "--pixel-size", "0.5", "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text
    row = json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))["files"][0]
    assert row["grains"] == 0 and row["astm_g"] is None and row["mean_diameter"] is None
    assert row["grain_size"]["G"] is None and row["grain_size"]["ci_reason"]


def test_eval_json_is_strict_and_histogram_match_needs_a_reference(model, data, tmp_path, capsys):
    assert main(["eval", str(model / "best"), str(data / "sem"), "--tile", "64", "--per-image",
                 "--device", "cpu"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    noref = _model_variant(model, tmp_path / "noref", drop_reference=True)
    assert main(["eval", str(noref), str(data / "sem"), "--tile", "64", "--histogram-match",
                 "--device", "cpu"]) == 2
    assert "no intensity reference for --histogram-match" in one_error_line(capsys.readouterr().err)


def test_a_model_with_nan_weights_is_one_line_not_nan_outputs(model, data, tmp_path, capsys):
    bad = _model_variant(model, tmp_path / "nan", nan_weights=True)
    image = sorted((data / "sem" / "images").iterdir())[0]
    assert main(["predict", str(bad), str(image), "--out", str(tmp_path / "o"), "--tile", "64",
                 "--device", "cpu", "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "NaN or infinite values" in line and "diverged" in line
    assert main(["eval", str(bad), str(data / "sem"), "--tile", "64", "--device", "cpu"]) == 2
    assert "NaN or infinite values" in one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(__import__("sys").platform == "win32", reason="POSIX permissions")
def test_predict_outputs_have_the_normal_file_mode(model, data, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        image = sorted((data / "sem" / "images").iterdir())[0]
        assert main(["predict", str(model / "best"), str(image), "--out", str(tmp_path), "--tile", "64",
                     "--device", "cpu", "--no-progress"]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


@pytest.fixture(scope="module")
def classifier(data):
    rng = np.random.default_rng(0)
    root = data / "cls"
    for name, level in (("dark", 0.25), ("bright", 0.75)):
        (root / name).mkdir(parents=True)
        for i in range(4):
            img = np.clip(level + 0.1 * rng.standard_normal((96, 96)), 0, 1)
            tifffile.imwrite(root / name / f"{name}{i}.tif", (img * 255).astype(np.uint8))
    out = data / "cmodel"
    assert main(["train", str(root), "--out", str(out), "--task", "classify", *FAST]) == 0
    return out / "best", root


def test_eval_of_a_classifier_uses_tile_tta_and_adaptation_like_predict(classifier, monkeypatch, capsys):
    from napari_grainlab.core.inference import pipeline, tiling

    model, root = classifier
    calls = []
    real = tiling.classify_tiled

    def spy(model_, image, tile=224, *args, **kwargs):
        calls.append((tile, kwargs.get("tta")))
        return real(model_, image, tile, *args, **kwargs)

    monkeypatch.setattr(pipeline, "classify_tiled", spy)
    assert main(["eval", str(model), str(root), "--tile", "32", "--tta", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "classify" and out["images"] == 8
    assert calls and set(calls) == {(32, True)}  # was: always 224 px, never TTA
    calls.clear()
    assert main(["eval", str(model), str(root), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert set(calls) == {(64, False)}  # default: the model's training patch size, as in predict
    calls.clear()
    adapted = []
    monkeypatch.setattr(pipeline, "adapt_batchnorm", lambda m, imgs, device=None: adapted.append(1) or m)
    assert main(["eval", str(model), str(root), "--adabn", "--histogram-match", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert len(adapted) == 8
