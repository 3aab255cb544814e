"""check_model / check_weights_file: a broken model folder is found from its files' headers."""

from __future__ import annotations

import json
import pickle
import shutil
import struct

import numpy as np
import pytest

from napari_grainlab.core.errors import CheckpointError
from napari_grainlab.core.models.checkpoint import FORMAT, FORMAT_VERSION
from napari_grainlab.core.models.inspect import check_model, check_weights_file


@pytest.fixture
def model(tmp_path):
    """A model folder: real safetensors weights (two tensors) and a napari-grainlab description."""
    from safetensors.numpy import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "b.bias": np.ones(5, np.float16)},
              str(folder / "model.safetensors"))
    (folder / "model.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                   "task": "segment", "backbone": "resnet18"}))
    return folder


def _safetensors_accepts(path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            list(fh.keys())
    except Exception:  # noqa: BLE001 - any failure: safetensors refuses the file
        return False
    return True


def test_a_good_model_passes_and_gives_its_description(model):
    assert check_model(model)["backbone"] == "resnet18"
    assert check_model(model / "model.safetensors")["task"] == "segment"
    assert check_weights_file(model / "model.safetensors") == 2


def test_a_model_json_that_is_not_json_names_the_file(model):
    (model / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model\.json: unreadable metadata"):
        check_model(model)


@pytest.mark.parametrize("cut", [4, 20, -1, -30])
def test_truncated_weights_are_refused(model, cut):
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:cut])
    assert not _safetensors_accepts(weights)  # safetensors agrees: the file is broken
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt weights file \(truncated"):
        check_model(model)


def test_trailing_bytes_and_foreign_files_are_refused(model, tmp_path):
    weights = model / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good + b"\0" * 16)
    assert not _safetensors_accepts(weights)
    with pytest.raises(CheckpointError, match="bytes after the last tensor"):
        check_weights_file(weights)
    for foreign in (pickle.dumps({"a": [1, 2, 3]}), b"\x00garbage" * 10, struct.pack("<Q", 2) + b"[]"):
        weights.write_bytes(foreign)
        with pytest.raises(CheckpointError, match="not a safetensors file"):
            check_weights_file(weights)
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError, match="the weights file is empty"):
        check_model(model)


def test_a_header_that_does_not_describe_the_data_is_refused(model):
    weights = model / "model.safetensors"
    good = weights.read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8:8 + n])
    header["a.weight"]["shape"] = [4, 4]  # 64 bytes of float32 in a 48-byte range
    raw = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + good[8 + n:])
    assert not _safetensors_accepts(weights)
    with pytest.raises(CheckpointError, match="does not fit its byte range"):
        check_weights_file(weights)


def test_a_real_checkpoint_passes(tmp_path):
    pytest.importorskip("torch")
    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    net = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(8, 8, 8, 8, 8)))
    save_checkpoint(tmp_path / "m", net)
    assert check_model(tmp_path / "m")["backbone"] == "resnet18"
    shutil.copytree(tmp_path / "m", tmp_path / "run" / "best")
    assert check_model(tmp_path / "run")["backbone"] == "resnet18"  # a run folder: its best/ model
