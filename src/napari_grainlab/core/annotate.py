"""Grain annotation: label edits, statistics and the annotation files of a dataset folder.

Pure functions over arrays (no Qt, no napari), used by the *Annotate* dock and by scripts.

Edits
    :func:`merge_grains`, :func:`split_grain`, :func:`delete_grains`, :func:`fill_holes` and
    :func:`fill_unannotated` do not modify their input: they return a :class:`LabelEdit`, the
    pixels to change and their new values, which a caller applies to its array
    (:meth:`LabelEdit.apply`) or records as one undoable step (napari's Labels history).

Statistics
    :func:`annotation_stats` (grain count, annotated fraction).

Files (the dataset-folder contract; every file is written atomically)
    Segmentation: ``FOLDER/images/NAME.tif`` and ``FOLDER/labels/NAME.tif`` (grain instances,
    uint16 or uint32, 0 = not annotated), read back unchanged by :func:`load_segmentation`.  The
    image is grey ``(H, W)`` or colour ``(H, W, 3)``; a colour image is stored as an RGB TIFF, so
    that the dataset keeps its colour.

    Classification: ``FOLDER/classes.json`` (class names, the class of whole images, the tile
    size), the editable class-region masks ``FOLDER/.grainlab/regions/NAME.tif`` (0 = no class,
    ``i`` = the ``i``-th class, 1-based; a hidden folder, so that the classification loader
    does not take it for a class), and the exported training images ``FOLDER/CLASS/NAME.tif``
    (a whole image) and ``FOLDER/CLASS/NAME_rR_cC.tif`` (tiles lying at least ``min_fraction``
    inside one class region; the ``_rR_cC`` suffix keeps tiles of one micrograph in one
    validation group, see :func:`~napari_grainlab.core.data.datasets.group_of`).

    Unsaved work without a dataset folder goes to :func:`autosave_dir`.

    A label file that is replaced can first be kept as ``FOLDER/labels/.backup/NAME.<time>.tif``
    (:func:`backup_labels`; the time is the replaced version's, a bounded number per image; a
    hidden folder, which the dataset loaders skip).  :func:`remove_annotation` removes an
    image's files (e.g. a discarded autosave).
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# scipy.ndimage is imported in the functions that use it: the GUI imports this module when a dock opens,
# and the engine's background import has it loaded by the time a dock uses it
from ._io import atomic_write_text, atomic_write_tiff, atomic_writer
from .errors import ConfigError, DataError, ModelError

__all__ = [
    "AUTOSAVE_ENV",
    "BACKUP_DIR",
    "BACKUPS_KEPT",
    "ClassAnnotation",
    "LabelEdit",
    "annotation_stats",
    "autosave_dir",
    "backup_labels",
    "class_tiles",
    "delete_grains",
    "fill_holes",
    "fill_unannotated",
    "autosave_name",
    "has_autosave_named",
    "find_annotation",
    "labels_mtime",
    "image_digest",
    "image_fingerprint",
    "labels_dtype",
    "labels_file",
    "load_class_annotation",
    "load_segmentation",
    "merge_grains",
    "polyline_pixels",
    "propose_from_model",
    "remove_annotation",
    "safe_name",
    "save_class_annotation",
    "save_segmentation",
    "split_grain",
]

#: environment variable naming the autosave folder (default: the per-user cache folder)
AUTOSAVE_ENV = "GRAINLAB_AUTOSAVE_DIR"
REGIONS_DIR = Path(".grainlab") / "regions"
CLASSES_FILE = "classes.json"
_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
_LABEL_SUFFIXES = (".tif", ".tiff", ".png")
_RESERVED = {"images", "labels", "boundaries", "tables", "regions"}
#: where replaced label files are kept, inside ``labels/`` (hidden: the dataset loaders skip it)
BACKUP_DIR = ".backup"
#: backups kept per image (the oldest go first)
BACKUPS_KEPT = 10
#: an image is fingerprinted from at most this many rows and columns (see :func:`image_fingerprint`)
_FINGERPRINT_SIDE = 512


# ============================================================================== edits
@dataclass(frozen=True)
class LabelEdit:
    """Pixels to change: ``labels[indices] = values`` (``indices`` a tuple of row / column arrays).

    ``new_ids`` lists the grain ids the edit creates, ``removed_ids`` the ids it removes
    completely, for messages such as "split grain 7 into 7, 12".
    """

    indices: tuple[np.ndarray, np.ndarray]
    values: np.ndarray
    new_ids: tuple[int, ...] = ()
    removed_ids: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return int(self.values.size)

    def __bool__(self) -> bool:
        return self.size > 0

    def apply(self, labels: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """``labels`` with the edit applied (a copy unless ``copy=False``)."""
        out = np.array(labels, copy=True) if copy else labels
        out[self.indices] = self.values
        return out

    @classmethod
    def between(cls, old: np.ndarray, new: np.ndarray, **kwargs) -> LabelEdit:
        """The edit that turns ``old`` into ``new`` (same shape)."""
        if old.shape != new.shape:
            raise ValueError(f"shapes differ: {old.shape} vs {new.shape}")
        idx = np.nonzero(old != new)
        return cls(idx, np.asarray(new[idx]), **kwargs)

    @classmethod
    def empty(cls, dtype=np.uint32) -> LabelEdit:
        none = np.zeros(0, dtype=np.intp)
        return cls((none, none), np.zeros(0, dtype=dtype))


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"labels must be a 2-D array, got shape {labels.shape}")
    if labels.dtype.kind not in "ui":
        raise DataError(f"labels must be integers, got dtype {labels.dtype}")
    return labels


def _edit_from_mask(labels: np.ndarray, mask: np.ndarray, value: int | np.ndarray, **kwargs) -> LabelEdit:
    idx = np.nonzero(mask)
    values = np.broadcast_to(np.asarray(value, dtype=labels.dtype), idx[0].shape).copy() if np.ndim(value) == 0 \
        else np.asarray(value, dtype=labels.dtype)
    return LabelEdit(idx, values, **kwargs)


def _bbox(mask: np.ndarray, pad: int, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return None
    return (slice(max(0, rows[0] - pad), min(shape[0], rows[-1] + pad + 1)),
            slice(max(0, cols[0] - pad), min(shape[1], cols[-1] + pad + 1)))


def merge_grains(labels: np.ndarray, ids: Sequence[int], *, bridge: int = 0) -> LabelEdit:
    """Merge the grains ``ids`` into the first of them.

    Parameters
    ----------
    labels : (H, W) integer array, 0 = not annotated
    ids : grain ids; background (0) and repeated ids are ignored
    bridge : int
        Also give the merged grain the unannotated pixels (0) that lie within ``bridge`` px of
        two of the merged grains and inside the morphological closing of their union: the gap
        a drawn boundary line left between them (0: none).
    """
    from scipy import ndimage as ndi
    labels = _check_labels(labels)
    ids = list(dict.fromkeys(int(i) for i in ids if int(i) != 0))
    if len(ids) < 2:
        return LabelEdit.empty(labels.dtype)
    target, others = ids[0], ids[1:]
    mask = np.isin(labels, others)
    if bridge > 0:
        box = _bbox(mask | (labels == target), 2 * bridge + 2, labels.shape)
        if box is not None:
            sub = labels[box]
            near = np.zeros(sub.shape, dtype=np.uint8)
            structure = ndi.generate_binary_structure(2, 2)
            for gid in ids:
                near += ndi.binary_dilation(sub == gid, structure, iterations=int(bridge)).astype(np.uint8)
            union = np.isin(sub, ids)
            closed = ndi.binary_closing(union, structure, iterations=int(bridge), border_value=0)
            gap = (sub == 0) & (near >= 2) & closed
            full = np.zeros(labels.shape, dtype=bool)
            full[box] = gap
            mask |= full
    present = [i for i in others if (labels == i).any()]
    return _edit_from_mask(labels, mask, target, removed_ids=tuple(present))


def delete_grains(labels: np.ndarray, ids: Iterable[int]) -> LabelEdit:
    """Set the grains ``ids`` to 0 (not annotated)."""
    labels = _check_labels(labels)
    ids = [int(i) for i in ids if int(i) != 0]
    if not ids:
        return LabelEdit.empty(labels.dtype)
    mask = np.isin(labels, ids)
    return _edit_from_mask(labels, mask, 0, removed_ids=tuple(i for i in ids if (labels == i).any()))


def polyline_pixels(points: np.ndarray, shape: tuple[int, int], width: int = 1) -> np.ndarray:
    """Boolean mask of a polyline through ``points`` (N x 2, row / column, float) drawn
    ``width`` px wide; 8-connected for ``width=1``, clipped to ``shape``."""
    from scipy import ndimage as ndi
    from skimage.draw import line

    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    mask = np.zeros(shape, dtype=bool)
    if pts.shape[0] == 0:
        return mask
    pts = np.round(pts).astype(np.int64)
    if pts.shape[0] == 1:
        pts = np.vstack([pts, pts])
    rr_all, cc_all = [], []
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(int(r0), int(c0), int(r1), int(c1))
        rr_all.append(rr)
        cc_all.append(cc)
    rr, cc = np.concatenate(rr_all), np.concatenate(cc_all)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    mask[rr[ok], cc[ok]] = True
    if width > 1:
        mask = ndi.binary_dilation(mask, ndi.generate_binary_structure(2, 1), iterations=int(width) // 2)
    return mask


def split_grain(labels: np.ndarray, points: np.ndarray, *, width: int = 1, min_size: int = 4,
                grain: int | None = None) -> LabelEdit:
    """Split the grain(s) a polyline cuts across.

    Every grain under the line (or only ``grain``) is cut along it; when the cut leaves it in
    two or more pieces of at least ``min_size`` px (4-connected), the largest piece keeps the
    grain's id, the others get new ids (above the current maximum), and the pixels on the cut,
    and smaller crumbs, go to the nearest piece, so that the pieces touch along the line (a
    boundary for training, no unannotated gap).  A line that does not cross a grain from side
    to side leaves it unchanged.

    Parameters
    ----------
    labels : (H, W) integer array
    points : (N, 2) polyline vertices in pixel coordinates (row, column)
    width : line width in px
    min_size : smallest piece that becomes a grain
    grain : split only this grain
    """
    from scipy import ndimage as ndi
    labels = _check_labels(labels)
    cut = polyline_pixels(points, labels.shape, width)
    under = labels[cut]
    candidates = [int(g) for g in np.unique(under) if g != 0] if grain is None else [int(grain)]
    next_id = int(labels.max()) + 1
    max_id = np.iinfo(labels.dtype).max
    rows, cols, vals, new_ids = [], [], [], []
    for g in candidates:
        gmask = labels == g
        box = _bbox(gmask, 1, labels.shape)
        if box is None:
            continue
        sub_g, sub_cut = gmask[box], cut[box]
        pieces, n = ndi.label(sub_g & ~sub_cut)
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        sizes[0] = 0
        big = np.nonzero(sizes >= max(1, int(min_size)))[0]
        if big.size < 2:
            continue
        keep = np.isin(pieces, big)
        # cut pixels and crumbs: the nearest big piece (within the grain)
        _, (ir, ic) = ndi.distance_transform_edt(~keep, return_indices=True)
        assigned = pieces[ir, ic]
        order = big[np.argsort(-sizes[big], kind="stable")]
        new_value = np.zeros(n + 1, dtype=np.int64)
        new_value[order[0]] = g
        for p in order[1:]:
            if next_id > max_id:
                raise DataError(f"no free grain id in a {labels.dtype} label array")
            new_value[p] = next_id
            new_ids.append(next_id)
            next_id += 1
        values = new_value[assigned]
        change = sub_g & (values != g)
        r, c = np.nonzero(change)
        rows.append(r + box[0].start)
        cols.append(c + box[1].start)
        vals.append(values[change])
    if not rows:
        return LabelEdit.empty(labels.dtype)
    idx = (np.concatenate(rows), np.concatenate(cols))
    return LabelEdit(idx, np.concatenate(vals).astype(labels.dtype), new_ids=tuple(new_ids))


def fill_holes(labels: np.ndarray, *, max_area: int | None = None, grain: int | None = None) -> LabelEdit:
    """Give unannotated holes (0) enclosed by a single grain to that grain.

    A hole is a 4-connected region of 0 pixels that does not touch the image border and whose
    neighbours all belong to one grain (or to ``grain`` when given); holes larger than
    ``max_area`` px are kept.
    """
    from scipy import ndimage as ndi
    labels = _check_labels(labels)
    holes, n = ndi.label(labels == 0)
    if n == 0:
        return LabelEdit.empty(labels.dtype)
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    pairs = []
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        for h_sl, l_sl in ((a, b), (b, a)):
            h, lab = holes[h_sl], labels[l_sl]
            sel = (h > 0) & (lab > 0)
            pairs.append(np.stack([h[sel].astype(np.int64), lab[sel].astype(np.int64)], axis=1))
    pairs = np.unique(np.concatenate(pairs), axis=0)
    hole_ids, first, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    owner = np.zeros(n + 1, dtype=np.int64)
    single = counts == 1
    owner[hole_ids[single]] = pairs[first[single], 1]
    owner[border] = 0
    if grain is not None:
        owner[owner != int(grain)] = 0
    if max_area is not None:
        areas = np.bincount(holes.ravel(), minlength=n + 1)
        owner[areas > int(max_area)] = 0
    owner[0] = 0
    if not owner.any():
        return LabelEdit.empty(labels.dtype)
    fill = owner[holes]
    return _edit_from_mask(labels, fill > 0, fill[fill > 0])


def fill_unannotated(labels: np.ndarray, proposal: np.ndarray, *, min_fraction: float = 0.5,
                     min_size: int = 1) -> LabelEdit:
    """Put the grains of ``proposal`` into the unannotated pixels (0) of ``labels``.

    Annotated pixels are never changed.  A proposed grain keeps only its unannotated part and is
    dropped when that part is below ``min_fraction`` of its area or below ``min_size`` px (the
    slivers left along the edge of an annotated grain); kept grains get new ids above the
    current maximum of ``labels``.
    """
    labels = _check_labels(labels)
    proposal = _check_labels(proposal)
    if proposal.shape != labels.shape:
        raise DataError(f"proposal shape {proposal.shape} does not match the labels shape {labels.shape}")
    free = labels == 0
    if not free.any():
        return LabelEdit.empty(labels.dtype)
    total = np.bincount(proposal.ravel().astype(np.int64))
    inside = np.bincount(proposal[free].astype(np.int64), minlength=total.size)
    keep = (inside >= max(1, int(min_size))) & (inside >= float(min_fraction) * total)
    keep[0] = False
    kept = np.nonzero(keep)[0]
    if kept.size == 0:
        return LabelEdit.empty(labels.dtype)
    start = int(labels.max()) + 1
    if start + kept.size - 1 > np.iinfo(labels.dtype).max:
        raise DataError(f"no free grain ids in a {labels.dtype} label array")
    lut = np.zeros(total.size, dtype=np.int64)
    lut[kept] = np.arange(start, start + kept.size)
    target = free & keep[proposal]
    idx = np.nonzero(target)
    values = lut[proposal[idx]].astype(labels.dtype)
    return LabelEdit(idx, values, new_ids=tuple(range(start, start + kept.size)))


# ========================================================================= statistics
def annotation_stats(labels: np.ndarray) -> tuple[int, float]:
    """``(grains, annotated fraction)``: the number of distinct nonzero ids and the fraction of
    nonzero pixels."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return 0, 0.0
    flat = labels.ravel()
    nonzero = int(np.count_nonzero(flat))
    if nonzero == 0:
        return 0, 0.0
    top = int(flat.max())
    if top <= max(1 << 16, 4 * flat.size):
        small = flat.dtype.kind == "u" and flat.dtype.itemsize < 8
        counts = np.bincount(flat if small else flat.astype(np.intp), minlength=1)
        grains = int(np.count_nonzero(counts[1:]))
    else:  # sparse huge ids
        grains = int(np.unique(flat[flat != 0]).size)
    return grains, nonzero / flat.size


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 when every id fits, else uint32 (the contract's label types)."""
    top = int(np.max(labels)) if np.size(labels) else 0
    if top < 0:
        raise DataError("labels must not be negative")
    if top > np.iinfo(np.uint32).max:
        raise DataError(f"grain id {top} does not fit into uint32")
    return np.dtype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)


# ============================================================================== files
def safe_name(name: str) -> str:
    """A file stem from a layer or file name: extension dropped, unsafe characters replaced."""
    name = str(name).strip()
    low = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", *_IMAGE_SUFFIXES):
        if low.endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"[^\w.\-]+", "_", name, flags=re.UNICODE).strip("._")
    return name or "image"


def image_digest(image: np.ndarray) -> str:
    """A short fingerprint of an image's pixels (as they would be stored), to tell micrographs
    of the same name apart."""
    import hashlib

    stored = np.ascontiguousarray(_image_to_store(image))
    h = hashlib.blake2b(digest_size=6)
    h.update(f"{stored.shape}{stored.dtype.str}".encode())
    h.update(memoryview(stored).cast("B"))
    return h.hexdigest()


def image_fingerprint(image: np.ndarray) -> str:
    """A cheap fingerprint of a grey or colour image (its shape, pixel type and a regular sample of at most
    512 x 512 of its pixels): the same image always gets the same one, other micrographs
    practically never.  Milliseconds even for a large image, so the GUI thread may compute it;
    it only tells where an image's labels were saved before, and every file found that way is
    still checked against the image's pixels (:func:`load_segmentation` with ``image``)."""
    import hashlib

    image = _check_image(image)
    steps = tuple(max(1, -(-n // _FINGERPRINT_SIDE)) for n in image.shape[:2])
    sample = np.ascontiguousarray(image[:: steps[0], :: steps[1]])
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{image.shape}{image.dtype.str}{steps}".encode())
    h.update(memoryview(sample).cast("B"))
    return h.hexdigest()


def autosave_name(name: str, image: np.ndarray) -> str:
    """The name an image's work gets in :func:`autosave_dir`: its name plus a fingerprint of its
    pixels, so two micrographs of the same name never share (or reload) each other's autosave."""
    return f"{safe_name(name)}-{image_digest(image)}"


def has_autosave_named(folder: str | Path, name: str, classification: str | None = None) -> bool:
    """``folder`` may hold work that :func:`autosave_name` named for an image called ``name`` (with any pixel
    fingerprint): label files in ``labels/`` or, with ``classification`` (its subfolder), classification work.
    Only folder listings and a small JSON file are read, so that the pixels need hashing only when a file of
    the name is there."""
    pattern = re.compile(rf"^{re.escape(safe_name(name))}-[0-9a-f]{{12}}(\.(tif|tiff|png))?$", re.IGNORECASE)

    def listed(where: Path) -> bool:
        try:
            with os.scandir(where) as entries:
                return any(pattern.match(e.name) for e in entries)
        except OSError:  # no folder yet, or not readable: nothing to find there
            return False

    folder = Path(folder)
    if listed(folder / "labels"):
        return True
    if classification is None:
        return False
    work = folder / classification
    meta = _read_classes_json(work)
    keys = [k for part in ("images", "tiling") if isinstance(meta.get(part), dict) for k in meta[part]]
    return any(pattern.match(str(k)) for k in keys) or listed(work / REGIONS_DIR)


def _other_image(stored: np.ndarray, image: np.ndarray) -> bool:
    """The stored image is evidently not ``image``: another size, or, for a file of the same form (grey
    or RGB) and pixel type, other pixels (a file in another form, e.g. RGBA, is compared by size only)."""
    stored = np.squeeze(stored)
    if stored.shape[:2] != image.shape[:2]:
        return True
    mine = _image_to_store(image)
    return stored.shape == mine.shape and stored.dtype == mine.dtype and not np.array_equal(stored, mine)


def autosave_dir() -> Path:
    """Folder for autosaves when no dataset folder is chosen: ``$GRAINLAB_AUTOSAVE_DIR``, else
    the per-user cache folder (``~/.cache/napari-grainlab/autosave`` on Linux)."""
    env = os.environ.get(AUTOSAVE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-grainlab" / "autosave"


def _existing(folder: Path, name: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        for candidate in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read_plane(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        import imageio.v3 as iio

        arr = iio.imread(path)
    return np.asarray(arr)


def _check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an array: grey ``(H, W)`` or colour ``(H, W, 3)`` (:class:`DataError` otherwise)."""
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise DataError(f"expected a grey (H, W) or colour (H, W, 3) image, got shape {image.shape}")
    return image


def _image_to_store(image: np.ndarray) -> np.ndarray:
    """The pixels written to ``images/NAME.tif``: the image's own values, in a type TIFF readers take
    (bool as 0 / 255, float as float32); colour stays ``(H, W, 3)`` (written as RGB)."""
    image = _check_image(image)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype.kind == "f" and image.dtype != np.float32:
        return image.astype(np.float32)
    if image.dtype in (np.int64, np.uint64):
        if image.min() >= 0 and image.max() <= np.iinfo(np.uint32).max:
            return image.astype(np.uint32)
        return image.astype(np.float64)
    return image


def save_segmentation(folder: str | Path, name: str, image: np.ndarray, labels: np.ndarray, *,
                      pixel_size: float | None = None) -> tuple[Path, Path]:
    """Write ``images/NAME.tif`` (only when missing) and ``labels/NAME.tif`` atomically.

    ``image`` is grey ``(H, W)`` or colour ``(H, W, 3)`` (stored as an RGB TIFF).  The labels are
    stored unchanged as uint16 (ids up to 65535) or uint32.  An existing image of another name
    extension is kept; an existing image of another shape (or, of the same form and pixel type,
    other pixels) raises :class:`ValueError` (another micrograph of the same name).

    Returns the image and label paths.
    """
    folder = Path(folder)
    name = safe_name(name)
    labels = _check_labels(labels)
    image = _check_image(image)
    if image.shape[:2] != labels.shape:
        raise DataError(f"{name}: labels shape {labels.shape} does not match the image shape {image.shape}")
    image_path = _existing(folder / "images", name, _IMAGE_SUFFIXES)
    if image_path is None:
        image_path = folder / "images" / f"{name}.tif"
        atomic_write_tiff(image_path, _image_to_store(image), pixel_size_um=pixel_size, rgb=image.ndim == 3)
    else:
        stored = _read_plane(image_path)
        if _other_image(stored, image):
            raise DataError(f"{image_path} is another image of the same name ({stored.shape[0]} x "
                             f"{stored.shape[1]} px, this one {image.shape[0]} x {image.shape[1]}); rename the layer "
                             "or choose another folder")
    labels_path = folder / "labels" / f"{name}.tif"
    old = _existing(folder / "labels", name, _LABEL_SUFFIXES)
    atomic_write_tiff(labels_path, labels.astype(labels_dtype(labels), copy=False), pixel_size_um=pixel_size,
                      compression="zlib")
    if old is not None and old != labels_path:  # e.g. a PNG we now replace by the TIFF
        old.unlink(missing_ok=True)
    return image_path, labels_path


def load_segmentation(folder: str | Path, name: str, shape: tuple[int, int] | None = None,
                      image: np.ndarray | None = None) -> np.ndarray | None:
    """The labels saved for ``NAME`` in ``folder`` exactly as written (None when there are none).

    Raises ValueError when they do not have ``shape`` (an image's shape: a colour ``(H, W, 3)`` one's
    first two), or when ``image`` is given and the image saved with them is another micrograph (see
    :func:`save_segmentation`).
    """
    shape = None if shape is None else tuple(shape)[:2]
    path = _existing(Path(folder) / "labels", safe_name(name), _LABEL_SUFFIXES)
    if path is None:
        return None
    if image is not None:
        image_path = _existing(Path(folder) / "images", safe_name(name), _IMAGE_SUFFIXES)
        if image_path is not None and _other_image(_read_plane(image_path), np.asarray(image)):
            raise DataError(f"{path} belongs to another image of the same name ({image_path})")
    arr = _read_plane(path)
    arr = np.squeeze(arr)
    if arr.ndim != 2 or arr.dtype.kind not in "uib":
        raise DataError(f"{path}: not a 2-D integer label image (shape {arr.shape}, {arr.dtype})")
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(f"{path}: labels of shape {arr.shape}, but the image is {tuple(shape)}")
    return arr.astype(np.uint32) if arr.dtype.kind == "b" else arr


def labels_file(folder: str | Path, name: str) -> Path | None:
    """The label file ``folder/labels/NAME.*`` (None when there is none)."""
    return _existing(Path(folder) / "labels", safe_name(name), _LABEL_SUFFIXES)


def backup_labels(folder: str | Path, name: str, *, keep: int = BACKUPS_KEPT) -> Path | None:
    """Keep a copy of ``folder/labels/NAME.*`` as ``labels/.backup/NAME.<time>.<ext>`` (the time
    the file was written, so a version is kept once), then remove all but the newest ``keep``
    backups of ``NAME``.  Returns the copy (None when there is no label file)."""
    path = labels_file(folder, name)
    if path is None:
        return None
    name = safe_name(name)
    backups = path.parent / BACKUP_DIR
    written = path.stat().st_mtime_ns
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(written // 10**9)) + f"-{written // 1000 % 10**6:06d}"
    suffix = path.suffix.lower()
    target = backups / f"{name}.{stamp}{suffix}"
    n = 0
    while target.exists() and not filecmp.cmp(target, path, shallow=False):  # another version, same time
        n += 1
        target = backups / f"{name}.{stamp}.{n}{suffix}"
    if not target.exists():
        with atomic_writer(target) as tmp:
            shutil.copyfile(path, tmp)
    pattern = re.compile(rf"^{re.escape(name)}\.(\d{{8}}-\d{{6}}-\d{{6}})(\.\d+)?\.(tif|tiff|png)$")
    mine = sorted((p for p in backups.iterdir() if pattern.match(p.name)),
                  key=lambda p: (pattern.match(p.name).group(1), p.stat().st_mtime_ns))
    for old in mine[: max(0, len(mine) - max(1, keep))]:
        if old != target:
            old.unlink(missing_ok=True)
    return target


def remove_annotation(folder: str | Path, name: str) -> list[Path]:
    """Remove the files of ``NAME`` from ``folder``: ``labels/NAME.*``, ``images/NAME.*`` and its
    classification work in ``folder/classification`` (the region mask, the exported training
    images, its entries in ``classes.json``).  Backups are kept.  Returns the files removed."""
    folder = Path(folder)
    name = safe_name(name)
    removed: list[Path] = []
    for sub, suffixes in (("labels", _LABEL_SUFFIXES), ("images", _IMAGE_SUFFIXES)):
        while (path := _existing(folder / sub, name, suffixes)) is not None:
            path.unlink()
            removed.append(path)
    classification = folder / "classification"
    meta = _read_classes_json(classification)
    if meta:
        classes = [c for c in meta.get("classes", []) if isinstance(c, str)]
        removed += _remove_class_exports(classification, name, classes)
        region_path = classification / REGIONS_DIR / f"{name}.tif"
        if region_path.is_file():
            region_path.unlink()
            removed.append(region_path)
        changed = False
        for key in ("images", "tiling"):
            entries = meta.get(key)
            if isinstance(entries, dict) and name in entries:
                del entries[name]
                changed = True
        if changed:
            atomic_write_text(classification / CLASSES_FILE, json.dumps(meta, indent=2) + "\n")
    return removed


def labels_mtime(folder: str | Path, name: str) -> float:
    """Modification time of ``folder/labels/NAME.*`` (-1 when there is none)."""
    path = _existing(Path(folder) / "labels", safe_name(name), _LABEL_SUFFIXES)
    return path.stat().st_mtime if path is not None else -1.0


def find_annotation(name: str, folders: Sequence[str | Path | None]) -> Path | None:
    """The folder among ``folders`` whose ``labels/NAME.*`` was modified last (None: none has it)."""
    best, best_time = None, -1.0
    for folder in folders:
        if folder is None:
            continue
        path = _existing(Path(folder) / "labels", safe_name(name), _LABEL_SUFFIXES)
        if path is not None:
            t = path.stat().st_mtime
            if t > best_time:
                best, best_time = Path(folder), t
    return best


# ---------------------------------------------------------------------- classification
@dataclass
class ClassAnnotation:
    """The classification work on one image.

    ``image_class`` is the class of the whole image (or None); ``regions`` a class-index mask
    (0 = no class, ``i`` = ``classes[i - 1]``; all 0 removes the saved regions) or None (keep
    the saved regions, re-exported).  When saved, classes are appended to the
    folder's class list (``classes.json``), whose order never changes, and the stored mask uses
    that order; :func:`load_class_annotation` returns it.
    """

    classes: list[str]
    image_class: str | None = None
    regions: np.ndarray | None = None
    tile: int = 256
    min_fraction: float = 0.9
    extra: dict = field(default_factory=dict)


def _check_class_name(name: str) -> str:
    name = str(name).strip()
    if not name or name.startswith(".") or re.search(r'[\\/:*?"<>|]', name) or name.lower() in _RESERVED:
        raise DataError(f"invalid class name {name!r} (a folder name; not {', '.join(sorted(_RESERVED))})")
    return name


def class_tiles(regions: np.ndarray, tile: int, min_fraction: float = 0.9) -> list[tuple[int, int, int]]:
    """Tiles of a class-index mask that lie at least ``min_fraction`` inside one class.

    The image is cut into a grid of whole ``tile`` x ``tile`` px tiles from the top left (row
    ``r``, column ``c``; a remainder narrower than a tile at the right and bottom is not used, an
    image smaller than a tile is one tile); returns ``(r, c, class index)`` for each tile whose
    most common nonzero class covers ``min_fraction`` of it.
    """
    regions = np.asarray(regions)
    tile = int(tile)
    if tile < 8:
        raise ConfigError(f"tile must be at least 8 px, got {tile}")
    h, w = regions.shape
    out = []
    for r, y in enumerate(range(0, max(1, h - tile + 1), tile)):
        for c, x in enumerate(range(0, max(1, w - tile + 1), tile)):
            win = regions[y:y + tile, x:x + tile]
            counts = np.bincount(win.ravel().astype(np.int64))
            if counts.size < 2:
                continue
            k = int(np.argmax(counts[1:])) + 1
            if counts[k] >= float(min_fraction) * win.size and win.shape == (min(tile, h), min(tile, w)):
                out.append((r, c, k))
    return out


def _read_classes_json(folder: Path) -> dict:
    path = folder / CLASSES_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a valid JSON file ({exc})") from None
    return meta if isinstance(meta, dict) else {}


def save_class_annotation(folder: str | Path, name: str, image: np.ndarray, ann: ClassAnnotation, *,
                          pixel_size: float | None = None) -> list[Path]:
    """Save the classification work on one image and export its training images.

    Writes ``classes.json`` (merged with what is there: class names, whole-image classes, the
    tile size of each image with regions), the region mask (when any region is
    painted), ``CLASS/NAME.tif`` for a whole-image class and ``CLASS/NAME_rR_cC.tif`` for every
    tile of :func:`class_tiles`; earlier exports of ``NAME`` are removed first.  Returns the
    exported training images.
    """
    folder = Path(folder)
    name = safe_name(name)
    image = _check_image(image)
    shape = image.shape[:2]
    classes = [_check_class_name(c) for c in ann.classes]
    if len(set(classes)) != len(classes):
        raise DataError(f"duplicate class names: {classes}")
    if ann.image_class is not None and ann.image_class not in classes:
        raise DataError(f"class {ann.image_class!r} is not one of {classes}")
    regions = None
    if ann.regions is not None:
        regions = np.asarray(ann.regions)
        if regions.shape != shape:
            raise DataError(f"class regions of shape {regions.shape} do not match the image {shape}")
        if int(regions.max(initial=0)) > len(classes):
            raise DataError(f"class regions use index {int(regions.max())}, but there are {len(classes)} classes")
    meta = _read_classes_json(folder)
    known = [c for c in meta.get("classes", []) if isinstance(c, str)]
    merged = known + [c for c in classes if c not in known]  # stored indices never change meaning
    region_path = folder / REGIONS_DIR / f"{name}.tif"
    if regions is not None:
        lut = np.array([0] + [merged.index(c) + 1 for c in classes], dtype=np.int64)
        regions = lut[regions.astype(np.int64)]
    elif region_path.is_file():  # None: keep the saved regions (already in the folder's order)
        regions = np.squeeze(_read_plane(region_path))
        if regions.shape != shape:
            raise DataError(f"{region_path}: class regions of shape {regions.shape}, but the image is {shape}")
    images = meta.get("images") if isinstance(meta.get("images"), dict) else {}
    images = {k: v for k, v in images.items() if k != name}
    if ann.image_class is not None:
        images[name] = ann.image_class
    tiling = meta.get("tiling") if isinstance(meta.get("tiling"), dict) else {}
    tiling = {k: v for k, v in tiling.items() if k != name}
    if regions is not None and regions.any():
        tiling[name] = {"tile": int(ann.tile), "min_fraction": float(ann.min_fraction)}
    meta.update({"classes": merged, "images": images, "tiling": tiling, "regions": str(REGIONS_DIR.as_posix()),
                 "format": "napari-grainlab classification annotation"})
    _remove_class_exports(folder, name, merged)  # the previous export of this image
    written: list[Path] = []
    stored = _image_to_store(image)
    rgb = stored.ndim == 3
    if ann.image_class is not None:
        path = folder / ann.image_class / f"{name}.tif"
        atomic_write_tiff(path, stored, pixel_size_um=pixel_size, rgb=rgb)
        written.append(path)
    if regions is not None and regions.any():
        atomic_write_tiff(region_path, regions.astype(np.uint8 if len(merged) < 256 else np.uint16),
                          compression="zlib")
        tile = int(ann.tile)
        for r, c, k in class_tiles(regions, tile, ann.min_fraction):
            path = folder / merged[k - 1] / f"{name}_r{r}_c{c}.tif"
            atomic_write_tiff(path, np.ascontiguousarray(stored[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]),
                              pixel_size_um=pixel_size, rgb=rgb)
            written.append(path)
    elif region_path.exists():
        region_path.unlink()
    atomic_write_text(folder / CLASSES_FILE, json.dumps(meta, indent=2) + "\n")
    return written


def _remove_class_exports(folder: Path, name: str, classes: Sequence[str]) -> list[Path]:
    """Remove the exported training images of ``name`` (``CLASS/NAME.tif``, ``CLASS/NAME_rR_cC.tif``)."""
    tile_pattern = re.compile(rf"^{re.escape(name)}_r\d+_c\d+$")
    removed = []
    for cls in classes:
        d = folder / cls
        if d.is_dir():
            for f in d.iterdir():
                stem = f.name[: -len(f.suffix)] if f.suffix else f.name
                if f.is_file() and (stem == name or tile_pattern.match(stem)) and f.suffix.lower() in (".tif", ".tiff"):
                    f.unlink()
                    removed.append(f)
    return removed


def load_class_annotation(folder: str | Path, name: str, shape: tuple[int, int] | None = None) -> ClassAnnotation | None:
    """The classification work saved for ``NAME`` (None when ``folder`` has no ``classes.json``); its regions
    must have ``shape`` (an image's shape: a colour ``(H, W, 3)`` one's first two)."""
    shape = None if shape is None else tuple(shape)[:2]
    folder = Path(folder)
    meta = _read_classes_json(folder)
    if not meta:
        return None
    name = safe_name(name)
    classes = [c for c in meta.get("classes", []) if isinstance(c, str)]
    images = meta.get("images") if isinstance(meta.get("images"), dict) else {}
    image_class = images.get(name)
    regions = None
    path = folder / REGIONS_DIR / f"{name}.tif"
    if path.is_file():
        regions = np.squeeze(_read_plane(path))
        if shape is not None and regions.shape != tuple(shape):
            raise DataError(f"{path}: class regions of shape {regions.shape}, but the image is {tuple(shape)}")
    tiling = meta.get("tiling") if isinstance(meta.get("tiling"), dict) else {}
    mine = tiling.get(name) if isinstance(tiling.get(name), dict) else {}
    return ClassAnnotation(classes=classes, image_class=image_class if image_class in classes else None,
                           regions=regions, tile=int(mine.get("tile", 256)),
                           min_fraction=float(mine.get("min_fraction", 0.9)))


# ============================================================================ proposals
def propose_from_model(checkpoint: str | Path, image: np.ndarray, *, device: str = "auto", tile: int = 512,
                       stop: Callable[[], bool] | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       diameter: float | None = None, with_scaling: bool = False):
    """Grain instances predicted by a segmentation checkpoint for a float image in [0, 1], grey ``(H, W)``
    or colour ``(H, W, 3)`` (imports torch; run it off the GUI thread).

    The prediction is :func:`~napari_grainlab.core.inference.predict_array`'s: the model gets the image
    with its own input channels and, when it records its training grain scale, the image resized to it
    (``diameter``: the image's mean grain diameter in px; None: estimated); the labels are at the image's
    resolution. ``with_scaling``: return ``(labels, scaling)``, the
    :class:`~napari_grainlab.core.inference.PredictionResult` ``scaling`` (the diameter used, its source and
    the resize factor), instead of the labels alone."""
    from .inference import predict_array
    from .inference.tiling import resolve_device
    from .models import load_checkpoint

    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, device=dev)
    if getattr(model, "task", "segment") != "segment":
        raise ModelError(f"{checkpoint}: a {model.task} model; grain proposals need a segmentation model")
    import torch

    try:
        result = predict_array(model, meta, np.asarray(image, dtype=np.float32), tile=tile, device=dev, stop=stop,
                               progress=progress, diameter=diameter)
    except RuntimeError as exc:  # torch's out-of-memory errors are RuntimeErrors; the image is too large
        if not (isinstance(exc, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(exc)):
            raise
        raise MemoryError(f"out of {'GPU ' if dev.type == 'cuda' else ''}memory for a {image.shape[0]} x "
                          f"{image.shape[1]} px image (tile {tile} px)") from exc
    return (result.labels, result.scaling) if with_scaling else result.labels
