"""Parameters of the synthetic micrograph generator.

Every parameter lives in a dataclass field that carries its own range and help text
(``field.metadata``), so validation, JSON round trip, the CLI and the napari dock are all
derived from one definition.  Every rendering effect has a strength; a strength of 0
switches the effect off.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .._schema import check_options, option, option_fields
from ..errors import ParameterError

__all__ = [
    "ParameterError",
    "TessellationParams",
    "SEMParams",
    "OpticalParams",
    "TintParams",
    "PolarizedParams",
    "EBSDParams",
    "SynthParams",
    "STYLES",
    "COLOUR_STYLES",
    "PRESETS",
    "param_fields",
]


#: largest image generated in one piece (16384 x 16384)
MAX_PIXELS = 16384 * 16384
#: rendering styles; the colour ones give (H, W, 3) RGB images
STYLES = ("sem", "optical", "tint", "polarized", "ebsd")
COLOUR_STYLES = ("tint", "polarized", "ebsd")
#: log of E[d^2] / E[d]^2 of the equivalent diameter per tessellation method (lognormal sizes for
#: laguerre; Poisson-Voronoi; the self-similar distribution of normal grain growth)
_S2 = {"voronoi": 0.25, "growth": 0.12}




def _p(default, lo=None, hi=None, help: str = "", choices=None, step=None, label=None):
    return option(default, min=lo, max=hi, help=help, choices=choices, step=step, label=label)


def param_fields(obj_or_cls) -> list[dataclasses.Field]:
    """The parameter fields of a params dataclass (in definition order)."""
    return option_fields(obj_or_cls)


class _Params:
    """Shared validation and (de)serialisation for the parameter dataclasses."""

    section: ClassVar[str] = ""

    def _check_ranges(self) -> None:
        check_options(self, ParameterError, self.section)

    def validate(self) -> None:
        self._check_ranges()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in param_fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, _Params) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ParameterError(f"{cls.section or 'parameters'}: expected a mapping, got {type(data).__name__}")
        known = {f.name: f for f in param_fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            where = cls.section or "parameters"
            raise ParameterError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
        kwargs = {}
        for name, value in data.items():
            default = known[name].default
            if default is dataclasses.MISSING and known[name].default_factory is not dataclasses.MISSING:
                default = known[name].default_factory()
            if isinstance(default, _Params):
                kwargs[name] = type(default).from_dict(value)
            elif isinstance(default, bool) or value is None:
                kwargs[name] = value
            elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                kwargs[name] = float(value)
            elif isinstance(default, tuple) and isinstance(value, list):
                kwargs[name] = tuple(value)
            else:
                kwargs[name] = value
        obj = cls(**kwargs)
        return obj

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class TessellationParams(_Params):
    """Geometry of the grain structure."""

    section: ClassVar[str] = "tessellation"

    method: str = _p("laguerre", choices=("voronoi", "laguerre", "growth"),
                     help="voronoi: cells of random seeds; laguerre: power diagram whose cell sizes follow the lognormal "
                          "size distribution; growth: curvature-driven grain growth (Monte-Carlo Potts) of a fine Voronoi")
    grains: int | None = _p(200, 1, 1_000_000, help="number of grains (None: derived from mean_diameter)")
    mean_diameter: float | None = _p(None, 2.0, 1e6, help="mean equivalent-circle grain diameter in px (used when grains is None)")
    size_sigma: float = _p(0.35, 0.0, 1.5, step=0.05, help="lognormal sigma of the equivalent grain diameter (laguerre)")
    hard_core: float = _p(0.0, 0.0, 0.95, step=0.05, help="minimum seed distance as a fraction of the mean seed spacing (0 = Poisson)")
    lloyd_steps: int = _p(0, 0, 50, help="Lloyd relaxation steps: more steps give more regular, equiaxed grains")
    aspect_ratio: float = _p(1.0, 1.0, 20.0, step=0.1, help="grain elongation (long / short axis)")
    orientation: float = _p(0.0, -180.0, 180.0, step=5.0, help="mean elongation direction in degrees (0 = along x, counter-clockwise)")
    orientation_spread: float = _p(0.0, 0.0, 90.0, step=1.0, help="standard deviation of the per-grain elongation direction in degrees")
    curvature: float = _p(0.35, 0.0, 1.0, step=0.05,
                          help="bends the straight cell edges into curved grain boundaries (0 = polygonal cells)")
    periodic: bool = _p(False, help="tile seamlessly (grains wrap around the image edges)")
    twin_fraction: float = _p(0.0, 0.0, 1.0, step=0.05, help="fraction of grains that contain annealing twin bands")
    twin_width: float = _p(0.14, 0.01, 0.5, step=0.01, help="twin band width as a fraction of the grain diameter")
    particle_fraction: float = _p(0.0, 0.0, 0.5, step=0.01, help="area fraction of second-phase particles")
    particle_size: float = _p(0.15, 0.02, 1.0, step=0.01, help="particle diameter as a fraction of the mean grain diameter")
    porosity: float = _p(0.0, 0.0, 0.3, step=0.005, help="area fraction of pores (label 0)")
    pore_size: float = _p(0.1, 0.02, 1.0, step=0.01, help="pore diameter as a fraction of the mean grain diameter")
    boundary_width: int = _p(2, 1, 32, help="width in px of the boundary mask written with the labels")
    growth_coarsening: float = _p(2.5, 1.2, 6.0, step=0.1,
                                  help="growth: final / initial mean grain diameter (more coarsening: closer to the "
                                       "steady-state shapes and sizes of annealed grains, slower)")
    growth_temperature: float = _p(0.9, 0.0, 3.0, step=0.05,
                                   help="growth: Potts temperature (kT / J): 0 gives faceted, lattice-pinned boundaries, "
                                        "higher values rougher, more isotropic ones")
    growth_anisotropy: float = _p(0.0, 0.0, 1.0, step=0.05,
                                  help="growth: misorientation dependence of the boundary energy (Read-Shockley; 0 = "
                                       "isotropic, off)")
    growth_resolution: float = _p(16.0, 6.0, 48.0, step=1.0,
                                  help="growth: simulation lattice sites per final mean grain diameter (finer: smoother "
                                       "shapes, slower; never finer than the image)")


@dataclass
class SEMParams(_Params):
    """Secondary-electron look; every strength 0 switches its effect off."""

    section: ClassVar[str] = "sem"

    detector: str = _p("se", choices=("se", "bse"),
                       help="se: secondary electrons (edges, grooves, shadowing); bse: backscattered electrons, "
                            "orientation (channelling) contrast only, no boundary line at all")
    brightness: float = _p(0.45, 0.0, 1.0, step=0.05, help="mean grain intensity")
    channelling: float = _p(0.35, 0.0, 1.0, step=0.05, help="grain-to-grain orientation (channelling) contrast")
    intragrain: float = _p(0.04, 0.0, 0.5, step=0.01, help="smooth intensity ramps inside grains (lattice bending)")
    edge_mode: str = _p("mixed", choices=("bright", "groove", "mixed", "halo"),
                        help="boundary appearance: bright edge effect, dark etched grooves, both, or a bright "
                             "secondary-electron ridge with a dark halo")
    edge_strength: float = _p(0.35, 0.0, 1.0, step=0.05, help="contrast of the boundary edge / groove")
    edge_width: float = _p(1.2, 0.3, 10.0, step=0.1, help="width (px, Gaussian sigma) of the boundary profile")
    edge_variation: float = _p(0.4, 0.0, 1.0, step=0.05, help="random boundary-to-boundary variation of the edge contrast")
    edge_missing: float = _p(0.0, 0.0, 1.0, step=0.05,
                             help="fraction of boundaries without any edge or groove (visible only by the channelling step)")
    shadowing: float = _p(0.3, 0.0, 1.0, step=0.05,
                          help="boundary walls facing the detector appear brighter, the others darker (topography)")
    detector_angle: float = _p(60.0, -180.0, 180.0, step=5.0,
                               help="direction of the secondary-electron detector in degrees (0 = +x, counter-clockwise)")
    twin_contrast: float = _p(0.8, 0.0, 1.0, step=0.05, help="channelling contrast of twin bands relative to the grain contrast")
    gradient: float = _p(0.15, 0.0, 1.0, step=0.05, help="large-scale background shading")
    blur: float = _p(1.0, 0.0, 10.0, step=0.1, help="Gaussian probe (PSF) sigma in px")
    astigmatism: float = _p(0.25, 0.0, 0.9, step=0.05, help="PSF astigmatism: relative elongation of the probe")
    astigmatism_angle: float = _p(30.0, -90.0, 90.0, step=5.0, help="direction of the astigmatic elongation in degrees")
    dose: float = _p(60.0, 0.0, 1e6, help="electrons per pixel for Poisson shot noise (0 = off)")
    read_noise: float = _p(0.02, 0.0, 0.5, step=0.005, help="Gaussian detector noise (fraction of full scale)")
    scan_jitter: float = _p(0.4, 0.0, 10.0, step=0.05, help="line-to-line horizontal jitter in px")
    drift: float = _p(2.0, 0.0, 100.0, step=0.5, help="slow horizontal drift over the frame in px")
    line_noise: float = _p(0.015, 0.0, 0.3, step=0.005, help="line-to-line brightness fluctuation")
    charging: float = _p(0.15, 0.0, 1.0, step=0.05, help="strength of bright charging streaks along the scan direction")
    scratches: float = _p(0.2, 0.0, 1.0, step=0.05, help="polishing scratches (number and contrast)")
    dust: float = _p(0.15, 0.0, 1.0, step=0.05, help="dust particles and contamination spots")
    gap_width: float = _p(0.0, 0.0, 30.0, step=0.5,
                          help="thin film: width in px of the dark gaps between grains (0 = off; the labels keep "
                               "covering the gaps, split in their middle)")
    gap_depth: float = _p(0.85, 0.0, 1.0, step=0.05, help="thin film: darkness of the gaps between grains")


@dataclass
class OpticalParams(_Params):
    """Etched light-optical look: light grains, dark boundary lines of varying contrast."""

    section: ClassVar[str] = "optical"

    brightness: float = _p(0.78, 0.0, 1.0, step=0.05, help="mean grain brightness")
    grain_contrast: float = _p(0.08, 0.0, 1.0, step=0.01, help="grain-to-grain brightness variation (etch response)")
    line_strength: float = _p(0.55, 0.0, 1.0, step=0.05, help="darkness of etched boundary lines")
    line_width: float = _p(1.0, 0.3, 10.0, step=0.1, help="width (px, Gaussian sigma) of the boundary lines")
    faint_fraction: float = _p(0.25, 0.0, 1.0, step=0.05, help="fraction of boundaries etched only faintly")
    missing_fraction: float = _p(0.05, 0.0, 1.0, step=0.01, help="fraction of boundaries not revealed by the etch at all")
    twin_contrast: float = _p(0.6, 0.0, 1.0, step=0.05, help="contrast of twin bands relative to the grain contrast")
    gradient: float = _p(0.12, 0.0, 1.0, step=0.05, help="uneven illumination / vignetting")
    blur: float = _p(1.2, 0.0, 10.0, step=0.1, help="optical blur sigma in px")
    noise: float = _p(0.015, 0.0, 0.5, step=0.005, help="Gaussian camera noise")
    stains: float = _p(0.15, 0.0, 1.0, step=0.05, help="etch stains and pitting inside grains")
    scratches: float = _p(0.2, 0.0, 1.0, step=0.05, help="polishing scratches (number and contrast)")
    dust: float = _p(0.1, 0.0, 1.0, step=0.05, help="dust particles")


@dataclass
class TintParams(_Params):
    """Colour (tint) etching: an interference film whose thickness follows the grain orientation;
    boundaries show only as a change of colour."""

    section: ClassVar[str] = "tint"

    brightness: float = _p(0.8, 0.0, 1.0, step=0.05, help="reflectance of the etched surface")
    film_thickness: float = _p(0.35, 0.0, 1.0, step=0.05,
                               help="mean interference film thickness (colour family: thin = yellow / brown, "
                                    "thick = purple, blue, higher-order green)")
    thickness_spread: float = _p(0.6, 0.0, 1.0, step=0.05,
                                 help="grain-to-grain film thickness spread with orientation (0 = one colour)")
    saturation: float = _p(0.85, 0.0, 1.0, step=0.05, help="colour saturation (0 = grey)")
    stain_gradient: float = _p(0.3, 0.0, 1.0, step=0.05,
                               help="smooth film-thickness gradient across the field (colours drift; 0 = off)")
    mottling: float = _p(0.1, 0.0, 1.0, step=0.05, help="fine film-thickness mottling inside grains (0 = off)")
    line_strength: float = _p(0.0, 0.0, 1.0, step=0.05,
                              help="darkness of a faint boundary line (0 = off: boundaries only as colour change)")
    line_width: float = _p(1.0, 0.3, 10.0, step=0.1, help="width (px, Gaussian sigma) of the boundary line")
    twin_contrast: float = _p(0.8, 0.0, 1.0, step=0.05, help="colour difference of twin bands relative to grains")
    gradient: float = _p(0.1, 0.0, 1.0, step=0.05, help="uneven illumination / vignetting")
    blur: float = _p(1.0, 0.0, 10.0, step=0.1, help="optical blur sigma in px")
    noise: float = _p(0.015, 0.0, 0.5, step=0.005, help="Gaussian camera noise per channel")
    scratches: float = _p(0.1, 0.0, 1.0, step=0.05, help="polishing scratches (number and contrast)")


@dataclass
class PolarizedParams(_Params):
    """Polarised light on an anodised (Barker-etched) surface, optionally with a sensitive-tint plate:
    grain hue and brightness from the optic axis relative to the polariser."""

    section: ClassVar[str] = "polarized"

    brightness: float = _p(0.85, 0.0, 1.0, step=0.05, help="transmitted intensity scale")
    polarizer_angle: float = _p(0.0, -90.0, 90.0, step=5.0, help="polariser direction in degrees")
    tint_plate: float = _p(1.0, 0.0, 1.0, step=0.05,
                           help="sensitive-tint (lambda) plate: 0 = crossed polars only (grey-brown extinction "
                                "contrast), 1 = full plate (magenta, blue and yellow grains)")
    retardation: float = _p(0.5, 0.0, 1.0, step=0.05,
                            help="birefringence of the anodic film: grain retardation (1 = 300 nm at full tilt)")
    ambient: float = _p(0.05, 0.0, 0.5, step=0.01, help="depolarised stray light (lifts the extinct grains)")
    line_strength: float = _p(0.0, 0.0, 1.0, step=0.05, help="darkness of a faint boundary line (0 = off)")
    line_width: float = _p(1.0, 0.3, 10.0, step=0.1, help="width (px, Gaussian sigma) of the boundary line")
    twin_contrast: float = _p(0.8, 0.0, 1.0, step=0.05, help="colour difference of twin bands relative to grains")
    gradient: float = _p(0.15, 0.0, 1.0, step=0.05, help="uneven illumination / vignetting")
    blur: float = _p(1.0, 0.0, 10.0, step=0.1, help="optical blur sigma in px")
    noise: float = _p(0.02, 0.0, 0.5, step=0.005, help="Gaussian camera noise per channel")
    scratches: float = _p(0.1, 0.0, 1.0, step=0.05, help="polishing scratches (number and contrast)")


@dataclass
class EBSDParams(_Params):
    """EBSD inverse-pole-figure (IPF-Z) map: saturated orientation colours, band-contrast
    darkening at boundaries, noisy and unindexed pixels."""

    section: ClassVar[str] = "ebsd"

    saturation: float = _p(1.0, 0.0, 1.0, step=0.05, help="IPF colour saturation (0 = grey)")
    band_contrast: float = _p(0.4, 0.0, 1.0, step=0.05,
                              help="band-contrast darkening at boundaries (overlapping patterns; 0 = off)")
    band_width: float = _p(1.2, 0.3, 10.0, step=0.1, help="width (px, Gaussian sigma) of the band-contrast dip")
    band_noise: float = _p(0.1, 0.0, 1.0, step=0.05, help="pixel-to-pixel band-contrast (brightness) variation")
    orientation_noise: float = _p(0.03, 0.0, 0.3, step=0.01, help="pixel-to-pixel orientation noise (colour jitter)")
    intragrain: float = _p(0.05, 0.0, 0.5, step=0.01, help="smooth orientation gradients inside grains")
    unindexed: float = _p(0.02, 0.0, 0.5, step=0.01,
                          help="fraction of unindexed (black) pixels, most of them on boundaries (0 = off)")
    twin_contrast: float = _p(1.0, 0.0, 1.0, step=0.05, help="colour difference of twin bands relative to grains")


@dataclass
class SynthParams(_Params):
    """Everything needed to generate one synthetic micrograph (with a seed)."""

    section: ClassVar[str] = ""

    height: int = _p(512, 8, 32768, help="image height in px")
    width: int = _p(512, 8, 32768, help="image width in px")
    style: str = _p("sem", choices=STYLES,
                    help="rendering style: sem, optical (grey); tint (colour etching), polarized (anodised, "
                         "polarised light), ebsd (IPF map) give RGB images")
    bit_depth: int = _p(8, choices=(8, 16), help="output bit depth")
    pixel_size: float | None = _p(None, 1e-6, 1e6, help="pixel size in µm written to the TIFF metadata (None = unknown)")
    tessellation: TessellationParams = field(default_factory=TessellationParams, metadata={"help": "grain geometry"})
    sem: SEMParams = field(default_factory=SEMParams, metadata={"help": "SEM look"})
    optical: OpticalParams = field(default_factory=OpticalParams, metadata={"help": "etched optical look"})
    tint: TintParams = field(default_factory=TintParams, metadata={"help": "colour (tint) etching look"})
    polarized: PolarizedParams = field(default_factory=PolarizedParams, metadata={"help": "polarised light look"})
    ebsd: EBSDParams = field(default_factory=EBSDParams, metadata={"help": "EBSD IPF map look"})

    # ------------------------------------------------------------------ derived
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.height), int(self.width))

    @property
    def channels(self) -> int:
        """3 for the colour styles (RGB images), 1 for grey."""
        return 3 if self.style in COLOUR_STYLES else 1

    @property
    def look(self) -> str:
        """Short name of the look: the style, and for SEM its kind (``sem-bse``, ``sem-film``,
        ``sem-halo``); recorded in dataset.json."""
        if self.style != "sem":
            return self.style
        s = self.sem
        if s.detector == "bse":
            return "sem-bse"
        if s.gap_width > 0:
            return "sem-film"
        if s.edge_mode == "halo" and s.edge_strength > 0:
            return "sem-halo"
        return "sem"

    def n_grains(self) -> int:
        """Number of grains implied by ``grains`` or ``mean_diameter`` (before particles)."""
        t = self.tessellation
        if t.grains is not None:
            return int(t.grains)
        area = self.height * self.width * (1.0 - t.porosity)
        # mean equivalent diameter d of lognormal sizes: E[d^2] = d^2 * exp(sigma^2) (laguerre);
        # Poisson-Voronoi has var(area)/mean^2 ~ 0.28 which gives a similar correction.
        s2 = t.size_sigma**2 if t.method == "laguerre" else _S2.get(t.method, 0.25)
        mean_area = math.pi / 4.0 * t.mean_diameter**2 * math.exp(s2)
        return max(1, int(round(area / mean_area)))

    def mean_diameter(self) -> float:
        """Expected mean equivalent diameter in px."""
        t = self.tessellation
        if t.mean_diameter is not None:
            return float(t.mean_diameter)
        s2 = t.size_sigma**2 if t.method == "laguerre" else _S2.get(t.method, 0.25)
        area = self.height * self.width * (1.0 - t.porosity) / max(1, t.grains)
        return math.sqrt(4.0 * area / math.pi / math.exp(s2))

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        for name in ("height", "width", "bit_depth"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParameterError(f"{name}: expected an integer, got {v!r}")
        t = self.tessellation
        for name in ("grains", "lloyd_steps", "boundary_width"):
            v = getattr(t, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ParameterError(f"tessellation.{name}: expected an integer, got {v!r}")
        sections = (self.tessellation, self.sem, self.optical, self.tint, self.polarized, self.ebsd)
        for sub in sections:
            if not isinstance(sub, _Params):
                raise ParameterError(f"expected parameter sections, got {type(sub).__name__}")
        for name in ("height", "width"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"{name}: image size must be positive, got {getattr(self, name)}")
        self._check_ranges()
        if self.height * self.width > MAX_PIXELS:
            raise ParameterError(
                f"image size: {self.height}x{self.width} px is too large to generate in one piece "
                f"(at most {MAX_PIXELS // 1_000_000} million px, about 60 bytes of memory each); generate tiles instead"
            )
        for sub in sections:
            sub.validate()
        if t.grains is None and t.mean_diameter is None:
            raise ParameterError("tessellation: give either grains or mean_diameter")
        if t.grains is not None and t.grains <= 0:
            raise ParameterError(f"tessellation.grains: must be positive, got {t.grains}")
        n = self.n_grains()
        pixels = self.height * self.width
        if n * 16 > pixels:
            raise ParameterError(
                f"tessellation.grains: {n} grains do not fit in {self.height}x{self.width} px "
                f"(at most {pixels // 16}, one grain needs at least 16 px)"
            )
        if t.porosity + t.particle_fraction >= 0.6:
            raise ParameterError("tessellation: porosity + particle_fraction must stay below 0.6")

    # ------------------------------------------------------------------- JSON
    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> SynthParams:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"parameters are not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        from .._io import atomic_write_text

        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> SynthParams:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ParameterError(f"cannot read parameter file {p}: {exc.strerror or exc}") from None
        if not text.strip():
            raise ParameterError(f"{p} is empty (expected parameters as JSON)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"{p} is not valid JSON: {exc}") from None
        # a dataset.json holds the parameters under "params"
        if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
            data = data["params"]
        return cls.from_dict(data)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides) -> SynthParams:
        """Named starting points: ``sem``, ``sem-elongated``, ``optical``, ``sem-twins``, ``porous``, ``bse``,
        ``film``, ``sem-halo``, ``tint``, ``polarized``, ``ebsd``, ``growth`` (see :data:`PRESETS`)."""
        p = cls()
        if name == "sem":
            pass
        elif name == "sem-elongated":
            p.tessellation = TessellationParams(aspect_ratio=3.0, orientation=20.0, orientation_spread=8.0)
        elif name == "sem-twins":
            p.tessellation = TessellationParams(twin_fraction=0.5, hard_core=0.4)
        elif name == "optical":
            p.style = "optical"
        elif name == "porous":
            p.tessellation = TessellationParams(porosity=0.04, particle_fraction=0.03)
        elif name == "bse":
            p.sem = SEMParams(detector="bse", channelling=0.7, intragrain=0.03, charging=0.0, dose=40.0)
        elif name == "film":
            p.tessellation = TessellationParams(hard_core=0.4, curvature=0.2)
            p.sem = SEMParams(gap_width=3.0, gap_depth=0.9, edge_strength=0.0, shadowing=0.1, channelling=0.2,
                              brightness=0.55, scratches=0.0)
        elif name == "sem-halo":
            p.sem = SEMParams(edge_mode="halo", edge_strength=0.5, shadowing=0.15, channelling=0.2)
        elif name in COLOUR_STYLES:
            p.style = name
            p.tessellation = TessellationParams(method="growth")
        elif name == "growth":
            p.style = "optical"
            p.tessellation = TessellationParams(method="growth", twin_fraction=0.2)
        else:
            raise ParameterError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        for k, v in overrides.items():
            setattr(p, k, v)
        return p


#: the names :meth:`SynthParams.preset` accepts
PRESETS = ("sem", "sem-elongated", "sem-twins", "optical", "porous", "bse", "film", "sem-halo", "tint", "polarized",
           "ebsd", "growth")
