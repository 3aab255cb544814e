"""predict_array / iter_predict / prepare_image: the prediction pipeline shared by the CLI and the dock."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_grainlab.core.data.io import DataError
from napari_grainlab.core.inference import (
    Cancelled,
    PredictionResult,
    PredictProgress,
    histogram_reference,
    iter_predict,
    predict_array,
    prepare_image,
    segment_image,
)
from napari_grainlab.core.inference.postprocess import boundary_from_labels
from napari_grainlab.core.metrics import grain_matching
from napari_grainlab.core.models import CheckpointError

torch.set_num_threads(1)


class LineModel(nn.Module):
    """Bright lines (> 0.6) are boundaries; the distance channel is 1 beyond 3 px of a line."""

    task = "segment"
    out_channels = 2

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        x = x + 0.0 * self.bn(x)
        line = (x > 0.6).float()
        near = F.max_pool2d(line, 7, stride=1, padding=3)
        return torch.cat([12.0 * (line - 0.5), 12.0 * (0.5 - near)], dim=1)


class BrightnessClassifier(nn.Module):
    """Class 1 ("bright") where a tile's mean is above 0.5, else class 0 ("dark")."""

    task = "classify"

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([20 * (0.5 - m), 20 * (m - 0.5)], dim=1)


def voronoi_image(shape=(150, 170), n=16, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2)) * shape
    yy, xx = np.indices(shape)
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    labels = (d.argmin(axis=-1) + 1).astype(np.uint32)
    image = (0.15 + 0.25 * rng.random(n + 1)[labels]).astype(np.float32)
    image[boundary_from_labels(labels)] = 0.95
    return image, labels


def drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as fin:
            return events, fin.value


def test_predict_array_matches_segment_image():
    image, truth = voronoi_image()
    stages, ticks = [], []
    res = predict_array(LineModel(), {}, image, tile=64, overlap=32, progress=lambda d, t: ticks.append((d, t)),
                        stage=stages.append)
    ref = segment_image(LineModel(), image, tile=64, overlap=32)
    assert isinstance(res, PredictionResult) and res.task == "segment"
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(res.boundary, ref.boundary)
    assert grain_matching(res.labels, truth)["f1"] > 0.9
    assert stages == ["tiles", "postprocess"] and ticks[-1][0] == ticks[-1][1]
    assert res.class_map is None and res.image_class is None


@pytest.mark.parametrize("smoothing", [0.0, 1.5])
def test_keep_distance_false_gives_the_same_labels_without_the_distance_map(smoothing):
    # the batch writer's memory saving: the watershed works in the distance map's own memory
    image, _ = voronoi_image()
    kept = predict_array(LineModel(), {}, image, tile=64, overlap=32, smoothing=smoothing)
    lean = predict_array(LineModel(), {}, image, tile=64, overlap=32, smoothing=smoothing, keep_distance=False)
    assert kept.distance is not None and lean.distance is None
    np.testing.assert_array_equal(lean.labels, kept.labels)
    np.testing.assert_array_equal(lean.boundary, kept.boundary)


def test_predict_array_frees_an_image_it_holds_the_only_reference_to(monkeypatch):
    # a caller that hands its image over (as the batch writer does) gets its memory back for the watershed
    import gc
    import weakref

    from napari_grainlab.core.inference import pipeline

    image, _ = voronoi_image((160, 160))
    ref = weakref.ref(image)
    seen = []
    real = pipeline.watershed_grains

    def watershed(*args, **kwargs):
        gc.collect()
        seen.append(ref() is None)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "watershed_grains", watershed)
    holder = [image]
    del image
    res = predict_array(LineModel(), {}, holder.pop(), tile=64, overlap=32, rescale=False)
    assert seen == [True] and res.labels.max() > 1


def test_histogram_match_needs_a_reference_and_uses_it():
    image, truth = voronoi_image(seed=1)
    dim = (0.5 * image).astype(np.float32)  # boundaries at 0.475: invisible to the model
    with pytest.raises(CheckpointError, match="no intensity reference"):
        predict_array(LineModel(), {}, dim, tile=64, histogram_match=True)
    with pytest.raises(CheckpointError, match="malformed"):
        histogram_reference({"histogram_reference": [0.5, 0.2, 0.1]})
    meta = {"histogram_reference": np.quantile(image, np.linspace(0, 1, 64)).tolist()}
    matched = predict_array(LineModel(), meta, dim, tile=64, histogram_match=True, adabn=True)
    plain = predict_array(LineModel(), meta, dim, tile=64)
    assert grain_matching(matched.labels, truth)["f1"] > 0.8 > grain_matching(plain.labels, truth)["f1"]


def test_classification_result_has_class_names():
    image = np.zeros((64, 128), np.float32)
    image[:, 64:] = 1.0
    res = predict_array(BrightnessClassifier(), {"classes": ["dark", "bright"]}, image, tile=64, overlap=0)
    assert res.task == "classify" and res.classes == ("dark", "bright")
    assert res.class_map[:, :32].max() == 0 and res.class_map[:, 96:].min() == 1
    assert res.confidence.shape == image.shape and res.class_probabilities.shape == (2,)
    # names that do not fit the model's outputs are replaced by indices
    assert predict_array(BrightnessClassifier(), {"classes": ["a"]}, image, tile=64).classes == ("0", "1")
    # the default tile is the training patch size
    ticks = []
    predict_array(BrightnessClassifier(), {"training": {"patch_size": 32}}, image,
                  progress=lambda d, t: ticks.append(t))
    assert ticks[-1] > 4


def test_iter_predict_reports_progress_and_returns_the_result():
    image, _ = voronoi_image()
    events, res = drain(iter_predict(LineModel(), {}, image, tile=64, overlap=32, batch_size=2, adabn=True))
    assert all(isinstance(e, PredictProgress) for e in events)
    assert [e.stage for e in events][:2] == ["adapt", "tiles"] and events[-1].stage == "postprocess"
    tiles = [e.done for e in events if e.stage == "tiles" and e.done is not None]
    assert tiles == sorted(tiles) and tiles[-1] == events[-2].total
    ref = predict_array(LineModel(), {}, image, tile=64, overlap=32, adabn=True)
    np.testing.assert_array_equal(res.labels, ref.labels)


def test_iter_predict_stops_and_reraises_errors():
    image, _ = voronoi_image()
    flag = threading.Event()
    gen = iter_predict(LineModel(), {}, image, tile=64, overlap=32, batch_size=1, stop=flag.is_set)
    next(gen)
    flag.set()
    with pytest.raises(Cancelled):
        drain(gen)
    # closing the generator early ends the helper thread
    gen = iter_predict(LineModel(), {}, image, tile=64, overlap=32, batch_size=1)
    next(gen)
    gen.close()
    assert not any(t.name == "grainlab-predict" for t in threading.enumerate())
    with pytest.raises(ValueError, match="2-D"):
        drain(iter_predict(LineModel(), {}, np.zeros((2, 8, 8), np.float32)))
    with pytest.raises(TypeError, match="progress"):
        drain(iter_predict(LineModel(), {}, image, progress=print))


def test_prepare_image_takes_any_dtype_and_rgb_but_not_stacks():
    image, _ = voronoi_image()
    u16 = (image * 4000 + 100).astype(np.uint16)
    out = prepare_image(u16)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    rgb = np.stack([u16 // 16] * 3, axis=-1).astype(np.uint8)
    assert prepare_image(rgb, rgb=True).shape == image.shape
    assert prepare_image(rgb).shape == image.shape  # an RGB last axis is detected
    with pytest.raises(DataError, match="stack"):
        prepare_image(np.zeros((5, 32, 32), np.uint8), "stack")
    with pytest.raises(DataError, match="NaN"):
        prepare_image(np.full((8, 8), np.nan, np.float32))


class NaNModel(nn.Module):
    """A diverged network: NaN everywhere."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        self.out_channels = 2

    def forward(self, x):
        n = x.shape[0]
        if self.task == "segment":
            return torch.full((n, 2, *x.shape[2:]), float("nan"))
        return torch.full((n, 2), float("nan"))


@pytest.mark.parametrize("task", ["segment", "classify"])
def test_a_model_that_outputs_nan_raises_a_clear_error(task):
    from napari_grainlab.core.inference import classify_image
    from napari_grainlab.core.models import ModelError

    image, _ = voronoi_image((64, 64))
    with pytest.raises(ModelError, match="NaN or infinite values"):
        predict_array(NaNModel(task), {}, image, tile=64)
    with pytest.raises(ModelError, match="diverged"):
        if task == "segment":
            segment_image(NaNModel(task), image, tile=64)
        else:
            classify_image(NaNModel(task), image, 64)
