"""Domain randomisation: synthetic training patches with a widely varied look.

A model trained on one rendering learns that rendering; a model trained on many learns the
grains.  :class:`DomainRandomizer` draws a fresh :class:`~.params.SynthParams` for every patch
(geometry including grain growth; grey SEM / optical looks, colour tint-etched, polarised-light
and EBSD looks; noise, artefacts) and finishes the rendered image with the
effects a renderer does not model: polarity inversion, gamma, sharpening halos, JPEG-like
block quantisation and the percentile stretch the readers apply to real micrographs.

>>> import numpy as np
>>> from napari_grainlab.core.synthetic.randomize import DomainRandomizer
>>> image, labels = DomainRandomizer().sample(np.random.default_rng(0), 128)
>>> image.shape[:2], image.dtype, labels.dtype
((128, 128), dtype('float32'), dtype('uint32'))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage as ndi

from ..errors import DataError, ParameterError
from .generate import generate
from .params import EBSDParams, OpticalParams, PolarizedParams, SEMParams, SynthParams, TessellationParams, TintParams

__all__ = ["DomainRandomizer", "percentile_stretch", "jpeg_quantize"]

_STYLES = ("sem", "optical", "tint", "polarized", "ebsd")
#: relative frequency of each style: half grey (SEM, optical), half colour looks, of which a third are
#: recorded in grey (a colour-etched specimen under a monochrome camera), see ``grey_colour_prob``
_STYLE_WEIGHTS = {"sem": 0.3, "optical": 0.2, "tint": 0.23, "polarized": 0.135, "ebsd": 0.135}
_EDGE_MODES = ("bright", "groove", "mixed", "halo")
_LUMINANCE = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)

#: JPEG (ITU T.81, annex K) luminance quantisation table at quality 50
_JPEG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=np.float32)


def percentile_stretch(image: np.ndarray, low: float = 0.1, high: float = 99.9) -> np.ndarray:
    """Map the ``low`` / ``high`` percentiles of ``image`` to 0 / 1 and clip (float32).

    A constant image maps to zeros.
    """
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, (low, high))
    if not hi > lo:
        return np.zeros(img.shape, dtype=np.float32)
    out = (img - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


@functools.lru_cache(maxsize=32)
def _jpeg_table(quality: int) -> np.ndarray:
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    table = np.floor((_JPEG_LUMA * scale + 50.0) / 100.0)
    table = np.clip(table, 1.0, 255.0).astype(np.float32)
    table.flags.writeable = False
    return table


def jpeg_quantize(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-like compression of a float image in [0, 1]: 8 x 8 block DCT, coefficients
    rounded with the standard luminance table at ``quality`` (1-100), 8-bit levels.

    Gives the blocking and ringing of a JPEG without an image codec.
    """
    if not 1 <= int(quality) <= 100:
        raise ParameterError(f"quality must be in 1..100, got {quality!r}")
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    hp, wp = -(-h // 8) * 8, -(-w // 8) * 8
    x = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge") if (hp, wp) != (h, w) else img
    blocks = (x * np.float32(255.0) - np.float32(128.0)).reshape(hp // 8, 8, wp // 8, 8).transpose(0, 2, 1, 3)
    table = _jpeg_table(int(quality))
    coef = sfft.dctn(blocks, axes=(2, 3), norm="ortho")
    coef = np.round(coef / table) * table
    back = sfft.idctn(coef, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(hp, wp)[:h, :w]
    out = np.round(back + np.float32(128.0)) * np.float32(1.0 / 255.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def _shape(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ParameterError(f"size: expected an integer or (height, width), got {size!r}") from None
    if h < 16 or w < 16:
        raise ParameterError(f"size: patches must be at least 16 x 16 px, got {h} x {w}")
    return h, w


@dataclass(frozen=True)
class DomainRandomizer:
    """Draws synthetic micrographs with a widely randomised look.

    Parameters
    ----------
    styles : tuple of str
        Rendering styles to draw from (``"sem"``, ``"optical"``, ``"tint"``, ``"polarized"``,
        ``"ebsd"``), with the relative frequencies of ``_STYLE_WEIGHTS`` (SEM 0.3, optical 0.2,
        tint 0.23, polarized and ebsd 0.135 each).
    strength : float
        0 gives the generator's default look (only the geometry varies); 1 the widest range.
        Every look parameter moves from its default towards a wide random draw by
        ``strength`` times a per-sample wildness, so a batch mixes mild and wild samples;
        the probabilities of discrete events (groove-less boundaries, inversion, ...) scale
        with ``strength`` too.
    grains : (float, float)
        Range of the mean grain diameter in px (drawn log-uniformly, at most half the patch).
    grey_colour_prob : float
        Probability that a colour look is returned as its luminance (grey image): colour-etched
        grains recorded by a monochrome camera (so about a third of all samples are colour and a
        sixth grey renderings of colour looks with the default styles).
    growth_prob : float
        Probability (at strength 1) of a grain-growth (Potts) tessellation.
    groove_less_prob : float
        Probability (at strength 1) of boundaries without edge, groove or etched line:
        grains differ only by their orientation contrast, an intensity step.
    invert_prob : float
        Probability (at strength 1) of inverted polarity.
    jpeg_prob : float
        Probability (at strength 1) of JPEG-like block quantisation.
    sharpen_prob : float
        Probability (at strength 1) of an unsharp mask (halos along intensity steps).
    """

    styles: tuple[str, ...] = _STYLES
    strength: float = 1.0
    grains: tuple[float, float] = (8.0, 150.0)
    groove_less_prob: float = 0.25
    invert_prob: float = 0.2
    jpeg_prob: float = 0.2
    sharpen_prob: float = 0.15
    grey_colour_prob: float = 1.0 / 3.0
    growth_prob: float = 0.3

    def __post_init__(self):
        styles = (self.styles,) if isinstance(self.styles, str) else tuple(self.styles)
        if not styles or any(s not in _STYLES for s in styles):
            raise ParameterError(f"styles: choose from {', '.join(_STYLES)}, got {self.styles!r}")
        object.__setattr__(self, "styles", styles)
        try:
            lo, hi = (float(v) for v in self.grains)
        except (TypeError, ValueError):
            raise ParameterError(f"grains: expected a (min, max) diameter range in px, got {self.grains!r}") from None
        if not (2.0 <= lo <= hi and math.isfinite(hi)):
            raise ParameterError(f"grains: need 2 <= min <= max diameter in px, got {self.grains!r}")
        object.__setattr__(self, "grains", (lo, hi))
        for name in ("strength", "groove_less_prob", "invert_prob", "jpeg_prob", "sharpen_prob", "grey_colour_prob",
                     "growth_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ParameterError(f"{name}: must be a number in [0, 1], got {v!r}")
            object.__setattr__(self, name, float(v))

    # ---------------------------------------------------------------- parameters
    def params(self, rng: np.random.Generator, size: int | tuple[int, int]) -> SynthParams:
        """Random generator parameters for one patch of ``size`` px (validated)."""
        h, w = _shape(size)
        s = self.strength
        t = s * math.sqrt(rng.random())  # this sample's wildness: mostly wide, some mild

        def lerp(default: float, lo: float, hi: float) -> float:
            draw = rng.uniform(lo, hi)
            return default + t * (draw - default) if t > 0 else default

        def loglerp(default: float, lo: float, hi: float) -> float:
            draw = rng.uniform(math.log(lo), math.log(hi))
            return math.exp(math.log(default) + t * (draw - math.log(default))) if t > 0 else default

        def event(p: float) -> bool:
            return bool(rng.random() < p * s)

        weights = np.array([_STYLE_WEIGHTS[st] for st in self.styles])
        style = self.styles[int(rng.choice(len(self.styles), p=weights / weights.sum()))]
        groove_less = event(self.groove_less_prob)
        tess = self._tessellation(rng, h, w, lerp, loglerp, event)
        p = SynthParams(height=h, width=w, style=style, tessellation=tess)
        if style == "sem":
            p.sem = self._sem(rng, lerp, loglerp, event, t, groove_less)
        elif style == "optical":
            p.optical = self._optical(rng, lerp, loglerp, t, groove_less)
        elif style == "tint":
            p.tint = self._tint(rng, lerp, loglerp, event)
        elif style == "polarized":
            p.polarized = self._polarized(rng, lerp, loglerp, event, t)
        else:
            p.ebsd = self._ebsd(lerp, loglerp, event)
        p.validate()
        return p

    def _tessellation(self, rng, h, w, lerp, loglerp, event) -> TessellationParams:
        lo, hi = self.grains
        hi_fit = max(2.0, min(h, w) / 2.0)
        lo, hi = min(lo, hi_fit), min(hi, hi_fit)
        diameter = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        tp = TessellationParams(grains=None, mean_diameter=diameter)
        tp.method = "voronoi" if event(0.35) else "laguerre"
        if event(self.growth_prob):  # annealed: curved boundaries, 120 degree junctions
            tp.method = "growth"
            tp.growth_coarsening = lerp(tp.growth_coarsening, 1.8, 3.5)
            tp.growth_temperature = lerp(tp.growth_temperature, 0.5, 1.4)
            tp.growth_anisotropy = lerp(0.0, 0.0, 0.6) if event(0.3) else 0.0
            # coarse lattices keep a patch fast (the boundaries are resampled smoothly); the cost grows with
            # about the third power of the resolution. From 10 sites per diameter up, junction angles (std
            # 15-17 deg), the size spread (CV 0.39-0.40) and the mean size match those of the default 16
            # (3 x 320 px, 120 grains); at 8 the size spread narrows (CV 0.33)
            tp.growth_resolution = float(rng.uniform(10.0, 12.0))
        tp.size_sigma = lerp(tp.size_sigma, 0.1, 0.8)
        tp.hard_core = lerp(0.0, 0.0, 0.7)
        tp.lloyd_steps = int(rng.integers(1, 5)) if event(0.15) else 0
        tp.curvature = lerp(tp.curvature, 0.0, 0.9)
        if event(0.3):  # elongated grains (rolled, directionally grown)
            tp.aspect_ratio = math.exp(rng.uniform(math.log(1.3), math.log(5.0)))
            tp.orientation = rng.uniform(-180.0, 180.0)
            tp.orientation_spread = rng.uniform(0.0, 25.0)
        if event(0.25):  # annealing twins: bands inside a grain, same label as the grain
            tp.twin_fraction = rng.uniform(0.1, 0.5)
            tp.twin_width = rng.uniform(0.06, 0.3)
        if event(0.2):
            tp.particle_fraction = rng.uniform(0.005, 0.05)
            tp.particle_size = rng.uniform(0.08, 0.3)
        if event(0.15):
            tp.porosity = rng.uniform(0.002, 0.03)
            tp.pore_size = rng.uniform(0.05, 0.25)
        return tp

    @staticmethod
    def _sem(rng, lerp, loglerp, event, t, groove_less) -> SEMParams:
        sp = SEMParams()
        sp.brightness = lerp(sp.brightness, 0.2, 0.7)
        sp.channelling = lerp(sp.channelling, 0.03, 0.7)
        sp.intragrain = lerp(sp.intragrain, 0.0, 0.15)
        if rng.random() < t:
            sp.edge_mode = _EDGE_MODES[int(rng.integers(len(_EDGE_MODES)))]
        sp.edge_strength = lerp(sp.edge_strength, 0.05, 0.8)
        sp.edge_width = loglerp(sp.edge_width, 0.5, 3.5)
        sp.edge_variation = lerp(sp.edge_variation, 0.0, 1.0)
        sp.edge_missing = lerp(0.0, 0.0, 0.5)
        sp.shadowing = lerp(sp.shadowing, 0.0, 0.8)
        if t > 0:
            sp.detector_angle = rng.uniform(-180.0, 180.0)
        sp.twin_contrast = lerp(sp.twin_contrast, 0.3, 1.0)
        sp.gradient = lerp(sp.gradient, 0.0, 0.6)
        sp.blur = loglerp(sp.blur, 0.3, 3.0)
        sp.astigmatism = lerp(sp.astigmatism, 0.0, 0.6)
        if t > 0:
            sp.astigmatism_angle = rng.uniform(-90.0, 90.0)
        sp.dose = loglerp(sp.dose, 5.0, 500.0)
        if event(0.3):  # fast scan / low beam current: a few electrons per pixel
            sp.dose = math.exp(rng.uniform(math.log(2.0), math.log(25.0)))
        sp.read_noise = lerp(sp.read_noise, 0.0, 0.06)
        sp.scan_jitter = lerp(sp.scan_jitter, 0.0, 1.5)
        sp.drift = lerp(sp.drift, 0.0, 8.0)
        sp.line_noise = lerp(sp.line_noise, 0.0, 0.08)
        sp.charging = lerp(sp.charging, 0.0, 0.6)
        sp.scratches = lerp(sp.scratches, 0.0, 0.8)
        sp.dust = lerp(sp.dust, 0.0, 0.6)
        if groove_less:  # flat, relief-free polish: only the orientation contrast shows the grains
            sp.edge_strength = 0.0
            sp.shadowing = 0.0
            sp.channelling = max(sp.channelling, rng.uniform(0.15, 0.6))
        kind = rng.random()
        if kind < 0.2 * t:  # backscattered electrons: strong orientation contrast, no boundary line at all
            sp.detector = "bse"
            sp.channelling = rng.uniform(0.35, 0.8)
        elif kind < 0.35 * t:  # thin film: dark gaps between the grains
            sp.gap_width = loglerp(3.0, 1.0, 8.0)
            sp.gap_depth = rng.uniform(0.5, 1.0)
        elif kind < 0.5 * t:  # bright secondary-electron edges in a dark halo
            sp.edge_mode = "halo"
            sp.edge_strength = max(sp.edge_strength, rng.uniform(0.25, 0.8))
        return sp

    @staticmethod
    def _tint(rng, lerp, loglerp, event) -> TintParams:
        tp = TintParams()
        tp.brightness = lerp(tp.brightness, 0.5, 0.95)
        tp.film_thickness = lerp(tp.film_thickness, 0.0, 1.0)
        tp.thickness_spread = lerp(tp.thickness_spread, 0.25, 1.0)
        tp.saturation = lerp(tp.saturation, 0.35, 1.0)
        tp.stain_gradient = lerp(tp.stain_gradient, 0.0, 0.8)
        tp.mottling = lerp(tp.mottling, 0.0, 0.5)
        tp.line_strength = lerp(0.0, 0.0, 0.4) if event(0.3) else 0.0
        tp.line_width = loglerp(tp.line_width, 0.5, 2.5)
        tp.twin_contrast = lerp(tp.twin_contrast, 0.3, 1.0)
        tp.gradient = lerp(tp.gradient, 0.0, 0.5)
        tp.blur = loglerp(tp.blur, 0.3, 2.5)
        tp.noise = lerp(tp.noise, 0.0, 0.05)
        tp.scratches = lerp(tp.scratches, 0.0, 0.6)
        return tp

    @staticmethod
    def _polarized(rng, lerp, loglerp, event, t) -> PolarizedParams:
        pp = PolarizedParams()
        pp.brightness = lerp(pp.brightness, 0.6, 1.0)
        if t > 0:
            pp.polarizer_angle = rng.uniform(-90.0, 90.0)
        pp.tint_plate = 0.0 if event(0.3) else lerp(pp.tint_plate, 0.6, 1.0)
        pp.retardation = lerp(pp.retardation, 0.25, 1.0)
        pp.ambient = lerp(pp.ambient, 0.0, 0.2)
        pp.line_strength = lerp(0.0, 0.0, 0.3) if event(0.2) else 0.0
        pp.twin_contrast = lerp(pp.twin_contrast, 0.3, 1.0)
        pp.gradient = lerp(pp.gradient, 0.0, 0.5)
        pp.blur = loglerp(pp.blur, 0.3, 2.5)
        pp.noise = lerp(pp.noise, 0.0, 0.06)
        pp.scratches = lerp(pp.scratches, 0.0, 0.6)
        return pp

    @staticmethod
    def _ebsd(lerp, loglerp, event) -> EBSDParams:
        ep = EBSDParams()
        ep.saturation = lerp(ep.saturation, 0.6, 1.0)
        ep.band_contrast = lerp(ep.band_contrast, 0.0, 0.8)
        ep.band_width = loglerp(ep.band_width, 0.5, 3.0)
        ep.band_noise = lerp(ep.band_noise, 0.0, 0.4)
        ep.orientation_noise = lerp(ep.orientation_noise, 0.0, 0.12)
        ep.intragrain = lerp(ep.intragrain, 0.0, 0.2)
        ep.unindexed = lerp(ep.unindexed, 0.0, 0.15)
        if event(0.2):  # a cleaned-up map
            ep.unindexed = 0.0
            ep.orientation_noise = 0.0
        ep.twin_contrast = lerp(ep.twin_contrast, 0.5, 1.0)
        return ep

    @staticmethod
    def _optical(rng, lerp, loglerp, t, groove_less) -> OpticalParams:
        op = OpticalParams()
        op.brightness = lerp(op.brightness, 0.45, 0.9)
        op.grain_contrast = lerp(op.grain_contrast, 0.0, 0.35)
        op.line_strength = lerp(op.line_strength, 0.15, 0.9)
        op.line_width = loglerp(op.line_width, 0.5, 3.0)
        op.faint_fraction = lerp(op.faint_fraction, 0.0, 0.6)
        op.missing_fraction = lerp(op.missing_fraction, 0.0, 0.35)
        op.twin_contrast = lerp(op.twin_contrast, 0.2, 1.0)
        op.gradient = lerp(op.gradient, 0.0, 0.6)
        op.blur = loglerp(op.blur, 0.4, 3.0)
        op.noise = lerp(op.noise, 0.0, 0.06)
        op.stains = lerp(op.stains, 0.0, 0.6)
        op.scratches = lerp(op.scratches, 0.0, 0.8)
        op.dust = lerp(op.dust, 0.0, 0.5)
        if groove_less:  # tint etch / polarised light: grains coloured, boundaries not grooved
            op.line_strength = 0.0
            op.grain_contrast = max(op.grain_contrast, rng.uniform(0.12, 0.4))
        return op

    # ------------------------------------------------------------------- images
    def postprocess(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Effects the renderer does not model, then the readers' percentile stretch.

        ``image`` is float in [0, 1], grey ``(H, W)`` or RGB ``(H, W, 3)``.  Gamma, unsharp-mask
        halos, JPEG-like quantisation and polarity inversion (grey only: an inverted colour
        micrograph does not occur), each with its probability scaled by ``strength``; a colour image
        also gets a random white balance (channel gains).  Returns float32 in [0, 1] of the same
        shape.  The random draws do not depend on the outcomes, so switching one effect off keeps
        the others.
        """
        img = np.asarray(image, dtype=np.float32)
        colour = img.ndim == 3 and img.shape[-1] == 3
        if img.ndim != 2 and not colour:
            raise DataError(f"image: expected a 2-D grey or (H, W, 3) RGB array, got shape {img.shape}")
        s = self.strength
        u = rng.random(4)
        gamma = math.exp(rng.normal(0.0, 0.35 * s))
        sharpen_sigma, sharpen_amount = rng.uniform(0.8, 2.5), rng.uniform(0.3, 1.2)
        quality = int(rng.integers(25, 91))
        img = np.clip(img, 0.0, 1.0)
        if colour:
            gains = np.exp(rng.normal(0.0, 0.12 * s, 3)).astype(np.float32)
            img *= gains / gains.max()
        if gamma != 1.0:
            np.power(img, np.float32(gamma), out=img)
        if u[0] < self.sharpen_prob * s:
            sig = (sharpen_sigma, sharpen_sigma, 0.0) if colour else sharpen_sigma
            smooth = ndi.gaussian_filter(img, sig, mode="nearest")
            img = img + np.float32(sharpen_amount) * (img - smooth)
            lo, hi = float(img.min()), float(img.max())
            img = (img - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1e-6))
        if u[1] < self.jpeg_prob * s:
            if colour:
                img = np.stack([jpeg_quantize(img[..., c], quality) for c in range(3)], axis=-1)
            else:
                img = jpeg_quantize(img, quality)
        if u[2] < self.invert_prob * s and not colour:
            img = np.float32(1.0) - img
        return percentile_stretch(img)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """One randomised patch: ``(image, labels uint32 H x W)``; the image is float32 in [0, 1],
        ``(H, W)`` grey or ``(H, W, 3)`` RGB (colour looks not turned grey, see ``grey_colour_prob``).

        Labels are the generator's grain instances (0 = pore, ignored by the loss); twin
        bands belong to their grain.
        """
        return self.sample_twins(rng, size)[:2]

    def sample_twins(self, rng: np.random.Generator,
                     size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sample` with the twin-boundary mask (bool H x W, all False when the patch has no twins:
        the generator knows there are none); the same ``rng`` gives the same image and labels."""
        params = self.params(rng, size)
        seed = int(rng.integers(0, 2**31 - 1))
        to_grey = rng.random() < self.grey_colour_prob
        smp = generate(params, seed)
        img = smp.image_float()
        if img.ndim == 3 and to_grey:
            img = img @ _LUMINANCE  # as core.data.channels.luminance (BT.709)
        twins = smp.twin_boundaries
        if twins is None:
            twins = np.zeros(smp.labels.shape, dtype=bool)
        return self.postprocess(img, rng), smp.labels, twins
