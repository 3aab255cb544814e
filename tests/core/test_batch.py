"""Batch prediction on Dask distributed: real LocalClusters (processes), tiny images and a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainlab.core.batch import (
    BatchError,
    BatchFinished,
    BatchImageDone,
    BatchImageFailed,
    BatchOptions,
    BatchStarted,
    expand_inputs,
    run_batch,
)

OPTS = BatchOptions(tile=64, overlap=16)


def read_summary(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def collect(events) -> list:
    return list(events)


def of(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    root = tmp_path_factory.mktemp("batch_models")
    torch.manual_seed(0)
    seg = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(root / "seg", seg)
    cls = build_model(ModelSpec(task="classify", backbone="resnet18", num_classes=2,
                                classes=["ferrite", "pearlite"])).eval()
    save_checkpoint(root / "cls", cls, {"training": {"patch_size": 64}})
    return root


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """Five 96 x 96 synthetic micrographs with a 0.1 µm pixel size."""
    from napari_grainlab.core._io import write_tiff
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    root = tmp_path_factory.mktemp("batch_images")
    for i in range(5):
        img = generate(SynthParams(height=96, width=96, tessellation=TessellationParams(grains=20)), seed=i).image
        write_tiff(root / f"m{i}.tif", img, pixel_size_um=0.1)
    return root


@pytest.fixture(scope="module")
def cluster():
    """An existing cluster to connect to (two worker processes), shared by the tests of this module."""
    import logging

    from distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     silence_logs=logging.ERROR)
    yield c
    c.close()


def test_two_worker_local_cluster_predicts_all_loads_the_model_once_per_worker_and_reports_a_bad_image(
        model_dir, image_dir, tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    for f in image_dir.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / "bad.tif").write_bytes(np.random.default_rng(0).bytes(500))  # random bytes named .tif
    out = tmp_path / "out"
    events = collect(run_batch(model_dir / "seg", [src], out, workers=2, device="cpu", options=OPTS))
    started, end = events[0], events[-1]
    assert isinstance(started, BatchStarted) and started.total == 6 and started.workers == 2
    assert started.where == "LocalCluster"
    done, failed = of(events, BatchImageDone), of(events, BatchImageFailed)
    assert len(done) == 5 and len(failed) == 1
    assert failed[0].path.endswith("bad.tif") and "\n" not in failed[0].error and failed[0].error
    assert isinstance(end, BatchFinished) and (end.predicted, end.failed, end.skipped) == (5, 1, 0)
    assert not end.cancelled and sorted(e.done for e in events[1:-1]) == list(range(1, 7))
    # the work ran in two other processes, each of which loaded the model once for all its images
    workers = {e.worker for e in done}
    assert 1 <= len(workers) <= 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)
    assert {e.model_loads for e in done} == {1}
    for i in range(5):
        labels = tifffile.imread(out / f"m{i}_labels.tif")
        assert labels.shape == (96, 96) and labels.dtype == np.uint32 and labels.max() >= 1
        assert (out / f"m{i}_boundary.tif").is_file() and (out / f"m{i}_grains.csv").is_file()
    rows = read_summary(out / "summary.csv")
    assert [r["image"] for r in rows] == ["bad.tif"] + [f"m{i}.tif" for i in range(5)]  # input order
    assert rows[0]["status"] == "error" and rows[0]["error"]
    for r in rows[1:]:
        assert r["status"] == "ok" and r["unit"] == "um" and float(r["pixel_size_um"]) == pytest.approx(0.1)
        assert float(r["grains"]) >= 1 and float(r["mean_diameter"]) > 0 and r["astm_g"] != ""
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    # the workers' own logs (a heartbeat racing the shutdown, a task's error) never reach the terminal
    err = capfd.readouterr().err
    assert "distributed." not in err and "Traceback" not in err, err


def test_the_worker_plugin_quiets_distributed_and_ignores_ctrl_c():
    import logging
    import signal

    from napari_grainlab.core._dask_worker import QuietWorker

    log = logging.getLogger("distributed")
    level, handler = log.level, signal.getsignal(signal.SIGINT)
    try:
        log.setLevel(logging.INFO)
        QuietWorker().setup(None)
        assert log.getEffectiveLevel() == logging.CRITICAL
        assert logging.getLogger("distributed.worker").isEnabledFor(logging.ERROR) is False
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        log.setLevel(level)
        signal.signal(signal.SIGINT, handler)


def test_existing_scheduler_resume_overwrite_and_the_cluster_stays_up(model_dir, image_dir, tmp_path, cluster):
    from distributed import Client

    from napari_grainlab.core.batch import model_loads

    address = cluster.scheduler_address
    out = tmp_path / "out"
    first = collect(run_batch(model_dir / "seg", [image_dir], out, scheduler=address, device="cpu", options=OPTS))
    assert first[0].where == address and len(of(first, BatchImageDone)) == 5
    summary = (out / "summary.csv").read_text()

    # an image whose record is missing (half written) and one with a missing output are redone
    (out / ".m1.grainlab.json").unlink()
    (out / "m3_labels.tif").unlink()
    second = collect(run_batch(model_dir / "seg", [image_dir], out, scheduler=address, device="cpu",
                               options=OPTS))
    assert second[0].skipped == 3 and sorted(Path(e.path).name for e in of(second, BatchImageDone)) == \
        ["m1.tif", "m3.tif"]
    assert (out / "m3_labels.tif").is_file()
    assert (out / "summary.csv").read_text() == summary  # skipped images keep their stored rows

    # other result-changing settings: everything is redone; --overwrite too
    third = collect(run_batch(model_dir / "seg", [image_dir], out, scheduler=address, device="cpu",
                              options=BatchOptions(tile=64, overlap=16, overlay=True)))
    assert third[0].skipped == 0 and (out / "m0_overlay.png").is_file()
    again = collect(run_batch(model_dir / "seg", [image_dir], out, scheduler=address, device="cpu", overwrite=True,
                              options=BatchOptions(tile=64, overlap=16, overlay=True)))
    assert again[0].skipped == 0 and len(of(again, BatchImageDone)) == 5

    # the cluster was not shut down, and each of its workers loaded the model once over all batches
    with Client(address, set_as_default=False) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        assert len(client.scheduler_info()["workers"]) == 2
        loads = client.run(model_loads)
    weights = str((model_dir / "seg" / "model.safetensors").resolve())
    assert all(counts.get(weights, 0) <= 1 for counts in loads.values())
    assert sum(counts.get(weights, 0) for counts in loads.values()) >= 1


def test_closing_the_batch_cancels_and_writes_the_partial_summary(model_dir, image_dir, tmp_path, cluster):
    out = tmp_path / "out"
    flag = {"stop": False}
    events = run_batch(model_dir / "seg", [image_dir], out, scheduler=cluster.scheduler_address, device="cpu",
                       options=OPTS, stop=lambda: flag["stop"])
    seen = []
    for ev in events:
        seen.append(ev)
        if isinstance(ev, BatchImageDone):
            flag["stop"] = True
    end = seen[-1]
    assert isinstance(end, BatchFinished) and end.cancelled and 1 <= end.predicted <= 5
    rows = read_summary(out / "summary.csv")
    assert len(rows) == end.predicted and all(r["status"] == "ok" for r in rows)

    # closing the generator (the GUI's cancel) stops as well
    out2 = tmp_path / "out2"
    events = run_batch(model_dir / "seg", [image_dir], out2, scheduler=cluster.scheduler_address, device="cpu",
                       options=OPTS, overwrite=True)
    for ev in events:
        if isinstance(ev, BatchImageDone):
            events.close()
            break
    assert len(read_summary(out2 / "summary.csv")) == 1  # what was done when it was closed


def test_in_process_classification_and_output_folder_as_input(model_dir, image_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for f in sorted(image_dir.iterdir())[:2]:
        (work / f.name).write_bytes(f.read_bytes())
    events = collect(run_batch(model_dir / "cls", [work], work, workers=1, device="cpu",
                               options=BatchOptions(tile=64)))
    assert events[0].where == "this process" and len(of(events, BatchImageDone)) == 2
    assert {e.model_loads for e in of(events, BatchImageDone)} == {1}
    assert (work / "m0_classes.tif").is_file() and (work / "m0_confidence.tif").is_file()
    rows = read_summary(work / "summary.csv")
    assert rows[0]["class"] in ("ferrite", "pearlite")
    assert float(rows[0]["p_ferrite"]) + float(rows[0]["p_pearlite"]) == pytest.approx(1.0, abs=1e-4)
    # the outputs in the input folder are no inputs: a rerun finds the same two images, both done
    again = collect(run_batch(model_dir / "cls", [work, str(work / "*.tif")], work, workers=1, device="cpu",
                              options=BatchOptions(tile=64)))
    assert again[0].total == 2 and again[0].skipped == 2 and again[-1].predicted == 0


def test_expand_inputs_folders_globs_and_duplicates(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for rel in ("a/x.tif", "a/y.PNG", "a/notes.txt", "a/.hidden.tif", "a/deep/z.tiff", "a/deep/w.jpg"):
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "out").mkdir()
    for rel in ("out/x_labels.tif", "out/x_overlay.png", "out/k.bmp"):
        (tmp_path / rel).write_bytes(b"")
    a = tmp_path / "a"
    assert expand_inputs([a]) == [a / "x.tif", a / "y.PNG"]
    found = expand_inputs([str(a / "**" / "*.ti*"), a / "x.tif", str(a / "deep" / "*")])
    assert found == [a / "deep" / "z.tiff", a / "x.tif", a / "deep" / "w.jpg"]  # sorted per pattern, once each
    # the output folder's own outputs are left out; other images in it are inputs
    assert expand_inputs([tmp_path / "out"], tmp_path / "out") == [tmp_path / "out" / "k.bmp"]
    assert len(expand_inputs([tmp_path / "out"])) == 3
    # a named file is kept as it is (reading it reports the problem); a pattern matching nothing adds nothing
    assert expand_inputs([a / "notes.txt", str(tmp_path / "none*.tif")]) == [a / "notes.txt"]


def test_bad_inputs_are_errors_before_any_work(model_dir, image_dir, tmp_path, monkeypatch):
    from napari_grainlab.core import batch
    from napari_grainlab.core.models import CheckpointError
    from napari_grainlab.core.training import ConfigError

    pickle_model = tmp_path / "model.pth"
    pickle_model.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="pickle"):
        next(run_batch(pickle_model, [image_dir], tmp_path / "o"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes((model_dir / "seg" / "model.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt weights"):
        next(run_batch(broken, [image_dir], tmp_path / "o"))
    with pytest.raises(BatchError, match="no images"):
        next(run_batch(model_dir / "seg", [str(tmp_path / "*.tif")], tmp_path / "o"))
    with pytest.raises(ConfigError, match="unknown device"):
        next(run_batch(model_dir / "seg", [image_dir], tmp_path / "o", device="foo"))
    with pytest.raises(CheckpointError, match="intensity reference"):
        next(run_batch(model_dir / "seg", [image_dir], tmp_path / "o", options=BatchOptions(histogram_match=True)))
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(batch, "_CONNECT_TIMEOUT", "1s")
    with pytest.raises(BatchError, match="cannot reach the Dask scheduler"):
        collect(run_batch(model_dir / "seg", [image_dir], tmp_path / "o", scheduler="tcp://127.0.0.1:9"))
