"""A micrograph as it is stored, with its calibration and without the SEM data bar.

:func:`read_micrograph` reads an image file (TIFF, PNG, JPEG, BMP) as it is stored (dtype and colour kept),
its pixel size from the vendor metadata (:mod:`.vendor`), and cuts off the **data bar**: the strip of
instrument readings (text on a flat black, white or grey background) that FEI / Thermo Fisher, Zeiss,
JEOL, Tescan and Hitachi software glue below the image.  The strip is not specimen: left in, its text
becomes "grains", its black and white set the intensity stretch, and its rows count in every statistic.

Where the metadata states the height of the image (FEI ``[Image] ResolutionY``, JEOL ``$CM_FULL_SIZE``,
Hitachi ``DataSize``) or of the strip (Tescan ``ImageStripSize``, FEI ``[PrivateFei] DatabarHeight``)
it is used; otherwise :func:`detect_data_bar` looks for one in the bottom rows, conservatively: a
micrograph is never cut unless its bottom is a band of exactly uniform background with high-contrast
marks on it (text) that starts abruptly at one row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import IMAGE_EXTENSIONS, DataError, Image, _check_file, _read_array

__all__ = ["Micrograph", "detect_data_bar", "read_micrograph"]

#: a data bar is at most this fraction of the image height (real ones: 5-12 %)
MAX_BAR_FRACTION = 0.25
#: ... and at least this many rows
MIN_BAR_ROWS = 8
#: a row of the bar: its most common value owns at least this fraction of it (real bars: 0.47-1.0)
BAR_ROW_UNIFORMITY = 0.3
#: a row allowed inside the bar (large text, a logo) while flat rows follow, at least this uniform
BAR_TEXT_ROW_UNIFORMITY = 0.15
#: the specimen rows just above the bar: their most common value owns at most this fraction (real: 0-0.02)
MAX_SPECIMEN_UNIFORMITY = 0.1
#: the marks on the bar (text, scale bar) differ from its background by at least this fraction of the
#: image's intensity range ...
MIN_TEXT_CONTRAST = 0.25
#: ... and cover this fraction of the bar (some text, not noise; not a picture)
TEXT_FRACTION = (0.002, 0.6)
#: ... in at least this many separate pieces (characters)
MIN_MARKS = 4


@dataclass(frozen=True)
class Micrograph:
    """A micrograph read by :func:`read_micrograph`.

    Attributes
    ----------
    image : the pixels as stored (dtype kept; (H, W) grey, (H, W, 3|4) colour) without the data bar
    pixel_size_um : µm per pixel from the metadata, None when unknown
    unit : ``"µm"`` when the pixel size is known, else ``"pixel"``
    source : where the pixel size came from (e.g. ``"FEI Scan.PixelWidth"``), "" when unknown
    data_bar : the rows cut off the bottom (as stored), None when there is no data bar
    data_bar_rows : their number (0: none)
    data_bar_source : how the data bar was found (a metadata entry or ``"detected in the pixels"``)
    vendor : "FEI", "Zeiss", "Tescan", "JEOL", "Hitachi", "ImageJ", "TIFF" or ""
    vendor_metadata : the vendor's metadata, JSON-safe and trimmed (see :func:`.vendor.json_safe`)
    path : the file
    rgb : the image is colour (last axis RGB / RGBA)
    labels : the file holds grain labels written by :func:`.labels_tiff.write_labels_tiff` (no data bar
        is looked for)
    notes : remarks (non-square pixels, metadata that does not fit the pixels, ...)
    """

    image: np.ndarray
    pixel_size_um: float | None
    unit: str
    source: str
    data_bar: np.ndarray | None
    data_bar_rows: int
    data_bar_source: str = ""
    vendor: str = ""
    vendor_metadata: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    rgb: bool = False
    labels: bool = False
    notes: tuple[str, ...] = ()

    @property
    def calibrated(self) -> bool:
        return self.pixel_size_um is not None

    def info(self) -> dict[str, Any]:
        """JSON-safe summary (pixel size, source, vendor, data bar rows, notes) for layer metadata."""
        return {"pixel_size_um": self.pixel_size_um, "pixel_size_source": self.source, "vendor": self.vendor,
                "data_bar_rows": int(self.data_bar_rows), "data_bar_source": self.data_bar_source,
                "file": self.path, "notes": list(self.notes)}


# ----------------------------------------------------------------------------------- detection
def _plane(arr: np.ndarray, rgb: bool) -> np.ndarray:
    """One value per pixel: the pixels themselves, or the channel mean of colour (flat fills stay flat)."""
    if rgb:
        return arr[..., :3].astype(np.float32).mean(axis=-1)
    return arr


def _row_modes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most common value of each row and the fraction of the row it owns."""
    n, w = rows.shape
    values = np.empty(n, dtype=rows.dtype)
    share = np.empty(n, dtype=np.float64)
    small_int = rows.dtype.kind in "ub" and rows.dtype.itemsize <= 2
    for i in range(n):
        row = rows[i]
        if small_int:
            counts = np.bincount(row.ravel())
            k = int(counts.argmax())
            values[i], share[i] = k, counts[k] / w
        else:
            vals, counts = np.unique(row, return_counts=True)
            k = int(counts.argmax())
            values[i], share[i] = vals[k], counts[k] / w
    return values, share


def detect_data_bar(image: np.ndarray, rgb: bool | None = None) -> int:
    """The height in rows of a data bar at the bottom of ``image``, 0 when there is none.

    A data bar is a band across the whole width at the bottom, at least :data:`MIN_BAR_ROWS` and less
    than :data:`MAX_BAR_FRACTION` of the height, where

    * in (nearly) every row one value owns a large part of the row (:data:`BAR_ROW_UNIFORMITY`: its flat
      background; specimen rows have noise, so no single value owns more than a few percent of one);
    * the band starts abruptly: its top row is flat and the rows above it are specimen
      (:data:`MAX_SPECIMEN_UNIFORMITY`), so a dark or saturated region that fades in is not cut;
    * there are marks on it (text, a scale bar) that stand out from the background by at least
      :data:`MIN_TEXT_CONTRAST` of the image's range, covering some but not most of it
      (:data:`TEXT_FRACTION`), in at least :data:`MIN_MARKS` pieces: a blank black strip, or one with a
      single blob on it, is no data bar.

    ``rgb``: the last axis is colour (default: a 3-D array with 3 or 4 channels).
    """
    arr = np.asarray(image)
    if rgb is None:
        rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if arr.ndim != (3 if rgb else 2):
        return 0
    h, w = arr.shape[:2]
    limit = int(h * MAX_BAR_FRACTION)
    if limit < MIN_BAR_ROWS + 1 or w < 32:
        return 0
    if _row_modes(_plane(arr[h - 1:], rgb))[1][0] < BAR_ROW_UNIFORMITY:
        return 0  # the usual case, decided on one row
    plane = _plane(arr[h - limit - 4:], rgb)  # the rows that can be bar, and a few above
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        return 0
    values, share = _row_modes(plane)
    n = len(share)
    if share[-1] < BAR_ROW_UNIFORMITY:
        return 0
    # walk up over bar rows; text-heavy rows are allowed where flat rows follow above them
    top = n - 1
    i = n - 2
    while i >= 0:
        if share[i] >= BAR_ROW_UNIFORMITY:
            top = i
            i -= 1
            continue
        j = i
        while j >= 0 and BAR_TEXT_ROW_UNIFORMITY <= share[j] < BAR_ROW_UNIFORMITY and i - j < 3:
            j -= 1
        if j >= 0 and j < i and share[j] >= BAR_ROW_UNIFORMITY:
            i = j  # a short run of text rows inside the bar
            continue
        break
    rows = n - top
    if rows < MIN_BAR_ROWS or top < 3:  # too short, or flat up to the size limit: no bar
        return 0
    above = share[max(0, top - 3):top]
    if above.max() > MAX_SPECIMEN_UNIFORMITY:
        return 0  # no abrupt start
    band = plane[top:]
    band_values = values[top:]
    flat = share[top:] >= BAR_ROW_UNIFORMITY
    if flat.mean() < 0.7:
        return 0
    # the background: the commonest row value of the band; marks: pixels away from their row's value
    bg_values, bg_counts = np.unique(band_values[flat], return_counts=True)
    background = bg_values[int(bg_counts.argmax())]
    if (band_values[flat] == background).mean() < 0.5:
        return 0
    sample = _plane(arr[: h - rows: max(1, (h - rows) // 256), :: max(1, w // 256)], rgb)
    lo, hi = np.percentile(sample, (0.5, 99.5)) if sample.size else (0.0, 0.0)
    full_lo, full_hi = float(min(lo, np.min(band))), float(max(hi, np.max(band)))
    span = full_hi - full_lo
    if not span > 0:
        return 0
    contrast = np.abs(band.astype(np.float64) - float(background)) / span
    marks = contrast >= MIN_TEXT_CONTRAST
    frac = float(marks.mean())
    if not TEXT_FRACTION[0] <= frac <= TEXT_FRACTION[1] or int(marks.sum()) < 20:
        return 0
    from scipy import ndimage as ndi

    if ndi.label(marks, structure=np.ones((3, 3), bool))[1] < MIN_MARKS:
        return 0  # one blob is no text
    return int(rows)


# -------------------------------------------------------------------------------------- reading
def _metadata_bar(cal: Any, shape: tuple[int, ...], plane_check) -> tuple[int | None, str, list[str]]:
    """Data bar rows stated by the metadata: (rows, source, notes); rows None when it states nothing
    usable (0: it states there is none)."""
    h, w = shape[:2]
    notes: list[str] = []
    cap = h // 2
    if cal.image_rows is not None:
        if cal.image_cols is not None and cal.image_cols != w:
            notes.append(f"{cal.bar_source or 'the metadata'} describes a {cal.image_cols} px wide image, this one "
                         f"is {w} px wide (resized after acquisition?): the data bar is looked for in the pixels")
        elif 0 < cal.image_rows < h and h - cal.image_rows <= cap:
            return h - cal.image_rows, cal.bar_source, notes
        elif cal.image_rows == h and cal.vendor == "FEI":
            return 0, cal.bar_source, notes  # FEI: the stated image height is the file's: no bar
    if cal.bar_rows is not None:
        if cal.bar_rows == 0 and cal.vendor == "Tescan":
            return 0, cal.bar_source, notes
        if 0 < cal.bar_rows <= cap:
            if cal.vendor == "Tescan" or plane_check(cal.bar_rows):
                return cal.bar_rows, cal.bar_source, notes
    return None, "", notes


def _bottom_is_flat(arr: np.ndarray, rgb: bool, rows: int) -> bool:
    plane = _plane(arr[arr.shape[0] - rows:], rgb)
    _, share = _row_modes(plane[-2:])
    return bool(share.min() >= BAR_ROW_UNIFORMITY)


def read_micrograph(path: str | Path, detect_bar: bool = True) -> Micrograph:
    """Read ``path`` as stored, with its calibration, the SEM data bar cut off (see the module doc).

    ``detect_bar=False``: use only the data bar height the metadata states, never look in the pixels.

    Raises
    ------
    DataError
        missing, empty, corrupt or unsupported files; stacks (more than one plane that is not colour).
    """
    from .labels_tiff import is_labels_tiff
    from .vendor import Calibration, json_safe, sidecar_calibration, tiff_calibration

    path = Path(path)
    _check_file(path, "image", IMAGE_EXTENSIONS)
    cal = Calibration()
    labels = False
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        shape, axes = None, ""
        try:
            with tifffile.TiffFile(path) as tif:
                cal = tiff_calibration(tif, path)
                labels = is_labels_tiff(tif)
                if tif.series:
                    shape, axes = tuple(tif.series[0].shape), str(tif.series[0].axes)
        except Exception:  # noqa: BLE001 - _read_array below says what is wrong with the file
            cal = Calibration()
        if shape is not None and not _one_plane(shape, axes):
            raise DataError(f"{path}: a stack of shape {shape}; expected one grey or colour image")
    else:
        cal = sidecar_calibration(path) or Calibration()
    arr, channel_axis, _ = _read_array(path)
    arr = _as_stored_plane(arr, channel_axis, path)
    rgb = arr.ndim == 3
    notes = list(cal.notes)
    if labels:
        rows, bar_source = 0, ""
    else:
        rows, bar_source, more = _metadata_bar(cal, arr.shape, lambda r: _bottom_is_flat(arr, rgb, r))
        notes += more
    if rows is None:
        rows = detect_data_bar(arr, rgb) if detect_bar else 0
        bar_source = "detected in the pixels" if rows else ""
    image, bar = (arr[: arr.shape[0] - rows], arr[arr.shape[0] - rows:]) if rows else (arr, None)
    size = cal.pixel_size_um
    return Micrograph(image=image, pixel_size_um=size, unit="µm" if size else "pixel", source=cal.source,
                      data_bar=bar, data_bar_rows=int(rows), data_bar_source=bar_source, vendor=cal.vendor,
                      vendor_metadata=json_safe(cal.metadata), path=str(path), rgb=rgb, labels=labels,
                      notes=tuple(notes))


def read_specimen(path: str | Path, low: float = 0.1, high: float = 99.9,
                  detect_bar: bool = True) -> tuple[Image, Micrograph]:
    """:func:`~.io.read_image` without the SEM data bar: the specimen rows as the engine's float image
    (grey or colour in [0, 1], the same normalisation), and the :class:`Micrograph` it came from
    (``data_bar_rows``, ``data_bar_source``, calibration, notes)."""
    from .channels import normalize_image, to_planes

    m = read_micrograph(path, detect_bar=detect_bar)
    planes = to_planes(m.image, m.path, m.image.ndim - 1 if m.rgb else None)
    if planes.dtype.kind == "f" and not np.isfinite(planes).all():
        raise DataError(f"{m.path}: the image contains NaN or infinite values")
    return Image(normalize_image(planes, low, high), m.pixel_size_um, m.path, str(m.image.dtype)), m


def _one_plane(shape: tuple[int, ...], axes: str) -> bool:
    """Whether a TIFF series of ``shape`` / ``axes`` is one grey or colour plane (singleton axes aside)."""
    dims = [(n, a) for n, a in zip(shape, axes) if n != 1]
    colour = [n for n, a in dims if a == "S"]
    return len(dims) - len(colour) <= 2 and all(n in (2, 3, 4) for n in colour) and len(colour) <= 1


def _as_stored_plane(arr: np.ndarray, channel_axis: int | None, path: Path) -> np.ndarray:
    """``arr`` as (H, W) or (H, W, C) with C in 3, 4 (singleton axes dropped, the colour axis last; grey +
    alpha becomes grey); DataError for stacks."""
    arr = np.asarray(arr)
    if channel_axis is not None and arr.ndim == 3 and arr.shape[channel_axis] in (2, 3, 4):
        arr = np.moveaxis(arr, channel_axis, -1)
    if arr.ndim == 3 and arr.shape[-1] == 2:
        arr = arr[..., 0]  # grey + alpha (an "LA" PNG, a 2-sample TIFF), as channels.to_planes reads it
    keep_last = arr.ndim >= 3 and arr.shape[-1] in (3, 4)
    spatial = arr.ndim - (1 if keep_last else 0)
    singletons = [i for i in range(spatial) if arr.shape[i] == 1]
    # drop singleton axes, but keep two spatial axes: a 1 x 1 or 1 x N image stays 2-D (and is refused
    # later as too small, with its size, rather than called a stack)
    drop = tuple(singletons[: max(0, spatial - 2)]) if len(singletons) > spatial - 2 else tuple(singletons)
    out = arr.squeeze(axis=drop) if drop else arr
    if out.ndim == 2 or (out.ndim == 3 and out.shape[-1] in (3, 4)):
        return out
    raise DataError(f"{path}: a stack of shape {arr.shape}; expected one grey or colour image")
