"""Domain randomisation of the synthetic training data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from napari_grainlab.core.synthetic import OpticalParams, ParameterError, SEMParams, SynthParams, generate
from napari_grainlab.core.synthetic.randomize import DomainRandomizer, jpeg_quantize, percentile_stretch
from napari_grainlab.core.synthetic.tessellation import boundary_mask


def _draws(dr: DomainRandomizer, n: int, size=96, seed=0) -> list[SynthParams]:
    rng = np.random.default_rng(seed)
    return [dr.params(rng, size) for _ in range(n)]


def test_same_seed_same_sample_and_different_seed_differs():
    dr = DomainRandomizer()
    a = dr.sample(np.random.default_rng(7), 96)
    b = dr.sample(np.random.default_rng(7), 96)
    c = dr.sample(np.random.default_rng(8), 96)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()


@pytest.mark.parametrize("size", [64, (80, 112)])
def test_sample_shapes_types_and_range(size):
    dr = DomainRandomizer()
    rng = np.random.default_rng(1)
    shape = (size, size) if isinstance(size, int) else size
    for _ in range(6):
        img, lab = dr.sample(rng, size)
        assert img.shape[:2] == lab.shape == shape and img.ndim in (2, 3)  # grey or (H, W, 3) colour looks
        assert img.dtype == np.float32 and lab.dtype == np.uint32
        assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
        assert img.max() - img.min() > 0.5  # percentile-stretched
        assert len(np.unique(lab[lab > 0])) >= 2


def test_draws_cover_the_look_range_and_all_validate():
    dr = DomainRandomizer()
    draws = _draws(dr, 800)
    for p in draws:
        p.validate()
        assert SynthParams.from_json(p.to_json()) == p
    sem = [p.sem for p in draws if p.style == "sem"]
    opt = [p.optical for p in draws if p.style == "optical"]
    # SEM 0.3 and optical 0.2 of the draws (the rest are colour looks, tests/core/synthetic/test_looks.py)
    assert 180 < len(sem) < 300 and 110 < len(opt) < 210
    groove_less = [s for s in sem if s.edge_strength == 0.0 and s.shadowing == 0.0]
    assert 10 < len(groove_less) < len(sem) / 2
    assert min(s.channelling for s in groove_less) >= 0.15  # grains still differ: an intensity step
    assert {s.edge_mode for s in sem} == {"bright", "groove", "mixed", "halo"}
    assert any(s.edge_missing > 0.3 for s in sem) and any(s.edge_variation > 0.8 for s in sem)
    assert min(s.dose for s in sem) < 10 and max(s.dose for s in sem) > 300
    assert max(s.charging for s in sem) > 0.4 and max(s.scratches for s in sem) > 0.5
    assert any(o.line_strength == 0.0 for o in opt) and any(o.missing_fraction > 0.25 for o in opt)
    tess = [p.tessellation for p in draws]
    assert {t.method for t in tess} == {"voronoi", "laguerre", "growth"}
    assert any(t.aspect_ratio > 3 for t in tess) and sum(t.aspect_ratio == 1.0 for t in tess) > len(tess) / 2
    assert any(t.twin_fraction > 0 for t in tess) and any(t.porosity > 0 for t in tess)
    diam = np.array([t.mean_diameter for t in tess])
    assert diam.min() >= 8.0 and diam.max() <= 48.0  # at most half of the 96 px patch
    # a mix of mild and wild samples: some stay close to the default look
    dev = np.array([abs(s.edge_width - SEMParams().edge_width) for s in sem])
    assert (dev < 0.2).sum() > 10 and (dev > 1.0).sum() > 10


def test_strength_zero_keeps_the_default_look():
    dr = DomainRandomizer(strength=0.0, grains=(20, 30))
    for p in _draws(dr, 30):
        assert p.sem == SEMParams() and p.optical == OpticalParams()
        t = p.tessellation
        assert t.aspect_ratio == 1.0 and t.twin_fraction == 0.0 and t.method == "laguerre"
        assert 20 <= t.mean_diameter <= 30
    img = np.linspace(0.2, 0.6, 64 * 64, dtype=np.float32).reshape(64, 64)
    out = dr.postprocess(img, np.random.default_rng(0))
    np.testing.assert_allclose(out, percentile_stretch(img), atol=1e-6)


def test_postprocess_inversion_flips_polarity_and_nothing_else():
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    kw = dict(jpeg_prob=1.0, sharpen_prob=1.0)
    plain = DomainRandomizer(invert_prob=0.0, **kw).postprocess(img, np.random.default_rng(3))
    inv = DomainRandomizer(invert_prob=1.0, **kw).postprocess(img, np.random.default_rng(3))
    np.testing.assert_allclose(inv, 1.0 - plain, atol=1e-5)
    assert np.corrcoef(plain.ravel(), img.ravel())[0, 1] > 0.8


def test_inverted_images_among_samples():
    def bright_boundary_fraction(invert_prob):
        dr = DomainRandomizer(styles=("optical",), groove_less_prob=0.0, invert_prob=invert_prob, grains=(14, 24))
        rng = np.random.default_rng(5)
        signs = []
        for _ in range(24):
            img, lab = dr.sample(rng, 96)
            near, far = boundary_mask(lab, 2), ~boundary_mask(lab, 7)
            signs.append(img[near].mean() > img[far].mean())
        return np.mean(signs)

    assert bright_boundary_fraction(0.0) < 0.15  # etched optical lines are dark
    assert 0.25 < bright_boundary_fraction(0.5) < 0.8


def test_sem_edge_missing_removes_the_edges_but_not_the_grain_steps():
    def contrast(missing):
        p = SynthParams(height=192, width=192)
        p.tessellation.grains = 40
        for f in ("dose", "read_noise", "scratches", "dust", "charging", "gradient", "line_noise", "shadowing"):
            setattr(p.sem, f, 0.0)
        p.sem.edge_mode, p.sem.edge_strength, p.sem.edge_missing = "bright", 0.6, missing
        s = generate(p, seed=2)
        img = s.image_float()
        near, far = boundary_mask(s.labels, 2), ~boundary_mask(s.labels, 7)
        return float(img[near].mean() - img[far].mean())

    full, half, none = contrast(0.0), contrast(0.5), contrast(1.0)
    assert full > 0.05
    assert none < full / 5
    assert none < half < full


def test_jpeg_quantize_blocks_and_quality():
    img = np.random.default_rng(0).random((37, 50)).astype(np.float32)
    err = {q: float(np.abs(jpeg_quantize(img, q) - img).mean()) for q in (10, 50, 100)}
    assert err[100] < 0.01 < err[50] < err[10]
    out = jpeg_quantize(img, 20)
    assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    with pytest.raises(ValueError, match="quality"):
        jpeg_quantize(img, 0)


def test_percentile_stretch():
    assert not percentile_stretch(np.full((8, 8), 0.3)).any()
    img = np.arange(1000, dtype=np.float32).reshape(10, 100)
    out = percentile_stretch(img, 1.0, 99.0)
    assert out.min() == 0.0 and out.max() == 1.0
    assert abs(out[5, 0] - (500 - 9.99) / (989.01 - 9.99)) < 1e-5


@pytest.mark.parametrize("kwargs,match", [
    (dict(styles=("tem",)), "styles"),
    (dict(styles=()), "styles"),
    (dict(strength=1.5), "strength"),
    (dict(invert_prob=-0.1), "invert_prob"),
    (dict(grains=(50, 10)), "grains"),
    (dict(grains=(1, 10)), "grains"),
    (dict(grains="big"), "grains"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        DomainRandomizer(**kwargs)


def test_bad_size_is_named():
    with pytest.raises(ParameterError, match="size"):
        DomainRandomizer().params(np.random.default_rng(0), 8)
    with pytest.raises(ParameterError, match="size"):
        DomainRandomizer().params(np.random.default_rng(0), "large")


def test_picklable_for_data_loader_workers():
    dr = DomainRandomizer(styles=("sem",), strength=0.7, grains=(12, 40))
    back = pickle.loads(pickle.dumps(dr))
    assert back == dr
    a, b = dr.sample(np.random.default_rng(2), 64), back.sample(np.random.default_rng(2), 64)
    assert a[0].tobytes() == b[0].tobytes()
