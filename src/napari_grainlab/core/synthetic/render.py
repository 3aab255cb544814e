"""Rendering of a :class:`Microstructure` as an SEM or etched light-optical micrograph.

Everything linear (grain intensities, boundary profiles, probe blur with astigmatism and the
line-by-line scan jitter) is applied in one Fourier pass: the specimen and the boundary
line map are transformed once, multiplied by the analytic transfer functions, and the
per-line sub-pixel shifts of the scan are phase ramps applied between the two halves of
the inverse transform.  Non-linear effects (shading, charging, shot and read noise) follow
in image space.  Each effect draws from its own random stream, so switching one effect off
leaves every other one unchanged.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np
import scipy.fft as sfft

from ..errors import ParameterError
from ._kernels import combine_spectra, finish, specimen_and_lines, standard_normal32
from .params import OpticalParams, SEMParams
from .tessellation import PHASE_PARTICLE, Microstructure

__all__ = ["render_sem", "render_optical", "quantize", "EffectRNG", "gap_profile"]

_SQRT2PI = math.sqrt(2.0 * math.pi)


class EffectRNG:
    """Independent, reproducible random streams per named effect."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def __call__(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])


# ----------------------------------------------------------------------- helpers
def _freqs(hp: int, wp: int) -> tuple[np.ndarray, np.ndarray]:
    fy = sfft.fftfreq(hp).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(wp).astype(np.float32)[None, :]
    return fy, fx


def _gauss_tf(fy, fx, sy: float, sx: float, angle_deg: float = 0.0) -> np.ndarray:
    """Transfer function of a unit-area Gaussian with sigmas (along, across) rotated by angle."""
    if sy <= 0 and sx <= 0:
        return np.ones(np.broadcast_shapes(fy.shape, fx.shape), dtype=np.float32)
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    # covariance in (y, x); the 'along' axis points at angle t from +x (y down)
    ay, ax = -s, c
    cyy = sy * sy * ay * ay + sx * sx * ax * ax
    cxx = sy * sy * ax * ax + sx * sx * ay * ay
    cxy = (sy * sy - sx * sx) * ay * ax
    q = cyy * fy * fy + cxx * fx * fx + 2.0 * cxy * fy * fx
    return np.exp(np.float32(-2.0 * math.pi**2) * q).astype(np.float32, copy=False)


def _line_profile_tf(fy, fx, sigma: float, amplitude: float) -> np.ndarray:
    """Transfer function turning a unit line density into a Gaussian ridge of peak ``amplitude``."""
    f2 = fy * fy + fx * fx
    return np.float32(amplitude * _SQRT2PI * sigma) * np.exp(np.float32(-2.0 * math.pi**2 * sigma * sigma) * f2)


def _scan_shifts(rng: np.random.Generator, h: int, jitter: float, drift: float) -> np.ndarray | None:
    if jitter <= 0 and drift <= 0:
        return None
    shifts = np.zeros(h, dtype=np.float64)
    if drift > 0:
        # slow drift: a smooth random curve of amplitude ~drift over the frame
        knots = rng.standard_normal(5).cumsum()
        knots -= knots.mean()
        knots *= drift / max(1e-9, np.abs(knots).max())
        shifts += np.interp(np.linspace(0, 4, h), np.arange(5), knots)
    if jitter > 0:
        # line-to-line jitter with a little memory (mains hum + stage vibration)
        white = rng.standard_normal(h)
        a = 0.5
        col = np.empty(h)
        acc = 0.0
        for i in range(h):
            acc = a * acc + white[i]
            col[i] = acc
        col *= jitter * math.sqrt(1 - a * a)
        shifts += col
    return shifts.astype(np.float32)


def _draw_scratches(rng, img: np.ndarray, strength: float, mean_level: float, periodic: bool = False) -> None:
    """Polishing scratches: long, thin, mostly parallel lines across grains (wrapping around
    the edges of a periodic image)."""
    from skimage.draw import line_aa

    h, w = img.shape
    n = rng.poisson(strength * 8)
    if n == 0:
        return
    main = rng.uniform(0, math.pi)
    diag = math.hypot(h, w)
    for _ in range(n):
        ang = main + rng.normal(0, 0.15)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        length = diag * rng.uniform(0.3, 1.2)
        dy, dx = math.sin(ang) * length / 2, math.cos(ang) * length / 2
        rr, cc, val = line_aa(int(cy - dy), int(cx - dx), int(cy + dy), int(cx + dx))
        if periodic:
            rr, cc = rr % h, cc % w
        else:
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            rr, cc, val = rr[ok], cc[ok], val[ok]
        val = val.astype(np.float32)
        amp = strength * rng.uniform(0.08, 0.35) * (1 if rng.random() < 0.4 else -1)
        np.add.at(img, (rr, cc), amp * val)
        if rng.random() < 0.3 and len(rr):  # a wider scratch: a second, parallel line
            r2 = (rr + 1) % h if periodic else np.clip(rr + 1, 0, h - 1)
            np.add.at(img, (r2, cc), 0.6 * amp * val)


def _draw_dust(rng, img: np.ndarray, strength: float, bright: float, dark: float, size: float,
               periodic: bool = False) -> None:
    from skimage.draw import ellipse

    h, w = img.shape
    n = rng.poisson(strength * 10 * h * w / 512**2)
    for _ in range(n):
        r = size * math.exp(rng.normal(0, 0.6))
        rr, cc = ellipse(rng.uniform(0, h), rng.uniform(0, w), max(0.8, r * rng.uniform(0.6, 1.4)),
                         max(0.8, r * rng.uniform(0.6, 1.4)), shape=None if periodic else (h, w),
                         rotation=rng.uniform(0, math.pi))
        img[rr % h, cc % w] = bright if rng.random() < 0.6 else dark
    if rng.random() < strength * 0.6:
        # contamination frame left by an earlier scan at higher magnification
        fh, fw = int(h * rng.uniform(0.15, 0.4)), int(w * rng.uniform(0.15, 0.4))
        y0, x0 = int(rng.uniform(0, h - fh)), int(rng.uniform(0, w - fw))
        rows, cols = np.arange(y0, y0 + fh), np.arange(x0, x0 + fw)
        if periodic:
            rows, cols = (rows + int(rng.integers(0, h))) % h, (cols + int(rng.integers(0, w))) % w
        img[np.ix_(rows, cols)] *= np.float32(1.0 - 0.25 * strength * rng.uniform(0.5, 1.0))


def _shading(rng, h: int, w: int, strength: float, vignette: float = 0.0,
             periodic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Separable smooth shading terms ``gy[:, None] + gx[None, :]`` (tilt, curvature,
    vignetting); on a periodic image, one period of a sinusoid instead."""
    ay, ax = rng.normal(0, 1, 2)
    q = rng.normal(0, 0.5) - vignette
    if periodic:
        py, px = rng.uniform(0, 2 * math.pi, 2)
        ty = 2 * math.pi * np.arange(h) / h
        tx = 2 * math.pi * np.arange(w) / w
        gy = strength * (0.5 * ay * np.sin(ty + py) - 0.25 * q * np.cos(ty))
        gx = strength * (0.5 * ax * np.sin(tx + px) - 0.25 * q * np.cos(tx))
        return gy.astype(np.float32), gx.astype(np.float32)
    yn = np.linspace(-1, 1, h, dtype=np.float32)
    xn = np.linspace(-1, 1, w, dtype=np.float32)
    gy = strength * (0.5 * ay * yn + 0.5 * q * yn * yn)
    gx = strength * (0.5 * ax * xn + 0.5 * q * xn * xn)
    return gy.astype(np.float32), gx.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _transfer_functions(hp: int, wp: int, psf: tuple, edge: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Transfer functions (specimen, lines) on the rfft grid of an hp x wp buffer.

    ``psf`` = (sigma_along, sigma_across, angle); ``edge`` = tuple of boundary-profile terms
    summed: ``(sigma, amplitude)`` is a Gaussian ridge of that peak, ``(sigma, amplitude,
    angle)`` its derivative along ``angle`` (degrees from +x, y up), peak ``amplitude``: a
    one-sided, shadow-like profile.  Cached: every image of a dataset shares them.
    """
    fy, fx = _freqs(hp, wp)
    t_psf = _gauss_tf(fy, fx, *psf)
    prof = np.zeros(t_psf.shape, dtype=np.complex64 if any(len(e) == 3 for e in edge) else np.float32)
    for term in edge:
        sigma, amp = term[0], term[1]
        ridge = _line_profile_tf(fy, fx, sigma, amp)
        if len(term) == 3:
            t = math.radians(term[2])
            uy, ux = -math.sin(t), math.cos(t)
            # d/du of the ridge, scaled so that its extremes (at +-sigma) are +-amplitude
            deriv = np.float32(2.0 * math.pi * sigma * math.exp(0.5)) * (uy * fy + ux * fx)
            prof += 1j * deriv * ridge
        else:
            prof += ridge
    t_lines = (t_psf * prof).astype(prof.dtype, copy=False)
    t_psf.flags.writeable = False
    t_lines.flags.writeable = False
    return t_psf, t_lines


def _pad_plan(n: int, margin: int, periodic: bool) -> tuple[int, int, np.ndarray]:
    """Padded length, offset of the image in it, and the image index of every padded index."""
    if periodic:
        return n, 0, np.arange(n, dtype=np.int64)
    total = sfft.next_fast_len(n + 2 * margin, real=True)
    before = (total - n) // 2
    i = np.arange(total, dtype=np.int64) - before
    if n == 1:
        return total, before, np.zeros(total, dtype=np.int64)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return total, before, np.where(i < n, i, period - i)


def _compose(micro: Microstructure, lut: np.ndarray, lut_twin: np.ndarray | None, ramp, lines: tuple | None,
             psf: tuple, edge: tuple, margin: int, draw, shifts: np.ndarray | None, shading, line_off: np.ndarray | None,
             dose: float, read: float, charging, noise_rng: np.random.Generator) -> np.ndarray:
    """Specimen + boundary lines → one Fourier pass (blur, boundary profile) → scan, shading
    and detector noise.  Returns float32 H x W (not yet clipped)."""
    labels = micro.labels
    h, w = labels.shape
    periodic = micro.periodic
    extra_x = int(math.ceil(np.abs(shifts).max())) + 2 if shifts is not None else 0
    hp, oy, ymap = _pad_plan(h, margin, periodic)
    wp, ox, xmap = _pad_plan(w, margin + extra_x, periodic)
    sp = np.empty((hp, wp), dtype=np.float32)
    ln = np.empty((hp, wp), dtype=np.float32)
    n1 = len(lut)
    use_twins = lut_twin is not None and micro.twins is not None
    twins = micro.twins if use_twins else np.zeros((1, 1), dtype=np.uint8)
    lt = (lut_twin if use_twins else lut).astype(np.float64)
    ra, rb = ramp if ramp is not None else (np.zeros(n1), np.zeros(n1))
    mode, p1, p2, salt = lines if lines is not None else (-1, 0.0, 0.0, 0)
    specimen_and_lines(labels, lut.astype(np.float64), lt, ra.astype(np.float64), rb.astype(np.float64),
                       np.ascontiguousarray(micro.center, dtype=np.float64), twins, use_twins, ramp is not None,
                       int(mode), float(p1), float(p2), np.uint64(salt), periodic, sp, ln, oy, ox, ymap, xmap)
    if draw is not None:
        draw(sp[oy : oy + h, ox : ox + w])
    t_psf, t_lines = _transfer_functions(hp, wp, psf, edge)
    spec = sfft.rfft2(sp, overwrite_x=True)
    if lines is not None and edge:
        combine_spectra(spec, t_psf, sfft.rfft2(ln, overwrite_x=True), t_lines)
    else:
        spec *= t_psf
    full = sfft.irfft2(spec, s=(hp, wp)).astype(np.float32, copy=False)
    if charging is not None:
        charging(full[oy : oy + h, ox : ox + w])
    out = np.empty((h, w), dtype=np.float32)
    z = standard_normal32(noise_rng, (h, w)) if (dose > 0 or read > 0) else np.zeros((1, 1), np.float32)
    gy, gx = shading if shading is not None else (np.zeros(h, np.float32), np.zeros(w, np.float32))
    finish(full, oy, ox, shifts if shifts is not None else np.zeros(h, np.float32), shifts is not None,
           gy, gx, shading is not None, line_off if line_off is not None else np.zeros(h, np.float32),
           float(dose), float(read), z, int(noise_rng.integers(0, 2**31 - 1)), periodic, out)
    return out


# ------------------------------------------------------------------------ SEM
def _sem_line_mode(p: SEMParams) -> int:
    """Boundary weight mode of the line map (see ``_kernels._boundary_weight``)."""
    if p.edge_missing > 0:
        return 3
    return 1 if p.edge_variation > 0 else 0


def render_sem(micro: Microstructure, p: SEMParams, rngs: EffectRNG) -> np.ndarray:
    """Secondary-electron image, float32 in [0, 1]."""
    h, w = micro.labels.shape
    n1 = len(micro.phase)
    d = max(micro.mean_diameter, 4.0)

    # grain intensities from crystal orientation (channelling contrast)
    r = rngs("channelling")
    u = micro.crystal
    lut = p.brightness + p.channelling * 1.2 * (u - 0.5)
    part = micro.phase == PHASE_PARTICLE
    lut[part] = p.brightness + 0.2 + 0.15 * r.random(int(part.sum()))  # higher Z: brighter
    lut[0] = 0.08 * p.brightness  # pores are dark
    lut_twin = None
    if micro.twins is not None and p.twin_contrast > 0:
        ut = (u + r.uniform(0.3, 0.7, n1)) % 1.0
        lut_twin = lut + p.twin_contrast * p.channelling * 1.2 * (ut - u)
    ramp = None
    if p.intragrain > 0:
        rr = rngs("intragrain")
        g = p.intragrain / d
        ra, rb = g * rr.standard_normal(n1), g * rr.standard_normal(n1)
        ra[0] = rb[0] = 0.0  # pores have no lattice to bend
        ramp = (ra, rb)

    lines = None
    edge: tuple = ()
    se = p.detector == "se"  # backscattered electrons: no edge effect, groove or shadowing at all
    if p.edge_strength > 0 and se:
        salt = int(rngs("edges").integers(0, 2**62))
        lines = (_sem_line_mode(p), p.edge_variation, p.edge_missing, salt)
        sig, amp = p.edge_width, p.edge_strength
        if p.edge_mode == "bright":
            edge = ((sig, amp),)
        elif p.edge_mode == "groove":
            edge = ((sig, -amp),)
        elif p.edge_mode == "halo":  # bright secondary-electron ridge in a dark halo (depleted surroundings)
            edge = ((0.8 * sig, 1.4 * amp), (2.4 * sig, -0.5 * amp))
        else:  # etched groove whose walls light up: dark centre, bright shoulders
            edge = ((1.6 * sig, 0.6 * amp), (0.7 * sig, -1.2 * amp))
    if p.shadowing > 0 and se:
        # a side-mounted detector sees the boundary walls facing it brighter than the others
        if lines is None:
            salt = int(rngs("edges").integers(0, 2**62))
            lines = (_sem_line_mode(p), p.edge_variation, p.edge_missing, salt)
        edge = edge + ((p.edge_width, p.shadowing * max(p.edge_strength, 0.2), float(p.detector_angle)),)

    def draw(img):
        if p.gap_width > 0:
            _film_gaps(rngs("gaps"), img, micro, p.gap_width, p.gap_depth)
        if p.scratches > 0:
            _draw_scratches(rngs("scratches"), img, p.scratches, p.brightness, micro.periodic)
        if p.dust > 0:
            _draw_dust(rngs("dust"), img, p.dust, bright=min(1.0, p.brightness + 0.45), dark=0.05,
                       size=max(1.5, 0.08 * d), periodic=micro.periodic)

    psf = (p.blur * (1.0 + p.astigmatism), p.blur / (1.0 + p.astigmatism), float(p.astigmatism_angle))
    shifts = _scan_shifts(rngs("scan"), h, p.scan_jitter, p.drift)
    micro.extras["scan_shifts"] = shifts  # the ground truth follows the scan (see generate)
    margin = int(math.ceil(4 * max(psf[0], 1.6 * p.edge_width, 1.0))) + 2
    shading = _shading(rngs("gradient"), h, w, p.gradient, periodic=micro.periodic) if p.gradient > 0 else None
    line_off = (p.line_noise * rngs("line_noise").standard_normal(h)).astype(np.float32) if p.line_noise > 0 else None
    charging = (lambda img: _charging(rngs("charging"), img, p.charging, micro.periodic)) if p.charging > 0 else None
    img = _compose(micro, lut, lut_twin, ramp, lines, psf, edge, margin, draw, shifts, shading, line_off,
                   p.dose, p.read_noise, charging, rngs("noise"))
    np.clip(img, 0.0, 1.0, out=img)
    return img


def gap_profile(rng: np.random.Generator, micro: Microstructure, width: float) -> np.ndarray:
    """Gap darkness in [0, 1] of a thin film: 1 within about ``width / 2`` px of a boundary (the
    width varies smoothly by +-35 % along the boundaries), a soft 1 px edge."""
    from scipy import ndimage as ndi

    from .tessellation import boundary_mask

    labels = micro.labels
    h, w = labels.shape
    band = boundary_mask(labels, 2, micro.periodic)
    pad = int(math.ceil(width)) + 3 if micro.periodic else 0
    if pad:
        band = np.pad(band, pad, mode="wrap")
    dist = ndi.distance_transform_edt(~band).astype(np.float32)
    if pad:
        dist = dist[pad:-pad, pad:-pad]
    gh, gw = max(2, h // 24), max(2, w // 24)
    mod = ndi.zoom(rng.standard_normal((gh, gw)), (h / gh, w / gw), order=1, grid_mode=True, mode="nearest")
    mod = np.pad(mod, ((0, max(0, h - mod.shape[0])), (0, max(0, w - mod.shape[1]))), mode="edge")[:h, :w]
    half = np.float32(width / 2.0) * (1.0 + np.float32(0.35) * np.tanh(mod).astype(np.float32))
    return np.clip(half - dist, 0.0, 1.0).astype(np.float32)


def _film_gaps(rng, img: np.ndarray, micro: Microstructure, width: float, depth: float) -> None:
    """Darken the gaps between the grains of a thin film (in place, before the probe blur)."""
    g = gap_profile(rng, micro, width)
    img -= np.float32(depth) * g * (img - np.float32(0.03))


def _charging(rng, img: np.ndarray, strength: float, periodic: bool = False) -> None:
    """Bright streaks trailing along the fast scan direction where the beam charged the
    surface (wrapping around the edges of a periodic image)."""
    h, w = img.shape
    n = rng.poisson(strength * 12 * h / 512)
    for _ in range(n):
        r0 = int(rng.integers(0, h))
        hh = int(rng.integers(1, 5))
        x0 = int(rng.integers(0, w))
        length = w * rng.uniform(0.03, 0.3)
        amp = strength * rng.uniform(0.15, 0.6)
        span = np.arange(w if periodic else w - x0)
        tail = (amp * np.exp(-span / length)).astype(np.float32)
        rows = np.arange(r0, r0 + hh) % h if periodic else np.arange(r0, min(r0 + hh, h))
        img[np.ix_(rows, (x0 + span) % w)] += tail[None, :]
    if rng.random() < strength:
        # a charged band: the lines after a discharge come out brighter
        r0 = int(rng.integers(0, h))
        hh = int(rng.integers(h // 50 + 1, h // 10 + 2))
        rows = np.arange(r0, r0 + hh) % h if periodic else np.arange(r0, min(r0 + hh, h))
        img[rows] *= np.float32(1.0 + 0.3 * strength)


# -------------------------------------------------------------------- optical
def render_optical(micro: Microstructure, p: OpticalParams, rngs: EffectRNG) -> np.ndarray:
    """Etched bright-field light micrograph, float32 in [0, 1]."""
    h, w = micro.labels.shape
    n1 = len(micro.phase)
    d = max(micro.mean_diameter, 4.0)
    r = rngs("grains")
    u = micro.crystal
    lut = p.brightness + p.grain_contrast * 2.0 * (u - 0.5)
    part = micro.phase == PHASE_PARTICLE
    lut[part] = p.brightness * (0.35 + 0.2 * r.random(int(part.sum())))  # etched second phase: dark
    lut[0] = 0.12 * p.brightness
    lut_twin = None
    if micro.twins is not None and p.twin_contrast > 0:
        ut = (u + r.uniform(0.3, 0.7, n1)) % 1.0
        lut_twin = lut + p.twin_contrast * max(p.grain_contrast, 0.05) * 2.0 * (ut - u)

    lines = None
    edge: tuple = ()
    if p.line_strength > 0:
        salt = int(rngs("lines").integers(0, 2**62))
        lines = (2, p.missing_fraction, p.faint_fraction, salt)
        edge = ((p.line_width, -p.line_strength * p.brightness),)

    def draw(img):
        if p.stains > 0:
            rs = rngs("stains")
            # smooth etch stains: low-resolution noise, bilinearly upsampled
            from scipy import ndimage as ndi

            gh, gw = max(2, h // 48), max(2, w // 48)
            field = ndi.zoom(rs.standard_normal((gh, gw)).astype(np.float32), (h / gh, w / gw), order=1,
                             grid_mode=True, mode="nearest")[:h, :w]
            if field.shape != (h, w):
                field = np.pad(field, ((0, h - field.shape[0]), (0, w - field.shape[1])), mode="edge")
            img *= 1.0 - np.float32(0.12 * p.stains) * np.clip(field, -2.0, 2.0)
            k = rs.poisson(p.stains * h * w / 1500)  # etch pits
            py, px = rs.integers(0, h, k), rs.integers(0, w, k)
            img[py, px] *= np.float32(0.35)
        if p.scratches > 0:
            _draw_scratches(rngs("scratches"), img, p.scratches, p.brightness, micro.periodic)
        if p.dust > 0:
            _draw_dust(rngs("dust"), img, p.dust, bright=min(1.0, p.brightness + 0.15), dark=0.1 * p.brightness,
                       size=max(1.5, 0.06 * d), periodic=micro.periodic)

    psf = (float(p.blur), float(p.blur), 0.0)
    margin = int(math.ceil(4 * max(p.blur, p.line_width, 1.0))) + 2
    shading = (_shading(rngs("gradient"), h, w, p.gradient, vignette=1.0, periodic=micro.periodic)
               if p.gradient > 0 else None)
    img = _compose(micro, lut, lut_twin, None, lines, psf, edge, margin, draw, None, shading, None,
                   0.0, p.noise, None, rngs("noise"))
    np.clip(img, 0.0, 1.0, out=img)
    return img


def quantize(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float image in [0, 1] → uint8 / uint16."""
    if bit_depth == 8:
        scale, dtype = 255.0, np.uint8
    elif bit_depth == 16:
        scale, dtype = 65535.0, np.uint16
    else:
        raise ParameterError(f"bit depth must be 8 or 16, got {bit_depth}")
    out = np.multiply(img, np.float32(scale), dtype=np.float32)
    out += np.float32(0.5)
    np.clip(out, 0, scale, out=out)
    return out.astype(dtype)
