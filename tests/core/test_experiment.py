"""The experiment runner: configuration checks, the run plan, leakage splits, resume and the report."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from napari_grainlab.core.experiment import (
    ExperimentError,
    ExperimentStarted,
    RunDone,
    RunStarted,
    load_config,
    load_results,
    parse_config,
    plan,
    run_experiment,
    write_report,
)
from napari_grainlab.core.experiment.runner import ExperimentData, augmented_tiles, split_tiles


def tiny(**changes) -> dict:
    data = {
        "name": "tiny", "image_size": 64, "target_images": 6, "source_images": 4, "folds": 2,
        "label_counts": [1, 2], "pretrain_steps": 2,
        "materials": {"source": {"preset": "sem", "mean_diameter": 12},
                      "target": {"preset": "optical", "mean_diameter": 12,
                                 "set": {"tessellation.aspect_ratio": 2.0}}},
        "training": {"patch_size": 32, "batch_size": 2, "epochs": 1, "steps_per_epoch": 2, "augment": [],
                     "device": "cpu"},
        "studies": {"curve": {"kind": "learning_curve", "strategies": ["scratch", "finetune"]},
                    "adapt": {"kind": "adaptation", "models": ["source"], "modes": ["none", "histogram"]},
                    "leak": {"kind": "leakage", "images": 2, "tiles_per_image": 3, "tile": 32,
                             "session_variation": 1.0}},
    }
    data.update(changes)
    return data


# ------------------------------------------------------------------------------------------ config
def test_committed_configs_parse_full_and_quick():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "experiments"
    files = sorted(root.glob("*.toml"))
    assert files, "the experiment configurations are committed"
    for f in files:
        full, quick = load_config(f), load_config(f, quick=True)
        assert quick.quick and not full.quick
        assert quick.folds <= full.folds and quick.target_images <= full.target_images
        kinds = {s.kind for s in full.studies}
        assert {"learning_curve", "pretraining", "transfer", "adaptation", "leakage"} <= kinds
        assert full.label_counts == (1, 2, 5, 10, 25)
        if full.findings:
            assert full.findings_path().exists()


@pytest.mark.parametrize("change, message", [
    ({"materials": {"source": {"preset": "sem"}}}, "materials.target"),
    ({"studies": {"x": {"kind": "nonsense"}}}, "kind 'nonsense'"),
    ({"studies": {"x": {"kind": "learning_curve", "strategies": ["sideways"]}}}, "strategy 'sideways'"),
    ({"studies": {"x": {"kind": "adaptation", "modes": ["magic"]}}}, "mode 'magic'"),
    ({"label_counts": [1, 5]}, "raise target_images"),
    ({"label_counts": [0]}, "label_counts"),
    ({"image_size": 100}, "multiple of 32"),
    ({"banana": 1}, "unknown top-level"),
    ({"training": {"lr": -1}}, "lr"),
    ({"training": {"out": "x"}}, "must not set out"),
    ({"studies": {}}, "nothing to run"),
    ({"metrics": 5}, "metrics must be"),
    ({"metrics": ["nope"]}, "metrics must be"),
    ({"training": [1]}, "[training] must be a table"),
    ({"studies": {"x": {"kind": "learning_curve", "label_counts": 2}}}, "label_counts must be a list"),
    ({"studies": {"x": {"kind": "learning_curve", "strategies": "scratch"}}}, "strategies must be a non-empty list"),
    ({"studies": {"x": {"kind": "transfer", "strategy": "sideways"}}}, "strategy 'sideways'"),
    ({"studies": {"x": {"kind": "adaptation", "models": ["other"]}}}, "model 'other'"),
    ({"studies": {"x": {"kind": "pretraining", "synthetic": "bogus"}}}, "bogus"),
    ({"studies": {"x": {"kind": "leakage", "tile": 128}}}, "at most image_size"),
    ({"studies": {"x": {"kind": "leakage", "tile": 32, "images": 0}}}, "images must be"),
    ({"studies": {"x": {"kind": "leakage", "tile": 32, "images": 2, "val_fraction": 1.5}}}, "val_fraction must be in (0, 1)"),
    ({"studies": {"x": {"kind": "leakage", "tile": 32, "images": 2, "session_variation": "a"}}}, "session_variation must be"),
    ({"studies": {"x": {"kind": "leakage", "tile": 32, "images": 2}, "y": {"kind": "leakage", "tile": 32, "images": 2}}}, "only one leakage"),
])
def test_bad_configs_are_one_clear_error(change, message):
    with pytest.raises(ExperimentError, match=re.escape(message)):
        parse_config(tiny(**change))


def test_material_set_must_be_a_table():
    data = tiny()
    data["materials"]["target"]["set"] = [1]
    with pytest.raises(ExperimentError, match="set must be a table"):
        parse_config(data)


def test_bad_material_parameter_is_reported_before_running():
    data = tiny()
    data["materials"]["target"]["set"] = {"tessellation.no_such_thing": 1}
    with pytest.raises(ExperimentError, match="no_such_thing"):
        parse_config(data)


def test_quick_table_replaces_keys_and_updates_training():
    data = tiny(quick={"folds": 3, "training": {"epochs": 3}})
    data["target_images"] = 9
    full, quick = parse_config(data), parse_config(data, quick=True)
    assert (full.folds, quick.folds) == (2, 3)
    assert full.training["epochs"] == 1 and quick.training["epochs"] == 3
    assert quick.training["patch_size"] == full.training["patch_size"] == 32


def test_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ExperimentError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ExperimentError, match="no such experiment file"):
        load_config(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------------------ plan
def test_plan_shares_runs_and_orders_pretraining_first():
    data = tiny(studies={"curve": {"kind": "learning_curve", "strategies": ["finetune"]},
                         "pre": {"kind": "pretraining"}, "tr": {"kind": "transfer"},
                         "ad": {"kind": "adaptation", "models": ["source", "synthetic"]}})
    runs, by_study = plan(parse_config(data))
    ids = [r.id for r in runs]
    assert len(ids) == len(set(ids))
    # the ImageNet fine-tune arm of the pre-training and transfer studies is the learning curve's run
    shared = set(by_study["curve"]) & set(by_study["pre"]) & set(by_study["tr"])
    assert "train/imagenet/finetune/n1/f0" in shared
    position = {r.id: i for i, r in enumerate(runs)}
    for r in runs:
        for need in r.needs:
            assert position[need] < position[r.id]
    assert runs[0].action == runs[1].action == "pretrain"


def test_a_study_can_train_with_its_own_budget():
    data = tiny(studies={"curve": {"kind": "learning_curve", "strategies": ["finetune"]},
                         "long": {"kind": "learning_curve", "strategies": ["finetune"], "label_counts": [2],
                                  "training": {"steps_per_epoch": 5}}})
    runs, by_study = plan(parse_config(data))
    long = [r for r in runs if r.id in by_study["long"]]
    assert {r.id for r in long} == {"train/imagenet/finetune@steps_per_epoch=5/n2/f0",
                                    "train/imagenet/finetune@steps_per_epoch=5/n2/f1"}
    assert all(r.overrides == {"steps_per_epoch": 5} for r in long)
    assert not set(by_study["long"]) & set(by_study["curve"])
    data["studies"]["long"]["training"] = {"steps_per_epoch": 0}
    with pytest.raises(ExperimentError, match=r"\[studies.long\].*steps_per_epoch"):
        parse_config(data)


def test_folds_hold_out_every_target_image_once_and_pools_are_nested():
    cfg = parse_config(tiny(target_images=9, folds=3, label_counts=[1, 2, 5]))
    data = ExperimentData(cfg)
    held = sorted(s.name for f in range(3) for s in data.test(f))
    assert held == sorted(s.name for s in data.target)
    for f in range(3):
        test = {s.name for s in data.test(f)}
        pool = [s.name for s in data.pool(f)]
        assert not test & set(pool)
        assert [s.name for s in data.pool(f)] == pool  # the same order every time
    # the target look is elongated, the source equiaxed: the generator parameters reach the images
    assert data.target[0].image.shape == (64, 64)


def test_session_look_changes_the_image_not_the_labels():
    from napari_grainlab.core.experiment.runner import session_look

    s = ExperimentData(parse_config(tiny())).target[0]
    a, b = session_look(s, 1.0, seed=(0, 1)), session_look(s, 1.0, seed=(0, 2))
    assert a.labels is s.labels and a.image.dtype == np.float32 and 0 <= a.image.min() and a.image.max() <= 1
    assert np.abs(a.image - s.image).mean() > 0.01 and np.abs(a.image - b.image).mean() > 0.01
    assert np.array_equal(session_look(s, 1.0, seed=(0, 1)).image, a.image)  # reproducible
    assert np.allclose(session_look(s, 0.0, seed=(0, 1)).image, np.clip(s.image, 0, 1), atol=1e-6)


def test_random_split_of_augmented_tiles_leaks_and_group_split_does_not():
    cfg = parse_config(tiny())
    data = ExperimentData(cfg)
    tiles = augmented_tiles(data.pool(0)[:2], per_image=6, tile=32, seed=0)
    assert len(tiles) == 12 and all(t.image.shape == (32, 32) == t.labels.shape for t in tiles)
    assert all(t.image.dtype == np.float32 and 0 <= t.image.min() and t.image.max() <= 1 for t in tiles)
    tr, va = split_tiles(tiles, "random", 0.25, seed=0)
    assert len(va) == 3 and len(tr) == 9
    assert {t.group for t in tr} & {t.group for t in va}, "a random split puts tiles of one source on both sides"
    tr, va = split_tiles(tiles, "group", 0.5, seed=0)
    assert tr and va and not {t.group for t in tr} & {t.group for t in va}
    with pytest.raises(ExperimentError, match="do not fit"):
        augmented_tiles(data.pool(0)[:1], 2, 128, seed=0)


# ------------------------------------------------------------------------------------------ running
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "run"
    cfg = parse_config(tiny())
    events = list(run_experiment(cfg, out, device="cpu"))
    return cfg, out, events


def test_run_writes_every_planned_result(finished):
    cfg, out, events = finished
    runs, _ = plan(cfg)
    rows = load_results(out)
    assert set(rows) == {r.id for r in runs}
    done = [e for e in events if isinstance(e, RunDone)]
    assert len(done) == len(runs)
    for row in rows.values():
        if row["action"] in ("train", "eval", "leakage"):
            m = row["metrics"]
            assert 0 <= m["boundary_f1"] <= 1 and 0 <= m["grain_f1"] <= 1
        assert row["seconds"] > 0
    leak = rows["leakage/random/f0"]
    assert leak["train_tiles"] + leak["val_tiles"] == 6 and "boundary_f1" in leak["val"]
    assert 0 <= leak["test_tiles"]["boundary_f1"] <= 1
    assert "leakage/group@session/f1" in rows
    assert rows["train/imagenet/finetune/n2/f1"]["train_images"][:1] == rows["train/imagenet/finetune/n1/f1"][
        "train_images"]
    assert (out / "models" / "pretrain-source" / "model").is_dir()


def test_rerun_resumes_without_training_again(finished):
    cfg, out, _ = finished
    events = list(run_experiment(cfg, out, device="cpu"))
    started = events[0]
    assert isinstance(started, ExperimentStarted) and started.done == started.total
    assert not any(isinstance(e, RunStarted) for e in events)


def test_results_of_another_configuration_are_not_mixed(finished):
    _, out, _ = finished
    other = parse_config(tiny(seed=5))
    with pytest.raises(ExperimentError, match="different configuration"):
        list(run_experiment(other, out, device="cpu"))


def test_adding_a_study_keeps_finished_runs(finished):
    _, out, _ = finished
    data = tiny()
    data["studies"]["curve2"] = {"kind": "learning_curve", "strategies": ["finetune", "frozen"]}
    events = list(run_experiment(parse_config(data), out, device="cpu", only=["curve2"]))
    ran = {e.id for e in events if isinstance(e, RunDone)}
    assert ran == {f"train/imagenet/frozen/n{n}/f{f}" for n in (1, 2) for f in (0, 1)}  # finetune runs were kept


def test_stop_keeps_finished_runs(tmp_path):
    cfg = parse_config(tiny(studies={"curve": {"kind": "learning_curve", "strategies": ["finetune"]}}))
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return bool(load_results(tmp_path)) if (tmp_path / "results.jsonl").exists() else False

    events = list(run_experiment(cfg, tmp_path, device="cpu", stop=stop))
    assert events[-1].stopped
    assert 1 <= len(load_results(tmp_path)) < len(plan(cfg)[0])


def test_worker_processes_give_the_same_results_as_one_process(finished, tmp_path):
    cfg, out, _ = finished
    events = list(run_experiment(cfg, tmp_path, device="cpu", only=["adapt"], workers=2, threads=1))
    assert isinstance(events[-1].__class__, type) and not events[-1].stopped
    mine, ref = load_results(tmp_path), load_results(out)
    assert set(mine) == {"pretrain/source", "eval/source/none/f0", "eval/source/none/f1", "eval/source/histogram/f0",
                         "eval/source/histogram/f1"}
    assert mine["pretrain/source"]["environment"]["workers"] == 2
    # the pre-training ran first (its dependants need it); the same seeds give the same scores
    for k in mine:
        if k.startswith("eval/"):
            assert mine[k]["metrics"]["boundary_f1"] == pytest.approx(ref[k]["metrics"]["boundary_f1"], abs=0.02)
    with pytest.raises(ExperimentError, match="workers"):
        list(run_experiment(cfg, tmp_path, device="cpu", workers=0))


def test_only_runs_the_named_study_and_what_it_needs(tmp_path):
    cfg = parse_config(tiny())
    events = list(run_experiment(cfg, tmp_path, device="cpu", only=["adapt"]))
    ids = {e.id for e in events if isinstance(e, RunDone)}
    assert ids == {"pretrain/source", "eval/source/none/f0", "eval/source/none/f1", "eval/source/histogram/f0",
                   "eval/source/histogram/f1"}
    with pytest.raises(ExperimentError, match="no study named"):
        list(run_experiment(cfg, tmp_path, device="cpu", only=["nope"]))


def test_report_numbers_come_from_the_results(finished, tmp_path):
    cfg, out, _ = finished
    findings = tmp_path / "findings.md"
    findings.write_text("## What the numbers show\n\nHand-written interpretation.\n")
    report = write_report(out, tmp_path / "report.md", findings=findings, command="grainlab experiment tiny.toml")
    text = report.read_text()
    rows = load_results(out)
    vals = [rows[f"train/imagenet/finetune/n2/f{f}"]["metrics"]["boundary_f1"] for f in range(2)]
    cell = f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"
    line = next(ln for ln in text.splitlines() if ln.startswith("| ImageNet, fine-tune last stages | 2 |"))
    assert cell in line
    assert "Hand-written interpretation." in text
    for name in ("curve", "adapt", "leak"):
        png = tmp_path / "report" / f"{name}.png"
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
        assert f"(report/{name}.png)" in text
    assert "random split of augmented tiles" in text and "grainlab experiment tiny.toml" in text
    copied = [json.loads(ln) for ln in (tmp_path / "report" / "results.jsonl").read_text().splitlines()]
    assert {r["id"] for r in copied} == set(rows)
    # each row records how its images met the network's scale, and the page says it
    assert {r.get("eval_scale") for r in rows.values()} == {"labels"}
    assert "predicted at its true grain scale" in text and "--report-only" in text
    old = tmp_path / "old"  # results from before the key existed: the page must not claim the true scale
    old.mkdir()
    (old / "config.json").write_text((out / "config.json").read_text())
    (old / "results.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "eval_scale"}) + "\n"
                                               for r in rows.values()))
    older = write_report(old, tmp_path / "older.md").read_text()
    assert "automatically estimated grain scale" in older and "true grain scale" not in older


def test_report_needs_results(tmp_path):
    with pytest.raises(ExperimentError, match="no experiment results"):
        write_report(tmp_path, tmp_path / "r.md")


def test_cli_runs_and_reports(tmp_path, capsys):
    from napari_grainlab.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text("""
name = "cli"
image_size = 64
target_images = 4
source_images = 2
folds = 2
label_counts = [1]
[materials.source]
preset = "sem"
mean_diameter = 12
[materials.target]
preset = "optical"
mean_diameter = 12
[training]
patch_size = 32
batch_size = 2
epochs = 1
steps_per_epoch = 1
augment = []
[studies.curve]
kind = "learning_curve"
strategies = ["frozen"]
""")
    out = tmp_path / "out"
    rc = main(["experiment", str(cfg), "--out", str(out), "--report", str(tmp_path / "rep.md"), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "train/imagenet/frozen/n1/f1" in printed and (tmp_path / "rep.md").exists()
    stored = json.loads((out / "config.json").read_text())
    assert stored["experiment"]["name"] == "cli"
    rc = main(["experiment", str(cfg), "--report-only"])
    err = capsys.readouterr().err
    assert rc == 2 and "--report-only needs --report" in err
    rc = main(["experiment", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no such experiment file" in err
