"""Domain adaptation: AdaBN statistics (hook-verified) and histogram matching."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_grainlab.core.inference.adapt import adapt_batchnorm, intensity_quantiles, match_histogram

torch.set_num_threads(1)


class BNNet(nn.Module):
    task = "segment"
    out_channels = 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout2d(0.5)
        self.c2 = nn.Conv2d(4, 3, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(3)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn1(self.c1(x))))
        return self.head(torch.relu(self.bn2(self.c2(x))))


def target_images(n=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.6 + 0.3 * rng.random((size, size))).astype(np.float32) for _ in range(n)]


def bn_inputs(model, batch):
    """The input of every BatchNorm layer for ``batch``, with the BN layers normalising by batch statistics."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, i[0].detach()))
             for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    saved = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in model.named_modules()
             if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    for n, m in model.named_modules():  # undo the statistics update of this check
        if n in saved:
            m.running_mean.copy_(saved[n][0])
            m.running_var.copy_(saved[n][1])
    model.eval()
    return seen


def test_adabn_statistics_are_the_bn_inputs():
    model = BNNet()
    # a frozen BN layer (eval mode, no gradients) must be re-estimated too
    model.bn1.eval()
    for p in model.bn1.parameters():
        p.requires_grad_(False)
    images = target_images()  # each image is exactly one 64 px tile
    adapted = adapt_batchnorm(model, images, tile=64, batch_size=8)
    batch = torch.from_numpy(np.stack(images)[:, None])
    inputs = bn_inputs(adapted, batch)
    for name in ("bn1", "bn2"):
        bn, x = getattr(adapted, name), inputs[name].double()
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=True)
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(bn.running_mean, getattr(model, name).running_mean)


def test_adabn_pools_exactly_over_uneven_batches():
    model = BNNet()
    images = target_images(n=3)
    adapted = adapt_batchnorm(model, images, tile=64, batch_size=2)  # batches of 2 and 1 tiles
    with torch.no_grad():
        x = model.c1(torch.from_numpy(np.stack(images)[:, None])).double()  # bn1's input needs no BN
    torch.testing.assert_close(adapted.bn1.running_mean.double(), x.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(adapted.bn1.running_var.double(), x.var(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)


def test_adabn_leaves_original_untouched():
    model = BNNet()
    model.train()
    model.bn2.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    adapted = adapt_batchnorm(model, target_images(n=2, size=150), tile=64, max_tiles=5, seed=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert adapted is not model and not adapted.training
    assert not any(m.training for m in adapted.modules())
    assert adapted.bn1.momentum == model.bn1.momentum == 0.1
    assert int(adapted.bn1.num_batches_tracked) > 0
    # deterministic for a seed, different for another
    again = adapt_batchnorm(model, target_images(n=2, size=150), tile=64, max_tiles=5, seed=3)
    other = adapt_batchnorm(model, target_images(n=2, size=150), tile=64, max_tiles=5, seed=4)
    assert torch.equal(again.bn2.running_mean, adapted.bn2.running_mean)
    assert not torch.equal(other.bn2.running_mean, adapted.bn2.running_mean)


def test_adabn_small_and_odd_images_and_no_bn():
    model = BNNet()
    adapted = adapt_batchnorm(model, [np.random.default_rng(0).random((20, 45)).astype(np.float32)], tile=256)
    assert torch.isfinite(adapted.bn2.running_var).all()
    plain = nn.Conv2d(1, 2, 3, padding=1)
    copy = adapt_batchnorm(plain, target_images(n=1))
    assert copy is not plain and torch.equal(copy.weight, plain.weight)
    with pytest.raises(ValueError, match="at least one image"):
        adapt_batchnorm(model, [])
    with pytest.raises(ValueError, match=r"images\[1\]"):  # (H, W, 3) is colour now; 2 channels are not
        adapt_batchnorm(model, [np.zeros((8, 8)), np.zeros((8, 8, 2))])


def test_intensity_quantiles():
    ramp = np.linspace(0, 1, 10001, dtype=np.float32).reshape(1, -1)
    q = intensity_quantiles([ramp], n=11)
    assert q.dtype == np.float32 and q.shape == (11,)
    np.testing.assert_allclose(q, np.linspace(0, 1, 11), atol=1e-4)
    assert np.all(np.diff(intensity_quantiles([np.random.default_rng(0).random((50, 50))])) >= 0)
    with pytest.raises(ValueError, match="n must"):
        intensity_quantiles([ramp], n=1)


def test_match_histogram_recovers_monotone_transform():
    rng = np.random.default_rng(0)
    reference = rng.beta(2, 5, size=(200, 200)).astype(np.float32)
    target = (0.3 + 0.5 * reference**2).astype(np.float32)  # darker-contrast, nonlinear, same ranks
    matched = match_histogram(target, intensity_quantiles([reference], n=256))
    assert matched.dtype == np.float32 and matched.shape == target.shape
    assert np.abs(matched - reference).max() < 0.02
    # ranks are preserved
    order = np.argsort(target.ravel(), kind="stable")
    assert np.all(np.diff(matched.ravel()[order]) >= 0)


def test_match_histogram_constant_and_tied_images():
    ref = np.linspace(0.2, 0.6, 64).astype(np.float32)
    const = match_histogram(np.full((30, 30), 0.9, np.float32), ref)
    np.testing.assert_allclose(const, ref.mean(), atol=1e-6)
    half = np.zeros((40, 40), np.float32)
    half[:, 20:] = np.linspace(0.5, 1.0, 20)
    out = match_histogram(half, ref)
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    # the tied zeros (half the pixels) land on the middle of the lower half of the reference
    np.testing.assert_allclose(out[:, :20], ref[:32].mean(), atol=0.01)
    assert out[:, 20:].min() >= out[0, 0]


def test_match_histogram_chunks_match_whole():
    img = np.random.default_rng(1).random((123, 77)).astype(np.float32)
    ref = intensity_quantiles([np.random.default_rng(2).random((64, 64)) ** 2])
    np.testing.assert_array_equal(match_histogram(img, ref, chunk=1000), match_histogram(img, ref))


@pytest.mark.parametrize(
    "ref, message",
    [([0.5], "at least 2"), ([0.5, 0.2], "non-decreasing"), ([0.1, np.nan], "NaN"), (np.zeros((2, 2)), "1-D")],
)
def test_match_histogram_bad_reference(ref, message):
    with pytest.raises(ValueError, match=message):
        match_histogram(np.zeros((4, 4), np.float32), ref)
