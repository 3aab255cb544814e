"""napari-grainlab: grain segmentation for materials micrographs in napari.

The headless engine lives in :mod:`napari_grainlab.core` (no Qt, no napari); the docks in
:mod:`napari_grainlab.gui`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
