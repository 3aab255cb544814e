"""Tiled prediction: exactness against a single pass, any image size, TTA, callbacks, out-of-memory."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_grainlab.core.inference.tiling import (
    Cancelled,
    classify_image,
    classify_tiled,
    predict_tiled,
    tile_positions,
    tile_window,
)

torch.set_num_threads(1)


class SmallConvNet(nn.Module):
    """Three 3x3 convolutions: receptive field radius 3 px, well inside a quarter of a 32 px overlap."""

    task = "segment"
    out_channels = 2

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 2, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.c3(torch.tanh(self.c2(torch.tanh(self.c1(x)))))


class Pointwise(nn.Module):
    """out = (a * x + b) per channel: any misplaced, misweighted or misnormalised pixel shows."""

    task = "segment"
    out_channels = 2

    def forward(self, x):
        return torch.cat([3.0 * x - 1.0, -2.0 * x + 0.5], dim=1)


def full_pass(model, image, activation=torch.sigmoid):
    """The reference: one forward pass over the image reflect-padded to multiples of 32."""
    h, w = image.shape
    ph, pw = -h % 32, -w % 32
    padded = np.pad(image, ((0, ph), (0, pw)), mode="reflect")
    with torch.no_grad():
        out = activation(model(torch.from_numpy(padded)[None, None]))[0]
    return out[:, :h, :w].numpy()


@pytest.fixture
def image():
    return np.random.default_rng(1).random((200, 300), dtype=np.float32)


def test_tiled_equals_single_pass(image):
    model = SmallConvNet()
    tiled = predict_tiled(model, image, tile=64, overlap=32, batch_size=3)
    ref = full_pass(model, image)
    assert tiled.shape == (2, 200, 300) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, ref, atol=1e-5)
    # the same with one tile for the whole image
    np.testing.assert_allclose(predict_tiled(model, image, tile=512), ref, atol=1e-6)


def test_tiled_tta_equals_single_pass_tta(image):
    model = SmallConvNet(seed=3)
    tiled = predict_tiled(model, image, tile=64, overlap=32, tta=True)
    padded = torch.from_numpy(np.pad(image, ((0, 24), (0, 20)), mode="reflect"))[None, None]
    with torch.no_grad():
        ref = sum(torch.sigmoid(model(padded.flip(d))).flip(d) for d in ([], [-1], [-2], [-2, -1])) / 4
    np.testing.assert_allclose(tiled, ref[0, :, :200, :300].numpy(), atol=1e-5)
    # the model is not flip-equivariant, so TTA really changes the result
    assert np.abs(tiled - predict_tiled(model, image, tile=64, overlap=32)).max() > 1e-3


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (5, 7), (31, 33), (64, 64), (130, 97)])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (96, 40), (512, 64)])
def test_any_size_pointwise_exact(shape, tile, overlap):
    image = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
    out = predict_tiled(Pointwise(), image, tile=tile, overlap=overlap, batch_size=2)
    expected = 1.0 / (1.0 + np.exp(-np.stack([3.0 * image - 1.0, -2.0 * image + 0.5])))
    assert out.shape == (2,) + shape
    np.testing.assert_allclose(out, expected, atol=2e-6)


def test_tiles_follow_a_larger_model_stride():
    sizes = set()

    class Stride64(Pointwise):
        stride = 64

        def forward(self, x):
            sizes.update(x.shape[-2:])
            return super().forward(x)

    image = np.random.default_rng(0).random((100, 150), dtype=np.float32)
    out = predict_tiled(Stride64(), image, tile=100, overlap=16)
    np.testing.assert_allclose(out, predict_tiled(Pointwise(), image, tile=64, overlap=16), atol=2e-6)
    assert all(s % 64 == 0 for s in sizes) and sizes


def test_non_float_input_and_activation_none():
    image = (np.arange(40 * 50) % 256).astype(np.uint8).reshape(40, 50)
    out = predict_tiled(Pointwise(), image, tile=32, overlap=8, activation="none")
    np.testing.assert_allclose(out[0], 3.0 * image.astype(np.float32) - 1.0, rtol=1e-6)


@pytest.mark.parametrize("length,tile,overlap", [(224, 64, 32), (320, 64, 16), (1000, 512, 64), (96, 64, 32),
                                                 (4096, 256, 100), (64, 64, 16)])
def test_windows_cover_every_pixel(length, tile, overlap):
    pos = tile_positions(length, tile, overlap)
    assert pos[0] == 0 and pos[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(pos, pos[1:]))
    total = np.zeros(length)
    for p in pos:
        total[p:p + tile] += tile_window(tile, overlap, p > 0, p + tile < length)
    assert total.min() > 0.05
    # canvas borders are never down-weighted
    assert total[0] >= 1.0 and total[-1] >= 1.0


def test_window_is_partition_of_unity_for_regular_overlap():
    tile, overlap = 64, 32
    a = tile_window(tile, overlap, False, True)
    b = tile_window(tile, overlap, True, False)
    np.testing.assert_allclose(a[tile - overlap:] + b[:overlap], 1.0, atol=1e-6)
    assert a[-(overlap // 4):].max() == 0.0  # the outermost pixels facing a neighbour get no weight
    assert np.all(np.diff(b[:overlap]) >= 0)


def test_progress_batches_and_stop(image):
    seen_batches = []

    class Recorder(Pointwise):
        def forward(self, x):
            seen_batches.append(x.shape[0])
            return super().forward(x)

    calls = []
    predict_tiled(Recorder(), image, tile=64, overlap=32, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    n_tiles = len(tile_positions(224, 64, 32)) * len(tile_positions(320, 64, 32))
    assert max(seen_batches) <= 4 and sum(seen_batches) == n_tiles
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert calls[-1] == (n_tiles, n_tiles) and len(calls) == -(-n_tiles // 4)

    state = {"n": 0}

    def stop():
        state["n"] += 1
        return state["n"] > 2

    with pytest.raises(Cancelled):
        predict_tiled(Pointwise(), image, tile=64, overlap=32, batch_size=4, stop=stop)


def test_eval_mode_during_prediction_and_modes_restored(image):
    modes = []

    class Net(SmallConvNet):
        def forward(self, x):
            modes.append((self.training, self.c2.training))
            return super().forward(x)

    model = Net()
    model.train()
    model.c3.eval()
    predict_tiled(model, image, tile=64, overlap=32)
    assert modes and all(m == (False, False) for m in modes)
    assert model.training and model.c1.training and model.c2.training and not model.c3.training


def oom_error():
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_halves_batch_then_succeeds(image):
    class NoBigBatches(Pointwise):
        def forward(self, x):
            if x.shape[0] > 1:
                raise oom_error()
            return super().forward(x)

    warnings = []
    out = predict_tiled(NoBigBatches(), image, tile=64, overlap=32, batch_size=8, warn=warnings.append)
    np.testing.assert_allclose(out, predict_tiled(Pointwise(), image, tile=64, overlap=32), atol=1e-6)
    assert [w for w in warnings if "batch size 4" in w] and [w for w in warnings if "batch size 1" in w]


def test_out_of_memory_shrinks_tile(image):
    sizes = []

    class NoBigTiles(Pointwise):
        def forward(self, x):
            if x.shape[-1] > 64:
                raise RuntimeError("CUDA error: out of memory")
            sizes.append(x.shape[-1])
            return super().forward(x)

    warnings = []
    out = predict_tiled(NoBigTiles(), image, tile=256, overlap=32, batch_size=2, warn=warnings.append)
    np.testing.assert_allclose(out, predict_tiled(Pointwise(), image, tile=64, overlap=32), atol=1e-6)
    assert set(sizes) == {64}
    assert any("128 px" in w for w in warnings) and any("64 px" in w for w in warnings)


def test_out_of_memory_everywhere_raises_memory_error(image):
    class AlwaysOOM(Pointwise):
        def forward(self, x):
            raise oom_error()

    with pytest.raises(MemoryError, match="batch size 1 and 64 px"):
        predict_tiled(AlwaysOOM(), image, tile=128, overlap=32, batch_size=2, warn=lambda m: None)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        with pytest.raises(MemoryError):
            predict_tiled(AlwaysOOM(), image, tile=64, overlap=32, batch_size=2)


def test_other_errors_propagate(image):
    class Broken(Pointwise):
        def forward(self, x):
            raise RuntimeError("shape mismatch in layer 3")

    with pytest.raises(RuntimeError, match="layer 3"):
        predict_tiled(Broken(), image, tile=64, overlap=32)


def test_bounded_memory():
    """No full-size float64, weight map or second output copy: the peak is the output plus a few tiles."""
    import tracemalloc

    image = np.random.default_rng(0).random((768, 1024), dtype=np.float32)
    model = Pointwise()
    predict_tiled(model, image[:64, :64], tile=128)  # warm-up allocations outside the measurement
    tracemalloc.start()
    out = predict_tiled(model, image, tile=128, overlap=32, batch_size=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    batch_bytes = 4 * 3 * 128 * 128 * 4  # a batch of 4 tiles: input + 2 output channels, float32
    image_plane = image.nbytes  # a weight map or any full-size copy would be at least this
    assert peak < out.nbytes + batch_bytes + (1 << 18) < out.nbytes + image_plane


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image=np.zeros((2, 3, 4), np.float32)), "2-D"),
        (dict(image=np.full((10, 10), np.nan, np.float32)), "NaN"),
        (dict(overlap=-1), "overlap"),
        (dict(tile=16), "tile"),
        (dict(batch_size=0), "batch_size"),
        (dict(activation="relu"), "activation"),
        (dict(out_channels=3), "channels"),
        (dict(device="tpu9"), "device"),
    ]
    + ([] if torch.cuda.is_available() else [(dict(device="cuda"), "no CUDA GPU")]),
)
def test_bad_arguments(kwargs, message):
    args = dict(image=np.zeros((40, 40), np.float32), tile=64, overlap=16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        predict_tiled(Pointwise(), **args)


def test_model_with_wrong_output_shape():
    class Pooling(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, 2)

    with pytest.raises(ValueError, match="N x C x H x W"):
        predict_tiled(Pooling(), np.zeros((40, 40), np.float32), tile=64)


class MeanClassifier(nn.Module):
    """Logits from a tile's mean intensity: class 1 for bright tiles, class 0 for dark ones."""

    task = "classify"

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([8.0 * (0.5 - m), 8.0 * (m - 0.5)], dim=1)


def test_classify_tiled_two_regions():
    image = np.full((160, 256), 0.1, np.float32)
    image[:, 128:] = 0.9
    class_map, confidence, tile_probs = classify_tiled(MeanClassifier(), image, tile=64, stride=32)
    assert class_map.dtype == np.uint16 and class_map.shape == image.shape
    assert confidence.dtype == np.float32 and confidence.shape == image.shape
    assert tile_probs.shape == (len(tile_positions(160, 64, 32)) * len(tile_positions(256, 64, 32)), 2)
    np.testing.assert_allclose(tile_probs.sum(axis=1), 1.0, atol=1e-6)
    assert (class_map[:, :96] == 0).all() and (class_map[:, 160:] == 1).all()
    # blending: the confidence drops smoothly towards the class border
    row = confidence[80]
    assert row[10] > 0.95 and row[245] > 0.95 and row[128] < 0.6
    assert ((row > 0.6) & (row < 0.95)).sum() >= 4  # a gradual transition, not a step
    assert np.abs(np.diff(row)).max() < 0.1


def test_classify_image_is_mean_of_tiles():
    image = np.random.default_rng(2).random((100, 130), dtype=np.float32)
    image[:, :64] *= 0.3
    probs = classify_image(MeanClassifier(), image, size=64)
    _, _, tile_probs = classify_tiled(MeanClassifier(), image, tile=64, stride=64)
    assert probs.shape == (2,)
    np.testing.assert_allclose(probs, tile_probs.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-6)


def test_classify_rejects_segmentation_output():
    with pytest.raises(ValueError, match="N x K"):
        classify_tiled(Pointwise(), np.zeros((64, 64), np.float32), tile=64)


@pytest.mark.parametrize("name", ["foo", "tpu9", "", "cuda:x"])
def test_resolve_device_raises_a_config_error_shared_with_training(name):
    from napari_grainlab.core.inference.tiling import resolve_device
    from napari_grainlab.core.training import ConfigError
    from napari_grainlab.core.training import resolve_device as train_resolve_device

    assert train_resolve_device is resolve_device  # one device check for training and prediction
    with pytest.raises(ConfigError, match="device"):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
