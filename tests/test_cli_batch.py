"""``grainlab predict`` as a batch on Dask: globs, workers, resuming, --overwrite, --scheduler, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_grainlab.cli import main

TILE = ["--tile", "64", "--overlap", "16", "--device", "cpu", "--no-progress"]


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.startswith("grainlab: error:")]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    torch.manual_seed(0)
    net = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    return save_checkpoint(tmp_path_factory.mktemp("cli_batch") / "seg", net)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from napari_grainlab.core._io import write_tiff
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    root = tmp_path_factory.mktemp("cli_batch_images")
    (root / "sub").mkdir()
    for i in range(3):
        img = generate(SynthParams(height=96, width=96, tessellation=TessellationParams(grains=20)), seed=i).image
        write_tiff(root / ("sub" if i == 2 else ".") / f"s{i}.tif", img, pixel_size_um=0.2)
    return root


def test_glob_on_two_workers_then_resume_then_overwrite(model, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", str(model), str(images / "**" / "*.tif"), "--out", str(out), "--workers", "2", *TILE]
    assert main(argv) == 0
    assert "predicted 3 of 3 images" in capsys.readouterr().out
    rows = (out / "summary.csv").read_text().splitlines()
    head = rows[0].split(",")
    assert head[:2] == ["image", "output"] and {"grains", "mean_diameter", "astm_g", "status"} <= set(head)
    assert [r.split(",")[0] for r in rows[1:]] == ["s0.tif", "s1.tif", "s2.tif"]
    assert all(r.split(",")[head.index("status")] == "ok" for r in rows[1:])
    stamp = (out / "s2_labels.tif").stat().st_mtime_ns

    assert main(argv) == 0  # the same command again: nothing to do
    assert "(3 already done)" in capsys.readouterr().out
    assert (out / "s2_labels.tif").stat().st_mtime_ns == stamp
    assert (out / "summary.csv").read_text().splitlines() == rows

    assert main([*argv, "--overwrite", "--workers", "1"]) == 0
    assert "already done" not in capsys.readouterr().out
    assert (out / "s2_labels.tif").stat().st_mtime_ns != stamp


def test_a_corrupt_image_is_reported_and_the_rest_completes(model, images, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for f in images.glob("*.tif"):
        (src / f.name).write_bytes(f.read_bytes())
    (src / "corrupt.tif").write_bytes(np.random.default_rng(1).bytes(300))
    out = tmp_path / "out"
    assert main(["predict", str(model), str(src), "--out", str(out), "--workers", "2", *TILE]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and f"{src / 'corrupt.tif'}: " in lines[0]
    assert "predicted 2 of 3 images" in captured.out and "1 failed" in captured.out
    assert (out / "s0_labels.tif").is_file() and (out / "s1_labels.tif").is_file()
    summary = (out / "summary.csv").read_text()
    assert "corrupt.tif" in summary and ",error," in summary


def test_an_existing_scheduler_is_used_and_left_running(model, images, tmp_path, capsys):
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        out = tmp_path / "out"
        assert main(["predict", str(model), str(images), "--out", str(out), "--scheduler",
                     cluster.scheduler_address, *TILE]) == 0
        assert (out / "s0_labels.tif").is_file() and (out / "s1_labels.tif").is_file()
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            assert client.submit(abs, -4).result() == 4


def test_a_bad_model_is_one_line_before_any_cluster_starts(images, tmp_path, capsys, monkeypatch):
    import distributed

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    for model in (tmp_path / "missing", tmp_path / "model.pth"):
        assert main(["predict", str(model), str(images), "--out", str(tmp_path / "o"), "--workers", "2"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and len(error_lines(err)) == 1
    assert main(["predict", str(tmp_path), str(tmp_path / "nothing*.tif"), "--out", str(tmp_path / "o")]) == 2
    assert "no model.json" in capsys.readouterr().err


def test_bad_worker_counts_and_unreachable_schedulers_are_one_line(model, images, tmp_path, capsys, monkeypatch):
    from napari_grainlab.core import batch

    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers" in error_lines(capsys.readouterr().err)[0]
    monkeypatch.setattr(batch, "_CONNECT_TIMEOUT", "1s")
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "o"), "--scheduler",
                 "tcp://127.0.0.1:9", *TILE]) == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in error_lines(capsys.readouterr().err)[-1]


def test_ctrl_c_cancels_the_rest_and_writes_the_partial_summary(model, images, tmp_path, capsys, monkeypatch):
    from napari_grainlab.cli import EXIT_INTERRUPTED, predict

    out = tmp_path / "out"

    class CtrlCAfterFirstImage(predict.StopOnInterrupt):
        """Ctrl-C pressed as soon as the first image's outputs exist."""

        def __call__(self) -> bool:
            self.requested = self.requested or (out / "s0_labels.tif").exists()
            return self.requested

    monkeypatch.setattr(predict, "StopOnInterrupt", CtrlCAfterFirstImage)
    argv = ["predict", str(model), str(images), str(images / "sub"), "--out", str(out), "--workers", "1", *TILE]
    assert main(argv) == EXIT_INTERRUPTED
    assert "1 of 3 images done" in capsys.readouterr().err
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("s0.tif,")
    assert not (out / "s1_labels.tif").exists()
    monkeypatch.undo()
    assert main(argv) == 0  # the same command continues
    assert "(1 already done)" in capsys.readouterr().out
