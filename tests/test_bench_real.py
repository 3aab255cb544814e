"""benchmarks/bench_real.py: scoring, JSON layout and the perfect-prediction limit on a synthetic folder."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainlab.core.synthetic import SynthParams, generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real", ROOT / "benchmarks" / "bench_real.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("realdata")
    for source, seeds in (("synth_a", (1, 2)), ("synth_b", (3,))):
        (root / source / "images").mkdir(parents=True)
        (root / source / "labels").mkdir(parents=True)
        for seed in seeds:
            p = SynthParams()
            p.width = p.height = 160
            s = generate(p, seed=seed)
            tifffile.imwrite(root / source / "images" / f"im{seed}.tif", s.image)
            tifffile.imwrite(root / source / "labels" / f"im{seed}.tif", s.labels.astype(np.uint16))
    (root / "notes").mkdir()  # a folder without images/labels is not a source
    return root


def test_classical_json_structure_and_ranges(bench, data, tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(data), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["methods"] == ["classical"] and r["tolerance_px"] == 2.0
    assert sorted(r["sources"]) == ["synth_a", "synth_b"]
    assert r["sources"]["synth_a"]["n_images"] == 2
    for src in r["sources"].values():
        m = src["methods"]["classical"]
        assert m["n_images"] == len(m["images"]) == src["n_images"]
        assert 0.0 <= m["boundary_f1"] <= 1.0
        assert m["count_ratio"] > 0 and math.isfinite(m["delta_g"]) and m["abs_delta_g"] >= abs(m["delta_g"]) - 1e-9
        for row in m["images"]:
            assert 0.0 <= row["boundary_f1"] <= 1.0 and row["grains_true"] > 0
        # the per-source value is the mean of the per-image values
        assert m["boundary_f1"] == pytest.approx(np.mean([row["boundary_f1"] for row in m["images"]]))


def test_perfect_prediction_scores_one_and_zero(bench, data, monkeypatch):
    truth = {}
    for folder in bench.find_sources(data):
        for s in bench.load_source(folder):
            truth[s.image.tobytes()] = s.labels
    monkeypatch.setattr(bench, "classical", lambda image: (truth[image.tobytes()], "grey"))
    r = bench.evaluate(data, log=lambda *_: None)
    for src in r["sources"].values():
        m = src["methods"]["classical"]
        assert m["boundary_f1"] == 1.0 and m["delta_g"] == 0.0 and m["count_ratio"] == 1.0


def test_merged_prediction_is_penalised(bench, data):
    s = bench.load_source(bench.find_sources(data)[0])[0]
    merged = np.where(s.labels > 0, 1, 0).astype(np.uint16)  # one grain everywhere
    sc = bench.score_image(merged, s.labels)
    assert sc["boundary_f1"] < 0.5 and sc["delta_g"] < -1 and sc["count_ratio"] < 0.2
    # unlabelled pixels (0) are not scored: blanking part of the truth keeps a perfect score perfect
    true = s.labels.copy()
    true[:, :40] = 0
    sc = bench.score_image(s.labels, true)
    assert sc["boundary_f1"] == 1.0 and sc["delta_g"] == pytest.approx(0.0, abs=0.2)


def test_max_images_and_errors(bench, data, tmp_path):
    r = bench.evaluate(data, max_images=1, log=lambda *_: None)
    assert r["sources"]["synth_a"]["n_images"] == 1
    with pytest.raises(SystemExit):
        bench.find_sources(tmp_path / "missing")
    with pytest.raises(SystemExit):
        bench.main(["--data", str(data), "--few-shot", "1"])  # few-shot without a model
    with pytest.raises(SystemExit):
        bench.resolve_model(str(tmp_path / "no_such_model"))


def test_labels_diameter_oracle_passes_each_images_own_scale(bench, data, monkeypatch):
    """``--diameter labels[xK]`` gives prediction K x the image's labelled median diameter; rows record both."""
    import types

    import napari_grainlab.core.inference as inference
    import napari_grainlab.core.models.checkpoint as checkpoint
    from napari_grainlab.core.data.targets import mean_grain_diameter
    from napari_grainlab.core.inference._result import ScaleInfo

    seen = []

    def fake_predict(model, meta, image, **kw):
        seen.append(kw.get("diameter"))
        return types.SimpleNamespace(labels=np.ones(image.shape[:2], np.uint32),
                                     scaling=ScaleInfo(kw.get("diameter"), "given", 32.0, 1.0, ""))

    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: (None, {}))
    monkeypatch.setattr(inference, "predict_array", fake_predict)
    samples = bench.load_source(bench.find_sources(data)[0])
    for spec, k in (("labels", 1.0), ("labelsx1.5", 1.5)):
        seen.clear()
        method = bench.ModelMethod("m", data, spec)
        _, rows = bench.run_method(method, samples)
        want = [mean_grain_diameter(s.labels) * k for s in samples]
        assert seen == pytest.approx(want)
        assert [r["diameter_used"] for r in rows] == pytest.approx(want)
        assert [r["diameter_labels"] * k for r in rows] == pytest.approx(want)
    for bad in ("labelsx0", "labelsxq", "labelz"):
        with pytest.raises(SystemExit):
            bench.main(["--data", str(data), "--model", "generalist", "--diameter", bad])
