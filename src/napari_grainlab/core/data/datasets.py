"""Annotated samples from dataset folders or in-memory arrays.

Dataset folder contract::

    DATA/images/NAME.tif   (.tiff .png .jpg .jpeg .bmp)   micrograph
    DATA/labels/NAME.tif   (.tiff .png)                   grain instances (0 = not annotated) or a
                                                          binary boundary mask
    DATA/twins/NAME.tif    (.tiff .png)                   optional: twin-boundary mask (0/1); twins are
                                                          part of their parent grain (see below)
    DATA/groups.csv        optional: rows ``name,group`` naming the source micrograph of each image
    DATA/dataset.json      optional: provenance written by the synthetic generator

Classification: ``DATA/CLASS/NAME.tif``, one sub-folder per class.

Every sample carries a *group*, its source micrograph, so that validation splits never put tiles
of one micrograph on both sides (:mod:`.splits`).  The group of ``NAME`` is, in this order: its
row in ``groups.csv``; ``NAME`` itself for a synthetic dataset (``dataset.json``, every item an
independent micrograph); ``NAME`` without a tile suffix (:func:`group_of`).

Twins: the labels are *parent* grains, a twin band keeps its parent's label; the twin-boundary mask
marks both sides of every twin / parent interface.  Labels that number twins as grains of their own are
merged into their parents on loading (:func:`~napari_grainlab.core.grainsize.merge_twins`: grains whose
shared boundary is mostly twin boundary).  An image without a twin mask has no twin ground truth (the
twin channel of a model is not trained on it), which is not the same as a mask without twins.

Problems that leave usable data (images without labels, labels without images, empty
annotations) are reported as :class:`DataWarning`; the CLI shows them.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .io import (
    IMAGE_EXTENSIONS,
    LABEL_EXTENSIONS,
    labels_from_array,
    mask_from_array,
    read_image,
    read_labels,
    read_mask,
)

__all__ = [
    "ClsSample",
    "DataWarning",
    "SegSample",
    "detect_task",
    "group_of",
    "load_classification_folder",
    "load_dataset_folders",
    "load_segmentation_folder",
    "parent_grains",
    "rescale_sample",
    "resize_image",
    "resize_labels",
    "samples_from_arrays",
]

#: tile / crop suffixes stripped from a file name to find its source micrograph
TILE_SUFFIX = re.compile(r"[_-](?:(?:tile|crop|patch|part|roi)[_-]?\d+|r\d+[_-]?c\d+|x\d+[_-]?y\d+)$", re.IGNORECASE)


class DataWarning(UserWarning):
    """Part of a dataset was skipped (the message says what and why)."""


@dataclass
class SegSample:
    """An annotated micrograph for segmentation.

    Attributes
    ----------
    name : identifier (file stem)
    image : float32 in [0, 1], (H, W) grey or (H, W, 3) colour (a dataset may mix them)
    labels : uint32 (H, W) grain instances, 0 = not annotated
    group : the source micrograph (samples of one group stay on one side of a split)
    pixel_size : µm per pixel, or None
    twins : bool (H, W) twin-boundary mask, or None when the image has no twin ground truth
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    group: str
    pixel_size: float | None = None
    twins: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.image)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] != 3):
            raise DataError(f"{self.name}: expected an (H, W) grey or (H, W, 3) colour image, got shape {shape}")
        if shape[:2] != np.shape(self.labels):
            raise DataError(f"{self.name}: labels shape {np.shape(self.labels)} does not match the image shape "
                            f"{shape[:2]}")
        if self.twins is not None:
            self.twins = np.asarray(self.twins) != 0
            if self.twins.shape != np.shape(self.labels):
                raise DataError(f"{self.name}: twin mask shape {self.twins.shape} does not match the image shape "
                                f"{shape[:2]}")


@dataclass
class ClsSample:
    """A micrograph (or tile) with its class index, for classification."""

    name: str
    image: np.ndarray
    label: int
    group: str


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def _strip_extension(name: str) -> str:
    """``name`` without an image extension (``.ome.tif`` counts as one)."""
    low = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", *IMAGE_EXTENSIONS):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _stem(path: Path) -> str:
    return _strip_extension(path.name) if path.suffix.lower() in IMAGE_EXTENSIONS else path.stem


def _files(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``folder`` with one of ``extensions`` (hidden files skipped), by stem."""
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file() or f.suffix.lower() not in extensions:
            continue
        stem = _stem(f)
        if stem in out:
            raise DataError(f"{folder}: two files named {stem!r} ({out[stem].name}, {f.name}); keep one")
        out[stem] = f
    return out


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


# ------------------------------------------------------------------------------------------ groups
def group_of(name: str) -> str:
    """The source micrograph of a file stem: the stem without a tile suffix.

    Stripped suffixes: ``_tile3``, ``_crop01``, ``_patch7``, ``_part2``, ``_roi4``, ``_r2_c5``,
    ``_x0_y512`` (``-`` works as well as ``_``).  A plain number (``_0003``) is kept: it usually
    numbers independent micrographs.
    """
    return TILE_SUFFIX.sub("", name) or name


def _read_groups_csv(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for i, row in enumerate(csv.reader(fh)):
                row = [c.strip() for c in row]
                if not row or not any(row) or row[0].startswith("#"):
                    continue
                if len(row) < 2 or not row[0] or not row[1]:
                    raise DataError(f"{path}: line {i + 1}: expected 'name,group', got {','.join(row)!r}")
                if i == 0 and [c.lower() for c in row[:2]] == ["name", "group"]:
                    continue
                out[_strip_extension(row[0])] = row[1]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return out


def _read_dataset_json(path: Path) -> dict[str, str] | None:
    """Groups from ``dataset.json``: per-item ``group`` keys, or every item its own group
    (synthetic datasets); None when the file does not describe groups."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a valid JSON file ({exc})") from None
    if not isinstance(meta, dict):
        return None
    items = meta.get("items")
    items = [it for it in items if isinstance(it, dict) and isinstance(it.get("name"), str)] \
        if isinstance(items, list) else []
    if meta.get("kind") == "synthetic" or any("group" in it for it in items):
        return {it["name"]: str(it.get("group", it["name"])) for it in items}
    return None


class _Groups:
    """Resolves the group of a sample name in one dataset folder."""

    def __init__(self, root: Path):
        csv_path = root / "groups.csv"
        self.table = _read_groups_csv(csv_path) if csv_path.is_file() else {}
        json_path = root / "dataset.json"
        self.provenance = _read_dataset_json(json_path) if json_path.is_file() else None

    def __call__(self, name: str, *alternatives: str) -> str:
        for key in (*alternatives, name):
            if key in self.table:
                return self.table[key]
        if self.provenance is not None:
            return self.provenance.get(name, name)
        return group_of(name)


# ------------------------------------------------------------------------------------ segmentation
def parent_grains(labels: np.ndarray, twins: np.ndarray | None) -> np.ndarray:
    """``labels`` with twins that are numbered as grains of their own merged into their parent grain
    (:func:`~napari_grainlab.core.grainsize.merge_twins`); unchanged without a twin mask or when the
    twins already carry their parent's label (most twin-boundary pixels inside a grain, not on a label
    edge: then nothing is merged, so no small grain next to the end of a twin line is merged by chance)."""
    if twins is None or not twins.any():
        return labels
    from ..grainsize import merge_twins
    from .targets import inner_edges

    if np.count_nonzero(twins & inner_edges(labels)) < 0.5 * np.count_nonzero(twins):
        return labels

    merged = merge_twins(labels, twins)
    if np.array_equal(merged, labels):
        return labels
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(merged)[0].astype(np.uint32, copy=False)


def load_segmentation_folder(path: str | Path) -> list[SegSample]:
    """Annotated images of a dataset folder (``images/`` + ``labels/`` with matching stems, and the
    optional twin-boundary masks of ``twins/``).

    Images without labels, labels without images and label files without any annotated pixel are
    skipped with a :class:`DataWarning`.

    Raises
    ------
    DataError
        missing sub-folders, no image/label pair, a shape mismatch (naming the file), unreadable
        files, or no annotated pixel in any label file.
    """
    root = Path(path)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise DataError(f"{root}: expected sub-folders images/ and labels/ (a segmentation dataset)")
    images = _files(images_dir, IMAGE_EXTENSIONS)
    labels = _files(labels_dir, LABEL_EXTENSIONS)
    pairs = [name for name in images if name in labels]
    if not pairs:
        raise DataError(f"{root}: no image in images/ has a label file of the same name in labels/ "
                        f"({len(images)} images, {len(labels)} label files)")
    no_labels = [name for name in images if name not in labels]
    if no_labels:
        _warn(f"{root}: {len(no_labels)} image(s) have no labels and are skipped: {_listing(no_labels)}")
    no_image = [name for name in labels if name not in images]
    if no_image:
        _warn(f"{root}: {len(no_image)} label file(s) have no image and are ignored: {_listing(no_image)}")
    twin_dir = root / "twins"
    twin_files = _files(twin_dir, LABEL_EXTENSIONS) if twin_dir.is_dir() else {}
    groups = _Groups(root)
    samples, empty = [], []
    for name in pairs:
        img = read_image(images[name])
        lab = read_labels(labels[name], shape=img.data.shape[:2])
        if not lab.any():
            empty.append(name)
            continue
        twins = read_mask(twin_files[name], shape=lab.shape) if name in twin_files else None
        samples.append(SegSample(name=name, image=img.data, labels=parent_grains(lab, twins), group=groups(name),
                                 pixel_size=img.pixel_size, twins=twins))
    if not samples:
        raise DataError(f"no annotated pixels in {labels_dir} ({len(empty)} label files, all 0 = not annotated)")
    if empty:
        _warn(f"{root}: {len(empty)} label file(s) have no annotated pixel and are skipped: {_listing(empty)}")
    return samples


def samples_from_arrays(images: Sequence[np.ndarray] | np.ndarray, labels: Sequence[np.ndarray] | np.ndarray,
                        names: Sequence[str] | None = None, pixel_sizes: Sequence[float | None] | None = None,
                        groups: Sequence[str] | None = None,
                        twins: Sequence[np.ndarray | None] | None = None) -> list[SegSample]:
    """Segmentation samples from in-memory arrays (e.g. napari Image and Labels layer data).

    Parameters
    ----------
    images : list of 2-D (or RGB(A) H x W x C) arrays of any dtype, or one such array, or an
        N x H x W stack; colour stays colour (RGB with equal channels is grey, see
        :func:`~.channels.to_planes`), normalised with :func:`~.channels.normalize_image`
    labels : list of integer (or bool) 2-D arrays of the same shapes (one array or a stack, like
        ``images``), 0 = not annotated; values are relabelled to 1..n (no boundary-mask
        detection: pass instances)
    names : sample names (default ``image0``, ``image1``, …)
    pixel_sizes : µm per pixel of each image (default unknown)
    groups : source micrograph of each image (default: :func:`group_of` the name)
    twins : twin-boundary mask (nonzero = twin boundary) of each image, None for an image without one
        (default: none); twins numbered as grains of their own are merged into their parents

    Images whose labels have no annotated pixel are skipped with a :class:`DataWarning`; when
    none is annotated, :class:`DataError`.
    """
    if not isinstance(labels, (list, tuple)) and np.ndim(labels) == 2:  # one image
        images, labels = [images], [labels]
    images, labels = list(images), list(labels)
    n = len(images)
    if len(labels) != n:
        raise DataError(f"samples_from_arrays: {n} images but {len(labels)} label arrays")
    if n == 0:
        raise DataError("samples_from_arrays: no images")
    names = [f"image{i}" for i in range(n)] if names is None else [str(s) for s in names]
    pixel_sizes = [None] * n if pixel_sizes is None else list(pixel_sizes)
    groups = [group_of(s) for s in names] if groups is None else [str(g) for g in groups]
    if twins is not None and not isinstance(twins, (list, tuple)) and np.ndim(twins) == 2:
        twins = [twins]
    twins = [None] * n if twins is None else list(twins)
    for what, seq in (("names", names), ("pixel_sizes", pixel_sizes), ("groups", groups), ("twin masks", twins)):
        if len(seq) != n:
            raise DataError(f"samples_from_arrays: {n} images but {len(seq)} {what}")
    from .channels import normalize_image, to_planes

    samples, empty = [], []
    for i in range(n):
        planes = to_planes(np.asarray(images[i]), f"image {names[i]!r}")
        if planes.dtype.kind == "f" and not np.isfinite(planes).all():
            raise DataError(f"image {names[i]!r}: contains NaN or infinite values")
        lab = labels_from_array(np.asarray(labels[i]), f"labels of {names[i]!r}", detect_boundaries=False,
                                shape=planes.shape[:2])
        if not lab.any():
            empty.append(names[i])
            continue
        px = pixel_sizes[i]
        tw = None if twins[i] is None else mask_from_array(twins[i], f"twin mask of {names[i]!r}", lab.shape)
        samples.append(SegSample(name=names[i], image=normalize_image(planes), labels=parent_grains(lab, tw),
                                 group=groups[i], pixel_size=float(px) if px is not None else None, twins=tw))
    if not samples:
        raise DataError(f"no annotated pixels in the labels of {_listing(names)}")
    if empty:
        _warn(f"{len(empty)} image(s) have no annotated pixel and are skipped: {_listing(empty)}")
    return samples


# -------------------------------------------------------------------------------------------- scale
def _scaled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    if not (np.isfinite(factor) and factor > 0):
        raise DataError(f"scale factor must be a positive number, got {factor!r}")
    return max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor)))


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, 3)`` float image scaled by ``factor``: area averaging when it shrinks
    (no aliasing of thin boundaries), bilinear when it grows; float32."""
    import cv2

    h, w = _scaled_shape(np.shape(image), factor)
    img = np.ascontiguousarray(image, dtype=np.float32)
    if (h, w) == img.shape[:2]:
        return img
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def resize_labels(labels: np.ndarray, factor: float) -> np.ndarray:
    """Label image scaled by ``factor`` with nearest-neighbour sampling (pixel centres; any integer dtype)."""
    labels = np.asarray(labels)
    h, w = _scaled_shape(labels.shape, factor)
    if (h, w) == labels.shape:
        return labels
    rows = np.minimum(((np.arange(h) + 0.5) * (labels.shape[0] / h)).astype(np.int64), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (labels.shape[1] / w)).astype(np.int64), labels.shape[1] - 1)
    return np.ascontiguousarray(labels[np.ix_(rows, cols)])


def rescale_sample(sample: SegSample, factor: float) -> SegSample:
    """``sample`` with image and labels scaled by ``factor`` (see :func:`resize_image`, :func:`resize_labels`);
    the pixel size (µm per px) grows by ``1 / factor``."""
    if factor == 1:
        return sample
    image = np.clip(resize_image(sample.image, factor), 0.0, 1.0)
    labels = resize_labels(sample.labels, factor)
    twins = resize_labels(sample.twins, factor) if sample.twins is not None else None
    px = sample.pixel_size / factor if sample.pixel_size is not None else None
    return SegSample(name=sample.name, image=image, labels=labels, group=sample.group, pixel_size=px, twins=twins)


# ---------------------------------------------------------------------------------- classification
def _class_folders(root: Path) -> list[tuple[str, dict[str, Path]]]:
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            files = _files(d, IMAGE_EXTENSIONS)
            if files:
                out.append((d.name, files))
    return out


def load_classification_folder(path: str | Path) -> tuple[list[ClsSample], list[str]]:
    """Images of a classification dataset: one sub-folder per class (sorted by name).

    Returns
    -------
    samples : list of :class:`ClsSample`, ``label`` the index into ``class_names``
    class_names : the sub-folder names that hold images, sorted

    Raises
    ------
    DataError
        not a folder, no images, or only one class.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    classes = _class_folders(root)
    if not classes:
        raise DataError(f"{root}: no images in class sub-folders (expected {root}/CLASS/NAME.tif)")
    if len(classes) < 2:
        raise DataError(f"{root}: one class only ({classes[0][0]!r}); classification needs images in at least 2 "
                        f"class sub-folders")
    empty = [d.name for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
             and d.name not in {c for c, _ in classes}]
    if empty:
        _warn(f"{root}: sub-folder(s) without images ignored: {_listing(empty)}")
    groups = _Groups(root)
    samples = []
    for index, (cls, files) in enumerate(classes):
        for name, f in files.items():
            img = read_image(f)
            samples.append(ClsSample(name=f"{cls}/{name}", image=img.data, label=index,
                                     group=groups(name, f"{cls}/{name}")))
    return samples, [c for c, _ in classes]


def detect_task(path: str | Path) -> str:
    """``"segment"`` for a folder with ``images/`` and ``labels/``, ``"classify"`` for class sub-folders.

    Raises
    ------
    DataError
        neither layout, listing what was expected.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "segment"
    if (root / "images").is_dir():
        raise DataError(f"{root}: has images/ but no labels/ (a segmentation dataset needs both)")
    if _class_folders(root):
        return "classify"
    raise DataError(f"{root}: not a dataset folder; expected images/NAME.tif + labels/NAME.tif (segmentation) or "
                    f"one sub-folder of images per class, CLASS/NAME.tif (classification)")


def load_dataset_folders(paths: Sequence[str | Path], task: str | None = None) -> tuple[str, list, list[str]]:
    """Samples from several dataset folders of one task: ``(task, samples, class names)``.

    The task is detected from the first folder when not given; a folder of another task, or a
    classification folder whose classes differ from the first one's, raises :class:`DataError`.
    """
    samples: list = []
    classes: list[str] | None = None
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise DataError(f"{p}: not a dataset folder (expected images/ + labels/, or one sub-folder per class)")
        kind = detect_task(path)
        if task is None:
            task = kind
        elif kind != task:
            raise DataError(f"{p}: a {kind} dataset, but the task is {task}")
        if kind == "segment":
            samples += load_segmentation_folder(path)
        else:
            s, names = load_classification_folder(path)
            if classes is None:
                classes = list(names)
            elif list(names) != classes:
                raise DataError(f"{p}: classes {list(names)} differ from {classes} in the first folder")
            samples += s
    return task or "segment", samples, classes or []
