"""Grain-growth tessellation (Monte-Carlo Potts coarsening)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate
from napari_grainlab.core.synthetic._growth_kernels import potts_coarsen
from napari_grainlab.core.synthetic.params import ParameterError
from napari_grainlab.core.synthetic.render import EffectRNG
from napari_grainlab.core.synthetic.tessellation import tessellate


def _micro(method="growth", size=192, grains=60, periodic=True, seed=0, **kw):
    p = SynthParams(height=size, width=size, tessellation=TessellationParams(method=method, grains=grains,
                                                                            periodic=periodic, **kw))
    p.validate()
    return p, tessellate(p, EffectRNG(seed)("tessellation"))


def test_potts_coarsens_with_more_sweeps():
    rng = np.random.default_rng(0)
    from scipy.spatial import cKDTree

    h = w = 96
    seeds = rng.uniform(0, h, (400, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    _, idx = cKDTree(seeds, boxsize=(h, w)).query(np.column_stack([yy.ravel() + 0.5, xx.ravel() + 0.5]))
    spins = idx.reshape(h, w).astype(np.int32)
    area = np.bincount(spins.ravel(), minlength=400).astype(np.int64)
    orient = rng.random(400)
    counts = [int((area > 0).sum())]
    for _ in range(3):
        sweeps, left = potts_coarsen(spins, area, orient, 0, 15, 0.9, 0.0, True, 7)
        assert sweeps == 15
        assert left == int((np.bincount(spins.ravel(), minlength=400) > 0).sum())
        np.testing.assert_array_equal(area, np.bincount(spins.ravel(), minlength=400))
        counts.append(left)
    mean_area = [h * w / c for c in counts]
    assert all(b > a for a, b in zip(mean_area, mean_area[1:])), mean_area
    assert mean_area[-1] > 1.5 * mean_area[0]


def test_labels_are_connected_instances_covering_the_image_and_the_count_is_met():
    for periodic in (True, False):
        p, m = _micro(periodic=periodic, size=160, grains=50)
        lab = m.labels
        assert lab.dtype == np.uint32 and lab.min() >= 1  # every pixel belongs to a grain
        ids = np.unique(lab)
        np.testing.assert_array_equal(ids, np.arange(1, lab.max() + 1))
        from scipy import ndimage as ndi

        for g in ids[:: max(1, len(ids) // 15)]:
            if not periodic:  # (ndi.label does not wrap around a torus)
                assert ndi.label(lab == g)[1] == 1
        assert 0.7 * 50 <= len(ids) <= 1.35 * 50, len(ids)
        assert len(m.crystal) == len(m.phase) == lab.max() + 1


def test_same_seed_same_structure():
    a = _micro(seed=3, size=96, grains=20)[1].labels
    b = _micro(seed=3, size=96, grains=20)[1].labels
    c = _micro(seed=4, size=96, grains=20)[1].labels
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _junction_angles(labels: np.ndarray, r0: float = 3.0, r1: float = 7.0) -> np.ndarray:
    """Angles (deg) of the grains at triple junctions: the share of an annulus around the junction
    each of the three grains takes, times 360 (periodic labels)."""
    h, w = labels.shape
    a, b = labels, np.roll(labels, -1, 1)
    c, d = np.roll(labels, -1, 0), np.roll(np.roll(labels, -1, 0), -1, 1)
    distinct = 1 + (b != a) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c))
    jy, jx = np.nonzero(distinct >= 3)
    rr = np.arange(-int(r1) - 1, int(r1) + 2)
    oy, ox = np.meshgrid(rr, rr, indexing="ij")
    dist = np.hypot(oy - 0.5, ox - 0.5)  # the junction sits at the corner between the 4 pixels
    ring = (dist >= r0) & (dist <= r1)
    oy, ox = oy[ring], ox[ring]
    out = []
    taken = np.zeros((h, w), dtype=bool)
    for y, x in zip(jy, jx):
        if taken[max(0, y - 6):y + 7, max(0, x - 6):x + 7].any():
            continue  # one measurement per junction
        taken[y, x] = True
        vals = labels[(y + oy) % h, (x + ox) % w]
        u, cnt = np.unique(vals, return_counts=True)
        if len(u) != 3:
            continue  # quadruple points or two junctions close together
        out.extend(360.0 * cnt / cnt.sum())
    return np.array(out)


@pytest.mark.parametrize("resolution", [16.0, 10.0])  # the default and the domain randomiser's coarsest
def test_triple_junctions_are_near_120_degrees_unlike_voronoi(resolution):
    _, grown = _micro(size=256, grains=40, seed=1, growth_resolution=resolution)
    _, vor = _micro(method="voronoi", size=256, grains=40, seed=1, curvature=0.0)
    ag, av = _junction_angles(grown.labels), _junction_angles(vor.labels)
    assert len(ag) > 60 and len(av) > 60
    assert abs(ag.mean() - 120.0) < 5.0
    # Voronoi junction angles spread widely (60-180 deg); grain growth relaxes them towards 120
    assert ag.std() < 0.8 * av.std(), (ag.std(), av.std())
    assert np.mean(np.abs(ag - 120.0) < 30.0) > 0.7


@pytest.mark.parametrize("resolution", [16.0, 10.0])
def test_size_distribution_spread_and_mean_diameter(resolution):
    p, m = _micro(size=320, grains=120, seed=2, growth_resolution=resolution)
    area = np.bincount(m.labels.ravel())[1:].astype(float)
    d = np.sqrt(4 * area / math.pi)
    cv = d.std() / d.mean()
    assert 0.2 < cv < 0.6, cv  # normal grain growth: about 0.3-0.4
    skew = ((area - area.mean()) ** 3).mean() / area.std() ** 3
    assert skew > 0.3  # long tail of large grains (lognormal-like)
    assert abs(d.mean() - p.mean_diameter()) / p.mean_diameter() < 0.25


def test_twins_particles_and_pores_work_on_grown_grains():
    p = SynthParams.preset("growth", height=160, width=160)
    p.tessellation.grains = 30
    p.tessellation.particle_fraction = 0.02
    p.tessellation.porosity = 0.01
    s = generate(p, 5)
    assert s.micro.twins is not None and s.micro.twinned.any()
    assert (s.labels == 0).any() and (s.micro.phase == 2).any()
    assert s.image.shape == (160, 160)


def test_growth_parameters_are_validated():
    p = SynthParams(tessellation=TessellationParams(method="growth", growth_temperature=-1.0))
    with pytest.raises(ParameterError, match="growth_temperature"):
        p.validate()


def _edge_and_centre_share(labels: np.ndarray, band: int = 16) -> tuple[float, float]:
    """Share of horizontal boundary segments (label changes between rows) near the left / right edges and in
    a centre strip of the same total width: boundaries bent towards the free lattice border meet it at right
    angles, which raises the edge share."""
    dx = labels[:, 1:] != labels[:, :-1]
    dy = labels[1:, :] != labels[:-1, :]
    w = labels.shape[1]
    c0 = w // 2 - band
    e, ex = dy[:, :band].sum() + dy[:, -band:].sum(), dx[:, :band].sum() + dx[:, -band:].sum()
    c, cx = dy[:, c0:c0 + 2 * band].sum(), dx[:, c0:c0 + 2 * band].sum()
    return e / (e + ex), c / (c + cx)


def test_the_lattice_margin_keeps_the_free_border_out_of_the_image():
    """The free border of the Potts lattice bends boundaries to meet it at right angles; the margin keeps that
    out of the image: near the image's vertical edges boundaries run in the same directions as in its centre,
    and the grain count is the one requested."""
    from napari_grainlab.core.synthetic.growth import grow_labels

    rng = np.random.default_rng(3)
    d, size, n = 24.0, 192, 24
    wanted = int(size * size / (math.pi / 4 * d * d * 1.13))
    edge, centre, counts = [], [], []
    for _ in range(n):
        lab, _, _ = grow_labels(rng, (size, size), wanted, d, coarsening=2.6, temperature=0.9, resolution=12)
        a, b = _edge_and_centre_share(lab)
        edge.append(a)
        centre.append(b)
        counts.append(len(np.unique(lab)))
    assert abs(np.mean(edge) - np.mean(centre)) < 0.04, (np.mean(edge), np.mean(centre))
    assert 0.8 * wanted <= np.median(counts) <= 1.25 * wanted, (np.median(counts), wanted)
