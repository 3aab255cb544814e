"""Loading a checkpoint checks that its weights fit the network that model.json describes (issue 14, item 5)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from napari_grainlab.core.models import CheckpointError, ModelSpec, build_model, load_checkpoint, save_checkpoint
from napari_grainlab.core.models import checkpoint as checkpoint_mod


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone="resnet18", decoder_channels=(16, 8)))
    return save_checkpoint(tmp_path_factory.mktemp("fit") / "m", model)


def with_backbone(src, dest, backbone, *, spec=True, top=True):
    """A copy of ``src`` whose model.json names another backbone (as a user's edit would)."""
    shutil.copytree(src, dest)
    meta = json.loads((dest / "model.json").read_text())
    if spec:
        meta["spec"]["backbone"] = backbone
    if top:
        meta["backbone"] = backbone
    (dest / "model.json").write_text(json.dumps(meta, indent=2))
    return dest


@pytest.mark.parametrize(("backbone", "kinds"), [
    ("resnet34", ("missing keys such as 'encoder.layer1.2.conv1.weight'",)),
    ("resnet50", ("missing keys such as 'encoder.layer1.0.conv3.weight'", "of different shape such as "
                  "'encoder.layer1.0.conv1.weight' ([64, 64, 3, 3] in the weights, [64, 64, 1, 1] in the model)")),
    ("efficientnet_lite0", ("missing keys such as 'encoder.conv_stem.weight'", "unexpected keys such as",
                            "of different shape such as")),
])
def test_weights_of_another_backbone_give_one_line_naming_backbone_and_mismatch(saved, tmp_path, monkeypatch,
                                                                                 backbone, kinds):
    bad = with_backbone(saved, tmp_path / "bad", backbone)
    called = []
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda *a, **k: called.append(a))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert not called  # the fit is checked before load_state_dict
    msg = str(info.value)
    assert msg.startswith(f"{bad}: the weights do not fit backbone {backbone} (model.json): ")
    assert "\n" not in msg and len(msg) < 400, msg
    assert "state_dict" not in msg and "torch.Size" not in msg and "size mismatch" not in msg
    for kind in kinds:
        assert kind in msg, msg


def test_counts_in_the_message_are_those_of_the_mismatch(saved, tmp_path):
    import re

    from safetensors.torch import load_file

    bad = with_backbone(saved, tmp_path / "bad", "resnet50")
    state = load_file(str(bad / "model.safetensors"))
    own = build_model(ModelSpec.from_dict(json.loads((bad / "model.json").read_text())["spec"])).state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    found = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (missing|unexpected|of different shape)",
                                                           str(info.value)))
    assert found == {"missing": len(missing), "of different shape": len(shape)}
    assert missing and shape and not unexpected  # resnet50 has every name of resnet18, some with other shapes


def test_the_header_check_gives_the_same_line_without_loading_tensors(saved, tmp_path, monkeypatch):
    bad = with_backbone(saved, tmp_path / "bad", "resnet50")
    with pytest.raises(CheckpointError) as loaded:
        load_checkpoint(bad)
    monkeypatch.setattr(checkpoint_mod, "load_state", lambda *a, **k: pytest.fail("tensors were loaded"))
    with pytest.raises(CheckpointError) as checked:
        checkpoint_mod.check_checkpoint(bad)
    assert str(checked.value) == str(loaded.value)
    assert checkpoint_mod.check_checkpoint(saved)["backbone"] == "resnet18"


def test_a_description_that_contradicts_itself_is_one_line(saved, tmp_path):
    bad = with_backbone(saved, tmp_path / "bad", "resnet50", spec=False)
    with pytest.raises(CheckpointError, match=r"model.json names backbone resnet50 but its spec resnet18$"):
        load_checkpoint(bad)


def test_an_unknown_backbone_in_model_json_names_the_model(saved, tmp_path):
    bad = with_backbone(saved, tmp_path / "bad", "resnet5O")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(info.value).startswith(f"{bad}: model.json: unknown backbone 'resnet5O'")


def test_a_fitting_checkpoint_still_loads_exactly(saved):
    model, meta = load_checkpoint(saved)
    assert meta["backbone"] == "resnet18" and not model.training
