"""core.errors: every error a user's input causes is a GrainLabError (and still a ValueError)."""

import inspect
import json

import numpy as np
import pytest

from napari_grainlab.core import errors
from napari_grainlab.core.errors import USER_ERRORS, ConfigError, DataError, GrainLabError

ERROR_CLASSES = [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
                 if issubclass(obj, BaseException) and obj.__module__ == errors.__name__]


def test_the_module_defines_the_error_classes_it_lists():
    listed = {name for name in errors.__all__ if name != "USER_ERRORS"}
    assert {cls.__name__ for cls in ERROR_CLASSES} == listed
    assert len(ERROR_CLASSES) >= 13


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_is_a_grainlab_error_and_a_value_error(cls):
    assert issubclass(cls, GrainLabError)
    assert issubclass(cls, ValueError)
    assert issubclass(cls, USER_ERRORS)


def test_user_errors_are_what_the_front_ends_report():
    assert USER_ERRORS == (GrainLabError, OSError, MemoryError)


def test_the_old_import_locations_name_the_same_classes():
    from napari_grainlab.core import batch, data, experiment, export, models, onnx_predict, synthetic, training
    from napari_grainlab.core.data import io
    from napari_grainlab.core.models import checkpoint
    from napari_grainlab.core.synthetic import dataset, params

    assert io.DataError is data.DataError is training.DataError is DataError
    assert models.CheckpointError is checkpoint.CheckpointError is errors.CheckpointError
    assert models.ModelError is errors.ModelError and models.WeightsError is errors.WeightsError
    assert training.ConfigError is ConfigError
    assert synthetic.ParameterError is params.ParameterError is errors.ParameterError
    assert dataset.OutputExistsError is errors.OutputExistsError
    assert batch.BatchError is errors.BatchError and export.ExportError is errors.ExportError
    assert onnx_predict.OnnxModelError is errors.OnnxModelError
    assert experiment.ExperimentError is errors.ExperimentError


def _raised(cls, call, *args, **kwargs) -> str:
    """The message of the ``cls`` that ``call(*args, **kwargs)`` raises (a GrainLabError)."""
    with pytest.raises(cls) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, GrainLabError)
    return str(info.value)


def test_a_3d_image_to_the_classical_baseline_is_a_data_error():
    from napari_grainlab.core.inference import classical_grains

    msg = _raised(DataError, classical_grains, np.zeros((3, 32, 32), np.float32))
    assert msg == "image must be a 2-D grey or (H, W, 3) colour array, got shape (3, 32, 32)"
    msg = _raised(ConfigError, classical_grains, np.zeros((32, 32), np.float32), threshold=0)
    assert msg == "threshold and h must be > 0 and marker_distance >= 0"


def test_an_empty_label_image_to_the_metrics_is_a_metric_error():
    from napari_grainlab.core.metrics import rand_vi

    pred = np.ones((16, 16), np.uint32)
    msg = _raised(errors.MetricError, rand_vi, pred, np.zeros((16, 16), np.uint32))
    assert msg == "true has no annotated pixels (all labels are 0)"


def test_bad_labels_to_the_measurements_are_a_data_error():
    from napari_grainlab.core.measure import grain_table

    assert _raised(DataError, grain_table, np.ones((2, 4, 4), np.uint16)) == "labels must be 2-D, got shape (2, 4, 4)"
    assert _raised(DataError, grain_table, np.ones((4, 4), np.float32)) == "labels must be integers, got float32"


def test_a_non_json_parameter_file_is_a_parameter_error(tmp_path):
    from napari_grainlab.core.synthetic import SynthParams

    path = tmp_path / "params.json"
    path.write_text("height = 256\n")
    with pytest.raises(json.JSONDecodeError) as decode:
        json.loads(path.read_text())
    assert _raised(errors.ParameterError, SynthParams.load, path) == f"{path} is not valid JSON: {decode.value}"


def test_generator_helpers_raise_parameter_errors():
    from napari_grainlab.core.synthetic.randomize import jpeg_quantize
    from napari_grainlab.core.synthetic.render import quantize
    from napari_grainlab.core.synthetic.tessellation import boundary_mask

    image = np.zeros((16, 16), np.float32)
    assert _raised(errors.ParameterError, quantize, image, 12) == "bit depth must be 8 or 16, got 12"
    assert _raised(errors.ParameterError, jpeg_quantize, image, 0) == "quality must be in 1..100, got 0"
    msg = _raised(errors.ParameterError, boundary_mask, np.ones((8, 8), np.uint32), 0)
    assert msg == "boundary width must be >= 1, got 0"


def test_an_unknown_synthetic_source_is_a_config_error():
    from napari_grainlab.core.synthetic.params import PRESETS
    from napari_grainlab.core.training.sources import synthetic_source

    msg = _raised(ConfigError, synthetic_source, "nope")
    assert msg == f"synthetic: unknown preset 'nope'; choose one of {', '.join(PRESETS)} (or randomized)"
    assert "tint" in msg and "growth" in msg  # the colour and grain-growth presets are training sources too


def test_a_segmentation_call_with_a_classification_model_is_a_model_error():
    import torch
    from torch import nn

    from napari_grainlab.core.inference import segment_image

    class Classifier(nn.Module):
        task = "classify"

        def forward(self, x):
            return torch.zeros((len(x), 2))

    msg = _raised(errors.ModelError, segment_image, Classifier(), np.zeros((64, 64), np.float32), tile=64)
    assert msg == "model: expected a segmentation model, got task 'classify'"


def test_a_model_returning_the_wrong_shape_is_a_model_error():
    import torch
    from torch import nn

    from napari_grainlab.core.inference import predict_tiled

    class Flat(nn.Module):
        def forward(self, x):
            return torch.zeros((len(x), 2))

    msg = _raised(errors.ModelError, predict_tiled, Flat(), np.zeros((64, 64), np.float32), tile=64, overlap=0)
    assert msg == ("model output has shape (1, 2) for input (1, 1, 64, 64); a segmentation model must return "
                   "N x C x H x W")


def test_a_corrupt_checkpoint_folder_is_a_checkpoint_error(tmp_path):
    from napari_grainlab.core.models import read_metadata

    (tmp_path / "model.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(json.JSONDecodeError) as decode:
        json.loads("{not json")
    msg = _raised(errors.CheckpointError, read_metadata, tmp_path)
    assert msg == f"{tmp_path / 'model.json'}: unreadable metadata ({decode.value})"


def test_bad_inference_inputs_and_options():
    from napari_grainlab.core.inference import match_histogram, tile_positions, watershed_grains
    from napari_grainlab.core.visualize import overlay_rgb

    maps = np.zeros((8, 8), np.float32)
    msg = _raised(DataError, watershed_grains, maps, np.zeros((8, 9), np.float32))
    assert msg == "distance has shape (8, 9), expected (8, 8)"
    msg = _raised(ConfigError, watershed_grains, maps, maps, min_size=-1)
    assert msg == "min_size and min_marker_size must be >= 0"
    assert _raised(ConfigError, tile_positions, 100, 32, 32) == "overlap (32) must be smaller than the tile (32)"
    msg = _raised(DataError, match_histogram, np.zeros((2, 8, 8)), np.linspace(0, 1, 8))
    assert msg == "image must be a non-empty 2-D grey or (H, W, 3) colour array, got shape (2, 8, 8)"
    labels = np.ones((8, 8), np.uint32)
    assert _raised(ConfigError, overlay_rgb, maps, labels, alpha=2.0) == "alpha must be in [0, 1], got 2.0"
    assert _raised(DataError, overlay_rgb, maps, labels[:4]) == "image (8, 8) and labels (4, 8) differ in shape"
