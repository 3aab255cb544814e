"""Colour looks of a :class:`Microstructure`: tint (colour) etching, polarised light on an anodised
surface and an EBSD inverse-pole-figure map.  Each returns float32 ``(H, W, 3)`` RGB in [0, 1].

Every grain gets a random crystal orientation (a rotation, from its own random stream, so the
colours do not change when an effect is switched off); the look turns it into a colour:

* **tint**: an interference film (colour etchants such as Klemm's or Beraha's grow a film whose
  thickness depends on the grain orientation); the reflectance of a film of optical thickness
  ``t`` at wavelength ``lambda`` is ``0.5 - 0.5 cos(4 pi t / lambda)`` for red, green and blue, which
  gives the brown, yellow, purple and blue of tint-etched steels, brasses and cast irons;
* **polarized**: the anodic film of Barker-etched aluminium is birefringent with its optic axis
  tied to the grain; between crossed polars a grain transmits ``sin^2(2 phi) sin^2(pi G / lambda)``
  (``phi`` the in-plane axis angle to the polariser, ``G`` the retardation, growing with the axis
  tilt); a sensitive-tint plate adds 550 nm of retardation, which colours the grains magenta, blue
  and yellow (approximated by adding or subtracting the grain retardation along the plate axis);
* **ebsd**: the sample normal in crystal coordinates, reduced to the cubic standard triangle and
  coloured red [001], green [101], blue [111]; band contrast dips at boundaries, noisy and
  unindexed pixels.

Boundaries show only as the change of colour unless a faint line is asked for (strength > 0).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .params import EBSDParams, PolarizedParams, TintParams
from .render import EffectRNG, _draw_scratches, _shading
from .tessellation import PHASE_PARTICLE, Microstructure, boundary_mask

__all__ = ["render_tint", "render_polarized", "render_ebsd", "random_rotations", "ipf_colours"]

#: wavelengths (nm) standing for the red, green and blue channels
_WAVELENGTHS = np.array([610.0, 550.0, 465.0])


# ----------------------------------------------------------------------- helpers
def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly random rotation matrices (n, 3, 3) from random unit quaternions."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def ipf_colours(directions: np.ndarray) -> np.ndarray:
    """Cubic IPF colours (n, 3) of crystal directions (n, 3): red [001], green [101], blue [111]."""
    d = np.sort(np.abs(directions), axis=1)  # x <= y <= z: the standard triangle
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    rgb = np.stack([z - y, y - x, x], axis=1)
    rgb /= np.maximum(rgb.max(axis=1, keepdims=True), 1e-9)
    return np.sqrt(rgb)  # the usual brighter IPF key


def _rotation_of_labels(micro: Microstructure, rngs: EffectRNG) -> tuple[np.ndarray, np.ndarray]:
    """Orientation matrices of every label and of its twin bands (a different, random one)."""
    n1 = len(micro.phase)
    r = rngs("orientation")
    rot = random_rotations(r, n1)
    twin = random_rotations(r, n1)
    return rot, twin


def _grain_map(micro: Microstructure, lut: np.ndarray, lut_twin: np.ndarray | None) -> np.ndarray:
    """Per-pixel values (H, W, C) from per-label ``lut`` (n + 1, C); twin bands from ``lut_twin``."""
    out = lut[micro.labels]
    if lut_twin is not None and micro.twins is not None:
        band = micro.twins > 0
        out[band] = lut_twin[micro.labels[band]]
    return out


def _line_map(micro: Microstructure, sigma: float) -> np.ndarray:
    """Boundary line density blurred to a ridge of height ~1 and Gaussian width ``sigma`` (float32)."""
    one = boundary_mask(micro.labels, 2, micro.periodic).astype(np.float32)
    mode = "wrap" if micro.periodic else "nearest"
    ridge = ndi.gaussian_filter(one, max(sigma, 0.3), mode=mode)
    ridge *= np.float32(math.sqrt(2 * math.pi) * max(sigma, 0.3) / 2.0)
    np.clip(ridge, 0.0, 1.0, out=ridge)
    return ridge


def _mix(lut: np.ndarray, strength: float, base: np.ndarray) -> np.ndarray:
    """``base + strength * (lut - base)``: twins or grains pulled towards the parent colour."""
    return base + strength * (lut - base)


def _finish(img: np.ndarray, micro: Microstructure, rngs: EffectRNG, *, line_strength: float, line_width: float,
            gradient: float, blur: float, noise: float, scratches: float) -> np.ndarray:
    """Shared optical finish: faint boundary line, scratches, blur, illumination, camera noise."""
    h, w = micro.labels.shape
    periodic = micro.periodic
    if line_strength > 0:
        img *= (1.0 - np.float32(line_strength) * _line_map(micro, line_width))[..., None]
    if scratches > 0:
        field = np.zeros((h, w), dtype=np.float32)
        _draw_scratches(rngs("scratches"), field, scratches, 0.5, periodic)
        img *= (1.0 + field)[..., None]
    if blur > 0:
        img = ndi.gaussian_filter(img, (blur, blur, 0), mode="wrap" if periodic else "nearest")
    if gradient > 0:
        gy, gx = _shading(rngs("gradient"), h, w, gradient, vignette=1.0, periodic=periodic)
        img *= (1.0 + gy[:, None] + gx[None, :])[..., None]
    if noise > 0:
        img += np.float32(noise) * rngs("noise").standard_normal(img.shape, dtype=np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    return img.astype(np.float32, copy=False)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: float, periodic: bool) -> np.ndarray:
    """Smooth random field of unit standard deviation, correlation length ~ ``min(h, w) / cells``."""
    gh, gw = max(2, int(round(h / max(h, w) * cells))), max(2, int(round(w / max(h, w) * cells)))
    coarse = rng.standard_normal((gh, gw))
    f = ndi.zoom(coarse, (h / gh, w / gw), order=3, mode="grid-wrap" if periodic else "nearest", grid_mode=True)
    f = f[:h, :w]
    if f.shape != (h, w):
        f = np.pad(f, ((0, h - f.shape[0]), (0, w - f.shape[1])), mode="edge")
    f -= f.mean()
    return (f / max(f.std(), 1e-9)).astype(np.float32)


# -------------------------------------------------------------------------- tint
def _film_colour(thickness: np.ndarray) -> np.ndarray:
    """Interference colour (..., 3) of a film of optical thickness ``thickness`` (nm)."""
    return 0.5 - 0.5 * np.cos(4.0 * math.pi * thickness[..., None] / _WAVELENGTHS.astype(np.float32))


def render_tint(micro: Microstructure, p: TintParams, rngs: EffectRNG) -> np.ndarray:
    """Colour (tint) etched micrograph, float32 (H, W, 3) in [0, 1]."""
    h, w = micro.labels.shape
    d = max(micro.mean_diameter, 4.0)
    rot, twin_rot = _rotation_of_labels(micro, rngs)
    # film growth rate from the surface normal in crystal coordinates: fastest near {111}, slowest {001}
    nrm = np.sort(np.abs(rot[:, 2, :]), axis=1)
    rate = (nrm[:, 0] * math.sqrt(3.0))  # 0 at [001] .. 1 at [111]
    twin_nrm = np.sort(np.abs(twin_rot[:, 2, :]), axis=1)
    twin_rate = twin_nrm[:, 0] * math.sqrt(3.0)
    t0 = 80.0 + 420.0 * p.film_thickness  # nm of optical thickness
    span = 350.0 * p.thickness_spread
    lut = (t0 + span * (rate - 0.5))[:, None]
    lut_twin = _mix(t0 + span * (twin_rate - 0.5), p.twin_contrast, lut[:, 0])[:, None]
    part = micro.phase == PHASE_PARTICLE
    lut[part, 0] = 40.0  # carbides / inclusions stay unstained: pale
    lut[0, 0] = 0.0
    thick = _grain_map(micro, lut.astype(np.float32), lut_twin.astype(np.float32))[..., 0]
    if p.stain_gradient > 0:
        thick += np.float32(120.0 * p.stain_gradient) * _smooth_field(rngs("stain_gradient"), h, w, 3.0,
                                                                        micro.periodic)
    if p.mottling > 0:
        cells = max(4.0, 4.0 * max(h, w) / d)
        thick += np.float32(25.0 * p.mottling) * _smooth_field(rngs("mottling"), h, w, cells, micro.periodic)
    np.maximum(thick, 0.0, out=thick)
    rgb = _film_colour(thick).astype(np.float32)
    grey = rgb.mean(axis=-1, keepdims=True)
    rgb = grey + np.float32(p.saturation) * (rgb - grey)
    img = np.float32(p.brightness) * (np.float32(0.15) + np.float32(0.85) * rgb)
    img[micro.labels == 0] = np.float32(0.05 * p.brightness)  # pores: dark
    return _finish(img, micro, rngs, line_strength=p.line_strength, line_width=p.line_width, gradient=p.gradient,
                   blur=p.blur, noise=p.noise, scratches=p.scratches)


# --------------------------------------------------------------------- polarized
def _polarized_lut(rot: np.ndarray, p: PolarizedParams) -> np.ndarray:
    """Transmitted RGB per label (n + 1, 3)."""
    c = rot[:, :, 2]  # optic axis (crystal z) in sample coordinates
    phi = np.arctan2(c[:, 1], c[:, 0]) - math.radians(p.polarizer_angle)
    tilt2 = 1.0 - c[:, 2] ** 2  # sin^2 of the axis tilt out of the viewing direction
    gamma = 300.0 * p.retardation * tilt2  # nm
    lam = _WAVELENGTHS[None, :]
    crossed = (np.sin(2 * phi) ** 2)[:, None] * np.sin(math.pi * gamma[:, None] / lam) ** 2
    plate = 550.0 + gamma * np.cos(2 * phi - math.pi / 2)  # adds along the plate's slow axis, else subtracts
    tinted = np.sin(math.pi * plate[:, None] / lam) ** 2
    tp = p.tint_plate
    return (1.0 - tp) * crossed + tp * tinted


def render_polarized(micro: Microstructure, p: PolarizedParams, rngs: EffectRNG) -> np.ndarray:
    """Anodised aluminium in polarised light, float32 (H, W, 3) in [0, 1]."""
    rot, twin_rot = _rotation_of_labels(micro, rngs)
    lut = _polarized_lut(rot, p)
    lut_twin = _mix(_polarized_lut(twin_rot, p), p.twin_contrast, lut)
    part = micro.phase == PHASE_PARTICLE
    lut[part] = 0.08  # intermetallics: opaque
    lut[0] = 0.02
    lut = p.ambient + (1.0 - p.ambient) * lut
    img = np.float32(p.brightness) * _grain_map(micro, lut.astype(np.float32), lut_twin.astype(np.float32))
    return _finish(img, micro, rngs, line_strength=p.line_strength, line_width=p.line_width, gradient=p.gradient,
                   blur=p.blur, noise=p.noise, scratches=p.scratches)


# -------------------------------------------------------------------------- ebsd
def render_ebsd(micro: Microstructure, p: EBSDParams, rngs: EffectRNG) -> np.ndarray:
    """EBSD IPF-Z map, float32 (H, W, 3) in [0, 1]."""
    h, w = micro.labels.shape
    d = max(micro.mean_diameter, 4.0)
    rot, twin_rot = _rotation_of_labels(micro, rngs)
    base = rot[:, 2, :]  # sample normal in crystal coordinates
    lut = ipf_colours(base)
    lut_twin = _mix(ipf_colours(twin_rot[:, 2, :]), p.twin_contrast, lut)
    part = micro.phase == PHASE_PARTICLE
    lut[part] = ipf_colours(random_rotations(rngs("particles"), int(part.sum()))[:, 2, :]) if part.any() else 0.0
    lut[0] = 0.0
    img = _grain_map(micro, lut.astype(np.float32), lut_twin.astype(np.float32))
    if p.intragrain > 0:
        # lattice rotation gradients inside grains: a linear colour ramp per grain
        r = rngs("intragrain")
        g = p.intragrain / d
        n1 = len(micro.phase)
        ra = (g * r.standard_normal((n1, 3))).astype(np.float32)
        rb = (g * r.standard_normal((n1, 3))).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        lab = micro.labels
        cy = micro.center[:, 0].astype(np.float32)[lab]
        cx = micro.center[:, 1].astype(np.float32)[lab]
        img += ra[lab] * (yy - cy)[..., None] + rb[lab] * (xx - cx)[..., None]
    if p.orientation_noise > 0:
        img += np.float32(p.orientation_noise) * rngs("orientation_noise").standard_normal(img.shape,
                                                                                            dtype=np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    grey = img.mean(axis=-1, keepdims=True)
    img = grey + np.float32(p.saturation) * (img - grey)
    quality = np.ones((h, w), dtype=np.float32)
    line = _line_map(micro, p.band_width) if (p.band_contrast > 0 or p.unindexed > 0) else None
    if p.band_contrast > 0:
        quality -= np.float32(p.band_contrast) * line
    if p.band_noise > 0:
        quality *= 1.0 - np.float32(p.band_noise) * rngs("band_noise").random((h, w), dtype=np.float32)
    img *= quality[..., None]
    if p.unindexed > 0:
        # unindexed points: isolated pixels, most of them where patterns overlap (boundaries)
        prob = np.float32(p.unindexed) * (np.float32(0.35) + np.float32(2.5) * line)
        miss = rngs("unindexed").random((h, w), dtype=np.float32) < prob
        img[miss] = 0.0
    img[micro.labels == 0] = 0.0  # pores do not index
    np.clip(img, 0.0, 1.0, out=img)
    return img.astype(np.float32, copy=False)
