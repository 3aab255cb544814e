"""The built-in sample micrographs: their generator parameters and seeds.

napari's *File ▸ Open Sample ▸ GrainLab* (``napari_grainlab._sample_data``) and ``grainlab demo``
both draw these, so the sample a user opens in napari is the one the demo segments.
"""

from __future__ import annotations

from .params import SynthParams, TessellationParams

__all__ = ["OPTICAL_SEED", "SAMPLE_SIZE", "SEM_SEED", "optical_sample_params", "sem_sample_params"]

SAMPLE_SIZE = 768
SEM_SEED = 20240531
OPTICAL_SEED = 1017


def sem_sample_params() -> SynthParams:
    """SEM secondary-electron look, annealed microstructure with some twins (50 nm px)."""
    return SynthParams(
        height=SAMPLE_SIZE,
        width=SAMPLE_SIZE,
        style="sem",
        pixel_size=0.05,
        tessellation=TessellationParams(grains=160, hard_core=0.35, size_sigma=0.3, twin_fraction=0.3),
    )


def optical_sample_params() -> SynthParams:
    """Etched light-optical look, finer grains (0.5 µm px)."""
    return SynthParams(
        height=SAMPLE_SIZE,
        width=SAMPLE_SIZE,
        style="optical",
        pixel_size=0.5,
        tessellation=TessellationParams(grains=260, hard_core=0.3, size_sigma=0.35, lloyd_steps=1),
    )
