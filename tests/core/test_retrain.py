"""core.retrain: short fine-tuning rounds on annotations, each round's model kept and indexed."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from napari_grainlab.core.errors import ConfigError, DataError
from napari_grainlab.core.models.checkpoint import read_metadata
from napari_grainlab.core.retrain import RetrainOptions, RoundStore, retrain, retrain_samples
from napari_grainlab.core.synthetic import SynthParams, generate

TINY = RetrainOptions(epochs=1, steps_per_epoch=2, batch_size=2, patch_size=64, device="cpu")


def _pairs(n=2, side=128):
    out = []
    for seed in range(n):
        p = SynthParams()
        p.width = p.height = side
        p.tessellation.grains = None
        p.tessellation.mean_diameter = 32
        s = generate(p, seed=seed)
        labels = s.labels.astype(np.uint32)
        labels[:, side // 2:] = 0  # half annotated: unannotated pixels are ignored
        out.append((f"im{seed}", s.image, labels))
    return out


def _run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as end:
            return end.value, events


def test_retrain_samples_filters_and_checks():
    pairs = _pairs(2)
    blank = ("blank", pairs[0][1], np.zeros_like(pairs[0][2]))
    samples = retrain_samples([*pairs, blank, pairs[0]])  # no grain: left out; a repeated name: once
    assert [s.name for s in samples] == ["im0", "im1"]
    assert samples[0].image.dtype == np.float32 and 0 <= samples[0].image.min() and samples[0].image.max() <= 1
    with pytest.raises(DataError):
        retrain_samples([("x", pairs[0][1], pairs[0][2][:10])])
    with pytest.raises(DataError):
        retrain_samples([("x", pairs[0][1], pairs[0][2].astype(float))])


def test_two_rounds_are_kept_and_indexed(tmp_path):
    samples = retrain_samples(_pairs(2))
    folder = tmp_path / "rounds"
    first, events = _run(retrain(samples, "generalist", folder, TINY))
    assert first is not None and first.number == 1 and first.base == "generalist"
    assert first.images == ["im0", "im1"] and first.seconds > 0
    assert first.score is None or 0.0 <= first.score <= 1.0
    assert any(type(e).__name__ == "Epoch" for e in events)
    assert (folder / "round-01").is_dir() and read_metadata(first.path)["backbone"] == "efficientnet_lite0"
    second, _ = _run(retrain(samples, first.path, folder, TINY))  # the next round starts from the first
    assert second.number == 2 and second.base == first.path
    store = RoundStore(folder)
    assert [r.number for r in store.rounds()] == [1, 2]
    assert store.get(1).path == first.path
    index = json.loads((folder / "rounds.json").read_text())
    assert [r["path"] for r in index["rounds"]] == ["round-01", "round-02"]  # relative: the folder may move
    with pytest.raises(DataError):
        store.get(7)
    # a damaged index reads as no rounds, and the next round does not reuse a folder that exists
    (folder / "rounds.json").write_text("{not json")
    assert store.rounds() == [] and store.next_number() == 3


def test_stop_before_a_checkpoint_and_bad_input(tmp_path):
    samples = retrain_samples(_pairs(1))
    stop = threading.Event()
    stop.set()
    result, _ = _run(retrain(samples, "generalist", tmp_path / "r", TINY, stop=stop))
    assert result is None and RoundStore(tmp_path / "r").rounds() == []
    with pytest.raises(DataError):
        _run(retrain([], "generalist", tmp_path / "r", TINY))
    with pytest.raises(ConfigError):
        _run(retrain(samples, "generalist", tmp_path / "r", RetrainOptions(epochs=0)))
