"""Synthetic training data sources (objects with ``sample(rng, size) -> (image, labels)``, and
``sample_twins(rng, size) -> (image, labels, twin-boundary mask)`` for models with a twin class)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ParameterError
from ..synthetic import SynthParams, generate


class PresetSource:
    """Synthetic micrographs of one preset look, with the grain size drawn per sample.

    ``diameter`` is the range of mean grain diameters in px; the look parameters stay those of ``preset``.
    Picklable, so DataLoader workers can use it.
    """

    def __init__(self, preset: str = "sem", diameter: tuple[float, float] = (12.0, 60.0)):
        try:
            SynthParams.preset(preset)
        except ParameterError as exc:
            raise ConfigError(f"synthetic: {exc} (or randomized)") from None
        self.preset = preset
        self.diameter = diameter

    def sample(self, rng: np.random.Generator, size) -> tuple[np.ndarray, np.ndarray]:
        return self.sample_twins(rng, size)[:2]

    def sample_twins(self, rng: np.random.Generator, size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sample` with the twin-boundary mask (bool, all False when the look draws no twins)."""
        h, w = (size, size) if np.isscalar(size) else size
        d = float(np.exp(rng.uniform(np.log(self.diameter[0]), np.log(self.diameter[1]))))
        p = SynthParams.preset(self.preset, height=int(h), width=int(w))
        p.tessellation.grains = None
        p.tessellation.mean_diameter = d
        s = generate(p, seed=int(rng.integers(2**31)))
        img = s.image_float()
        lo, hi = np.percentile(img, (0.1, 99.9))
        img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
        twins = s.twin_boundaries
        return img, s.labels, (np.zeros(s.labels.shape, dtype=bool) if twins is None else twins)


#: synthetic grains at a training scale are drawn within this factor of it (the generator's own size spread and
#: the geometric augmentation's zoom come on top)
DIAMETER_SPREAD = 1.15


def synthetic_source(name: str, diameter: float | None = None):
    """The source called ``name``: ``randomized`` (domain randomisation) or a preset look.

    ``diameter`` (px): draw mean grain diameters within :data:`DIAMETER_SPREAD` of it (training at a grain
    scale) instead of the source's wide default range.
    """
    grains = None if diameter is None else (float(diameter) / DIAMETER_SPREAD, float(diameter) * DIAMETER_SPREAD)
    if name in ("randomized", "random", "domain"):
        from ..synthetic.randomize import DomainRandomizer

        return DomainRandomizer() if grains is None else DomainRandomizer(grains=grains)
    return PresetSource(name) if grains is None else PresetSource(name, diameter=grains)
