"""napari writer (npe2 ``writers`` contribution): a Labels layer as a calibrated TIFF and its grain table.

*File ▸ Save Selected Layer(s)…* with the file type "GrainLab grain labels" writes ``NAME.tif`` (uint16, or
uint32 beyond 65 535 grains, with the pixel size in the resolution tags so ImageJ / Fiji show µm) and
``NAME_grains.csv`` (one row per grain: area, equivalent diameter, ... in µm when the pixel size is known;
:func:`~napari_grainlab.core.data.labels_tiff.write_labels_tiff`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["layer_meta_pixel_size", "write_labels"]


def _plausible(value: Any) -> float | None:
    from .core.data.io import plausible_pixel_size

    return plausible_pixel_size(value)


def layer_meta_pixel_size(meta: dict[str, Any]) -> float | None:
    """The pixel size in µm of a layer from its LayerData attributes: its ``scale`` in length ``units``,
    else ``metadata["grainlab"]["pixel_size_um"]``, else a ``scale`` other than 1 in pixel units (taken as
    µm, as the docks do); None when unknown."""
    from .core.data.io import _unit_to_um

    scale = meta.get("scale")
    scale = float(scale[-1]) if scale is not None and len(scale) else 1.0
    units = meta.get("units")
    unit = str(units[-1]) if units is not None and len(units) else None
    factor = _unit_to_um(unit) if unit else None
    if factor is not None and _plausible(scale * factor):
        return scale * factor
    own = (meta.get("metadata") or {}).get("grainlab") or {}
    for value in (own.get("pixel_size_um"), (meta.get("metadata") or {}).get("pixel_size_um")):
        if _plausible(value):
            return float(value)
    if scale != 1.0 and (unit is None or unit == "pixel") and _plausible(scale):
        return scale
    return None


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels: ``path`` (.tif / .tiff) and ``NAME_grains.csv`` next to it."""
    import numpy as np

    from .core.data.labels_tiff import write_labels_tiff

    if isinstance(data, (list, tuple)):  # multiscale: the full-resolution level
        data = data[0]
    arr = np.asarray(data)
    out = Path(path)
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_name(out.name + ".tif")
    return [str(p) for p in write_labels_tiff(out, arr, layer_meta_pixel_size(meta))]
