"""``last/`` is written as one unit, so a run killed while it writes a checkpoint resumes from the epoch after
its last complete checkpoint (issue 14, item 4)."""
from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_grainlab.core.data.datasets import SegSample
from napari_grainlab.core.errors import CheckpointError
from napari_grainlab.core.synthetic import SynthParams, generate
from napari_grainlab.core.training import Epoch, Finished, Started, TrainConfig, fit

fit_mod = importlib.import_module("napari_grainlab.core.training.fit")  # the module (the package exports fit())

BASE = dict(backbone="resnet18", weights="none", strategy="scratch", steps_per_epoch=2, batch_size=2,
            synthetic="none", decoder_channels=(16, 16, 16, 8, 8), device="cpu", augment=("geometric",),
            val_tile=64, patch_size=64)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def samples():
    out = []
    for i in range(3):
        p = SynthParams.preset("sem", height=96, width=96)
        p.tessellation.grains = 30
        img = generate(p, seed=i)
        x = img.image_float()
        lo, hi = np.percentile(x, (0.1, 99.9))
        out.append(SegSample(name=f"m{i}", image=np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32),
                             labels=img.labels, group=f"m{i}"))
    return out


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def epochs_of(folder: Path) -> tuple[int, int]:
    """(epoch of the weights' description, epoch of the optimizer state) in a ``last/`` folder."""
    return (json.loads((folder / "model.json").read_text())["epoch"],
            json.loads((folder / "training_state.json").read_text())["epoch"])


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    events = list(fit(TrainConfig(epochs=1, out=str(out), **BASE), samples()))
    assert isinstance(events[-1], Finished)
    return out


def test_an_error_while_writing_last_leaves_the_previous_last_whole(one_epoch, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = digest(out / "last")

    def fail(folder, optimizer, state):  # the optimizer state cannot be written (disk full) after the weights
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fit_mod, "_save_training_state", fail)
    with pytest.raises(OSError, match="No space"):
        list(fit(TrainConfig(epochs=2, resume=True, out=str(out), **BASE), samples()))
    assert digest(out / "last") == before and epochs_of(out / "last") == (1, 1)
    assert not [p for p in out.rglob("*") if p.name.endswith(".part") or ".tmp-" in p.name]
    monkeypatch.undo()
    events = list(fit(TrainConfig(epochs=2, resume=True, out=str(out), **BASE), samples()))
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [2]
    assert epochs_of(out / "last") == (2, 2) and len(events[-1].history) == 2


KILLED_RUN = textwrap.dedent("""
    import importlib, os, signal, sys
    import torch
    from napari_grainlab.core.training import TrainConfig, fit
    fit_mod = importlib.import_module("napari_grainlab.core.training.fit")
    sys.path.insert(0, sys.argv[2])
    from test_resume_after_kill import BASE, samples

    torch.set_num_threads(1)

    def die(folder, optimizer, state):  # killed after the weights of epoch 2 are written
        os.kill(os.getpid(), signal.SIGKILL)

    fit_mod._save_training_state = die
    for _ in fit(TrainConfig(epochs=2, resume=True, out=sys.argv[1], **BASE), samples()):
        pass
    raise SystemExit("not killed")
""")


def test_a_run_killed_while_writing_last_resumes_at_the_next_epoch(one_epoch, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    before = digest(out / "last")
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert digest(out / "last") == before and epochs_of(out / "last") == (1, 1)  # never a mix of epochs
    # leftovers of a killed writer of an older version: .part files next to the files they were to replace
    (out / ".history.json.x1y2z3.part").write_text("[")
    (out / "last" / ".optimizer.safetensors.a1b2c3.part").write_bytes(b"\0")
    events = list(fit(TrainConfig(epochs=3, resume=True, out=str(out), **BASE), samples()))
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [2, 3]  # epoch 1 is not repeated, 2 is not skipped
    assert [h["epoch"] for h in events[-1].history] == [1, 2, 3]
    assert epochs_of(out / "last") == (3, 3)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".part") or ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


def test_a_last_folder_mixed_by_an_older_version_is_refused_in_one_line(one_epoch, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    meta = json.loads((out / "last" / "model.json").read_text())
    meta["epoch"] = 2  # weights and description of epoch 2, optimizer state of epoch 1
    (out / "last" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        list(fit(TrainConfig(epochs=3, resume=True, out=str(out), **BASE), samples()))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{out / 'last'}: ")
    assert "weights of epoch 2" in msg and "optimizer state of epoch 1" in msg


def test_best_is_restored_from_last_when_the_run_died_between_them(one_epoch, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    stale_best = tmp_path / "best-epoch-1"
    shutil.copytree(out / "best", stale_best)
    list(fit(TrainConfig(epochs=2, resume=True, out=str(out), **BASE), samples()))
    state_file = out / "last" / "training_state.json"
    state = json.loads(state_file.read_text())
    state["best_epoch"] = 2  # epoch 2 improved; the run died after writing last/ and before best/
    state_file.write_text(json.dumps(state))
    shutil.rmtree(out / "best")
    shutil.copytree(stale_best, out / "best")
    events = fit(TrainConfig(epochs=3, resume=True, out=str(out), **BASE), samples())
    assert isinstance(next(events), Started)
    events.close()
    best = json.loads((out / "best" / "model.json").read_text())
    assert best["epoch"] == 2
    assert digest(out / "best")["model.safetensors"] == digest(out / "last")["model.safetensors"]


def test_resuming_with_another_backbone_is_one_line(one_epoch, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    with pytest.raises(CheckpointError) as info:
        list(fit(TrainConfig(epochs=2, resume=True, out=str(out), **{**BASE, "backbone": "resnet34"}), samples()))
    msg = str(info.value)
    assert msg.startswith(f"{out / 'last'}: the weights do not fit backbone resnet34 (the training configuration): ")
    assert "\n" not in msg and "missing keys such as" in msg
