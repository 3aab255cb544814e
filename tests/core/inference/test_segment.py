"""segment_image end to end with a hand-made boundary / distance model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_grainlab.core.inference.adapt import intensity_quantiles
from napari_grainlab.core.inference.postprocess import boundary_from_labels
from napari_grainlab.core.inference.segment import SegmentationResult, default_min_size, segment_image
from napari_grainlab.core.metrics import boundary_f1, grain_matching

torch.set_num_threads(1)


class LineModel(nn.Module):
    """Bright lines (> 0.6) are boundaries; the distance channel is 1 beyond 3 px of a line, else 0."""

    task = "segment"
    out_channels = 2

    def __init__(self, batchnorm: bool = False):
        super().__init__()
        self.bn = nn.BatchNorm2d(1) if batchnorm else nn.Identity()

    def forward(self, x):
        x = self.bn(x) if isinstance(self.bn, nn.Identity) else x + 0.0 * self.bn(x)
        line = (x > 0.6).float()
        near = F.max_pool2d(line, 7, stride=1, padding=3)
        return torch.cat([12.0 * (line - 0.5), 12.0 * (0.5 - near)], dim=1)


def voronoi_image(shape=(150, 170), n=16, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2)) * shape
    yy, xx = np.indices(shape)
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    labels = (d.argmin(axis=-1) + 1).astype(np.uint32)
    image = (0.15 + 0.25 * rng.random(n + 1)[labels]).astype(np.float32)
    image[boundary_from_labels(labels)] = 0.95
    return image, labels


def test_segments_grains():
    image, truth = voronoi_image()
    calls = []
    result = segment_image(LineModel(), image, tile=64, overlap=32, progress=lambda d, t: calls.append(d))
    assert isinstance(result, SegmentationResult)
    assert result.labels.dtype == np.uint32 and result.labels.shape == image.shape
    assert result.boundary.dtype == np.float32 and result.distance.shape == image.shape
    assert result.labels.min() >= 1
    assert grain_matching(result.labels, truth)["f1"] > 0.9
    assert boundary_f1(result.labels, truth, tolerance=2)["f1"] > 0.9
    assert calls and calls == sorted(calls)


def test_histogram_reference_switch():
    image, truth = voronoi_image(seed=1)
    dim = (0.5 * image).astype(np.float32)  # boundaries at 0.475: invisible to the model
    assert segment_image(LineModel(), dim, tile=64).labels.max() == 1
    matched = segment_image(LineModel(), dim, tile=64, histogram_reference=intensity_quantiles([image]))
    assert grain_matching(matched.labels, truth)["f1"] > 0.9


def test_adabn_switch_uses_a_copy():
    image, truth = voronoi_image(seed=2)
    model = LineModel(batchnorm=True)
    before = model.bn.running_mean.clone()
    result = segment_image(model, image, tile=64, adabn=True)
    assert torch.equal(model.bn.running_mean, before)
    assert grain_matching(result.labels, truth)["f1"] > 0.9


def test_min_size_and_tta():
    image, truth = voronoi_image(seed=3)
    areas = np.sort(np.bincount(truth.ravel())[1:])
    min_size = int(areas[2]) + 1  # at least three true grains are smaller than this
    big = segment_image(LineModel(), image, tile=64, min_size=min_size, tta=True)
    assert np.bincount(big.labels.ravel())[1:].min() >= min_size
    assert big.labels.max() <= truth.max() - 2


class NoisyLineModel(LineModel):
    """LineModel with a fixed high-frequency ripple on both maps (a network's pixel noise)."""

    def forward(self, x):
        out = super().forward(x)
        g = torch.Generator().manual_seed(0)
        return out * 0.25 + 1.5 * torch.randn(out.shape, generator=g)


def test_postprocessing_suppresses_noise_splits():
    image, truth = voronoi_image(seed=4)
    threshold_only = dict(marker_threshold=0.5, smoothing=0, h=0, merge_threshold=None)
    old = segment_image(NoisyLineModel(), image, tile=256, overlap=0, **threshold_only)
    new = segment_image(NoisyLineModel(), image, tile=256, overlap=0)
    assert old.labels.max() > 2 * truth.max()  # threshold markers shatter the grains
    assert abs(int(new.labels.max()) - int(truth.max())) <= 2
    assert grain_matching(new.labels, truth)["f1"] > 0.85
    # the maps themselves are returned unsmoothed
    np.testing.assert_array_equal(new.boundary, old.boundary)


def test_default_min_size():
    assert default_min_size((512, 512)) == 16
    assert default_min_size((4096, 4096)) == 17
    assert default_min_size((8192, 8192)) == 67


def test_rejects_classifier():
    class Classifier(nn.Module):
        task = "classify"

        def forward(self, x):
            return x.mean(dim=(2, 3))

    with pytest.raises(ValueError, match="segmentation model"):
        segment_image(Classifier(), np.zeros((32, 32), np.float32))
