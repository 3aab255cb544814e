"""napari reader (npe2 ``readers`` contribution) for calibrated micrographs.

Opens a TIFF with its pixel size in µm (FEI / Thermo Fisher, Zeiss, Tescan, JEOL, Hitachi metadata,
ImageJ or the resolution tags; :func:`~napari_grainlab.core.data.micrograph.read_micrograph`) as the
layer's ``scale`` and ``units``, and without the SEM data bar, which is kept in the layer metadata
(``metadata["grainlab"]["data_bar"]``).  Label TIFFs written by this plugin's writer open as a Labels layer.

A single-image TIFF with nothing to add (no calibration, no data bar) opens as a plain layer (scale 1, as napari's
own reader gives it), so that a user who told napari to remember this reader for ``*.tif`` can still open any
micrograph. What this reader cannot read as one micrograph (stacks, several files, broken files) it declines
(``get_reader`` returns None) and leaves to napari's own reader.
"""

from __future__ import annotations

import inspect
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["get_reader", "micrograph_layer_data"]

log = logging.getLogger(__name__)

_TIFF = (".tif", ".tiff")


@lru_cache(maxsize=1)
def _layers_take_units() -> bool:
    """napari >= 0.6 layers accept ``units``; older versions reject the keyword."""
    try:
        from napari.layers import Image
    except ImportError:  # pragma: no cover - the reader runs inside napari
        return False
    return "units" in inspect.signature(Image.__init__).parameters


def micrograph_layer_data(m: Any) -> list[tuple[Any, dict[str, Any], str]]:
    """The LayerData tuple of a :class:`~napari_grainlab.core.data.micrograph.Micrograph`."""
    own: dict[str, Any] = m.info()
    own["vendor_metadata"] = m.vendor_metadata
    if m.data_bar is not None:
        own["data_bar"] = m.data_bar
    kwargs: dict[str, Any] = {"name": Path(m.path).stem, "metadata": {"grainlab": own}}
    if m.pixel_size_um:
        kwargs["scale"] = (float(m.pixel_size_um), float(m.pixel_size_um))
        if _layers_take_units():
            kwargs["units"] = ("µm", "µm")
    if m.labels:
        return [(m.image, kwargs, "labels")]
    if m.rgb:
        kwargs["rgb"] = True
    return [(m.image, kwargs, "image")]


def _single_path(path: Any) -> str | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None  # a stack: napari's own reader
        path = path[0]
    path = str(path)
    return path if path.lower().endswith(_TIFF) else None


def get_reader(path: Any):
    """npe2 ``get_reader``: a reader function for one TIFF micrograph (calibrated or not), else None.

    The file is read here (the data bar can only be found in the pixels), and the result is what the
    returned function gives back.
    """
    single = _single_path(path)
    if single is None or not Path(single).is_file():
        return None
    from .core.data.micrograph import read_micrograph

    try:
        m = read_micrograph(single)
    except Exception as exc:  # noqa: BLE001 - a file we cannot read is napari's own reader's to report
        log.debug("napari-grainlab declines %s: %s", single, exc)
        return None
    layers = micrograph_layer_data(m)

    def read(_path: Any) -> list[tuple[Any, dict[str, Any], str]]:
        return layers

    return read
