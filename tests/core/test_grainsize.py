"""core.grainsize: ASTM E112 planimetric, intercept and three-circle grain size against known answers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_grainlab.core import grainsize as gs
from napari_grainlab.core.errors import ConfigError, DataError


def square_grid(s: int = 20, n: int = 10, dtype=np.uint32) -> np.ndarray:
    """n*s x n*s px of s x s px grains, shifted by s/2 so that the field edges run through the middle of
    the edge grains: a line across the field crosses exactly n boundaries in n*s px (P_L = 1/s), and
    with the E112 corner rule the Jeffries count is exactly n² grains (N_A = 1/s²)."""
    yy, xx = np.mgrid[:n * s, :n * s]
    return (((yy + s // 2) // s) * (n + 1) + (xx + s // 2) // s + 1).astype(dtype)


def hexagons(a: float, size: int, theta0: float = 7.5) -> np.ndarray:
    """Regular hexagons of side ``a`` px (the Voronoi cells of a triangular lattice), their edges at
    ``theta0``, +60° and +120° (7.5° keeps every edge at least 7.5° from the 0/45/90/135° test lines)."""
    from scipy.spatial import cKDTree

    d = a * math.sqrt(3.0)  # distance between neighbouring hexagon centres
    phi = math.radians(theta0 - 30.0)  # lattice vector; the cell edges are perpendicular to it
    v1 = d * np.array([math.cos(phi), -math.sin(phi)])
    v2 = d * np.array([math.cos(phi + math.pi / 3), -math.sin(phi + math.pi / 3)])
    r = int(2 * size / d) + 3
    i, j = np.mgrid[-r:r + 1, -r:r + 1]
    centres = i.ravel()[:, None] * v1 + j.ravel()[:, None] * v2 + np.array([0.37, 0.21])
    rr, cc = np.mgrid[:size, :size]
    _, idx = cKDTree(centres).query(np.stack([cc.ravel(), rr.ravel()], axis=1).astype(float))
    return (np.unique(idx, return_inverse=True)[1].reshape(size, size) + 1).astype(np.int32)


def y_junction(size: int = 62) -> np.ndarray:
    """Three grains meeting at the pixel corner (30.5, 30.5), boundaries at 90°, 210° and 330° (y up)."""
    yy, xx = np.mgrid[:size, :size]
    ang = np.degrees(np.arctan2(-(yy - 30.5), xx - 30.5)) % 360
    return np.where((ang >= 90) & (ang < 210), 1, np.where((ang >= 210) & (ang < 330), 2, 3)).astype(np.int32)


# ------------------------------------------------------------------------------------------ formulas
def test_g_formulas_are_the_e112_ones():
    # E112: G = 3.321928 log10(N_A) - 2.954 (N_A per mm²); G = 6.643856 log10(P_L) - 3.288 (P_L per mm)
    assert gs.g_from_na(1.0) == pytest.approx(-2.954)
    assert gs.g_from_na(256.0) == pytest.approx(3.321928 * math.log10(256.0) - 2.954)
    assert gs.g_from_na(512.0) - gs.g_from_na(256.0) == pytest.approx(1.0, abs=1e-6)  # G + 1: twice the grains
    assert gs.g_from_pl(100.0) == pytest.approx(6.643856 * 2 - 3.288)
    assert gs.g_from_intercept(0.01) == pytest.approx(gs.g_from_pl(100.0))
    assert math.isnan(gs.g_from_na(0.0)) and math.isnan(gs.g_from_pl(-1.0)) and math.isnan(gs.g_from_pl(math.nan))


# ---------------------------------------------------------------------------------------- square grid
def test_square_grid_intercept_gives_p_l_of_one_over_s_exactly():
    lab = square_grid(s=20, n=10)
    # lines 40 px apart fall on grain rows 19.5, 59.5, ...: mid-grain, away from the 4-grain corners
    res = gs.grain_size(lab, 2.0, "intercept", directions=(0, 90), line_spacing=40)
    assert res.n_measurements == 10 and res.measurement == "line"
    assert res.intersections == 100 and res.line_length_px == pytest.approx(2000.0)
    # P_L = 1 / 20 px = 1 / 0.04 mm = 25 per mm; G = 6.643856 log10(25) - 3.288 = 5.99971
    assert res.value == pytest.approx(25.0) and res.unit == "mm^-1" and res.quantity == "P_L"
    assert res.G == pytest.approx(6.643856 * math.log10(25.0) - 3.288)
    assert res.G == pytest.approx(5.99971, abs=1e-5)
    assert res.mean_intercept == pytest.approx(0.04)  # mm
    assert res.ci95 == 0.0 and res.G_ci95 == pytest.approx((res.G, res.G))  # every line measures 1/s
    assert res.line_length_mm == pytest.approx(4.0)
    for pf in res.per_field[0]["directions"].values():
        assert pf["P_L_px"] == pytest.approx(1 / 20)


def test_square_grid_planimetric_gives_n_a_of_one_over_s_squared_exactly():
    lab = square_grid(s=20, n=10)
    res = gs.grain_size(lab, 2.0, "planimetric")
    # N_A = 1 / (0.04 mm)² = 625 per mm²; G = 3.321928 log10(625) - 2.954 = 6.33371
    assert res.value == pytest.approx(625.0) and res.unit == "mm^-2" and res.quantity == "N_A"
    assert res.G == pytest.approx(3.321928 * math.log10(625.0) - 2.954)
    assert res.G == pytest.approx(6.33371, abs=1e-5)
    assert res.grains_counted == pytest.approx(100.0)  # 81 inside + 36 / 2 on the edges + 4 / 4 corners
    assert res.n_measurements == 9 and res.measurement == "tile"
    # without the corner rule the four corner quarters count 1/2: 101 grains
    half = gs.grain_size(lab, 2.0, corner_quarter=False)
    assert half.grains_counted == pytest.approx(101.0) and half.value == pytest.approx(625.0 * 1.01)
    # the largest grain is a mean one here: G_ALA = G
    assert res.distributions["ala"]["G_ALA"] == pytest.approx(res.G)


def test_gaps_between_grains_count_as_one_crossing():
    touching = square_grid(s=20, n=10)
    yy, xx = np.mgrid[:200, :200]
    for width in (1, 3):
        gaps = touching.copy()
        for k in range(width):  # unlabelled bands of `width` px on every boundary
            gaps[(yy + 10 + k) % 20 == 0] = 0
            gaps[(xx + 10 + k) % 20 == 0] = 0
        for method, kw in (("intercept", {"line_spacing": 40}), ("circles", {}), ("planimetric", {})):
            a = gs.grain_size(touching, 1.0, method, **kw)
            b = gs.grain_size(gaps, 1.0, method, **kw)
            assert b.intersections == a.intersections or method == "planimetric", (width, method)
            assert b.value == pytest.approx(a.value), (width, method)
        assert gs.grain_size(gaps, 1.0, "intercept").intersections == \
            gs.grain_size(touching, 1.0, "intercept").intersections


def test_wide_unlabelled_regions_are_not_field():
    lab = square_grid(s=20, n=10)
    lab[50:90, 50:90] = 0  # a 40 x 40 px hole: not part of the field
    res = gs.grain_size(lab, 1.0, "intercept", directions=(0, 90), line_spacing=40)
    # the lines at 59.5 (one per direction) lose 40 px and the 3 boundaries at 49.5, 69.5 and 89.5 (the
    # hole's edges are no grain boundaries)
    assert res.line_length_px == pytest.approx(2000.0 - 2 * 40)
    assert res.intersections == 100 - 2 * 3
    assert gs.grain_size(lab, 1.0).per_field[0]["field_area_px"] == 200 * 200 - 40 * 40


# ------------------------------------------------------------------------------------------- hexagons
@pytest.fixture(scope="module")
def hex_tiling():
    return hexagons(a=16.0, size=480)


def test_hexagons_planimetric_and_intercept_match_stereology(hex_tiling):
    a = 16.0
    area = 1.5 * math.sqrt(3.0) * a * a  # regular hexagon of side a
    plan = gs.grain_size(hex_tiling, None, "planimetric")
    assert math.isnan(plan.G) and plan.unit == "px^-2"  # no pixel size: values in px, no G
    assert plan.value == pytest.approx(1.0 / area, rel=0.01)  # measured: -0.26 %
    # isotropic mean intercept of a 2-D tessellation: l = pi A / (perimeter) = pi (3√3/2 a²) / (6a)
    mean_intercept = math.pi * area / (6.0 * a)
    assert mean_intercept == pytest.approx(math.pi * math.sqrt(3.0) * a / 4.0)
    # the 4 test directions sample the 60°-periodic P_L(direction) at 4 angles: for these hexagons their
    # mean differs from the isotropic one by 0.3 %; the pixel grid adds a little: 3 % allowed
    line = gs.grain_size(hex_tiling, None, "intercept")
    assert line.mean_intercept == pytest.approx(mean_intercept, rel=0.03)  # measured: -0.34 %
    assert line.n_measurements > 40 and line.relative_accuracy < 5
    circ = gs.grain_size(hex_tiling, None, "circles", circle_grid=3)
    assert 1.0 / circ.value == pytest.approx(mean_intercept, rel=0.05)  # measured: +1 %
    assert circ.n_measurements == 9
    # with a pixel size the G of the two methods are those of their values
    both = gs.grain_size(hex_tiling, 1.0, "intercept")
    assert both.G == pytest.approx(gs.g_from_pl(line.value * 1000.0))


def test_hexagons_are_isotropic_within_the_digital_error(hex_tiling):
    res = gs.grain_size(hex_tiling, None, "intercept")
    a = 16.0
    area = 1.5 * math.sqrt(3.0) * a * a
    edges = (7.5, 67.5, 127.5)
    for direction, d in res.per_field[0]["directions"].items():
        # P_L along one direction: boundary length per area of each edge family x |sin| of its angle
        expected = a / area * sum(abs(math.sin(math.radians(float(direction) - e))) for e in edges)
        # measured: -0.8 % (0°), +0.7 % (45°), -1.7 % (90°), +2.9 % (135°); docs/measure.md says within 3 %
        assert d["P_L_px"] == pytest.approx(expected, rel=0.035), direction


# -------------------------------------------------------------------------------------- counting rules
def test_a_line_through_a_triple_point_counts_one_and_a_half():
    lab = y_junction()
    one = dict(directions=(0,), line_count=1)  # one horizontal line, through the middle of the image
    through = gs.grain_size(lab, None, "intercept", **one)
    assert through.intersections == 1.5
    assert gs.test_pattern(lab.shape, "intercept", one)["lines"][0, 0, 0] == 30.5  # the junction's row
    # beside the junction a line crosses one boundary (above: the one at 90°) or two (below): 1.5 on average
    above = gs.grain_size(lab[:41], None, "intercept", **one)  # line at row 20, 10.5 px above the junction
    below = gs.grain_size(lab[21:], None, "intercept", **one)  # line at row 41, 10.5 px below
    assert (above.intersections, below.intersections) == (1.0, 2.0)
    # within triple_point_radius of the junction it still counts as through it
    assert gs.grain_size(lab[1:], None, "intercept", **one).intersections == 1.5  # 0.5 px off
    assert gs.grain_size(lab[3:], None, "intercept", triple_point_radius=0.5, **one).intersections in (1.0, 2.0)


def test_a_four_grain_junction_counts_two():
    lab = square_grid(s=20, n=4)  # corners at 9.5 + 20 k
    # a 45° line from corner to corner of the image passes through the 4-grain corners (29.5, 49.5) etc.
    res = gs.grain_size(lab, None, "intercept", directions=(135,), line_count=1)
    assert res.per_field[0]["lines"] == 1
    # 4 junctions on the diagonal, each 2: what a line just beside a corner crosses (two boundaries)
    assert res.intersections == 8.0


# ---------------------------------------------------------------------------------------- statistics
def test_confidence_interval_by_hand():
    # x = 10, 12, 11, 13, 9: mean 11, deviations -1, 1, 0, 2, -2, sum of squares 10, s² = 10 / 4 = 2.5,
    # s = 1.581139; t(0.975, 4) = 2.776445; CI = 2.776445 x 1.581139 / √5 = 2.776445 x 0.707107 = 1.963243;
    # %RA = 100 x 1.963243 / 11 = 17.848 %
    st = gs.field_statistics([10, 12, 11, 13, 9])
    assert st["n"] == 5 and st["mean"] == 11.0
    assert st["std"] == pytest.approx(1.581139, abs=1e-6)
    assert st["t"] == pytest.approx(2.776445, abs=1e-6)
    assert st["ci95"] == pytest.approx(1.963243, abs=1e-6)
    assert st["relative_accuracy"] == pytest.approx(17.848, abs=1e-3)
    assert st["ci_reason"] is None


def test_an_interval_reaching_zero_has_no_g_interval_and_says_why():
    """Two fields of very different grain density: t(0.975, 1) = 12.7 makes the N_A interval reach below 0,
    where G is not defined; the result says so instead of leaving the interval silently blank."""
    dense = square_grid(10, 20)  # 400 grains in 200 x 200 px
    coarse = np.ones((200, 200), np.uint32)  # one grain
    res = gs.grain_size([dense, coarse], 1.0, tiles=1)
    assert res.n_measurements == 2 and math.isfinite(res.ci95) and res.value - res.ci95 <= 0
    assert math.isnan(res.G_ci95[0]) and math.isfinite(res.G_ci95[1])
    assert "reaches 0" in res.ci_reason and "N_A" in res.ci_reason
    ok = gs.grain_size([square_grid(10, 20), square_grid(10, 20), square_grid(11, 18)], 1.0, tiles=1)  # similar
    assert ok.ci_reason is None and all(math.isfinite(v) for v in ok.G_ci95)
    unknown = gs.grain_size([dense, coarse], None, tiles=1)  # no pixel size: no G at all, nothing to explain
    assert unknown.ci_reason is None


def test_one_measurement_has_no_interval_and_says_why():
    st = gs.field_statistics([4.0])
    assert st["mean"] == 4.0 and math.isnan(st["ci95"]) and "one measurement" in st["ci_reason"]
    res = gs.grain_size(square_grid(), 1.0, tiles=1)
    assert res.n_measurements == 1 and math.isnan(res.ci95) and "one measurement" in res.ci_reason
    assert math.isfinite(res.G) and all(math.isnan(v) for v in res.G_ci95)
    d = res.to_dict()
    assert d["ci95"] is None and d["G_ci95"] == [None, None]


def test_several_images_are_fields_of_the_statistics():
    # five square grids of 16..24 px grains: N_A = 1/s² exactly in each, so the field values are known
    sizes = (16, 18, 20, 22, 24)
    fields = [square_grid(s=s, n=10) for s in sizes]
    res = gs.grain_size(fields, 1.0, "planimetric")
    values = [1e6 / s**2 for s in sizes]  # per mm² with 1 µm pixels
    assert [pf["value"] for pf in res.per_field] == pytest.approx(values)
    st = gs.field_statistics(values)
    assert res.measurement == "field" and res.n_measurements == 5
    assert res.value == pytest.approx(np.mean(values))
    assert res.ci95 == pytest.approx(st["ci95"]) and res.relative_accuracy == pytest.approx(st["relative_accuracy"])
    assert res.G == pytest.approx(gs.g_from_na(np.mean(values)))
    assert res.G_ci95 == pytest.approx((gs.g_from_na(res.value - res.ci95), gs.g_from_na(res.value + res.ci95)))
    assert res.G_ci95[0] < res.G < res.G_ci95[1]
    # each field also has its own G and interval over its sub-fields
    assert [pf["G"] for pf in res.per_field] == pytest.approx([gs.g_from_na(v) for v in values])
    assert all(pf["n_measurements"] == 9 for pf in res.per_field)


# -------------------------------------------------------------------------------------------- twins
def twinned_grid():
    """4 x 4 grains of 30 px, each with a twin band in its bottom 8 rows (a grain of its own in the labels);
    the mask marks both rows along each twin boundary."""
    yy, xx = np.mgrid[:120, :120]
    parents = ((yy // 30) * 4 + xx // 30 + 1).astype(np.int32)
    band = (yy % 30) >= 22
    labels = np.where(band, parents + 100, parents).astype(np.int32)
    mask = ((yy % 30) == 21) | ((yy % 30) == 22)
    return parents, labels, mask


def test_merge_twins_gives_the_parent_grains_back():
    parents, labels, mask = twinned_grid()
    merged = gs.merge_twins(labels, mask)
    np.testing.assert_array_equal(merged, parents)  # each band takes the label of its (larger) parent
    assert merged.dtype == labels.dtype
    np.testing.assert_array_equal(gs.merge_twins(labels, np.zeros_like(mask)), labels)  # no twins: unchanged
    # twin boundaries: 16 x 30 px; grain boundaries: 3 x 120 vertical + 3 x 120 horizontal = 720 px
    assert gs.twin_boundary_fraction(labels, mask) == pytest.approx(480 / 1200)


def test_g_with_and_without_twins():
    parents, labels, mask = twinned_grid()
    res = gs.grain_size(labels, 1.0, "planimetric", twin_boundaries=mask)
    assert res.twins["G_twins_excluded"] == pytest.approx(gs.grain_size(parents, 1.0).G)
    assert res.twins["G_twins_counted"] == pytest.approx(gs.grain_size(labels, 1.0).G)
    assert res.twins["G_twins_counted"] > res.twins["G_twins_excluded"] + 0.5  # about twice the grains
    assert res.G == res.twins["G_twins_excluded"]  # E112 practice: twins are no grains
    assert res.twins["twin_boundary_fraction"] == pytest.approx(0.4)
    counted = gs.grain_size(labels, 1.0, "intercept", twin_boundaries=mask, twins="count")
    assert counted.G == counted.twins["G_twins_counted"] > counted.twins["G_twins_excluded"]


# ------------------------------------------------------------------------------------ distributions
def test_distribution_fit_and_duplex_flag():
    rng = np.random.default_rng(0)
    one = rng.lognormal(mean=5.0, sigma=0.4, size=400)
    d = gs.distribution_summary(one)
    assert d["lognormal_mu"] == pytest.approx(5.0, abs=0.06) and d["lognormal_sigma"] == pytest.approx(0.4, abs=0.04)
    assert d["duplex"] is False and d["bimodality_coefficient"] < gs.BIMODALITY_THRESHOLD
    assert sum(d["counts"]) == 400 and len(d["edges"]) == len(d["counts"]) + 1
    assert np.allclose(np.diff(np.log10(d["edges"])), 0.1)  # 10 bins per decade
    two = np.concatenate([one, rng.lognormal(mean=8.0, sigma=0.3, size=150)])  # a coarse second population
    d2 = gs.distribution_summary(two)
    assert d2["duplex"] is True and d2["bimodality_coefficient"] > gs.BIMODALITY_THRESHOLD
    assert gs.distribution_summary(one[:10])["duplex"] is None  # too few grains for a flag


def test_result_has_distributions_and_is_json_safe(hex_tiling):
    res = gs.grain_size(hex_tiling, 0.5, "intercept")
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN would raise
    assert "NaN" not in text
    dist = d["distributions"]
    assert dist["grain_area"]["unit"] == "um^2" and dist["intercept_length"]["unit"] == "um"
    assert dist["intercept_length"]["n"] > 100
    assert dist["ala"]["G_ALA"] < d["G"] + 1  # the largest grain is about as large as the others here
    assert d["settings"]["directions"] == [0.0, 45.0, 90.0, 135.0]
    assert set(d) >= {"method", "settings", "per_field", "G", "G_ci95", "ci95", "relative_accuracy",
                      "intersections", "line_length_mm", "grains_counted", "n_measurements", "unit"}


# ------------------------------------------------------------------------------------------- pattern
def test_test_pattern_is_what_is_measured():
    lab = square_grid(s=20, n=10)
    lines = gs.test_pattern(lab.shape, "intercept", {"line_spacing": 40})
    res = gs.grain_size(lab, 1.0, "intercept", line_spacing=40)
    assert lines["lines"].shape == (res.per_field[0]["lines"], 2, 2)
    assert set(lines["directions"].tolist()) == {0.0, 45.0, 90.0, 135.0}
    assert np.all((lines["lines"] >= -0.5 - 1e-9) & (lines["lines"] <= 199.5 + 1e-9))
    auto = gs.test_pattern(lab.shape, "intercept", labels=lab)  # auto spacing: 1.5 x √(mean grain area)
    assert auto["line_spacing"] == pytest.approx(30.0)
    assert gs.grain_size(lab, 1.0, "intercept").per_field[0]["line_spacing_px"] == pytest.approx(30.0)
    with pytest.raises(ConfigError, match="needs the label image"):
        gs.test_pattern(lab.shape, "intercept")
    circles = gs.test_pattern(lab.shape, "circles", {"circle_grid": 2})
    assert circles["circles"].shape == (12, 3)
    r = circles["circles"][:, 2]
    np.testing.assert_allclose(r[:3] / r[0], [1.0, 2 / 3, 1 / 3])  # circumferences 3 : 2 : 1
    assert gs.test_pattern(lab.shape, "planimetric")["rectangles"].shape == (9, 2, 2)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("labels, pixel_size, match", [
    (np.ones((2, 3, 4), np.int32), 1.0, "must be 2-D"),
    (np.ones((8, 8), np.float32), 1.0, "must be integers"),
    (np.zeros((0, 8), np.int32), 1.0, "empty"),
    (np.zeros((8, 8), np.int32), 1.0, "no grains"),
    (np.ones((8, 8), np.int32), -1.0, "pixel size must be a positive number"),
    (np.ones((8, 8), np.int32), math.nan, "pixel size must be a positive number"),
    (np.full((8, 8), -1, np.int32), 1.0, ">= 0"),
    ([], 1.0, "no label images"),
])
def test_bad_input_is_a_one_line_data_error(labels, pixel_size, match):
    with pytest.raises(DataError, match=match) as info:
        gs.grain_size(labels, pixel_size, "intercept")
    assert "\n" not in str(info.value)


def test_bad_settings_are_config_errors():
    lab = square_grid()
    with pytest.raises(ConfigError, match="method"):
        gs.grain_size(lab, 1.0, "jeffries")
    with pytest.raises(ConfigError, match="unknown grain-size setting 'spacing'"):
        gs.grain_size(lab, 1.0, "intercept", spacing=10)
    with pytest.raises(ConfigError, match="line_spacing"):
        gs.grain_size(lab, 1.0, "intercept", line_spacing=0.0)
    with pytest.raises(DataError, match="do not fit"):
        gs.grain_size(lab, 1.0, "circles", circle_radius=80.0)
    with pytest.raises(DataError, match="label image 2: labels hold no grains"):
        gs.grain_size([lab, np.zeros_like(lab)], 1.0)
    with pytest.raises(DataError, match="no pixel size"):
        gs.grain_size([lab, lab], [1.0, None])
