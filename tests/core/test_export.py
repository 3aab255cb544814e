"""ONNX export (checked against PyTorch) and the torch-free ONNX prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_grainlab.core.export import ExportError, check_shapes, export_onnx
from napari_grainlab.core.inference import predict_array
from napari_grainlab.core.models import CheckpointError, ModelSpec, build_model, load_checkpoint, save_checkpoint
from napari_grainlab.core.onnx_predict import METADATA_KEY, OnnxModel, OnnxModelError, predict_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

BACKBONE = "test_efficientnet"  # timm's tiny EfficientNet: a real encoder, exported in seconds
REFERENCE = np.linspace(0.05, 0.9, 16).tolist()


def structured_unet() -> torch.nn.Module:
    """A tiny U-Net whose outputs follow the image: bright pixels are boundary, dark ones grain interior.

    The last decoder block passes the input image through (the encoder's features still add a
    small, position-dependent part), so grain images give many grains after the watershed.
    """
    torch.manual_seed(0)
    model = build_model(ModelSpec(task="segment", backbone=BACKBONE, decoder_channels=(16, 16, 8, 8, 8),
                                  dropout=0.0)).eval()
    last = model.decoder[-1]
    with torch.no_grad():
        w1 = last.conv1[0].weight  # (8, 8 decoder + 1 image channels, 3, 3)
        w1.mul_(0.01)
        w1[0, -1].zero_()
        w1[0, -1, 1, 1] = 4.0
        w2 = last.conv2[0].weight
        w2.zero_()
        w2[0, 0, 1, 1] = 1.0
        model.head.weight.zero_()
        model.head.weight[0, 0] = 3.0
        model.head.weight[1, 0] = -3.0
        model.head.bias.copy_(torch.tensor([-9.0, 6.0]))
    return model


def grain_image(shape=(150, 130), cell=22, seed=0) -> np.ndarray:
    """Bright boundaries of a Voronoi tessellation fading into dark grain centres, in [0, 1]."""
    rng = np.random.default_rng(seed)
    h, w = shape
    n = max(4, h * w // cell ** 2)
    seeds = rng.random((n, 2)) * (h, w)
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    owner = d.argmin(axis=2)
    edge = np.zeros(shape, bool)
    edge[:-1] |= owner[:-1] != owner[1:]
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    dist = ndi.distance_transform_edt(~edge)
    return np.exp(-dist / 3.0).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    save_checkpoint(root / "seg", structured_unet(),
                    {"histogram_reference": REFERENCE, "training": {"patch_size": 64, "epochs": 3, "lr": 1e-3,
                                                                     "not_summarised": "x"}})
    torch.manual_seed(1)
    cls = build_model(ModelSpec(task="classify", backbone=BACKBONE, num_classes=3, classes=["ferrite", "pearlite",
                                                                                           "bainite"])).eval()
    save_checkpoint(root / "cls", cls, {"training": {"patch_size": 64}})
    seg_report = export_onnx(root / "seg", root / "seg.onnx")
    cls_report = export_onnx(root / "cls", root / "cls.onnx", exporter="torchscript")
    return root, seg_report, cls_report


def test_export_report_and_check(models):
    root, seg, cls = models
    for report, task in ((seg, "segment"), (cls, "classify")):
        assert report.path.is_file()
        assert report.size_bytes == report.path.stat().st_size > 10_000
        assert report.task == task and report.checked
        # two shapes, neither the export sample's (2 x 1 x 64 x 96)
        assert list(report.max_abs_diff) == check_shapes(32)
        assert all((2, 1, 64, 96) != s for s in report.max_abs_diff)
        assert 0 <= report.worst < 1e-4
        assert "max abs diff" in str(report)
    assert seg.exporter == "dynamo" and cls.exporter == "torchscript"


@pytest.mark.parametrize("which", ["seg", "cls"])
def test_onnx_accepts_other_sizes_and_matches_torch(models, which):
    root = models[0]
    model, _ = load_checkpoint(root / which)
    session = ort.InferenceSession(str(root / f"{which}.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for shape in [(3, 1, 32, 224), (1, 1, 160, 96)]:
        x = rng.random(shape, dtype=np.float32)
        got = session.run(None, {"image": x})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape == ((shape[0], 2, *shape[2:]) if which == "seg" else (shape[0], 3))
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_metadata_round_trip(models):
    root = models[0]
    seg = OnnxModel(root / "seg.onnx", providers=["CPUExecutionProvider"])
    assert seg.task == "segment" and seg.multiple == 32 and seg.out_channels == 2
    assert seg.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(seg.histogram_reference, REFERENCE, rtol=1e-6)
    meta = seg.meta
    assert meta["output"]["channels"] == ["boundary", "distance"] and meta["output"]["activation"] == "sigmoid"
    assert meta["tile"] == {"size": 512, "overlap": 64}
    assert meta["postprocess"]["merge_threshold"] == pytest.approx(0.35)
    assert meta["training"] == {"patch_size": 64, "epochs": 3, "lr": 1e-3}
    assert meta["spec"]["backbone"] == BACKBONE and meta["input"]["range"] == [0.0, 1.0]
    # stored as JSON in the plain ONNX metadata, readable by any ONNX tool
    props = {p.key: p.value for p in onnx.load(str(root / "seg.onnx"), load_external_data=False).metadata_props}
    assert json.loads(props[METADATA_KEY])["task"] == "segment"

    cls = OnnxModel(root / "cls.onnx")
    assert cls.task == "classify" and cls.classes == ("ferrite", "pearlite", "bainite")
    assert cls.meta["tile"] == {"size": 64, "stride": 32} and cls.meta["postprocess"] is None
    with pytest.raises(OnnxModelError, match="no intensity reference"):
        _ = cls.histogram_reference


@pytest.mark.parametrize("opts", [dict(tile=64, overlap=16), dict(tile=96, overlap=32, tta=True,
                                                                  histogram_match=True)])
def test_onnx_prediction_matches_pytorch_pipeline(models, opts):
    root = models[0]
    model, meta = load_checkpoint(root / "seg")
    image = grain_image()
    ref = predict_array(model, meta, image, **opts)
    got = predict_onnx(root / "seg.onnx", image, **opts)
    assert type(got) is type(ref) and got.task == "segment"
    assert ref.labels.max() >= 15  # a real segmentation, not one grain
    assert np.abs(got.boundary - ref.boundary).max() < 1e-5
    assert np.abs(got.distance - ref.distance).max() < 1e-5
    np.testing.assert_array_equal(got.labels, ref.labels)


def test_onnx_prediction_stretches_raw_pixel_values_as_pytorch_does(models):
    root = models[0]
    image = grain_image()
    raw = np.round(image * 200 + 30).astype(np.uint8)  # 8-bit pixel values, not the unit range
    prepared = predict_onnx(root / "seg.onnx", (raw.astype(np.float32) - raw.min()) / np.ptp(raw), tile=64, overlap=16)
    got = predict_onnx(root / "seg.onnx", raw, tile=64, overlap=16)
    assert prepared.labels.max() >= 15
    assert np.mean(got.labels == prepared.labels) > 0.99


def test_onnx_classification_matches_pytorch_pipeline(models):
    root = models[0]
    model, meta = load_checkpoint(root / "cls")
    image = np.random.default_rng(5).random((100, 140), dtype=np.float32)
    ref = predict_array(model, meta, image)  # the training patch size (64) is the default tile
    got = predict_onnx(OnnxModel(root / "cls.onnx"), image, tta=False)
    assert got.classes == ref.classes == ("ferrite", "pearlite", "bainite")
    assert got.tile_probs.shape == ref.tile_probs.shape and got.tile_probs.shape[0] > 4
    assert np.abs(got.tile_probs - ref.tile_probs).max() < 1e-5
    assert np.abs(got.confidence - ref.confidence).max() < 1e-5
    np.testing.assert_array_equal(got.class_map, ref.class_map)
    assert got.image_class == ref.image_class


def test_failed_check_writes_nothing(models, monkeypatch):
    root = models[0]
    from napari_grainlab.core import export

    real = export._session

    class Skewed:
        def __init__(self, session):
            self.session = session

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, names, feeds):
            return [y + 1e-2 for y in self.session.run(names, feeds)]

    monkeypatch.setattr(export, "_session", lambda data: Skewed(real(data)))
    out = root / "skewed.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(root / "cls", out, exporter="torchscript")
    assert not out.exists()
    report = export_onnx(root / "cls", out, exporter="torchscript", check=False)
    assert out.is_file() and not report.checked and report.max_abs_diff == {}


def test_bad_files_give_clear_errors(models, tmp_path):
    root = models[0]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 certainly not a protobuf")
    with pytest.raises(OnnxModelError, match="not a valid ONNX model"):
        OnnxModel(bad)
    with pytest.raises(OnnxModelError, match="no such ONNX file"):
        OnnxModel(tmp_path / "missing.onnx")
    # a valid ONNX file without our description
    proto = onnx.load(str(root / "cls.onnx"))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(OnnxModelError, match="without a napari-grainlab description"):
        OnnxModel(plain)
    # a corrupt checkpoint cannot be exported
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.json").write_text((root / "cls" / "model.json").read_text())
    (ckpt / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        export_onnx(ckpt)
    assert not (ckpt / "model.onnx").exists()
    with pytest.raises(ExportError, match="exporter"):
        export_onnx(root / "cls", exporter="magic")


def test_default_output_next_to_checkpoint(models):
    root = models[0]
    report = export_onnx(root / "cls" / "model.json", check=False, exporter="torchscript")
    assert report.path == root / "cls" / "model.onnx" and report.path.is_file()


def test_auto_falls_back_to_the_tracing_exporter(models, monkeypatch):
    root = models[0]
    from napari_grainlab.core import export

    def broken(*args, **kwargs):
        raise RuntimeError("cannot capture this model\nmore detail")

    monkeypatch.setattr(export, "_export_dynamo", broken)
    report = export_onnx(root / "cls", root / "fallback.onnx")
    assert report.exporter == "torchscript" and report.checked and report.worst < 1e-4
    monkeypatch.setattr(export, "_export_torchscript", broken)
    with pytest.raises(ExportError, match="dynamo: cannot capture this model; torchscript: cannot capture"):
        export_onnx(root / "cls", root / "never.onnx")
    assert not (root / "never.onnx").exists()
