"""Reading micrographs and label images: any dtype to float32 [0, 1], pixel size from metadata.

Images are read with tifffile (TIFF) or imageio (PNG, JPEG, BMP) as one grey ``(H, W)`` or colour
``(H, W, 3)`` plane (:func:`~.channels.to_planes`: an RGB file whose channels are equal is grey) and
stretched between two percentiles (:func:`normalize_intensity`, one range for all channels), so that
8-bit data, 12-bit SEM data stored in 16 bits and float data all look alike to a model.  Label images are
grain instances (0 = not annotated) or, detected automatically, binary boundary masks that are
converted to instances (:func:`boundary_mask_to_instances`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# scipy.ndimage is imported in the functions that use it: the GUI imports this module when a dock opens,
# and the engine's background import has it loaded by the time a dock uses it
from ..errors import DataError

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "LABEL_EXTENSIONS",
    "Image",
    "boundary_mask_to_instances",
    "constant_image_message",
    "is_boundary_mask",
    "labels_from_array",
    "mask_from_array",
    "read_mask",
    "normalize_intensity",
    "read_image",
    "read_labels",
    "read_pixel_size",
    "to_grayscale",
]

IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
LABEL_EXTENSIONS = (".tif", ".tiff", ".png")
_TIFF_EXTENSIONS = (".tif", ".tiff")

#: plausible pixel sizes in µm (10 pm .. 1 cm); anything else is a metadata error
PIXEL_SIZE_RANGE = (1e-5, 1e4)
#: resolutions in dots per inch that image programs write by default: they are no calibration
_DEFAULT_DPI = (72.0, 96.0, 150.0, 200.0, 300.0, 600.0, 1200.0)
_UNIT_UM = {
    "m": 1e6, "meter": 1e6, "metre": 1e6, "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0,
    "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "pm": 1e-6, "a": 1e-4, "å": 1e-4, "angstrom": 1e-4, "inch": 25400.0, "in": 25400.0,
}




@dataclass(frozen=True)
class Image:
    """A micrograph as the engine sees it.

    Attributes
    ----------
    data : float32 array in [0, 1], (H, W) for grey or (H, W, 3) RGB for colour (see :mod:`.channels`)
    pixel_size : µm per pixel from the file's metadata, or None when unknown
    source : the file it came from
    original_dtype : dtype of the stored pixels (e.g. ``"uint16"``)
    """

    data: np.ndarray
    pixel_size: float | None
    source: str
    original_dtype: str


# --------------------------------------------------------------------------------------- intensity
def _percentiles(arr: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """``np.percentile(arr, (low, high))`` (linear interpolation); exact and O(n) for <= 16-bit integers."""
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        flat = arr.ravel()
        offset = int(flat.min())
        counts = np.bincount((flat.astype(np.int64) - offset) if offset else flat)
        cum = np.cumsum(counts)
        n = int(cum[-1])
        out = []
        for q in (low, high):
            pos = q / 100.0 * (n - 1)
            k = int(math.floor(pos))
            frac = pos - k
            v0 = int(np.searchsorted(cum, k, side="right"))
            v1 = int(np.searchsorted(cum, min(k + 1, n - 1), side="right"))
            out.append(offset + v0 + frac * (v1 - v0))
        return out[0], out[1]
    lo, hi = np.percentile(arr, (low, high))
    return float(lo), float(hi)


def normalize_intensity(arr: np.ndarray, low: float = 0.1, high: float = 99.9) -> np.ndarray:
    """Stretch the ``low`` .. ``high`` percentile range of ``arr`` to [0, 1] (clipped), as float32.

    Used for every dtype, so 8-bit, 12-bit-in-16-bit and float micrographs look alike.  When the
    percentile range is empty (a few outliers on a flat image) the full range is used; a constant
    image becomes all zeros.

    Parameters
    ----------
    arr : array, any real or bool dtype, finite
    low, high : percentiles (0 <= low < high <= 100)
    """
    if not 0 <= low < high <= 100:
        raise DataError(f"normalize_intensity: need 0 <= low < high <= 100, got low={low}, high={high}")
    arr = np.asarray(arr)
    if arr.dtype.kind not in "buif":
        raise DataError(f"normalize_intensity: cannot use {arr.dtype} pixels")
    if arr.size == 0:
        raise DataError("normalize_intensity: the array is empty")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError("normalize_intensity: the array contains NaN or infinite values")
    lo, hi = _percentiles(arr, low, high)
    if not hi > lo:
        lo, hi = float(arr.min()), float(arr.max())
        if not hi > lo:
            return np.zeros(arr.shape, dtype=np.float32)
    work = np.float32 if (arr.dtype.itemsize <= 2 or arr.dtype == np.float32) else np.float64
    out = arr.astype(work)
    out -= work(lo)
    out *= work(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def to_grayscale(arr: np.ndarray, source: str = "image", channel_axis: int | None = None) -> np.ndarray:
    """One 2-D plane from an image array: singleton axes squeezed, RGB(A) to luminance, alpha dropped.

    ``channel_axis`` names the colour axis when known (e.g. from TIFF metadata); otherwise the last
    axis of a 3-D array (after squeezing) is colour when its length is 2 (gray + alpha), 3 or 4.
    Stacks (more than two spatial axes) raise :class:`DataError` with the shape.  Integer values
    keep their range (RGB becomes float).  For callers that want grey; :func:`read_image` keeps colour
    (:func:`~.channels.to_planes`).
    """
    from .channels import to_planes

    return to_planes(arr, source, channel_axis, colour=False)


def _squeeze_to(arr: np.ndarray, ndim: int) -> np.ndarray:
    """Drop singleton axes, leading ones first, while ``arr`` has more than ``ndim`` axes; with
    ``ndim == 3`` the last (colour) axis is kept."""
    last = arr.ndim if ndim == 2 else arr.ndim - 1
    singleton = [i for i in range(last) if arr.shape[i] == 1]
    drop = tuple(singleton[:max(0, arr.ndim - ndim)])
    return arr.squeeze(axis=drop) if drop else arr


# ------------------------------------------------------------------------------------------ files
def _check_file(path: Path, kind: str, extensions: tuple[str, ...]) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if path.suffix.lower() not in extensions:
        raise DataError(f"{path}: unsupported {kind} format {path.suffix or '(no extension)'}; "
                        f"use {', '.join(extensions)}")


class _TiffLog(logging.Filter):
    """Keeps what tifffile logs during our reads (a corrupt file gives hundreds of lines) off the terminal.

    Installed once on the ``tifffile`` logger; it only takes the records of the thread that is inside
    :meth:`capture`, so tifffile's log of anyone else's reads is left as it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        records = getattr(self._local, "records", None)
        if records is None:
            return True
        records.append(record)
        return False

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[logging.LogRecord]]:
        outer = getattr(self._local, "records", None)
        self._local.records = records = []
        try:
            yield records
        finally:
            self._local.records = outer


_TIFF_LOG = _TiffLog()
logging.getLogger("tifffile").addFilter(_TIFF_LOG)

#: tifffile errors it recovers from without harm to the pixels: one unreadable (e.g. vendor) tag, which
#: tifffile skips, series metadata (shaped, ImageJ, OME...) that it replaces by the plain pages, and a
#: strip count that it corrects (some writers get it wrong); a tag the image needs, or missing pixel data,
#: shows up as one of the page errors that are not in this list
_TIFF_HARMLESS = ("<TiffTag.fromfile> raised", " for tag #", " series ", "incorrect StripByteCounts count",
                  "incorrect StripOffsets count")
_TIFF_REPR = re.compile(r"<tifffile\.Tiff(Tag|Page) (\d+) @\d+>\s*")
_TIFF_RAISED = re.compile(r"^.*?raised \w+\((['\"])(.*)\1\)$")


def _tiff_problems(records: list[logging.LogRecord]) -> list[str]:
    """tifffile's messages among ``records`` that mean the pixels cannot be trusted."""
    out = []
    for r in records:
        msg = r.getMessage()
        damaged = r.levelno >= logging.ERROR and not any(h in msg for h in _TIFF_HARMLESS)
        if damaged or "read_segments" in msg:  # fewer strips / tiles than the image needs
            out.append(msg)
    return out


def _tiff_reason(text: str) -> str:
    """tifffile's message in words: ``<tifffile.TiffPage 0 @8> missing data offset tag`` -> ``page 0: ...``."""
    text = " ".join(str(text).split())
    m = _TIFF_RAISED.match(text)
    if m:
        text = m.group(2)
    text = _TIFF_REPR.sub(lambda m: f"{m.group(1).lower()} {m.group(2)}: ", text)
    return re.sub(r"^<[^>]*>\s*", "", text).strip() or "unknown problem"


def _not_a_tiff(path: Path, log: list[logging.LogRecord], exc: BaseException | None = None,
                what: str = "", log_first: bool = False) -> DataError:
    """The one-line error of a TIFF file that cannot be read: tifffile's first sign of damage, else the
    exception, else ``what`` (with ``log_first``: tifffile's first log line before it), else that line."""
    problems = _tiff_problems(log)
    if problems:
        reason = problems[0]
    elif exc is not None:  # tifffile's own errors are ValueErrors; others (ZeroDivisionError...) need their name
        known = isinstance(exc, (ValueError, OSError, EOFError, MemoryError))
        reason = _reason(exc) if known else f"{type(exc).__name__}: {_reason(exc)}"
    elif log and (log_first or not what):
        reason = log[0].getMessage()
    else:
        reason = what
    return DataError(f"{path}: not a readable TIFF (truncated or corrupt: {_tiff_reason(reason)})")


#: pixel data (bytes) worth checking against the file size before it is allocated
_BIG_READ = 256 << 20


def _implausible_size(path: Path, series: Any, compressed_ratio: float | None, at_least: int = 0) -> str:
    """What is wrong when the ``at_least`` or more bytes of pixels that ``series`` claims cannot be in the
    file (uncompressed data larger than the file, or compressed data more than ``compressed_ratio`` times
    larger), else ``""``."""
    try:
        claimed = int(series.nbytes)
        size = path.stat().st_size
    except Exception:  # noqa: BLE001 - no judgement without the numbers
        return ""
    if claimed < at_least:
        return ""
    try:
        compression = int(series.keyframe.compression)
    except Exception:  # noqa: BLE001 - a garbled Compression tag: judge it as compressed
        compression = None
    limit = size if compression == 1 else (compressed_ratio * size if compressed_ratio else None)
    if limit is None or claimed <= limit:
        return ""
    return f"its header describes an image of shape {tuple(series.shape)} ({claimed:,} bytes) in a file of " \
           f"{size:,} bytes"


def _read_tiff(path: Path) -> tuple[np.ndarray, int | None, float | None]:
    import tifffile

    series = None
    with _TIFF_LOG.capture() as log:
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0] if tif.series else None
                if _tiff_problems(log):  # before reading pixels: a corrupt header can ask for gigabytes
                    raise _not_a_tiff(path, log)
                if series is None:
                    if log:
                        raise _not_a_tiff(path, log)
                    raise DataError(f"{path}: the TIFF file holds no image")
                too_big = _implausible_size(path, series, compressed_ratio=None, at_least=_BIG_READ)
                if too_big:  # before allocating it; smaller truncated files get tifffile's own reason below
                    raise _not_a_tiff(path, log, what=too_big)
                arr = series.asarray()
                axes = series.axes
                pixel_size = _tiff_pixel_size(tif, path)
        except DataError:
            raise
        except MemoryError as exc:  # a real, huge image; or a corrupt header claiming one
            too_big = _implausible_size(path, series, compressed_ratio=1000)
            if _tiff_problems(log) or too_big:
                raise _not_a_tiff(path, log, None if too_big else exc, what=too_big) from None
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file to the user
            raise _not_a_tiff(path, log, exc) from None
        if _tiff_problems(log) or arr.size == 0:
            raise _not_a_tiff(path, log, what=f"no pixels in its image of shape {arr.shape}", log_first=True)
    channel_axis = axes.index("S") if "S" in axes and len(axes) == arr.ndim else None
    return arr, channel_axis, pixel_size


def _read_array(path: Path, indexed: bool = False) -> tuple[np.ndarray, int | None, float | None]:
    """Pixels of the first image in the file, the colour axis if known, and the pixel size in µm.

    ``indexed``: palette PNGs give their palette indices (label images), not colours."""
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        return _read_tiff(path)
    import imageio.v3 as iio

    try:
        kwargs = {}
        if indexed and path.suffix.lower() == ".png":
            from PIL import Image as PILImage

            with PILImage.open(path) as im:
                if im.mode == "P":
                    kwargs["mode"] = "P"
        arr = iio.imread(path, **kwargs)
    except Exception as exc:  # noqa: BLE001
        reason = _reason(exc)
        if "could not find a backend" in reason.lower():  # imageio's words for bytes no reader understands
            reason = f"not a {path.suffix.lstrip('.').upper() or 'known'} image: the file is corrupt or of another format"
        raise DataError(f"{path}: cannot read the image ({reason})") from None
    return np.asarray(arr), None, _sidecar_pixel_size(path)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def constant_image_message(image: np.ndarray, source: str = "the image") -> str | None:
    """A one-line warning when every pixel of ``image`` has the same value (nothing to segment or learn
    from), else None."""
    arr = np.asarray(image)
    if arr.size == 0:
        return None
    flat = arr.reshape(-1)
    first = flat[0]
    if (flat[:: max(1, flat.size // 1024)] != first).any() or not (flat == first).all():  # a sample first: O(1)
        return None
    return (f"{source} is constant (all its pixels have the same value): it shows no grain boundaries, so what "
            "a model makes of it means nothing")


def read_image(path: str | Path, low: float = 0.1, high: float = 99.9) -> Image:
    """Read a micrograph as float32 (H, W) (grey) or (H, W, 3) (colour) in [0, 1] with its pixel size.

    TIFF (first series; tifffile), PNG, JPEG, BMP (imageio); 8/16/32-bit integer, float or bool
    pixels.  RGB(A) stays colour (alpha dropped) unless its three channels are equal, which is grey
    (:func:`~.channels.to_planes`).  The intensities are stretched between the ``low`` and ``high``
    percentiles, one range for all channels (:func:`~.channels.normalize_image`); a constant image
    becomes all zeros.  :func:`to_grayscale` / :func:`~.channels.luminance` give grey where it is wanted.

    Raises
    ------
    DataError
        missing, empty, corrupt or unsupported files, stacks, NaN or infinite pixels.
    """
    path = Path(path)
    _check_file(path, "image", IMAGE_EXTENSIONS)
    arr, channel_axis, pixel_size = _read_array(path)
    from .channels import normalize_image, to_planes

    original = str(arr.dtype)
    planes = to_planes(arr, str(path), channel_axis)
    if planes.dtype.kind == "f" and not np.isfinite(planes).all():
        raise DataError(f"{path}: the image contains NaN or infinite values")
    return Image(normalize_image(planes, low, high), pixel_size, str(path), original)


# ------------------------------------------------------------------------------------- pixel size
def _unit_to_um(unit: Any) -> float | None:
    if not isinstance(unit, str):
        return None
    u = unit.strip().lower().replace("\\u00b5", "µ").replace("\\u03bc", "μ")
    return _UNIT_UM.get(u)


def _plausible(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    lo, hi = PIXEL_SIZE_RANGE
    return float(value) if lo <= value <= hi else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _resolution(tags, code: int) -> float | None:
    """Pixels per unit from a rational XResolution / YResolution tag."""
    tag = tags.get(code)
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        return float(num) / float(den) if den else None
    return _number(value)


def _tiff_pixel_size(tif, path: str | Path | None = None) -> float | None:
    """Pixel size in µm from vendor tags (FEI / Thermo, Zeiss, Tescan), a vendor side file next to ``path``
    (Tescan, JEOL, Hitachi), ImageJ metadata or the resolution tags (:func:`.vendor.tiff_calibration`)."""
    from .vendor import tiff_calibration

    return tiff_calibration(tif, path).pixel_size_um


def _sidecar_pixel_size(path: Path) -> float | None:
    from .vendor import sidecar_calibration

    cal = sidecar_calibration(path)
    return cal.pixel_size_um if cal is not None else None


def read_pixel_size(path: str | Path) -> float | None:
    """Pixel size in µm from an image file's metadata, or None when it has none.

    Looked up in this order: FEI / Thermo Fisher ``Scan.PixelWidth`` (m), Zeiss SEM
    ``ap_image_pixel_size`` / ``ap_pixel_size``, Tescan ``PixelSizeX`` (TIFF tag 50431), a vendor side
    file next to the image (Tescan ``NAME-tif.hdr``, JEOL / Hitachi ``NAME.txt``; the only source for
    PNG, JPEG and BMP files), the resolution tags in ImageJ's ``unit``, the resolution tags with their
    ``ResolutionUnit`` (inch, centimetre).  Common screen/print resolutions in dots per inch (72, 96,
    150, 200, 300, 600, 1200) are no calibration and give None; so do values outside 1e-5 .. 1e4 µm.
    See :mod:`.vendor`.
    """
    path = Path(path)
    _check_file(path, "image", IMAGE_EXTENSIONS)
    if path.suffix.lower() not in _TIFF_EXTENSIONS:
        return _sidecar_pixel_size(path)
    import tifffile

    with _TIFF_LOG.capture() as log:
        try:
            with tifffile.TiffFile(path) as tif:
                return _tiff_pixel_size(tif, path)
        except Exception as exc:  # noqa: BLE001
            raise _not_a_tiff(path, log, exc) from None


# ----------------------------------------------------------------------------------------- labels
def _erode_square(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary erosion with a size x size square (two 1-D passes)."""
    from scipy import ndimage as ndi
    out = ndi.binary_erosion(mask, structure=np.ones((size, 1), bool))
    return ndi.binary_erosion(out, structure=np.ones((1, size), bool))


def is_boundary_mask(mask: np.ndarray, max_fraction: float = 0.5, max_core: float = 0.3) -> bool:
    """Whether the True pixels of ``mask`` form a thin network of grain boundaries.

    True when they cover less than ``max_fraction`` of the image, less than ``max_core`` of them
    survive an erosion with a 5 x 5 square (lines up to about 4 px wide vanish, painted grains do
    not), and they cut the other pixels into at least two 4-connected regions.
    """
    from scipy import ndimage as ndi
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n == 0 or n >= max_fraction * mask.size:
        return False
    if int(_erode_square(mask, 5).sum()) > max_core * n:
        return False
    _, regions = ndi.label(~mask)
    return regions >= 2


def boundary_mask_to_instances(mask: np.ndarray, min_size: int = 4) -> np.ndarray:
    """Grain instances from a binary boundary mask (True = boundary).

    The 4-connected regions between boundaries become grains (regions smaller than ``min_size``
    pixels are treated as boundary), then every boundary pixel joins its nearest grain, so the
    result covers the whole image.

    Returns
    -------
    uint32 array, labels 1..n
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise DataError(f"boundary mask: expected a 2-D array, got shape {mask.shape}")
    regions, n = ndi.label(~mask)
    if min_size > 1 and n:
        sizes = np.bincount(regions.ravel(), minlength=n + 1)
        small = sizes < min_size
        small[0] = False
        if small.any():
            regions[small[regions]] = 0
            regions = relabel_sequential(regions)[0]
            n = int(regions.max())
    if n == 0:
        raise DataError("boundary mask: no grain between the boundaries (the mask covers the whole image)")
    if (regions == 0).any():
        idx = ndi.distance_transform_edt(regions == 0, return_distances=False, return_indices=True)
        regions = regions[tuple(idx)]
    return regions.astype(np.uint32, copy=False)


def labels_from_array(arr: np.ndarray, source: str = "labels", detect_boundaries: bool = True,
                      shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a label array and return uint32 instances 1..n (0 = not annotated kept).

    Integer, bool or integer-valued float arrays are accepted.  With ``detect_boundaries`` a
    two-valued array whose nonzero pixels (or, inversely, whose zero pixels) form a thin
    boundary network (:func:`is_boundary_mask`) is converted with
    :func:`boundary_mask_to_instances`; other arrays are relabelled to 1..n preserving 0.
    """
    from skimage.segmentation import relabel_sequential

    arr = np.asarray(arr)
    if arr.ndim > 2:
        arr = _squeeze_to(arr, 2)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            raise DataError(f"{source}: RGB labels (shape {arr.shape}); save grain instances as one integer plane")
        if arr.ndim > 2:
            raise DataError(f"{source}: a stack of shape {arr.shape}; expected one 2-D label image")
    if arr.ndim != 2 or arr.size == 0:
        raise DataError(f"{source}: expected a 2-D label image, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(f"{source}: labels shape {arr.shape} does not match the image shape {tuple(shape)}")
    kind = arr.dtype.kind
    if kind == "b":
        arr = arr.view(np.uint8)
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise DataError(f"{source}: labels contain NaN or infinite values")
        if (arr != np.round(arr)).any():
            raise DataError(f"{source}: labels have non-integer values; expected grain numbers (0 = not annotated)")
        if arr.min() < 0:
            raise DataError(f"{source}: labels have negative values (minimum {arr.min():g})")
        if arr.max() >= 2**63:
            raise DataError(f"{source}: label values too large (maximum {arr.max():g})")
        arr = arr.astype(np.uint64)
    elif kind in "ui":
        if kind == "i" and arr.min() < 0:
            raise DataError(f"{source}: labels have negative values (minimum {int(arr.min())})")
    else:
        raise DataError(f"{source}: unsupported label type {arr.dtype}")
    if detect_boundaries:
        nonzero = arr[arr != 0]
        if 0 < nonzero.size < arr.size and nonzero.min() == nonzero.max():  # exactly two values {0, v}
            fg = arr != 0
            if is_boundary_mask(fg):
                return boundary_mask_to_instances(fg)
            if is_boundary_mask(~fg):
                return boundary_mask_to_instances(~fg)
    out = relabel_sequential(arr)[0]
    if int(out.max()) > np.iinfo(np.uint32).max:
        raise DataError(f"{source}: more than 2**32 - 1 grains")
    return out.astype(np.uint32, copy=False)


def read_labels(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read grain instance labels (uint32, 0 = not annotated) from a TIFF or PNG file.

    Integer or bool images; a binary boundary mask is detected and converted to instances (see
    :func:`labels_from_array`); otherwise the values are relabelled to 1..n.  ``shape`` is the
    shape of the matching image: a mismatch raises :class:`DataError` naming both.
    """
    path = Path(path)
    _check_file(path, "label", LABEL_EXTENSIONS)
    arr, channel_axis, _ = _read_array(path, indexed=True)
    if channel_axis is not None and arr.shape[channel_axis] > 1:
        raise DataError(f"{path}: RGB labels (shape {arr.shape}); save grain instances as one integer plane")
    return labels_from_array(arr, str(path), detect_boundaries=True, shape=shape)


def mask_from_array(arr: Any, source: str = "mask", shape: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D bool mask (nonzero = set) from an integer, bool or float array; ``shape``: the image's, a
    mismatch raises :class:`DataError` naming both."""
    arr = _squeeze_to(np.asarray(arr), 2)
    if arr.ndim != 2 or arr.size == 0:
        raise DataError(f"{source}: expected a 2-D mask, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(f"{source}: mask shape {arr.shape} does not match the image shape {tuple(shape)}")
    if arr.dtype.kind not in "buif":
        raise DataError(f"{source}: unsupported mask type {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{source}: the mask contains NaN or infinite values")
    return arr != 0


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask (e.g. twin boundaries, uint8 0/1) from a TIFF or PNG file as bool (H, W)."""
    path = Path(path)
    _check_file(path, "mask", LABEL_EXTENSIONS)
    arr, channel_axis, _ = _read_array(path, indexed=True)
    if channel_axis is not None and arr.shape[channel_axis] > 1:
        raise DataError(f"{path}: an RGB mask (shape {arr.shape}); save it as one plane of 0 and 1")
    return mask_from_array(arr, str(path), shape=shape)


def plausible_pixel_size(value: Any) -> float | None:
    """``value`` as a float when it is a finite pixel size inside :data:`PIXEL_SIZE_RANGE` (µm), else None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    lo, hi = PIXEL_SIZE_RANGE
    return v if math.isfinite(v) and lo <= v <= hi else None
