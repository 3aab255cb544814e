"""A checkpoint folder is written as one unit: a failure or a kill leaves the old or the new folder, never a mix,
and leftovers of a killed write are cleaned up by the next one (issue 14, item 4)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from napari_grainlab.core import _io
from napari_grainlab.core.models import ModelSpec, build_model, load_checkpoint, save_checkpoint

SPEC = ModelSpec(backbone="resnet18", decoder_channels=(8,))


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class Unwritable:
    """A metadata value whose text cannot be made: the description fails after the weights are written."""

    def __str__(self):
        raise RuntimeError("disk full")


def test_a_failed_write_leaves_the_old_folder_untouched(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m", build_model(SPEC), {"epoch": 1})
    before = digest(tmp_path / "m")
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path / "m", build_model(SPEC), {"epoch": 2, "note": Unwritable()})
    assert digest(tmp_path / "m") == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder or .part file left
    assert load_checkpoint(tmp_path / "m")[1]["epoch"] == 1


def test_files_of_others_in_the_folder_are_kept_and_part_files_dropped(tmp_path):
    save_checkpoint(tmp_path / "m", build_model(SPEC), {"epoch": 1})
    (tmp_path / "m" / "README.txt").write_text("mine")
    (tmp_path / "m" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "m" / ".model.json.k3j4h5.part").write_text("{")  # left by a write that was killed
    save_checkpoint(tmp_path / "m", build_model(SPEC), {"epoch": 2})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.txt", "model.json", "model.onnx",
                                                                   "model.safetensors"]
    assert (tmp_path / "m" / "README.txt").read_text() == "mine"
    assert json.loads((tmp_path / "m" / "model.json").read_text())["epoch"] == 2


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    from napari_grainlab.core import _io
    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    folder, where = Path(sys.argv[1]), sys.argv[2]

    class Kill:
        def __str__(self):
            os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(1)
    model = build_model(ModelSpec(backbone="resnet18", decoder_channels=(8,)))
    if where == "after-weights":
        save_checkpoint(folder, model, {"epoch": 2, "note": Kill()})
    else:  # between the two renames of a system without an atomic exchange
        _io._exchange = lambda a, b: False
        rename, calls = os.rename, []

        def rename_then_die(src, dst):
            calls.append(src)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            rename(src, dst)

        os.rename = rename_then_die
        save_checkpoint(folder, model, {"epoch": 2})
    raise SystemExit("not killed")
""")


@pytest.mark.parametrize("where", ["after-weights", "between-renames"])
def test_a_kill_while_writing_leaves_a_complete_folder_and_the_next_write_cleans_up(tmp_path, where):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m", build_model(SPEC), {"epoch": 1})
    before = digest(tmp_path / "m")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path / "m"), where], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr
    if where == "after-weights":  # the folder itself is the old one, whole
        assert digest(tmp_path / "m") == before
    _io.recover_folder(tmp_path / "m")  # what the next write or a resume does first
    assert digest(tmp_path / "m") == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    save_checkpoint(tmp_path / "m", build_model(SPEC), {"epoch": 3})
    assert load_checkpoint(tmp_path / "m")[1]["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_recovery_restores_a_moved_away_folder_and_keeps_a_live_writers_one(tmp_path):
    (tmp_path / "keep").mkdir()
    stale = dead_pid()
    old = tmp_path / f".last.old-{stale}"
    old.mkdir()
    (old / "model.json").write_text("old")
    tmp = tmp_path / f".last.tmp-{stale}"
    tmp.mkdir()
    (tmp / "model.json").write_text("half")
    live = tmp_path / f".last.tmp-{os.getppid()}"  # a process that is running: its write is under way
    live.mkdir()
    _io.recover_folder(tmp_path / "last")
    assert (tmp_path / "last" / "model.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "keep", "last"])


@pytest.mark.parametrize("exchange", [True, False])
def test_write_folder_replaces_a_folder_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
    target = tmp_path / "d"
    target.mkdir()
    (target / "a").write_text("1")
    (target / "b").write_text("1")
    with _io.atomic_write_folder(target) as new:
        assert new.parent == tmp_path and new != target and not any(new.iterdir())
        (new / "a").write_text("2")
        assert (target / "a").read_text() == "1"  # nothing visible before the swap
    assert sorted(p.name for p in target.iterdir()) == ["a"] and (target / "a").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    mode = 0o777 & ~_io._umask()
    assert (target.stat().st_mode & 0o777) == mode
