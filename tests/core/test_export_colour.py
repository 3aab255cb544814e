"""ONNX and bioimage.io export of 1- and 3-channel models: channels, test tensors, pre-processing, docs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_grainlab.core.data.channels import luminance
from napari_grainlab.core.export import ExportError, _sample_micrograph, export_bioimageio, export_onnx
from napari_grainlab.core.inference import predict_array
from napari_grainlab.core.models import ModelSpec, build_model, load_checkpoint, save_checkpoint
from napari_grainlab.core.onnx_predict import OnnxModel, predict_onnx

ort = pytest.importorskip("onnxruntime")

BACKBONE = "test_efficientnet"  # timm's tiny EfficientNet


def tiny(in_chans: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelSpec(task="segment", backbone=BACKBONE, decoder_channels=(16, 16, 8, 8, 8),
                                 in_chans=in_chans, dropout=0.0)).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_colour")
    save_checkpoint(root / "rgb", tiny(3), {"grain_diameter": 24.0})
    save_checkpoint(root / "grey", tiny(1, seed=1), {})
    return root


def bioimageio():
    try:
        import bioimageio.spec as bs
        import yaml  # noqa: F401 - a dependency of bioimageio.spec
    except ImportError:
        pytest.skip("bioimageio.spec is not installed (the 'bioimageio' extra); the rdf is not checked")
    return bs


def test_the_sample_micrograph_is_colour_for_a_colour_model():
    grey, rgb = _sample_micrograph(96), _sample_micrograph(96, channels=3)
    assert grey.shape == (96, 96) and rgb.shape == (96, 96, 3) and rgb.dtype == np.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert np.abs(rgb[..., 0] - rgb[..., 1]).mean() > 0.05  # hues differ between grains, not grey


def test_onnx_export_of_a_colour_model_predicts_colour_like_pytorch(models):
    report = export_onnx(models / "rgb", models / "rgb.onnx", exporter="torchscript")
    assert report.checked and all(shape[1] == 3 for shape in report.max_abs_diff)
    onnx_model = OnnxModel(models / "rgb.onnx")
    assert onnx_model.meta["input"]["channels"] == 3 and onnx_model.meta["grain_diameter"] == 24.0
    image = np.random.default_rng(0).random((80, 100, 3)).astype(np.float32)
    model, meta = load_checkpoint(models / "rgb", device="cpu")
    opts = dict(tile=64, overlap=16, diameter=24.0)
    ref = predict_array(model, meta, image, **opts, device="cpu")
    got = predict_onnx(onnx_model, image, **opts)
    np.testing.assert_allclose(got.boundary, ref.boundary, atol=1e-4)
    # the colour matters: the luminance (as a grey image) gives other maps
    grey = predict_onnx(onnx_model, luminance(image).astype(np.float32), **opts)
    assert np.abs(grey.boundary - got.boundary).max() > 1e-3


@pytest.mark.parametrize("which, names", [("rgb", ["r", "g", "b"]), ("grey", ["gray"])])
def test_bioimageio_package_describes_the_channels(models, tmp_path, which, names):
    bs = bioimageio()
    import yaml

    pkg = tmp_path / "pkg"
    result = export_bioimageio(models / which, pkg, exporter="torchscript")
    assert result.status in ("passed", "valid-format")
    descr = bs.load_description(pkg / "rdf.yaml", perform_io_checks=True)
    assert not isinstance(descr, bs.InvalidDescr), descr.validation_summary.format()
    inp = descr.inputs[0]
    channel = [a for a in inp.axes if a.type == "channel"][0]
    assert [str(c) for c in channel.channel_names] == names
    steps = {step.id: step for step in inp.preprocessing}  # bioimageio.spec may add ensure_dtype steps
    scale = steps["scale_range"]
    assert scale.kwargs.min_percentile == pytest.approx(0.1) and scale.kwargs.max_percentile == pytest.approx(99.9)
    # one stretch for all three colour channels (as napari-grainlab normalises colour), per image for grey
    expected_axes = ["channel", "y", "x"] if which == "rgb" else ["y", "x"]
    assert [str(a) for a in scale.kwargs.axes] == expected_axes
    assert steps["clip"].kwargs.min == 0.0 and steps["clip"].kwargs.max == 1.0
    rdf_dict = yaml.safe_load((pkg / "rdf.yaml").read_text())
    assert rdf_dict["config"]["napari_grainlab"]["channels"] == names
    assert rdf_dict["inputs"][0]["axes"][1]["channel_names"] == names
    # the test tensors: what the ONNX weights compute on the sample (a colour one for the colour model)
    x, y = np.load(pkg / "test_input.npy"), np.load(pkg / "test_output.npy")
    assert x.shape[:2] == (1, len(names)) and x.dtype == np.float32 and y.shape == (1, 2, *x.shape[2:])
    assert 0.0 <= x.min() and x.max() <= 1.0
    if which == "rgb":
        assert np.abs(x[0, 0] - x[0, 1]).mean() > 0.05
    session = ort.InferenceSession(str(pkg / "weights.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-session.run(None, {"image": x})[0])), atol=1e-6)
    readme = (pkg / "README.md").read_text()
    rdf = (pkg / "rdf.yaml").read_text()
    if which == "rgb":
        assert "RGB" in readme and "24 px" in readme and "grayscale channel" not in readme
        assert "colour" in descr.description and "rgb" in descr.tags and "RGB colour micrograph" in rdf
    else:
        assert "One grayscale channel" in readme and "RGB" not in readme and "grayscale" in descr.tags


def test_test_images_are_given_the_models_channels(models, tmp_path):
    bioimageio()
    rng = np.random.default_rng(1)
    grey = rng.random((70, 70)).astype(np.float32)
    export_bioimageio(models / "rgb", tmp_path / "a", test_image=grey, exporter="torchscript")
    x = np.load(tmp_path / "a" / "test_input.npy")
    assert x.shape == (1, 3, 64, 64)  # cropped to the size multiple, grey replicated
    np.testing.assert_array_equal(x[0, 0], x[0, 1])
    np.testing.assert_array_equal(x[0, 0], x[0, 2])
    rgb = rng.random((64, 96, 3)).astype(np.float32)
    export_bioimageio(models / "grey", tmp_path / "b.zip", test_image=rgb, exporter="torchscript")
    assert (tmp_path / "b.zip").is_file()
    with pytest.raises(ExportError, match=r"grey \(H, W\) or colour \(H, W, 3\)"):
        export_bioimageio(models / "grey", tmp_path / "c", test_image=np.zeros((64, 64, 2)), exporter="torchscript")
    with pytest.raises(ExportError, match="at least 32 px"):
        export_bioimageio(models / "rgb", tmp_path / "d", test_image=rgb[:20], exporter="torchscript")


def test_onnx_metadata_records_the_grey_channel_of_older_models(models, tmp_path):
    export_onnx(models / "grey", tmp_path / "g.onnx", exporter="torchscript", check=False)
    meta = OnnxModel(tmp_path / "g.onnx").meta
    assert meta["input"]["channels"] == 1 and meta["grain_diameter"] is None
    assert json.loads(json.dumps(meta)) == meta
