"""Grain labels as a calibrated TIFF that ImageJ / Fiji open with their scale, and their grain table as CSV.

:func:`write_labels_tiff` writes the smallest unsigned type that holds the labels: uint16 (up to 65 535
grains) as an ImageJ TIFF (``unit=um`` and the resolution tags: Fiji shows µm), uint32 as a plain TIFF
with the resolution tags in centimetres (ImageJ has no 32-bit integer images; it reads the scale in cm).
Both are zlib-compressed and carry a ``grainlab=labels`` mark, which the napari reader of this plugin uses
to open them as a Labels layer.  Next to ``NAME.tif`` goes ``NAME_grains.csv``, the grain table
(:func:`~napari_grainlab.core.measure.grain_table`).  Every file is written to a temporary file and
renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["LABELS_MARK", "is_labels_tiff", "labels_table_path", "write_labels_tiff"]

#: the ImageJ metadata entry (``grainlab=labels``) / description key that marks a labels TIFF of this plugin
LABELS_MARK = ("grainlab", "labels")


def labels_table_path(path: str | Path) -> Path:
    """``NAME_grains.csv`` next to ``NAME.tif``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_grains.csv")


def _as_labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise DataError(f"grain labels must be one 2-D image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError("grain labels must be whole numbers")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DataError(f"grain labels must be integers, got {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise DataError(f"grain labels must be >= 0 (minimum {int(arr.min())})")
    top = int(arr.max()) if arr.size else 0
    if top > np.iinfo(np.uint32).max:
        raise DataError(f"grain labels up to {top} do not fit in 32 bits")
    return arr.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32, copy=False)


def write_labels_tiff(path: str | Path, labels: Any, pixel_size_um: float | None = None,
                      table: bool = True) -> list[Path]:
    """Write grain ``labels`` (0 = background) to ``path`` (.tif) and, with ``table``, the grain table to
    ``NAME_grains.csv``; returns the paths written.

    ``pixel_size_um`` goes into the resolution tags (and the table is in µm); None: pixels.
    """
    import tifffile

    from .._io import atomic_writer, write_tiff
    from ..measure import grain_table, write_table_csv

    path = Path(path)
    arr = _as_labels(labels)
    px = float(pixel_size_um) if pixel_size_um else None
    if px is not None and not (np.isfinite(px) and px > 0):
        raise DataError(f"pixel size must be a positive number of µm, got {pixel_size_um!r}")
    with atomic_writer(path) as tmp:
        if arr.dtype == np.uint16:
            kwargs: dict[str, Any] = {"metadata": {LABELS_MARK[0]: LABELS_MARK[1]}}
            if px is not None:
                kwargs["resolution"] = (1.0 / px, 1.0 / px)
                kwargs["metadata"] = {"unit": "um", LABELS_MARK[0]: LABELS_MARK[1]}
            tifffile.imwrite(tmp, arr, imagej=True, compression="zlib", **kwargs)
        else:
            description = json.dumps({LABELS_MARK[0]: LABELS_MARK[1], "pixel_size_um": px})
            write_tiff(tmp, arr, px, description=description, compression="zlib")
    written = [path]
    if table:
        csv = labels_table_path(path)
        write_table_csv(csv, grain_table(arr, px), px)
        written.append(csv)
    return written


def is_labels_tiff(tif) -> bool:
    """Whether the open :class:`tifffile.TiffFile` was written by :func:`write_labels_tiff`."""
    ij = tif.imagej_metadata
    if ij and ij.get(LABELS_MARK[0]) == LABELS_MARK[1]:
        return True
    description = tif.pages.first.description
    if description.startswith("{"):
        try:
            return json.loads(description).get(LABELS_MARK[0]) == LABELS_MARK[1]
        except (ValueError, AttributeError):
            return False
    return False
