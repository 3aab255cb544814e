"""What a micrograph file says about its calibration: pixel size, vendor, and the height of the SEM data bar.

SEM software records the pixel size in its own place, and often also how tall the image is without the
info bar it glued below it:

=========  ================================================  =============================================
vendor     pixel size                                        image / data bar height
=========  ================================================  =============================================
FEI/TFS    TIFF tag 34682 (or 34680), ``[Scan] PixelWidth``  ``[Image] ResolutionY`` (image rows),
           (also ``[EScan]`` / ``[IScan]``), metres          ``[PrivateFei] DatabarHeight``
Zeiss      TIFF tag 34118 (CZ_SEM), ``AP_IMAGE_PIXEL_SIZE``  not recorded (found in the pixels)
           (``AP_PIXEL_SIZE`` in SmartSEM V05), with unit
Tescan     TIFF tag 50431 (text after a thumbnail), or the   ``ImageStripSize`` (data bar rows)
           side file ``NAME-tif.hdr``: ``PixelSizeX``, m
JEOL       side file ``NAME.txt``: ``$$SM_MICRON_MARKER``    ``$CM_FULL_SIZE`` (width, height)
           (length with unit) / ``$$SM_MICRON_BAR`` (px)
Hitachi    side file ``NAME.txt`` (``[SemImageFile]``):      ``DataSize`` (``WxH``)
           ``PixelSize``, nm
=========  ================================================  =============================================

Without vendor metadata the ImageJ description (``unit``) with the resolution tags, then the resolution
tags with their ``ResolutionUnit`` give the pixel size.  Every value outside
:data:`~.io.PIXEL_SIZE_RANGE` is ignored, and so are resolutions in dots per inch that image programs
write by default.  Nothing here raises on odd metadata: what cannot be parsed is no calibration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import _DEFAULT_DPI, _number, _plausible, _resolution, _unit_to_um

__all__ = ["Calibration", "json_safe", "sidecar_calibration", "tiff_calibration"]

#: the largest side file read (vendor text files are a few kB)
_SIDE_FILE_MAX = 1 << 20
#: keys a Tescan header always has (the tag number is not registered: this tells it from other bytes)
_TESCAN_SIGNATURE = ("PixelSizeX", "PixelSizeY", "Device", "Magnification", "ImageStripSize")


@dataclass(frozen=True)
class Calibration:
    """The calibration found in a file's metadata.

    Attributes
    ----------
    pixel_size_um : µm per pixel, None when unknown
    source : where it came from (e.g. ``"FEI Scan.PixelWidth"``), "" when unknown
    vendor : "FEI", "Zeiss", "Tescan", "JEOL", "Hitachi", "ImageJ", "TIFF" or ""
    image_rows, image_cols : the image size the vendor metadata states (without the data bar), None if not
    bar_rows : the data bar height the vendor metadata states, None if not
    bar_source : the metadata entry that ``image_rows`` / ``bar_rows`` came from
    metadata : the vendor's metadata as parsed (not yet JSON-safe: see :func:`json_safe`)
    notes : remarks on the metadata (e.g. non-square pixels)
    """

    pixel_size_um: float | None = None
    source: str = ""
    vendor: str = ""
    image_rows: int | None = None
    image_cols: int | None = None
    bar_rows: int | None = None
    bar_source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _int(value: Any) -> int | None:
    v = _number(value)
    if v is None or not math.isfinite(v) or v != int(v):
        return None
    return int(v)


def _length_um(text: str) -> float | None:
    """``"10um"``, ``"500 nm"``, ``"1mm"``, ``"2 µm"`` in µm; None when it is no length."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµμÅ]+)\s*", str(text))
    if not m:
        return None
    factor = _unit_to_um(m.group(2))
    return float(m.group(1)) * factor if factor is not None else None


# ---------------------------------------------------------------------------------------------- FEI
def _fei(tif) -> Calibration | None:
    fei = tif.fei_metadata
    if not fei:
        return None
    size, source, notes = None, "", []
    for section in ("Scan", "EScan", "IScan"):
        sec = fei.get(section) or {}
        width = _number(sec.get("PixelWidth"))
        if width is not None and _plausible(width * 1e6):
            size, source = width * 1e6, f"FEI {section}.PixelWidth"  # metres
            height = _number(sec.get("PixelHeight"))
            if height and abs(height - width) > 1e-3 * width:
                notes.append(f"non-square pixels ({width * 1e9:g} x {height * 1e9:g} nm); the width is used")
            break
    rows = cols = bar = None
    bar_source = ""
    for section in ("Image", "Scan"):
        sec = fei.get(section) or {}
        rows, cols = _int(sec.get("ResolutionY")), _int(sec.get("ResolutionX"))
        if rows:
            bar_source = f"FEI {section}.ResolutionY"
            break
    private = fei.get("PrivateFei") or {}
    selected = private.get("DataBarSelected", private.get("DataBarAvailable"))
    if _int(private.get("DatabarHeight")) and selected not in (0, False, "0", "false", "False", "No"):
        bar = _int(private.get("DatabarHeight"))
        bar_source = bar_source or "FEI PrivateFei.DatabarHeight"
    return Calibration(size, source, "FEI", rows, cols, bar, bar_source, dict(fei), tuple(notes))


# -------------------------------------------------------------------------------------------- Zeiss
def _zeiss(tif) -> Calibration | None:
    sem = tif.sem_metadata
    if not sem:
        return None
    size, source = None, ""
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = sem.get(key)
        if isinstance(entry, tuple) and len(entry) >= 3:
            value, factor = _number(entry[1]), _unit_to_um(entry[2])
            if value is not None and factor is not None and _plausible(value * factor):
                size, source = value * factor, f"Zeiss {key}"
                break
    meta = {k: v for k, v in sem.items() if k}  # the '' entry is a list of unnamed numbers
    return Calibration(size, source, "Zeiss", metadata=meta)


# ------------------------------------------------------------------------------------------- Tescan
def parse_tescan_header(blob: Any) -> dict[str, str]:
    """The ``key=value`` lines of a Tescan header (TIFF tag 50431 or a ``.hdr`` side file), ``{}`` if none.

    In the TIFF tag the text follows an embedded thumbnail image, whose bytes are skipped (up to its
    end-of-image marker) so that they cannot parse as keys.
    """
    if isinstance(blob, str):
        text = blob
    else:
        try:
            data = bytes(blob)
        except (TypeError, ValueError):
            return {}
        end = data.rfind(b"\xff\xd9")
        text = data[end + 2 if end != -1 else 0:].decode("latin-1")
    out: dict[str, str] = {}
    for line in re.split(r"[\x00-\x08\x0b\x0c\x0e-\x1f\r\n]+", text):
        m = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_.]*)\s*=(.*?)\s*", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    return out if sum(k in out for k in _TESCAN_SIGNATURE) >= 2 else {}


def _tescan_calibration(header: dict[str, str], where: str) -> Calibration | None:
    if not header:
        return None
    size, source = None, ""
    width = _number(header.get("PixelSizeX"))
    if width is not None and _plausible(width * 1e6):
        size, source = width * 1e6, f"Tescan PixelSizeX ({where})"
    strip = _int(header.get("ImageStripSize"))
    return Calibration(size, source, "Tescan", bar_rows=strip, bar_source="Tescan ImageStripSize" if strip is not None
                       else "", metadata=dict(header))


def _tescan(tif) -> Calibration | None:
    tag = tif.pages.first.tags.get(50431)
    return _tescan_calibration(parse_tescan_header(tag.value), "TIFF tag") if tag is not None else None


# ------------------------------------------------------------------------------------- side files
def _read_text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > _SIDE_FILE_MAX:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    elif len(data) > 3 and data[1:2] == b"\x00" and data[3:4] == b"\x00":
        text = data.decode("utf-16-le", errors="replace")  # UTF-16 without a byte order mark
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    return text.replace("\x00", "")


def _side_file(path: Path, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _jeol(text: str) -> Calibration | None:
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("$"):
            continue
        key, _, value = line.lstrip("$").partition(" ")
        if key and key not in entries:
            entries[key] = value.strip()
    if "SM_MICRON_BAR" not in entries and "CM_FORMAT" not in entries:
        return None
    size, source, notes = None, "", []
    bar_px, marker = _number(entries.get("SM_MICRON_BAR")), _length_um(entries.get("SM_MICRON_MARKER", ""))
    if bar_px and bar_px > 0 and marker and _plausible(marker / bar_px):
        size, source = marker / bar_px, "JEOL $$SM_MICRON_MARKER / $$SM_MICRON_BAR"
    full = entries.get("CM_FULL_SIZE", "").split()
    cols = _int(full[0]) if len(full) == 2 else None
    rows = _int(full[1]) if len(full) == 2 else None
    return Calibration(size, source, "JEOL", rows, cols, bar_source="JEOL $CM_FULL_SIZE" if rows else "",
                       metadata=entries, notes=tuple(notes))


def _hitachi(text: str) -> Calibration | None:
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith(("[SemImageFile]", "[TemImageFile]")))
    except StopIteration:
        return None
    entries: dict[str, str] = {}
    for line in lines[start + 1:]:
        if line.startswith("["):
            break
        key, sep, value = line.partition("=")
        if sep and key.strip() and key.strip() not in entries:
            entries[key.strip()] = value.strip()
    size, source = None, ""
    nm = _number(entries.get("PixelSize"))
    if nm is not None and _plausible(nm * 1e-3):
        size, source = nm * 1e-3, "Hitachi PixelSize"
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", entries.get("DataSize", ""))
    cols, rows = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    return Calibration(size, source, "Hitachi", rows, cols, bar_source="Hitachi DataSize" if rows else "",
                       metadata=entries)


def sidecar_calibration(path: str | Path) -> Calibration | None:
    """The calibration in a vendor's side file next to image ``path``, None when there is none.

    Tescan ``NAME-tif.hdr`` (``NAME-png.hdr`` ..., ``[MAIN]`` with ``PixelSizeX``), JEOL ``NAME.txt``
    (``$$SM_MICRON_BAR`` / ``$$SM_MICRON_MARKER`` lines) and Hitachi ``NAME.txt`` (``[SemImageFile]`` with
    ``PixelSize`` in nm).  Files without the vendor's signature are ignored.
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".")
    hdr = _side_file(path, tuple(dict.fromkeys((f"-{suffix}.hdr", f"-{suffix.lower()}.hdr", ".hdr"))))
    if hdr is not None:
        text = _read_text(hdr)
        cal = _tescan_calibration(parse_tescan_header(text), hdr.name) if text else None
        if cal is not None:
            return cal
    txt = _side_file(path, (".txt", ".TXT", ".Txt"))
    if txt is not None:
        text = _read_text(txt)
        if text:
            for parse in (_jeol, _hitachi):
                cal = parse(text)
                if cal is not None:
                    return cal
    return None


# ------------------------------------------------------------------------------------ generic TIFF
def _imagej_or_resolution(tif) -> Calibration | None:
    page = tif.pages.first
    tags = page.tags
    xres = _resolution(tags, 282)  # XResolution: pixels per unit
    if not xres or xres <= 0:
        return None
    ij = tif.imagej_metadata
    if ij and ij.get("unit") is not None:
        factor = _unit_to_um(ij["unit"])
        size = _plausible(factor / xres) if factor is not None else None
        return Calibration(size, f"ImageJ resolution ({ij['unit']})", "ImageJ") if size else None
    unit_tag = tags.get(296)  # ResolutionUnit
    unit = int(unit_tag.value) if unit_tag is not None else 2  # the TIFF default is inch
    per_unit = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}.get(unit)  # inch, cm, mm, µm
    if per_unit is None:
        return None
    if unit == 2 and any(abs(xres - dpi) < 1e-6 for dpi in _DEFAULT_DPI):
        return None  # a screen / print default, not a calibration
    size = _plausible(per_unit / xres)
    name = {2: "inch", 3: "cm", 4: "mm", 5: "µm"}[unit]
    return Calibration(size, f"TIFF resolution ({name})", "TIFF") if size else None


def tiff_calibration(tif, path: str | Path | None = None) -> Calibration:
    """The calibration of an open :class:`tifffile.TiffFile` (and of the side files next to ``path``).

    The pixel size comes from the first of: FEI / Thermo Fisher, Zeiss, Tescan (TIFF tag), a vendor side
    file (Tescan ``.hdr``, JEOL / Hitachi ``.txt``), ImageJ, the resolution tags.  The data bar height
    comes from the vendor that gave the pixel size, else from the first vendor that states one.
    """
    found: list[Calibration] = []
    for parse in (_fei, _zeiss, _tescan):
        try:
            cal = parse(tif)
        except Exception:  # noqa: BLE001 - odd vendor bytes are no calibration
            cal = None
        if cal is not None:
            found.append(cal)
    if path is not None:
        cal = sidecar_calibration(path)
        if cal is not None:
            found.append(cal)
    try:
        generic = _imagej_or_resolution(tif)
    except Exception:  # noqa: BLE001
        generic = None
    sized = [c for c in found if c.pixel_size_um is not None]
    best = sized[0] if sized else (found[0] if found else None)
    if best is None:
        return generic or Calibration()
    if best.pixel_size_um is None and generic is not None:
        best = Calibration(generic.pixel_size_um, generic.source, best.vendor, best.image_rows, best.image_cols,
                           best.bar_rows, best.bar_source, best.metadata, best.notes)
    if best.image_rows is None and best.bar_rows is None:
        other = next((c for c in found if c.image_rows is not None or c.bar_rows is not None), None)
        if other is not None:
            best = Calibration(best.pixel_size_um, best.source, best.vendor, other.image_rows, other.image_cols,
                               other.bar_rows, other.bar_source, best.metadata, best.notes)
    return best


# -------------------------------------------------------------------------------------- metadata
def json_safe(value: Any, max_items: int = 500, max_text: int = 300, _depth: int = 0) -> Any:
    """``value`` as JSON-compatible data (dicts with str keys, lists, str, int, float, bool, None).

    Strings are cut at ``max_text`` characters, containers at ``max_items`` entries, nesting at 6 levels;
    bytes and non-finite floats become None, numpy scalars Python numbers, anything else its ``str``.
    """
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None:
        return None
    if isinstance(value, str):
        return value if len(value) <= max_text else value[:max_text] + "…"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if _depth >= 6:
        return str(value)[:max_text]
    if isinstance(value, dict):
        out = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= max_items:
                break
            out[str(k)] = json_safe(v, max_items, max_text, _depth + 1)
        return out
    if isinstance(value, np.ndarray):
        if value.size > max_items:
            return None
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_safe(v, max_items, max_text, _depth + 1) for v in list(value)[:max_items]]
    text = str(value)
    return text if len(text) <= max_text else text[:max_text] + "…"
