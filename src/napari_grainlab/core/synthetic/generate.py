"""One synthetic micrograph: tessellate, render (grey or RGB), quantise."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import ParameterError
from .params import SynthParams
from .render import EffectRNG, quantize, render_optical, render_sem
from .tessellation import Microstructure, tessellate

__all__ = ["SyntheticSample", "generate", "item_seed"]

PHASE_NAMES = {0: "pore", 1: "matrix", 2: "particle"}


def item_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th item of a dataset generated with ``seed`` (independent of
    the number of worker processes)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


@dataclass
class SyntheticSample:
    """A generated micrograph with its ground truth."""

    image: np.ndarray  # uint8 / uint16, H x W (grey) or H x W x 3 (RGB, the colour styles)
    labels: np.ndarray  # uint32 grain instances, 0 = pore
    boundaries: np.ndarray  # bool, boundary band of ``tessellation.boundary_width`` px
    params: SynthParams
    seed: int
    micro: Microstructure = field(repr=False)

    def image_float(self) -> np.ndarray:
        """The image as float32 in [0, 1]."""
        scale = 255.0 if self.image.dtype == np.uint8 else 65535.0
        return self.image.astype(np.float32) / np.float32(scale)

    @property
    def twins(self) -> np.ndarray | None:
        """The twin bands (uint8: 0 none, k the k-th band of its grain), None when no twins were drawn."""
        return self.micro.twins

    @cached_property
    def twin_boundaries(self) -> np.ndarray | None:
        """Bool mask of the twin boundaries: both sides of every interface between a twin band and its
        parent grain (twins share their parent's label, see :func:`~..data.targets.twin_boundaries`);
        None when the parameters draw no twins (``tessellation.twin_fraction`` 0)."""
        if self.micro.twins is None:
            return None
        from ..data.targets import twin_boundaries

        return twin_boundaries(self.labels, self.micro.twins)

    @cached_property
    def table(self) -> dict[str, np.ndarray]:
        """Per-grain table: geometry from the labels plus the generator's attributes."""
        from ..measure import grain_table

        m = self.micro
        tab = grain_table(self.labels, pixel_size=self.params.pixel_size, periodic=m.periodic,
                          reference=m.center if m.periodic else None)
        ids = tab["label"]
        tab["phase"] = np.array([PHASE_NAMES[int(p)] for p in m.phase[ids]], dtype=object)
        tab["twinned"] = m.twinned[ids]
        tab["crystal_orientation"] = m.crystal[ids] * 360.0
        tab["cell_elongation_direction"] = m.elongation[ids]
        return tab


def generate(params: SynthParams, seed: int = 0) -> SyntheticSample:
    """Generate one micrograph.  The same ``params`` and ``seed`` give byte-identical output."""
    if not isinstance(params, SynthParams):
        raise TypeError(f"params must be SynthParams, got {type(params).__name__}")
    params.validate()
    seed = int(seed)
    if seed < 0:
        raise ParameterError(f"seed must be >= 0, got {seed}")
    rngs = EffectRNG(seed)
    micro = tessellate(params, rngs("tessellation"))
    if params.style == "sem":
        img = render_sem(micro, params.sem, rngs)
    elif params.style == "optical":
        img = render_optical(micro, params.optical, rngs)
    else:
        from .render_colour import render_ebsd, render_polarized, render_tint

        render = {"tint": render_tint, "polarized": render_polarized, "ebsd": render_ebsd}[params.style]
        img = render(micro, getattr(params, params.style), rngs)
    image = quantize(img, params.bit_depth)
    shifts = micro.extras.pop("scan_shifts", None)
    if shifts is not None:
        micro = micro.scanned(shifts)
    boundaries = micro.boundaries(params.tessellation.boundary_width)
    return SyntheticSample(image=image, labels=micro.labels, boundaries=boundaries, params=params, seed=seed,
                           micro=micro)
