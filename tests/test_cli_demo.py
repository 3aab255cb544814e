"""``grainlab demo --quick`` shows a working model, and exits non-zero when its model is not."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from napari_grainlab.cli import demo, main

CASES = {"fresh_synthetic", "sample_sem", "fresh_colour"}
SEM_CASES = {"fresh_synthetic", "sample_sem"}


def test_baseline_failures_names_every_image_and_model_not_above_the_baseline():
    segment = {
        "better": {"boundary_f1_generalist": 0.9, "boundary_f1_finetuned": 0.91, "boundary_f1_classical": 0.85,
                   "fine_tune_domain": True},
        "tie": {"boundary_f1_generalist": 0.9, "boundary_f1_finetuned": 0.8, "boundary_f1_classical": 0.8,
                "fine_tune_domain": True},
        "worse": {"boundary_f1_generalist": 0.1, "boundary_f1_finetuned": 0.0, "boundary_f1_classical": 0.8523,
                  "fine_tune_domain": True},
        # another look: shown, not held to the baseline
        "other": {"boundary_f1_generalist": 0.6, "boundary_f1_finetuned": 0.5, "boundary_f1_classical": 0.7,
                  "fine_tune_domain": False},
        "seconds": 3.2,  # the step's timing sits next to the images
    }
    assert demo.baseline_failures(segment) == [
        "tie: fine-tuned model (boundary F1 0.800 vs classical 0.800)",
        "worse: built-in model (boundary F1 0.100 vs classical 0.852)",
        "worse: fine-tuned model (boundary F1 0.000 vs classical 0.852)"]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One ``grainlab demo --quick`` in a fresh interpreter, as a user runs it (about a minute); the tests
    below read its output, and the last one runs the demo again into the same folder."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    r = subprocess.run([sys.executable, "-m", "napari_grainlab", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    return out, r


def dataset_meta(folder):
    return json.loads((folder / "dataset.json").read_text())


@pytest.mark.slow
def test_quick_demo_predicts_with_the_built_in_model_then_fine_tunes_it(quick_demo):
    out, r = quick_demo
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the built-in model and the fine-tuned one both beat the classical baseline" in r.stdout

    record = json.loads((out / "demo.json").read_text())
    assert record["complete"] is True and record["quick"] is True
    assert record["check"] == {"rule": record["check"]["rule"], "passed": True, "failures": []}
    assert record["steps"]["train"]["settings"]["strategy"] == "finetune"
    segment = {k: v for k, v in record["steps"]["segment"].items() if isinstance(v, dict)}
    assert set(segment) == CASES
    for case, s in segment.items():
        assert s["fine_tune_domain"] is (case in SEM_CASES)
        assert s["boundary_f1_generalist"] > 0.7, (case, s)  # the built-in model works on every look
        if case in SEM_CASES:
            assert s["boundary_f1_generalist"] > s["boundary_f1_classical"], (case, s)
            assert s["boundary_f1_finetuned"] > s["boundary_f1_classical"], (case, s)
            assert s["boundary_f1_finetuned"] > 0.8, (case, s)
            # a plausible segmentation: about as many grains as there are (a broken model finds 1)
            assert 0.6 * s["grains_true"] <= s["grains"] <= 1.5 * s["grains_true"], (case, s)
    for case in CASES:
        assert (out / "predictions" / f"{case}_labels.tif").is_file()


@pytest.mark.slow
def test_quick_demo_writes_datasets_and_a_preview(quick_demo):
    import imageio.v3 as iio
    import numpy as np

    out, r = quick_demo
    assert r.returncode == 0, r.stderr
    assert str(out.resolve()) in r.stdout and "preview.png" in r.stdout
    sem, opt = out / "synthetic-sem", out / "synthetic-optical"
    assert dataset_meta(sem)["params"]["style"] == "sem" and dataset_meta(sem)["complete"]
    assert dataset_meta(opt)["params"]["style"] == "optical"
    assert len(list((sem / "images").iterdir())) >= 2 and len(list((opt / "images").iterdir())) >= 1

    preview = iio.imread(out / "preview.png")
    size = dataset_meta(sem)["params"]["height"]
    assert preview.dtype == np.uint8 and preview.ndim == 3 and preview.shape[2] == 3
    assert preview.shape[0] >= size and preview.shape[1] >= 2 * size  # image | overlay side by side
    left = preview[:size, :size]
    assert np.all(left[..., 0] == left[..., 1])  # the raw image is grey
    right = preview[:size, -size:].astype(int)
    assert np.abs(right[..., 0] - right[..., 1]).mean() > 5  # the overlay is coloured


@pytest.mark.slow
def test_a_rerun_replaces_its_own_output_and_exits_1_when_its_model_is_worse_than_the_baseline(
        quick_demo, monkeypatch, capsys):
    """Last in this module: it runs the demo again into the folder of the first run (no --overwrite needed
    for the demo's own folder), with an untrained model."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the demo sets it; keep it from leaking into other tests
    quick = demo.PLANS["quick"]
    # ImageNet encoder, one step at a negligible learning rate: the decoder stays as initialised, an untrained model
    untrained = dataclasses.replace(quick, train={**quick.train, "weights": "imagenet", "epochs": 1,
                                                  "steps_per_epoch": 1, "lr": 1e-9})
    monkeypatch.setitem(demo.PLANS, "quick", untrained)
    out, _ = quick_demo
    assert (out / "demo.json").is_file() and json.loads((out / "demo.json").read_text())["check"]["passed"]

    assert main(["demo", "--quick", "--out", str(out)]) == demo.EXIT_WORSE_THAN_BASELINE == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("grainlab: demo failed: not above the classical baseline")
    assert all(f"{case}: fine-tuned model" in lines[0] for case in SEM_CASES)
    assert "Boundary F1 against the ground truth" in captured.out  # the scores are still shown

    record = json.loads((out / "demo.json").read_text())  # replaced by this run
    assert record["complete"] is True
    assert record["check"]["passed"] is False
    assert {f.split(":")[0] for f in record["check"]["failures"] if "fine-tuned" in f} == SEM_CASES
