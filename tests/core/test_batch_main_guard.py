"""A launcher script without ``if __name__ == "__main__":`` must not run again in the Dask workers.

Dask's worker processes start with multiprocessing's ``spawn`` method, which re-imports the parent's
``__main__`` in every child: an unguarded script that opens napari would open one viewer per worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = '''
import os
import sys

with open({marker!r}, "a", encoding="utf-8") as fh:  # runs at import time: once per process that imports it
    fh.write(f"{{os.getpid()}}\\n")

from napari_grainlab.core.batch import BatchFinished, BatchImageDone, BatchOptions, run_batch

events = list(run_batch({model!r}, [{images!r}], {out!r}, workers=2, device="cpu",
                        options=BatchOptions(tile=64, overlap=16)))
end = events[-1]
done = [e for e in events if isinstance(e, BatchImageDone)]
print("started:", events[0])
print("workers:", sorted({{e.worker for e in done}}))
print("end:", end.predicted, end.failed, end.cancelled)
in_workers = all(e.worker and not e.worker.endswith(f":{{os.getpid()}}") for e in done)
sys.exit(0 if isinstance(end, BatchFinished) and end.predicted == 2 and not end.failed and in_workers else 3)
'''


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory) -> tuple[Path, Path]:
    import torch

    from napari_grainlab.core._io import write_tiff
    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    root = tmp_path_factory.mktemp("unguarded")
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(root / "seg", seg)
    images = root / "images"
    images.mkdir()
    for i in range(2):
        img = generate(SynthParams(height=64, width=64, tessellation=TessellationParams(grains=10)), seed=i).image
        write_tiff(images / f"m{i}.tif", img, pixel_size_um=0.1)
    return root / "seg", images


def test_an_unguarded_launcher_script_is_imported_once_not_in_every_worker(model_and_images, tmp_path):
    model, images = model_and_images
    marker = tmp_path / "imported.txt"
    out = tmp_path / "out"
    script = tmp_path / "launch_unguarded.py"
    script.write_text(textwrap.dedent(SCRIPT).format(marker=str(marker), model=str(model), images=str(images),
                                                     out=str(out)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    pids = marker.read_text(encoding="utf-8").split()
    assert pids and len(pids) == 1, f"the script ran in {len(pids)} processes\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert (out / "m0_labels.tif").is_file() and (out / "m1_labels.tif").is_file()
    assert "2 workers" in proc.stdout and "end: 2 0 False" in proc.stdout


def test_the_main_module_is_hidden_from_spawn_only_inside_and_restored_after_nesting(monkeypatch, tmp_path):
    import types
    from multiprocessing import spawn

    from napari_grainlab.core.batch import _main_script_hidden

    main = types.ModuleType("__main__")
    main.__file__ = str(tmp_path / "launcher.py")
    main.answer = 42
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert spawn.get_preparation_data("w")["init_main_from_path"] == main.__file__
    with _main_script_hidden():
        with _main_script_hidden():
            data = spawn.get_preparation_data("w")
            assert "init_main_from_path" not in data and "init_main_from_name" not in data
            assert sys.modules["__main__"].answer == 42  # pickle still finds the script's functions
        assert "init_main_from_path" not in spawn.get_preparation_data("w")
    assert sys.modules["__main__"] is main and main.__file__.endswith("launcher.py")
