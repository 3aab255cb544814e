"""``grainlab export`` and ``grainlab predict-onnx`` (torch-free)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import torch

from napari_grainlab.cli import main
from napari_grainlab.core.data.io import read_image
from napari_grainlab.core.inference import predict_array
from napari_grainlab.core.models import ModelSpec, build_model, load_checkpoint, save_checkpoint

pytest.importorskip("onnxruntime")

BACKBONE = "test_efficientnet"


def _grain_tif(path, shape=(120, 100), seed=0):
    rng = np.random.default_rng(seed)
    seeds = rng.random((14, 2)) * shape
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    owner = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(axis=2)
    edge = np.zeros(shape, bool)
    edge[:-1] |= owner[:-1] != owner[1:]
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    img = (60 + 120 * edge + rng.normal(0, 8, shape)).clip(0, 255).astype(np.uint8)
    tifffile.imwrite(path, img)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_export")
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone=BACKBONE, decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(root / "seg", seg, {"histogram_reference": np.linspace(0.1, 0.9, 8).tolist()})
    images = root / "images"
    images.mkdir()
    _grain_tif(images / "a.tif", seed=1)
    _grain_tif(images / "b.tif", (90, 140), seed=2)
    return root


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_export_onnx_prints_the_check(exported, capsys):
    root = exported
    rc, out, err = _run(capsys, "export", root / "seg", "--format", "onnx", "--out", root / "seg.onnx")
    assert rc == 0, err
    assert (root / "seg.onnx").is_file()
    assert out.count("max abs diff onnxruntime vs PyTorch") == 2 and "check passed" in out
    assert f"{(root / 'seg.onnx').stat().st_size / 1e6:.2f} MB" in out


def test_export_no_check_and_default_path(exported, capsys):
    root = exported
    rc, out, err = _run(capsys, "export", root / "seg", "--no-check", "--opset", "17", "--exporter", "torchscript")
    assert rc == 0, err
    assert (root / "seg" / "model.onnx").is_file()
    assert "not checked" in out and "max abs diff" not in out and "opset 17, torchscript exporter" in out


def test_export_errors_are_one_line(exported, tmp_path, capsys):
    rc, out, err = _run(capsys, "export", tmp_path / "nothing")
    assert rc == 2 and err.startswith("grainlab: error:") and err.count("\n") == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text((exported / "seg" / "model.json").read_text())
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    rc, out, err = _run(capsys, "export", bad)
    assert rc == 2 and "corrupt weights" in err and err.count("\n") == 1
    assert not (bad / "model.onnx").exists()
    rc, out, err = _run(capsys, "export", exported / "seg", "--opset", "3")
    assert rc == 2 and "opset must be between" in err


def test_predict_onnx_matches_the_pytorch_pipeline(exported, tmp_path, capsys):
    root = exported
    if not (root / "seg.onnx").exists():
        assert main(["export", str(root / "seg"), "--out", str(root / "seg.onnx")]) == 0
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "predict-onnx", root / "seg.onnx", root / "images", "--out", out, "--tile", 64,
                           "--overlap", 16)
    assert rc == 0, err
    assert "predicted 2 of 2 images" in stdout and "CPUExecutionProvider" in stdout
    for name in ("a", "b"):
        for suffix in ("_labels.tif", "_boundary.tif", "_grains.csv"):
            assert (out / f"{name}{suffix}").is_file()
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("image,output")
    model, meta = load_checkpoint(root / "seg")
    ref = predict_array(model, meta, read_image(root / "images" / "b.tif").data, tile=64, overlap=16)
    boundary = tifffile.imread(out / "b_boundary.tif")
    assert boundary.shape == (90, 140)
    assert np.abs(boundary - ref.boundary).max() < 1e-5
    np.testing.assert_array_equal(tifffile.imread(out / "b_labels.tif"), ref.labels)


def test_predict_onnx_errors_are_one_line(exported, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    rc, out, err = _run(capsys, "predict-onnx", bad, exported / "images", "--out", tmp_path / "o")
    assert rc == 2 and "not a valid ONNX model" in err and err.count("\n") == 1
    rc, out, err = _run(capsys, "predict-onnx", tmp_path / "missing.onnx", exported / "images", "--out", tmp_path)
    assert rc == 2 and "no such ONNX file" in err


TORCH_FREE = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is not installed here")

    sys.meta_path.insert(0, NoTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("torch still importable")

    import numpy as np
    from napari_grainlab.core.onnx_predict import OnnxModel, predict_onnx
    from napari_grainlab.core.data.io import read_image
    from napari_grainlab.cli import main

    model_path, image_path, out = sys.argv[1:4]
    model = OnnxModel(model_path)
    res = predict_onnx(model, read_image(image_path).data, tile=64, overlap=16, histogram_match=True)
    assert res.labels.shape == (120, 100) and res.labels.max() >= 1, res.labels.max()
    assert main(["predict-onnx", model_path, image_path, "--out", out, "--tile", "64"]) == 0
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print("TORCH-FREE OK", int(res.labels.max()))
""")


def test_prediction_runs_without_torch(exported, tmp_path):
    root = exported
    if not (root / "seg.onnx").exists():
        assert main(["export", str(root / "seg"), "--out", str(root / "seg.onnx")]) == 0
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, str(root / "seg.onnx"), str(root / "images" / "a.tif"),
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH-FREE OK" in proc.stdout
    assert (out / "a_labels.tif").is_file() and (out / "a_grains.csv").is_file() and (out / "summary.csv").is_file()


def test_bioimageio_export(exported, tmp_path, capsys):
    try:
        import bioimageio.spec as bs
    except ImportError:
        rc, out, err = _run(capsys, "export", exported / "seg", "--format", "bioimageio", "--out", tmp_path / "pkg")
        assert rc == 2 and "pip install 'napari-grainlab[bioimageio]'" in err and err.count("\n") == 1
        pytest.skip("bioimageio.spec is not installed (the 'bioimageio' extra)")
    pkg = tmp_path / "pkg"
    rc, out, err = _run(capsys, "export", exported / "seg", "--format", "bioimageio", "--out", pkg,
                        "--author", "A. Tester", "--name", "grains test", "--exporter", "torchscript")
    assert rc == 0, err
    assert "validation: valid-format" in out or "validation: passed" in out
    for name in ("rdf.yaml", "weights.onnx", "test_input.npy", "test_output.npy", "cover.png", "README.md"):
        assert (pkg / name).is_file(), name
    descr = bs.load_description(pkg / "rdf.yaml", perform_io_checks=True)
    assert not isinstance(descr, bs.InvalidDescr), descr.validation_summary.format()
    assert descr.name == "grains test" and [a.name for a in descr.authors] == ["A. Tester"]
    assert descr.weights.onnx is not None
    # the test tensors are what the ONNX weights compute (then the sigmoid post-processing)
    import onnxruntime as ort

    x = np.load(pkg / "test_input.npy")
    y = np.load(pkg / "test_output.npy")
    session = ort.InferenceSession(str(pkg / "weights.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": x})[0]
    assert x.shape[:2] == (1, 1) and y.shape == (1, 2, *x.shape[2:])
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-logits)), atol=1e-6)
    # the package's weights work with predict-onnx as they are
    rc, out, err = _run(capsys, "predict-onnx", pkg / "weights.onnx", exported / "images" / "a.tif", "--out",
                        tmp_path / "o", "--tile", "64")
    assert rc == 0, err
