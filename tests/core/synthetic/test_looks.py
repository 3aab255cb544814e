"""Colour looks (tint, polarised light, EBSD), the new SEM looks and their randomisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_grainlab.core.synthetic import SynthParams, generate, write_dataset
from napari_grainlab.core.synthetic.params import COLOUR_STYLES, PRESETS
from napari_grainlab.core.synthetic.randomize import DomainRandomizer
from napari_grainlab.core.synthetic.tessellation import boundary_mask


def _params(style_or_preset: str, size: int = 128, grains: int = 25, method: str = "voronoi") -> SynthParams:
    p = SynthParams.preset(style_or_preset, height=size, width=size)
    p.tessellation.method = method
    p.tessellation.grains = grains
    return p


def _interior(labels: np.ndarray, margin: int = 4) -> np.ndarray:
    return ~boundary_mask(labels, 2 * margin)


@pytest.mark.parametrize("style", COLOUR_STYLES)
def test_colour_looks_are_rgb_with_grain_contrast_above_the_in_grain_spread(style):
    p = _params(style)
    s = generate(p, 1)
    assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
    assert p.channels == 3 and p.look == style
    img = s.image_float()
    lab = s.labels
    inner = _interior(lab)
    ids = [g for g in np.unique(lab) if (inner & (lab == g)).sum() > 30]
    means = np.array([img[inner & (lab == g)].mean(axis=0) for g in ids])
    within = np.mean([np.linalg.norm(img[inner & (lab == g)] - m, axis=1).mean() for g, m in zip(ids, means)])
    # colour distance between neighbouring-in-list grains vs pixel spread inside a grain
    between = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=-1)[np.triu_indices(len(ids), 1)].mean()
    assert between > 2.0 * within, (between, within)
    assert np.ptp(means, axis=0).max() > 0.2  # really coloured: channels differ grain to grain
    assert not np.allclose(img[..., 0], img[..., 1], atol=0.02)  # not grey


@pytest.mark.parametrize("style,section,name", [("tint", "tint", "stain_gradient"), ("tint", "tint", "line_strength"),
                                                ("polarized", "polarized", "gradient"),
                                                ("ebsd", "ebsd", "unindexed"), ("ebsd", "ebsd", "band_contrast"),
                                                ("sem", "sem", "gap_width")])
def test_off_switches(style, section, name):
    """Strength 0 is off: same image as with the effect never asked for; a strength changes it."""
    p = _params(style, size=96, grains=15)
    sec = getattr(p, section)
    setattr(sec, name, 0.0)
    off = generate(p, 2).image
    setattr(sec, name, 0.5 if name != "gap_width" else 3.0)
    on = generate(p, 2).image
    assert not np.array_equal(on, off)
    # the other effects keep their random streams: switching this one off again gives the same image
    setattr(sec, name, 0.0)
    np.testing.assert_array_equal(generate(p, 2).image, off)


def test_tint_line_off_means_no_dark_boundary_line():
    p = _params("tint", size=160, grains=30)
    p.tint.stain_gradient = p.tint.mottling = p.tint.noise = p.tint.gradient = p.tint.scratches = 0.0
    s = generate(p, 3)
    lum = s.image_float().mean(axis=-1)
    bnd = boundary_mask(s.labels, 2)
    assert lum[bnd].mean() > lum[_interior(s.labels)].mean() - 0.03
    p.tint.line_strength = 0.8
    lum2 = generate(p, 3).image_float().mean(axis=-1)
    assert lum2[bnd].mean() < lum[bnd].mean() - 0.1


def test_bse_has_no_boundary_line_and_strong_grain_contrast():
    p = _params("bse", size=160, grains=30)
    s = generate(p, 4)
    assert p.look == "sem-bse" and s.image.ndim == 2
    img = s.image_float()
    bnd = boundary_mask(s.micro.labels, 2)
    inner = _interior(s.micro.labels)
    # a blurred step is the average of its two sides: boundaries are not darker than interiors
    assert img[bnd].mean() > img[inner].mean() - 0.02
    means = np.array([img[inner & (s.labels == g)].mean() for g in np.unique(s.labels)
                      if (inner & (s.labels == g)).sum() > 30])
    assert means.std() > 0.1
    # the SE detector with a groove at the same settings does draw a dark line
    p.sem.detector, p.sem.edge_mode, p.sem.edge_strength = "se", "groove", 0.6
    se = generate(p, 4).image_float()
    assert se[bnd].mean() < img[bnd].mean() - 0.05


def test_film_gaps_are_dark_and_widen_with_gap_width():
    p = _params("film", size=160, grains=30)
    p.sem.dose = 0.0
    s = generate(p, 5)
    assert p.look == "sem-film"
    img = s.image_float()
    bnd = boundary_mask(s.micro.labels, 2)
    inner = _interior(s.micro.labels, 5)
    assert img[bnd].mean() < 0.6 * img[inner].mean()
    p.sem.gap_width = 8.0
    wide = generate(p, 5).image_float()
    ring = boundary_mask(s.micro.labels, 6) & ~bnd
    assert wide[ring].mean() < img[ring].mean() - 0.05


def test_halo_edges_are_bright_ridges_with_a_dark_surrounding():
    p = _params("sem-halo", size=160, grains=30)
    p.sem.dose = 0.0
    p.sem.read_noise = p.sem.shadowing = p.sem.channelling = p.sem.gradient = p.sem.scratches = p.sem.dust = 0.0
    p.sem.charging = p.sem.scan_jitter = p.sem.drift = 0.0
    s = generate(p, 6)
    img = s.image_float()
    bnd = boundary_mask(s.labels, 2)
    halo = boundary_mask(s.labels, 8) & ~boundary_mask(s.labels, 4)
    inner = _interior(s.labels, 8)
    assert img[bnd].mean() > img[inner].mean() + 0.1
    assert img[halo].mean() < img[inner].mean() - 0.01


def test_every_preset_validates_and_records_its_look():
    for name in PRESETS:
        p = SynthParams.preset(name)
        p.validate()
        assert SynthParams.from_json(p.to_json()) == p
    assert {SynthParams.preset(n).look for n in PRESETS} >= {"sem", "sem-bse", "sem-film", "sem-halo", "optical",
                                                            "tint", "polarized", "ebsd"}


def test_colour_dataset_is_written_as_rgb_with_its_look(tmp_path):
    import tifffile

    p = _params("tint", size=64, grains=8)
    list(write_dataset(tmp_path / "ds", p, count=2, seed=0))
    img = tifffile.imread(tmp_path / "ds" / "images" / "synth_0000.tif")
    with tifffile.TiffFile(tmp_path / "ds" / "images" / "synth_0000.tif") as tf:
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, generate(p, json.loads((tmp_path / "ds" / "dataset.json").read_text())
                                                ["items"][0]["seed"]).image)
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["look"] == "tint" and meta["channels"] == 3
    lab = tifffile.imread(tmp_path / "ds" / "labels" / "synth_0000.tif")
    assert lab.shape == (64, 64)


def test_cli_synth_writes_rgb_files(tmp_path, capsys):
    import tifffile

    from napari_grainlab.cli import main

    assert main(["synth", str(tmp_path / "out"), "--count", "1", "--size", "64", "--grains", "8", "--style", "ebsd",
                 "--method", "growth", "--workers", "1", "--no-progress"]) == 0
    img = tifffile.imread(tmp_path / "out" / "images" / "synth_0000.tif")
    assert img.shape == (64, 64, 3)
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["look"] == "ebsd"


def test_randomizer_gives_colour_and_grey_samples_with_exact_labels():
    dr = DomainRandomizer(grains=(8.0, 20.0))
    rng = np.random.default_rng(3)
    shapes = []
    for _ in range(14):
        img, lab = dr.sample(rng, 64)
        assert img.shape[:2] == lab.shape == (64, 64) and img.dtype == np.float32 and lab.dtype == np.uint32
        assert img.ndim == 2 or img.shape[-1] == 3
        assert np.isfinite(img).all() and 0.0 <= img.min() and img.max() <= 1.0
        assert lab.max() >= 2 and np.array_equal(np.unique(lab[lab > 0]), np.arange(1, lab.max() + 1))
        shapes.append(img.ndim)
    assert 2 in shapes and 3 in shapes


def test_randomizer_draws_new_looks_methods_and_diameter_range():
    dr = DomainRandomizer()
    rng = np.random.default_rng(0)
    draws = [dr.params(rng, 512) for _ in range(400)]
    styles = [p.style for p in draws]
    colour = sum(s in COLOUR_STYLES for s in styles) / len(styles)
    assert 0.38 < colour < 0.62  # half of the draws; a third of them become grey in sample()
    assert {"tint", "polarized", "ebsd", "sem", "optical"} == set(styles)
    looks = {p.look for p in draws}
    assert {"sem-bse", "sem-film", "sem-halo"} <= looks
    methods = [p.tessellation.method for p in draws]
    assert 0.15 < methods.count("growth") / len(methods) < 0.45
    diam = np.array([p.tessellation.mean_diameter for p in draws])
    assert diam.min() < 10.0 and diam.max() > 120.0 and diam.max() <= 150.0
