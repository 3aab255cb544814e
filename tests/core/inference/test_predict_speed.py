"""The CPU backends of a prediction (onnxruntime, channels-last PyTorch, eager PyTorch) give the same grains.

Behaviour only (which backend runs, the same labels, the cache, the fallbacks); the speed itself is
measured by ``benchmarks/bench_cpu_predict.py``.
"""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from torch import nn

from napari_grainlab.core.errors import ConfigError
from napari_grainlab.core.inference import backend as be
from napari_grainlab.core.inference import iter_predict, predict_array
from napari_grainlab.core.models import ModelSpec, build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("grainlab-cache")
        mp.setenv("GRAINLAB_CACHE", str(path))
        mp.delenv(be.CPU_BACKEND_ENV, raising=False)
        be.clear_cache()
        yield path
        be.clear_cache()


@pytest.fixture(scope="module")
def model():
    """The built-in architecture (3-channel efficientnet_lite0 U-Net), random weights with a loud head, so
    that the maps hold many grains."""
    torch.manual_seed(0)
    m = build_model(ModelSpec(task="segment", backbone="efficientnet_lite0", in_chans=3)).eval()
    with torch.no_grad():
        head = [c for c in m.modules() if isinstance(c, nn.Conv2d)][-1]
        head.weight.mul_(40.0)
    return m


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = ndi.gaussian_filter(rng.random((160, 192, 3), dtype=np.float32), (3, 3, 0))
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


#: threshold markers, no smoothing or merging: many grains, so that any difference between the maps shows
POST = {"h": 0.0, "smoothing": 0.0, "merge_threshold": 0.0, "min_size": 4, "marker_threshold": 0.55}


@pytest.fixture(scope="module")
def results(cache, model, image):
    return {b: predict_array(model, {}, image, device="cpu", backend=b, tile=128, overlap=32, **POST)
            for b in ("torch-eager", "torch", "onnxruntime")}


def test_backends_give_identical_labels(results):
    ref = results["torch-eager"]
    assert ref.labels.max() > 5  # a real segmentation, not one grain
    for name in ("torch", "onnxruntime"):
        got = results[name]
        assert got.backend == name
        np.testing.assert_allclose(got.boundary, ref.boundary, atol=1e-4)
        np.testing.assert_allclose(got.distance, ref.distance, atol=1e-4)
        np.testing.assert_array_equal(got.labels, ref.labels)
    assert ref.backend == "torch-eager"


def test_auto_uses_a_cached_session_and_else_pays_only_for_big_jobs(results, cache, model, image):
    # a session for these weights exists (the onnxruntime run above): auto takes it, even for a small image
    assert predict_array(model, {}, image, device="cpu", tile=128, overlap=32).backend == "onnxruntime"
    other = build_model(ModelSpec(task="segment", backbone="efficientnet_lite0", in_chans=3)).eval()
    # other weights, no session, a small job: the export would not pay off
    assert be.choose_backend(other, torch.device("cpu"), pixels=128 * 128, in_chans=3) == "torch"
    assert be.choose_backend(other, torch.device("cpu"), pixels=4096 * 4096, in_chans=3) == "onnxruntime"
    assert be.choose_backend(other, torch.device("cpu"), "auto", amp=True, in_chans=3) == "torch"


def test_environment_variable_chooses_the_cpu_backend(results, model, image, monkeypatch):
    monkeypatch.setenv(be.CPU_BACKEND_ENV, "torch-eager")
    assert predict_array(model, {}, image, device="cpu", tile=128).backend == "torch-eager"
    monkeypatch.setenv(be.CPU_BACKEND_ENV, "fast")
    with pytest.raises(ConfigError, match=be.CPU_BACKEND_ENV):
        predict_array(model, {}, image, device="cpu", tile=128)


def test_session_file_is_reused_by_a_new_process(results, cache, model, image, monkeypatch):
    files = list((cache / "onnx").glob("*.onnx"))
    assert len(files) == 1
    be.clear_cache()  # what a new process starts with: no session in memory, the file on disk

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(be, "_export", no_export)
    got = predict_array(model, {}, image, device="cpu", backend="onnxruntime", tile=128, overlap=32, **POST)
    assert got.backend == "onnxruntime"
    np.testing.assert_array_equal(got.labels, results["torch-eager"].labels)


def test_failed_export_falls_back_to_torch_with_a_warning(cache, image, monkeypatch):
    m = build_model(ModelSpec(task="segment", backbone="efficientnet_lite0", in_chans=3)).eval()

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(be, "_export", broken)
    warnings = []
    got = predict_array(m, {}, image, device="cpu", backend="onnxruntime", tile=128, warn=warnings.append)
    assert got.backend == "torch"
    assert len(warnings) == 1 and "exporter exploded" in warnings[0] and "PyTorch" in warnings[0]


def test_caller_model_is_left_as_it_was(results, model):
    # the channels-last run worked on a copy: the caller's weights keep their layout and eval / train mode
    assert all(p.is_contiguous() for p in model.parameters())
    model.train()
    try:
        predict_array(model, {}, np.full((64, 64, 3), 0.5, np.float32) + np.eye(64, dtype=np.float32)[..., None]
                      * 0.1, device="cpu", backend="torch", tile=64)
        assert model.training
        assert all(p.is_contiguous() for p in model.parameters())
    finally:
        model.eval()


class Plain(nn.Module):
    task = "segment"
    out_channels = 2

    def forward(self, x):
        return torch.cat([x - 0.5, 0.5 - x], dim=1)


def test_other_modules_run_as_given(cache):
    img = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    assert predict_array(Plain(), {}, img, device="cpu").backend == "torch-eager"
    assert predict_array(Plain(), {}, img, device="cpu", backend="torch").backend == "torch-eager"
    with pytest.raises(ConfigError, match="onnxruntime"):
        predict_array(Plain(), {}, img, device="cpu", backend="onnxruntime")
    with pytest.raises(ConfigError, match="backend must be one of"):
        predict_array(Plain(), {}, img, device="cpu", backend="tensorrt")


def test_iter_predict_passes_the_backend(results, model, image):
    gen = iter_predict(model, {}, image, device="cpu", backend="torch", tile=128, overlap=32, **POST)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result = stop.value
            break
    assert result.backend == "torch"
    np.testing.assert_array_equal(result.labels, results["torch-eager"].labels)


def test_the_weights_hash_and_the_channels_last_copy_are_made_once_per_weights(model):
    """A prediction runs the network many times (scale probes, tiles): the weights are hashed and the
    channels-last copy made once, and both are made again as soon as a weight changes in place."""
    import copy

    net = copy.deepcopy(model)
    x = torch.rand(1, 3, 64, 64)
    key = be.model_key(net, 3)
    first, used, channels_last = be.model_runner(net, "torch", 3, 32)
    assert used == "torch" and channels_last and first is not net
    again, _, _ = be.model_runner(net, "torch", 3, 32)
    assert again is first and be.model_key(net, 3) == key
    with torch.no_grad():
        before = first(x.contiguous(memory_format=torch.channels_last))

    head = [c for c in net.modules() if isinstance(c, nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias.add_(5.0)  # in place: same tensor, new values
    changed, _, _ = be.model_runner(net, "torch", 3, 32)
    assert changed is not first
    assert be.model_key(net, 3) != key and be.model_key(net, 3) == be._hash_weights(net, 3)
    with torch.no_grad():
        after = changed(x.contiguous(memory_format=torch.channels_last))
        reference = net(x)
    assert torch.allclose(after, reference, atol=1e-4) and not torch.allclose(after, before, atol=1e-2)
    assert be.model_key(model, 3) == key  # the original's key is its own
