"""Synthetic generator: geometry, rendering, parameters, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from napari_grainlab.core.synthetic import ParameterError, SynthParams, generate
from napari_grainlab.core.synthetic.power import brute_force_labels, metric_matrices, power_labels
from napari_grainlab.core.synthetic.tessellation import boundary_mask


def params(h=256, w=256, **tess) -> SynthParams:
    p = SynthParams(height=h, width=w)
    for k, v in tess.items():
        setattr(p.tessellation, k, v)
    return p


def disconnected_grains(labels: np.ndarray) -> list[int]:
    bad = []
    for r in regionprops(labels.astype(np.int64)):
        if cc_label(r.image, connectivity=1).max() != 1:
            bad.append(r.label)
    return bad


# ------------------------------------------------------------------ power diagram
@pytest.mark.parametrize("case", range(8))
def test_power_labels_match_brute_force(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(2, 80))
    seeds = rng.uniform(-20, 140, (n, 2))
    weights = rng.uniform(0, 400, n) if case % 2 else None
    metrics = metric_matrices(rng.uniform(0, np.pi, n), rng.uniform(1, 5, n)) if case >= 4 else None
    shape = (int(rng.integers(1, 130)), int(rng.integers(1, 150)))
    origin = (float(rng.uniform(-5, 5)), float(rng.uniform(-5, 5)))
    step = float(rng.choice([1.0, 0.7, 2.5]))
    fast = power_labels(shape, seeds, weights, metrics, origin, step)
    ref = brute_force_labels(shape, seeds, weights, metrics, origin, step)
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("case", range(6))
def test_power_labels_with_warp_match_brute_force(case):
    rng = np.random.default_rng(100 + case)
    n = int(rng.integers(2, 60))
    seeds = rng.uniform(-20, 240, (n, 2))
    weights = rng.uniform(0, 300, n) if case % 2 else None
    metrics = metric_matrices(rng.uniform(0, np.pi, n), rng.uniform(1, 4, n)) if case >= 3 else None
    shape = (int(rng.integers(5, 230)), int(rng.integers(5, 230)))
    gy, gx = float(rng.uniform(3, 20)), float(rng.uniform(3, 20))
    grid = (int(np.ceil((shape[0] - 1) / gy)) + 2, int(np.ceil((shape[1] - 1) / gx)) + 2)
    warp = (rng.normal(0, 4, grid), rng.normal(0, 4, grid), gy, gx)
    fast = power_labels(shape, seeds, weights, metrics, (1.0, -2.0), 1.5, warp=warp)
    ref = brute_force_labels(shape, seeds, weights, metrics, (1.0, -2.0), 1.5, warp=warp)
    np.testing.assert_array_equal(fast, ref)
    # the warp really moves boundaries
    assert (fast != power_labels(shape, seeds, weights, metrics, (1.0, -2.0), 1.5)).any()


def test_power_labels_refined_levels_match_brute_force():
    """A grid of more than 4 leaf blocks per side goes through the compiled block filter at every level."""
    rng = np.random.default_rng(7)
    n = 90
    seeds = rng.uniform(-10, 300, (n, 2))
    weights = rng.uniform(0, 600, n)
    metrics = metric_matrices(rng.uniform(0, np.pi, n), rng.uniform(1, 3, n))
    for m in (None, metrics):
        fast = power_labels((290, 300), seeds, weights, m, (0.5, -0.5), 1.0)
        np.testing.assert_array_equal(fast, brute_force_labels((290, 300), seeds, weights, m, (0.5, -0.5), 1.0))


def test_sigma_max_bounds_the_largest_singular_value():
    from napari_grainlab.core.synthetic.power import _sigma_max

    rng = np.random.default_rng(3)
    m = np.concatenate([metric_matrices(rng.uniform(0, 7, 500), rng.uniform(1, 9, 500)),
                        rng.normal(size=(500, 2, 2)), np.broadcast_to(np.eye(2), (3, 2, 2))])
    ref = np.linalg.svd(m, compute_uv=False)[:, 0]
    s = _sigma_max(m)
    assert np.all(s >= ref)
    np.testing.assert_allclose(s, ref, rtol=1e-6)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (23, 31)])
def test_boundary_line_map_counts_label_changes(periodic, shape):
    """The renderer's line map (constant weight) holds half a unit per 4-neighbour of another label, the
    wrap-around neighbours included on a periodic image; the padding mirrors the image."""
    from napari_grainlab.core.synthetic._kernels import specimen_and_lines

    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    labels = rng.integers(1, 4, shape).astype(np.uint32)
    h, w = shape
    pad = 0 if periodic else 3
    ymap = np.arange(h) if periodic else np.abs(np.arange(h + 2 * pad) - pad)
    xmap = np.arange(w) if periodic else np.abs(np.arange(w + 2 * pad) - pad)
    ymap = np.minimum(ymap, 2 * (h - 1) - ymap) if h > 1 else np.zeros_like(ymap)
    xmap = np.minimum(xmap, 2 * (w - 1) - xmap) if w > 1 else np.zeros_like(xmap)
    sp = np.zeros((len(ymap), len(xmap)), np.float32)
    ln = np.full_like(sp, np.nan)
    lut = np.linspace(0.1, 0.9, 4)
    specimen_and_lines(labels, lut, lut, np.zeros(4), np.zeros(4), np.zeros((4, 2)), np.zeros((1, 1), np.uint8),
                       False, False, 0, 0.0, 0.0, np.uint64(1), periodic, sp, ln, pad, pad, ymap, xmap)
    want = np.zeros(shape)
    for axis in (0, 1):
        for shift in (1, -1):
            nb = np.roll(labels, shift, axis=axis)
            diff = (nb != labels).astype(float)
            if not periodic:  # no neighbour across the image border
                edge = [slice(None)] * 2
                edge[axis] = 0 if shift == 1 else -1
                diff[tuple(edge)] = 0
            want += 0.5 * diff
    np.testing.assert_array_equal(ln[pad:pad + h, pad:pad + w], want)
    np.testing.assert_array_equal(ln, ln[np.ix_(ymap + pad, xmap + pad)] if not periodic else want)
    np.testing.assert_array_equal(sp, lut[labels[np.ix_(ymap, xmap)]].astype(np.float32))


# ------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("method", ["voronoi", "laguerre"])
def test_grain_count_near_requested(method):
    p = params(384, 384, method=method, grains=150)
    s = generate(p, seed=1)
    n = len(np.unique(s.labels[s.labels > 0]))
    assert abs(n - 150) <= 0.15 * 150, n
    assert s.labels.dtype == np.uint32
    assert s.labels.min() >= 1  # no pores requested: fully tiled
    # labels are contiguous 1..n
    assert s.labels.max() == n


@pytest.mark.parametrize(
    "tess",
    [
        dict(method="voronoi"),
        dict(method="laguerre", size_sigma=0.6),
        dict(method="voronoi", aspect_ratio=4.0, orientation=35.0, orientation_spread=30.0),
        dict(method="laguerre", particle_fraction=0.06, porosity=0.03, twin_fraction=0.5),
    ],
)
def test_every_grain_is_one_connected_piece(tess):
    s = generate(params(256, 256, grains=120, **tess), seed=7)
    assert disconnected_grains(s.labels) == []
    # no rasterisation slivers among the grains (second-phase particles may be small)
    tab = s.table
    assert tab["area"][tab["phase"] == "matrix"].min() >= 4


def test_periodic_grains_connected_on_torus_and_tile_seamlessly():
    p = params(192, 160, grains=60, periodic=True, method="laguerre")
    p.sem.dose = 0.0  # noise-free; every other effect on, shading and drift strong
    p.sem.read_noise = 0.0
    p.sem.charging = 0.6
    p.sem.scratches = 0.8
    p.sem.dust = 0.8
    p.sem.gradient = 0.8
    p.sem.drift = 20.0
    s = generate(p, seed=3)
    h, w = s.labels.shape
    grains = np.unique(s.labels)
    assert len(grains) >= 40
    # on the torus each grain is one piece: in a 3 x 3 tiling, the piece through any pixel
    # of the grain in the centre tile reaches (a copy of) every pixel of the grain
    tiled = np.tile(s.labels, (3, 3))
    comp = cc_label(tiled, connectivity=1, background=-1)
    for g in grains:
        ys, xs = np.nonzero(s.labels == g)
        c = comp[h + ys[0], w + xs[0]]
        cy, cx = np.nonzero(comp == c)
        reached = np.zeros((h, w), dtype=bool)
        reached[cy % h, cx % w] = True
        assert reached[ys, xs].all(), g
    # a grain touching the left edge continues at the right edge
    left, right = s.labels[:, 0], s.labels[:, -1]
    assert np.mean(left == right) > 0.5
    # no seam: intensity steps across the wrap edge are like steps inside the image
    ratios = []
    for seed in (3, 4, 5, 6):
        img = generate(p, seed=seed).image_float()
        ratios.append(np.abs(img[:, 0] - img[:, -1]).mean() / np.abs(np.diff(img, axis=1)).mean())
    assert np.mean(ratios) < 1.3, ratios


def test_periodic_copies_reach_far_enough_for_long_grains():
    from napari_grainlab.core.synthetic.tessellation import _cells, _ghost_reach

    rng = np.random.default_rng(0)
    h = w = 96
    n = 10
    d_mean = math.sqrt(4 * h * w / n / math.pi)
    reach = _ghost_reach(d_mean, 20.0, 0.0, (h, w))
    differs = 0
    for ang in np.arange(0.0, 180.0, 15.0):
        seeds = rng.uniform(0, h, (n, 2))
        mets = metric_matrices(np.full(n, math.radians(ang)), 20.0)
        got = _cells((h, w), seeds, np.zeros(n), mets, (0.0, 0.0), 1.0, (float(h), float(w)), reach=reach)
        far = _cells((h, w), seeds, np.zeros(n), mets, (0.0, 0.0), 1.0, (float(h), float(w)), reach=reach + 3)
        np.testing.assert_array_equal(got, far)
        near = _cells((h, w), seeds, np.zeros(n), mets, (0.0, 0.0), 1.0, (float(h), float(w)), reach=1)
        differs += int((near != far).any())
    assert differs > 0  # one ring of copies is not enough here


def test_lognormal_sigma_recovered():
    for sigma in (0.25, 0.45):
        p = params(640, 640, method="laguerre", grains=300, size_sigma=sigma)
        tab = generate(p, seed=11).table
        inner = ~tab["touches_border"]
        d = tab["equivalent_diameter"][inner]
        est = float(np.std(np.log(d)))
        assert abs(est - sigma) < 0.25 * sigma + 0.03, (sigma, est)
        # and the mean size matches the request
        assert abs(d.mean() - p.mean_diameter()) < 0.2 * p.mean_diameter()


def test_mean_diameter_sets_grain_size():
    p = params(512, 512, method="laguerre", grains=None, mean_diameter=40.0)
    tab = generate(p, seed=2).table
    d = tab["equivalent_diameter"][~tab["touches_border"]]
    assert 32 < d.mean() < 48


def test_aspect_ratio_elongates_grains_along_orientation():
    base = generate(params(384, 384, method="voronoi", grains=120), seed=5)
    elong = generate(params(384, 384, method="voronoi", grains=120, aspect_ratio=3.5, orientation=30.0), seed=5)

    def median_ar(labels):
        rp = [r for r in regionprops(labels.astype(np.int64)) if r.area > 50]
        return np.median([r.axis_major_length / max(r.axis_minor_length, 1e-9) for r in rp]), rp

    ar0, _ = median_ar(base.labels)
    ar1, rp = median_ar(elong.labels)
    assert ar1 > ar0 + 1.0, (ar0, ar1)
    # skimage orientation: angle between the row axis and the major axis; convert to degrees from +x, y up
    ang = np.array([np.degrees(r.orientation) + 90.0 for r in rp])
    ang = (ang + 90.0) % 180.0 - 90.0
    assert abs(np.median(ang) - 30.0) < 10.0


def test_boundary_mask_width_and_coverage():
    s = generate(params(256, 256, grains=80), seed=4)
    b1 = boundary_mask(s.labels, 1)
    b2 = boundary_mask(s.labels, 2)
    b5 = boundary_mask(s.labels, 5)
    assert b1.sum() < b2.sum() < b5.sum()
    assert (b1 <= b2).all() and (b2 <= b5).all()
    # every label change is covered by the mask
    dy = s.labels[1:] != s.labels[:-1]
    assert (b1[:-1][dy]).all()
    # width 2 marks both sides
    assert (b2[1:][dy]).all()
    assert s.boundaries.dtype == bool and s.boundaries.shape == s.labels.shape


# ------------------------------------------------------------------------ rendering
def _boundary_contrast(sample) -> float:
    img = sample.image_float()
    near = boundary_mask(sample.labels, 2)
    far = ~boundary_mask(sample.labels, 9)
    return float(img[near].mean() - img[far].mean())


@pytest.mark.parametrize("mode,sign", [("groove", -1), ("bright", 1)])
def test_boundaries_visible_in_sem(mode, sign):
    p = params(256, 256, grains=60)
    p.sem.edge_mode = mode
    p.sem.edge_strength = 0.5
    s = generate(p, seed=8)
    contrast = _boundary_contrast(s)
    assert sign * contrast > 0.03, contrast
    p.sem.edge_strength = 0.0
    off = _boundary_contrast(generate(p, seed=8))
    assert abs(off) < abs(contrast) / 3


def test_shadowing_brightens_the_side_towards_the_detector():
    def step_across_vertical_boundaries(angle, shadowing):
        p = params(256, 256, grains=50)
        for f in ("edge_strength", "intragrain", "dose", "read_noise", "scan_jitter", "drift", "line_noise",
                  "charging", "scratches", "dust", "gradient", "channelling"):
            setattr(p.sem, f, 0.0)
        p.sem.shadowing = shadowing
        p.sem.detector_angle = angle
        s = generate(p, seed=3)
        img = s.image_float()
        dx = s.labels[:, 1:] != s.labels[:, :-1]
        return float((img[:, :-1][dx] - img[:, 1:][dx]).mean())

    # detector towards +x: the wall on the left of a boundary faces it (brighter than the right)
    assert step_across_vertical_boundaries(0.0, 1.0) > 0.03
    assert step_across_vertical_boundaries(180.0, 1.0) < -0.03
    assert abs(step_across_vertical_boundaries(0.0, 0.0)) < 0.005


@pytest.mark.parametrize("drift,jitter", [(0.0, 0.0), (3.0, 0.5), (40.0, 1.5)])
def test_labels_follow_the_scan_shifts(drift, jitter):
    p = params(192, 192, grains=40)
    for f in ("dose", "read_noise", "line_noise", "charging", "scratches", "dust", "gradient", "shadowing",
              "intragrain", "edge_strength"):
        setattr(p.sem, f, 0.0)
    p.sem.blur = 0.3
    p.sem.drift = drift
    p.sem.scan_jitter = jitter
    s = generate(p, seed=3)
    img = s.image_float()
    # every label change along a row is an intensity step in the image at the same place
    steps = np.abs(np.diff(img, axis=1))
    changes = s.labels[:, 1:] != s.labels[:, :-1]
    assert steps[changes].mean() > 5 * steps[~changes].mean()
    assert disconnected_grains(s.labels) == []


def test_particles_keep_their_area_fraction_at_any_size():
    for size in (0.03, 0.1, 0.3):
        p = params(256, 256, grains=40, particle_fraction=0.08, particle_size=size)
        s = generate(p, seed=4)
        tab = s.table
        frac = np.isin(s.labels, tab["label"][tab["phase"] == "particle"]).mean()
        assert 0.06 < frac < 0.1, (size, frac)


def test_boundaries_visible_in_optical_and_missing_ones_are_invisible():
    p = params(256, 256, grains=60)
    p.style = "optical"
    p.optical.missing_fraction = 0.0
    p.optical.faint_fraction = 0.0
    assert _boundary_contrast(generate(p, seed=9)) < -0.08
    p.optical.missing_fraction = 1.0
    assert abs(_boundary_contrast(generate(p, seed=9))) < 0.02


def test_channelling_contrast_differs_between_grains():
    p = params(256, 256, grains=50)
    s = generate(p, seed=10)
    img = s.image_float()
    means = np.array([img[s.labels == g].mean() for g in range(1, 30)])
    assert means.std() > 0.05
    p.sem.channelling = 0.0
    p.sem.intragrain = 0.0
    s0 = generate(p, seed=10)
    img0 = s0.image_float()
    means0 = np.array([img0[s0.labels == g].mean() for g in range(1, 30)])
    assert means0.std() < means.std() / 3


def test_all_effects_off_gives_clean_piecewise_constant_image():
    p = params(128, 128, grains=20)
    for f in ("intragrain", "edge_strength", "shadowing", "gradient", "blur", "dose", "read_noise", "scan_jitter", "drift",
              "line_noise", "charging", "scratches", "dust", "astigmatism"):
        setattr(p.sem, f, 0.0)
    s = generate(p, seed=1)
    img = s.image_float()
    for g in range(1, 10):
        vals = img[s.labels == g]
        assert vals.max() - vals.min() <= 1.0 / 255 + 1e-6


def test_noise_scales_with_dose():
    def grain_std(dose):
        p = params(192, 192, grains=10)
        for f in ("intragrain", "edge_strength", "gradient", "read_noise", "scan_jitter", "drift", "line_noise",
                  "charging", "scratches", "dust"):
            setattr(p.sem, f, 0.0)
        p.sem.blur = 0.0
        p.sem.dose = dose
        s = generate(p, seed=2)
        img = s.image_float()
        inner = ~boundary_mask(s.labels, 5)
        return np.mean([img[(s.labels == g) & inner].std() for g in range(1, 6)])

    lo, hi = grain_std(400.0), grain_std(25.0)
    # shot noise ~ 1/sqrt(dose): 16x dose → ~4x less noise
    assert 2.5 < hi / lo < 6.0


def test_16_bit_output():
    p = params(128, 128, grains=20)
    p.bit_depth = 16
    s = generate(p, seed=0)
    assert s.image.dtype == np.uint16
    assert s.image.max() > 255
    assert 0.0 <= s.image_float().min() and s.image_float().max() <= 1.0


def test_twins_particles_and_pores():
    p = params(320, 320, grains=80, twin_fraction=0.6, particle_fraction=0.05, porosity=0.04, pore_size=0.25)
    s = generate(p, seed=12)
    tab = s.table
    assert tab["twinned"].sum() >= 10
    assert s.twins is not None and (s.twins > 0).any()
    # twin bands lie inside twinned grains
    twinned_labels = set(tab["label"][tab["twinned"]].tolist())
    assert set(np.unique(s.labels[s.twins > 0]).tolist()) <= twinned_labels
    assert (tab["phase"] == "particle").sum() >= 5
    pore_frac = float((s.labels == 0).mean())
    assert 0.02 < pore_frac < 0.07
    # pores are dark in SEM (away from their rims)
    from scipy import ndimage as ndi

    img = s.image_float()
    core = ndi.binary_erosion(s.labels == 0, iterations=2)
    assert core.sum() > 50
    assert img[core].mean() < img[s.labels > 0].mean() - 0.15


def test_table_matches_regionprops():
    p = params(200, 240, grains=40)
    p.pixel_size = 0.5
    s = generate(p, seed=6)
    tab = s.table
    rp = {r.label: r for r in regionprops(s.labels.astype(np.int64))}
    assert set(tab["label"].tolist()) == set(rp)
    big = [i for i in range(len(tab["label"])) if tab["area"][i] > 20 * 0.25][:15]
    assert len(big) == 15
    for i in big:
        r = rp[int(tab["label"][i])]
        assert tab["area"][i] == pytest.approx(r.area * 0.25)
        assert tab["equivalent_diameter"][i] == pytest.approx(r.equivalent_diameter_area * 0.5)
        assert tab["centroid_y"][i] == pytest.approx(r.centroid[0] * 0.5)
        assert tab["major_axis_length"][i] == pytest.approx(r.axis_major_length * 0.5, rel=0.02, abs=0.5)


# ------------------------------------------------------------------ determinism
def test_same_seed_byte_identical_and_different_seed_differs():
    p = params(200, 200, grains=50, twin_fraction=0.3, particle_fraction=0.02)
    a = generate(p, seed=42)
    b = generate(SynthParams.from_json(p.to_json()), seed=42)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    c = generate(p, seed=43)
    assert a.image.tobytes() != c.image.tobytes()


def test_switching_one_effect_off_keeps_the_geometry():
    p = params(160, 160, grains=30)
    a = generate(p, seed=5)
    p.sem.scratches = 0.0
    p.sem.dust = 0.0
    b = generate(p, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)


# ------------------------------------------------------------------- parameters
def test_json_round_trip(tmp_path):
    p = params(300, 200, grains=77, method="voronoi", aspect_ratio=2.0, periodic=True)
    p.style = "optical"
    p.optical.line_width = 2.5
    p.pixel_size = 0.25
    q = SynthParams.from_json(p.to_json())
    assert q == p
    path = tmp_path / "p.json"
    p.save(path)
    assert SynthParams.load(path) == p
    assert json.loads(path.read_text())["tessellation"]["grains"] == 77


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda p: setattr(p, "height", 0), "height"),
        (lambda p: setattr(p, "width", -5), "width"),
        (lambda p: setattr(p.tessellation, "grains", 0), "grains"),
        (lambda p: setattr(p.tessellation, "grains", 10_000), "do not fit"),
        (lambda p: setattr(p, "style", "tem"), "unknown value 'tem'"),
        (lambda p: setattr(p.tessellation, "method", "delaunay"), "method"),
        (lambda p: setattr(p.tessellation, "size_sigma", -0.1), "size_sigma"),
        (lambda p: setattr(p.tessellation, "mean_diameter", 0.0) or setattr(p.tessellation, "grains", None),
         "mean_diameter"),
        (lambda p: setattr(p.tessellation, "grains", None), "grains or mean_diameter"),
        (lambda p: setattr(p.sem, "blur", float("nan")), "finite"),
        (lambda p: setattr(p, "bit_depth", 12), "bit_depth"),
        (lambda p: setattr(p.sem, "edge_mode", "glow"), "edge_mode"),
        (lambda p: setattr(p, "height", 32768) or setattr(p, "width", 32768), "too large"),
    ],
)
def test_parameter_errors_are_clear(mutate, match):
    p = params(128, 128, grains=20)
    mutate(p)
    with pytest.raises(ParameterError, match=match):
        generate(p, seed=0)


def test_unknown_json_keys_and_bad_json_rejected(tmp_path):
    with pytest.raises(ParameterError, match="unknown parameter"):
        SynthParams.from_dict({"height": 64, "colour": "red"})
    with pytest.raises(ParameterError, match="unknown parameter"):
        SynthParams.from_dict({"sem": {"sparkle": 1}})
    with pytest.raises(ParameterError, match="not valid JSON"):
        SynthParams.from_json("{height: 1")
    with pytest.raises(ParameterError, match="cannot read"):
        SynthParams.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParameterError, match="not valid JSON"):
        SynthParams.load(bad)
    bad.write_text("  \n")
    with pytest.raises(ParameterError, match="empty"):
        SynthParams.load(bad)


@pytest.mark.parametrize(
    "data,match",
    [
        ({"sem": {"dose": "30"}}, "sem.dose: expected a number"),
        ({"pixel_size": "abc"}, "pixel_size: expected a number"),
        ({"sem": {"dose": [1, 2]}}, "sem.dose: expected a number"),
        ({"tessellation": {"periodic": 1}}, "periodic: expected true/false"),
        ({"height": 64.5}, "height: expected an integer"),
        ({"tessellation": {"grains": True}}, "grains: expected an integer"),
        ({"sem": {"blur": None}}, "sem.blur: a value is required"),
        ({"style": 3}, "style: expected text"),
    ],
)
def test_wrong_types_in_parameter_files_are_clear_errors(data, match):
    with pytest.raises(ParameterError, match=match):
        SynthParams.from_dict(data).validate()


def test_presets_generate():
    for name in ("sem", "sem-elongated", "sem-twins", "optical", "porous"):
        p = SynthParams.preset(name, height=96, width=96)
        p.tessellation.grains = 20
        s = generate(p, seed=0)
        assert s.image.shape == (96, 96)
    with pytest.raises(ParameterError, match="unknown preset"):
        SynthParams.preset("lunar")


def test_tiny_and_nonsquare_images():
    for h, w, g in ((8, 8, 1), (17, 300, 5), (300, 9, 3)):
        s = generate(params(h, w, grains=g), seed=1)
        assert s.image.shape == (h, w) and s.labels.shape == (h, w)
        assert s.labels.min() >= 1
        assert not math.isnan(float(s.image_float().mean()))


def test_stray_pixels_kernel_finds_pieces_outside_the_largest():
    from napari_grainlab.core.synthetic._kernels import stray_pixels

    lab = np.array(
        [
            [1, 1, 2, 2, 1],
            [1, 1, 2, 0, 0],
            [3, 2, 2, 0, 1],
            [3, 3, 1, 0, 1],
        ],
        dtype=np.uint32,
    )
    rows, cols = stray_pixels(lab, 3, False)
    got = set(zip(rows.tolist(), cols.tolist()))
    # label 1: main piece is the 2x2 block; (0,4), (2,4), (3,4) and (3,2) are strays
    # label 2: (0,2),(0,3),(1,2),(2,1),(2,2) is one piece; label 3 is one piece
    assert got == {(0, 4), (2, 4), (3, 4), (3, 2)}
    # on a torus, (0,4) touches (0,0) and (2,4)-(3,4) touch nothing of label 1 except each other
    rows, cols = stray_pixels(lab, 3, True)
    got = set(zip(rows.tolist(), cols.tolist()))
    assert (0, 4) not in got and (3, 2) in got


def test_fast_normal_draws_are_standard_normal_and_reproducible():
    from scipy import stats

    from napari_grainlab.core.synthetic._kernels import standard_normal32

    z = standard_normal32(np.random.default_rng(3), (600, 500))
    assert z.dtype == np.float32 and z.shape == (600, 500)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    # the tail (drawn by the slow path) has the right mass and shape
    tail = np.abs(z.ravel())
    tail = tail[tail > 2.5]
    assert abs(len(tail) / z.size - 2 * stats.norm.sf(2.5)) < 0.002
    sf = stats.norm.sf(2.5)
    assert stats.kstest(tail, lambda x: (sf - stats.norm.sf(x)) / sf).pvalue > 1e-3
    np.testing.assert_array_equal(z, standard_normal32(np.random.default_rng(3), (600, 500)))


def _random_params(r) -> SynthParams:
    """Parameters drawn across the whole declared ranges (bounds included)."""
    from napari_grainlab.core.synthetic import param_fields

    p = SynthParams(height=r.randint(8, 160), width=r.randint(8, 160), style=r.choice(["sem", "optical"]),
                    bit_depth=r.choice([8, 16]))
    for sec in (p.tessellation, p.sem, p.optical):
        for f in param_fields(sec):
            m = f.metadata
            if r.random() < 0.5 or f.name == "mean_diameter":
                continue
            if m.get("choices"):
                setattr(sec, f.name, r.choice(m["choices"]))
            elif isinstance(f.default, bool):
                setattr(sec, f.name, r.random() < 0.5)
            elif f.name == "grains":
                setattr(sec, f.name, r.randint(1, 60))
            elif f.name == "dose":
                setattr(sec, f.name, r.choice([0.0, 1.0, 5.0, 1e4]))
            elif isinstance(f.default, int):
                setattr(sec, f.name, r.randint(int(m["min"]), int(min(m["max"], 20))))
            else:
                setattr(sec, f.name, r.choice([m["min"], m["max"], r.uniform(m["min"], m["max"])]))
    return p


def test_random_parameters_across_the_ranges_give_valid_samples():
    import random

    r = random.Random(1)
    made = 0
    for i in range(200):
        p = _random_params(r)
        try:
            p.validate()
        except ParameterError:
            continue
        s = generate(p, seed=i)
        ids = np.unique(s.labels[s.labels > 0])
        assert s.image.shape == s.labels.shape == (p.height, p.width)
        assert len(ids) == 0 or (ids[0] == 1 and ids[-1] == len(ids)), p.to_json()
        img = s.image_float()
        assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
        assert len(s.table["label"]) == len(ids)
        made += 1
        if made == 60:
            break
    assert made == 60
