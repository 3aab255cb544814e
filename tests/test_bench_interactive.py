"""benchmarks/bench_interactive.py: the simulated annotator with an oracle model (no network), its counts and the
JSON layout."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_grainlab.core.interactive import ClickSegmenter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_interactive", ROOT / "benchmarks" / "bench_interactive.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _maps(labels):
    """Ideal network maps of ``labels``: boundary 1 on a 2 px band, distance 1 deep inside."""
    edge = find_boundaries(labels, mode="thick")
    dist = np.zeros(labels.shape, np.float32)
    for g, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        d = ndi.distance_transform_edt(np.pad(labels[box] == g, 1))[1:-1, 1:-1]
        dist[box] = np.where(labels[box] == g, d / max(d.max(), 1), dist[box])
    return edge.astype(np.float32), dist


def _oracle(image, labels):
    boundary, distance = _maps(labels)
    return ClickSegmenter.from_maps(image, boundary, distance, labels=labels)


def _merged_pairs(labels):
    """``labels`` with grains merged with a neighbour two by two (a proposal that missed half the boundaries)."""
    lut = np.arange(labels.max() + 1)
    used = set()
    for g in range(1, labels.max() + 1):
        if g in used:
            continue
        near = np.unique(labels[ndi.binary_dilation(labels == g)])
        free = [int(n) for n in near if n not in (0, g) and n not in used]
        if free:
            lut[free[0]] = g
            used.update((g, free[0]))
    return lut[labels].astype(np.uint32), len(used) // 2


@pytest.fixture(scope="module")
def sample(bench):
    return bench.synthetic_samples(1, size=160, diameter=40.0, seed=3)[0]


def test_the_synthetic_looks_are_described(bench, sample):
    assert sample.image.shape[:2] == sample.labels.shape == (160, 160)
    assert 0.0 <= sample.image.min() and sample.image.max() <= 1.0
    lines = bench.synthetic_settings(160, 40.0)
    assert len(lines) == len(bench.SYNTH_LOOKS) and all("growth" in line for line in lines)
    assert bench.score(sample.labels, sample.labels)["reached"]


def test_model_clicks_with_an_oracle_model_reach_the_target(bench, sample):
    n_grains = len(np.unique(sample.labels)) - 1
    assert n_grains >= 8
    seg = _oracle(sample.image, sample.labels)
    boxed = bench.run_workflow("b", sample.image, sample.labels, segmenter=seg)
    assert boxed.reached and boxed.interactions == 1 and boxed.actions == {"box": 1}  # the model is right everywhere
    clicks = bench.run_workflow("b", sample.image, sample.labels, segmenter=seg, box="none")
    assert clicks.reached and clicks.start_f1 == 0.0
    assert 1 < clicks.interactions <= n_grains and set(clicks.actions) == {"click"}  # one click per grain at most
    assert clicks.boundary_f1 >= bench.TARGET_F1 and clicks.count_error <= bench.TARGET_COUNT_ERROR
    assert clicks.curve[-1][0] == clicks.interactions


def test_manual_edits_fix_a_bad_proposal_and_a_cap_stops_them(bench, sample):
    merged, pairs = _merged_pairs(sample.labels)
    assert pairs >= 3
    r = bench.run_workflow("a", sample.image, sample.labels, proposal=merged)
    assert r.start_count_error > bench.TARGET_COUNT_ERROR and r.reached  # half the grains missing
    assert 1 < r.interactions <= 1 + 2 * pairs and r.actions["propose"] == 1 and r.actions.get("split", 0) >= 1
    capped = bench.run_workflow("a", sample.image, sample.labels, proposal=merged, max_interactions=1)
    assert not capped.reached and capped.interactions == 1 and capped.boundary_f1 == pytest.approx(r.start_f1)
    # the fill cost of a paint stroke is never above the outline's
    empty = np.zeros_like(sample.labels)
    out = bench.run_workflow("a", sample.image, sample.labels, proposal=empty, paint_cost="outline")
    fill = bench.run_workflow("a", sample.image, sample.labels, proposal=empty, paint_cost="fill")
    assert fill.reached and out.reached and fill.interactions <= out.interactions
    assert fill.interactions_by_action["paint"] == fill.actions["paint"]


def test_retraining_replaces_the_segmenter(bench, sample):
    merged, _ = _merged_pairs(sample.labels)
    bad = _oracle(sample.image, merged)
    calls = []

    def retrainer(image, annotation):
        calls.append(annotation.copy())
        return _oracle(image, sample.labels)

    r = bench.run_workflow("c", sample.image, sample.labels, segmenter=bad, retrainer=retrainer, retrain_every=1,
                           box="none")
    assert r.reached and r.retrains == len(calls) >= 1
    assert calls[0].shape == sample.labels.shape and calls[0].dtype == np.uint32 and calls[0].any()
    b = bench.run_workflow("b", sample.image, sample.labels, segmenter=bad, box="none")
    assert b.retrains == 0 and r.interactions <= b.interactions


def test_json_layout_and_table(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["--synthetic", "1", "--synthetic-size", "160", "--synthetic-diameter", "40", "--seed", "3",
            "--workflows", "a,b,c", "--retrain-every", "3", "--latency-clicks", "20", "--latency-size", "128",
            "--out", str(out)]
    code = bench.main(argv, segmenter_factory=lambda s: _oracle(s.image, s.labels),
                      retrainer_factory=lambda s, seg, work: (lambda image, annotation: seg),
                      latency_segmenter=lambda size: _oracle(*(lambda x: (x.image, x.labels))(
                          bench.synthetic_samples(1, size, 32.0)[0])))
    assert code == 0
    printed = capsys.readouterr().out
    assert "synthetic look" in printed and "click latency" in printed and "x target" in printed
    r = json.loads(out.read_text())
    assert r["workflows"] == ["a", "b", "c"] and r["max_interactions"] == 200 and r["paint_cost"] == "outline"
    assert r["target"] == {"boundary_f1": 0.95, "count_error": 0.05, "iou_ok": 0.8, "tolerance_px": 2.0}
    assert len(r["synthetic"]) == len(bench.SYNTH_LOOKS)
    src = r["sources"]["synthetic"]
    assert src["n_images"] == len(src["images"]) == 1
    img = src["images"][0]
    assert img["grains_true"] >= 8 and img["shape"] == [160, 160]
    for w in ("a", "b", "c"):
        d = img["workflows"][w]
        for key in ("reached", "interactions", "boundary_f1", "count_error", "start_f1", "actions",
                    "interactions_by_action", "curve", "seconds"):
            assert key in d
        assert d["reached"] and sum(d["interactions_by_action"].values()) == d["interactions"]
        m = src["mean"][w]
        assert m["n"] == 1 and m["reached"] == 1 and m["interactions"] == d["interactions"] and not m["lower_bound"]
    assert img["workflows"]["b"]["interactions"] == 1
    lat = r["latency"]
    assert lat["shape"] == [128, 128] and lat["clicks"] == 20 and lat["target_ms"] == 50.0
    for k in ("grain_at", "add_grain"):
        assert 0 < lat[k]["median_ms"] <= lat[k]["p95_ms"]
        assert lat[k]["median_ratio"] == pytest.approx(lat[k]["median_ms"] / 50.0)


def test_a_cap_reads_not_reached_in_the_means(bench, sample):
    src = {"s": [bench.Sample("x", sample.image, sample.labels)]}
    r = bench.evaluate(src, ["a"], proposal_factory=lambda s: np.zeros_like(s.labels), max_interactions=2,
                       log=lambda *_: None)
    row = r["sources"]["s"]["images"][0]["workflows"]["a"]
    assert not row["reached"] and row["interactions"] <= 2 and row["boundary_f1"] < 0.95
    m = r["sources"]["s"]["mean"]["a"]
    assert m["reached"] == 0 and m["lower_bound"] and m["interactions"] == 2
    with pytest.raises(SystemExit):
        bench.main(["--workflows", "a"])  # nothing to annotate
    with pytest.raises(SystemExit):
        bench.main(["--synthetic", "1", "--workflows", "a,x"])


def test_retraining_sees_only_the_confirmed_grains(bench):
    truth = np.zeros((60, 60), np.uint32)
    truth[:, :30], truth[:, 30:] = 1, 2
    ann = np.zeros_like(truth)
    ann[:, :30] = 5  # right
    ann[:20, 30:] = 7  # a third of grain 2: not right yet
    got = bench.confirmed(ann, bench.Truth(truth))
    assert np.array_equal(got == 5, ann == 5) and not (got == 7).any()
    assert not bench.confirmed(np.zeros_like(truth), bench.Truth(truth)).any()


def test_one_click_scores_an_oracle_perfect_and_a_merged_model_not(bench, sample):
    labels = sample.labels.astype(np.uint32)
    perfect = bench.one_click(_oracle(sample.image, labels), labels)
    n_big = sum(int((labels == g).sum()) >= bench.ONE_CLICK_MIN_AREA for g in np.unique(labels[labels > 0]))
    assert perfect["grains"] == n_big and perfect["share_ok"] == 1.0 and perfect["median_iou"] == pytest.approx(1.0)
    merged, pairs = _merged_pairs(labels)
    worse = bench.one_click(_oracle(sample.image, merged), labels)
    # every grain of a merged pair shares its click's mask with its partner: IoU <= 1/2 for those
    assert worse["grains"] == n_big and worse["share_ok"] < 1.0 - pairs / n_big + 0.1
    assert worse["median_iou"] < 0.8


def test_uncertainty_split_tells_found_from_missed_boundaries(bench, sample):
    labels = sample.labels.astype(np.uint32)
    merged, _ = _merged_pairs(labels)
    boundary, distance = _maps(merged)
    # a model sure of the boundaries it draws and hesitant (p = 0.5) on the ones it missed
    missed = find_boundaries(labels, mode="thick") & ~find_boundaries(merged, mode="thick")
    boundary = np.where(missed, 0.5, boundary).astype(np.float32)
    seg = ClickSegmenter.from_maps(sample.image, boundary, distance, labels=merged)
    r = bench.uncertainty_split(seg, labels)
    assert r["found_px"] > 0 and r["missed_px"] > 0
    assert r["uncertainty_missed"] > r["uncertainty_found"] + 0.3
    # the oracle of the true grains misses nothing
    assert bench.uncertainty_split(_oracle(sample.image, labels), labels)["missed_px"] == 0


def test_one_click_mode_alone(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = bench.main(["--synthetic", "1", "--synthetic-size", "160", "--synthetic-diameter", "40", "--seed", "3",
                       "--workflows", "none", "--one-click", "--latency-clicks", "0", "--out", str(out)],
                      segmenter_factory=lambda s: _oracle(s.image, s.labels))
    assert code == 0
    assert "one click at the most interior pixel" in capsys.readouterr().out
    src = json.loads(out.read_text())["sources"]["synthetic"]
    assert src["images"][0]["workflows"] == {} and src["one_click"]["share_ok"] == 1.0
    assert src["one_click"]["grains"] == src["images"][0]["one_click"]["grains"] > 0
