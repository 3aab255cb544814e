"""The saved state of one image's annotation and the order of its writes (no Qt, no napari).

:class:`AnnotationStore` is the save logic of the *Annotate* dock as a plain object: the dock
tells it which image is open (:meth:`~AnnotationStore.open`), hands it copies of the labels and
the classification work (:meth:`~AnnotationStore.snapshot`), runs :meth:`~AnnotationStore.write`
(on the GUI thread or in a worker) and records what was written (:meth:`~AnnotationStore.record`,
on the GUI thread).  Timers, threads and notifications stay with the caller.

* **Ordered writes.** Every snapshot gets the next number; :meth:`~AnnotationStore.write` runs one
  write at a time and skips a snapshot older than the one written last, and
  :meth:`~AnnotationStore.record` ignores a result older than the one recorded, so a slow
  autosave finishing after a newer save never overwrites it, on disk or in the saved state.
* **Where.** A save goes to the dataset folder; an autosave to the dataset folder or, without
  one, to the per-user folder (:func:`~napari_grainlab.core.annotate.autosave_dir`, where the
  files are named after the image *and* a fingerprint of its pixels).  When the dataset folder
  refuses an autosave (read-only, full, another image of that name), the work goes to the
  per-user folder instead (``write(job, fallback=True)``).
* **Saved vs. current.** :meth:`~AnnotationStore.has_unsaved_changes` compares the labels and
  the classification work with what was written last; the :attr:`~AnnotationStore.dirty` flag
  is the cheap version the caller keeps between comparisons (set by
  :meth:`~AnnotationStore.mark_changed`, recomputed by :meth:`~AnnotationStore.update_dirty`).

Every file is written atomically by :mod:`napari_grainlab.core.annotate` (a temporary file next
to the target, renamed over it), so a write that fails half-way leaves the previous file as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import annotate as _annotate
from .errors import USER_ERRORS, DataError, GrainLabError

__all__ = ["CLASSIFICATION_DIR", "AnnotationStore", "SaveJob", "WriteResult", "class_state", "labels_differ",
           "write_annotation"]

#: the classification dataset inside the dataset folder (class folders must not sit next to
#: images/ and labels/, which the classification loader would take for classes)
CLASSIFICATION_DIR = "classification"


def class_state(ann: _annotate.ClassAnnotation | None) -> tuple:
    """A comparable summary of the classification work (``()`` when there is none)."""
    if ann is None:
        return ()
    regions = None if ann.regions is None else hash(np.asarray(ann.regions).tobytes())
    return tuple(ann.classes), ann.image_class, regions, ann.tile


def labels_differ(labels: np.ndarray, saved: np.ndarray | None) -> bool:
    """Whether ``labels`` differ from the ``saved`` ones (None: nothing saved, so they do)."""
    return saved is None or saved.shape != labels.shape or not np.array_equal(labels, saved)


def write_annotation(folder: Path, name: str, image: np.ndarray, labels: np.ndarray | None,
                     classes: _annotate.ClassAnnotation | None, pixel_size: float | None) -> Path:
    """Write the grain labels (when there are any, or were before) into ``folder``, then the
    classification work into ``folder/classification/``; returns ``folder``.

    Raises :class:`~napari_grainlab.core.errors.DataError` for files or arrays that cannot be
    written (and ``OSError`` from the file system)."""
    if labels is not None and (labels.any() or _annotate.load_segmentation(folder, name) is not None):
        _annotate.save_segmentation(folder, name, image, labels, pixel_size=pixel_size)
    if classes is not None:
        _annotate.save_class_annotation(folder / CLASSIFICATION_DIR, name, image, classes, pixel_size=pixel_size)
    return folder


@dataclass(frozen=True, eq=False)
class SaveJob:
    """One numbered snapshot of an image's work and where it goes."""

    seq: int                # snapshot number: higher is newer
    session: int            # the image it belongs to (see AnnotationStore.open)
    folder: Path
    name: str               # the stem of its files in ``folder``
    image: np.ndarray
    labels: np.ndarray
    classes: _annotate.ClassAnnotation | None
    pixel_size: float | None
    in_dataset: bool        # ``folder`` is the dataset folder
    auto: bool = False      # an autosave (may fall back to the per-user folder)


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`AnnotationStore.write` did with a :class:`SaveJob`."""

    job: SaveJob                          # the job written (the fallback job when it fell back)
    folder: Path | None                   # where it went; None: skipped, a newer snapshot was written first
    error: BaseException | None = None    # the dataset folder's refusal, when the work went to the fallback

    @property
    def fell_back(self) -> bool:
        return self.error is not None


class AnnotationStore:
    """The saved state of the open image's annotation (see the module docstring).

    ``fallback_dir`` gives the per-user folder (read on every use: it follows
    ``$GRAINLAB_AUTOSAVE_DIR``); ``warn(message)`` is told about saved files that cannot be used.
    """

    def __init__(self, folder: str | Path | None = None, *, fallback_dir: Callable[[], Path] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.folder: Path | None = Path(folder) if folder else None
        self._fallback_dir = fallback_dir or _annotate.autosave_dir
        self._warn = warn or (lambda message: None)
        self.name = ""
        self.image: np.ndarray | None = None  # the 2-D image written to images/
        self.pixel_size: float | None = None
        self.saved: np.ndarray | None = None  # the labels as last written (anywhere)
        self.saved_classes: tuple = ()  # class_state() of the classification work as last written or loaded
        self.in_dataset = False  # the last write (or the labels loaded) is in the dataset folder
        self.last_saved: Path | None = None
        self.dirty = False
        self._session = 0
        self._seq = 0  # the number of the newest snapshot taken
        self._recorded = 0  # the number of the newest snapshot recorded as saved
        self._written = 0  # the number of the newest snapshot written
        self._lock = threading.Lock()

    # ------------------------------------------------------------------- the open image
    @property
    def is_open(self) -> bool:
        return self.image is not None

    def open(self, name: str, image: np.ndarray, pixel_size: float | None = None) -> None:
        """Work on ``image`` (files named ``name``); results of writes for an earlier image are
        no longer recorded.  Call :meth:`adopt` with what :meth:`find_saved` returns next."""
        self._session += 1
        self.name, self.image, self.pixel_size = name, image, pixel_size
        self.saved = None
        self.dirty = False

    def close(self) -> None:
        """No image is open any more (writes still running are not recorded)."""
        self._session += 1
        self.image = self.saved = None

    def set_folder(self, folder: str | Path | None) -> None:
        """Use ``folder`` as the dataset folder (nothing is in it yet as far as the store knows)."""
        self.folder = Path(folder) if folder else None
        self.in_dataset = False

    @property
    def fallback_dir(self) -> Path:
        return Path(self._fallback_dir())

    @property
    def autosave_name(self) -> str:
        """The stem of the open image's files in the per-user folder (name + pixel fingerprint)."""
        return _annotate.autosave_name(self.name, self._require())

    def stored_name(self, folder: Path | None) -> str:
        """The stem of the open image's files in ``folder``."""
        return self.autosave_name if folder is not None and Path(folder) == self.fallback_dir else self.name

    def _require(self) -> np.ndarray:
        if self.image is None:
            raise GrainLabError("no image is open")
        return self.image

    # ------------------------------------------------------------------- saved files
    def find_saved(self) -> tuple[np.ndarray | None, Path | None]:
        """The newest saved labels of the open image (dataset folder by name, per-user folder by
        name and pixels) and their folder; ``(None, None)`` when there are none or they cannot
        be used (``warn`` says why)."""
        image = self._require()
        candidates = [(self.folder, self.name), (self.fallback_dir, self.autosave_name)]
        found = [(f, n) for f, n in candidates if f is not None and _annotate.find_annotation(n, [f]) is not None]
        if not found:
            return None, None
        where, stored_name = max(found, key=lambda fn: _annotate.labels_mtime(fn[0], fn[1]))
        try:
            return _annotate.load_segmentation(where, stored_name, shape=image.shape, image=image), where
        except ValueError as exc:  # DataError, and tifffile's errors for a corrupt file
            self._warn(f"saved labels not used: {exc}")
            return None, None

    def find_classes(self, where: Path | None) -> _annotate.ClassAnnotation | None:
        """The saved classification work of the open image: from the dataset folder, ``where``
        (the folder its labels came from) or the per-user folder, the first that has it."""
        image = self._require()
        for folder in (self.folder, where, self.fallback_dir):
            if folder is None:
                continue
            try:
                ann = _annotate.load_class_annotation(folder / CLASSIFICATION_DIR, self.stored_name(folder),
                                                      shape=image.shape)
            except ValueError as exc:  # DataError, and tifffile's errors for a corrupt file
                self._warn(f"saved classes not used: {exc}")
                continue
            if ann is not None:
                return ann
        return None

    def adopt(self, saved: np.ndarray | None, where: Path | None) -> None:
        """The labels found by :meth:`find_saved` (or none) are the saved state from now on."""
        image = self._require()
        self.saved = saved if saved is not None else np.zeros(image.shape, dtype=np.uint32)
        self.in_dataset = saved is not None and self.folder is not None and where == self.folder

    # ------------------------------------------------------------------- saved vs. current
    def has_unsaved_changes(self, labels: np.ndarray, classes: tuple) -> bool:
        """Changes not yet written to the dataset folder (or, without one, anywhere); ``classes``
        is the :func:`class_state` of the current classification work."""
        if self.image is None:
            return False
        if labels_differ(labels, self.saved) or classes != self.saved_classes:
            return True
        return not self.in_dataset and bool(np.any(labels))

    def mark_changed(self) -> None:
        self.dirty = True

    def update_dirty(self, labels_changed: bool, classes: tuple) -> bool:
        """Recompute :attr:`dirty` from a comparison of the labels with :attr:`saved` (e.g. made
        in a worker, see :func:`labels_differ`) and the classification state; returns it."""
        self.dirty = bool(labels_changed) or classes != self.saved_classes
        return self.dirty

    def discard(self, labels: np.ndarray | None, classes: tuple) -> None:
        """The user discarded the unsaved changes: take the current work as saved."""
        self.saved = None if labels is None else np.array(labels, copy=True)
        self.in_dataset = True  # nothing more to ask
        self.saved_classes = classes

    # ------------------------------------------------------------------- writing
    def snapshot(self, labels: np.ndarray, classes: _annotate.ClassAnnotation | None, *, auto: bool = False,
                 what: str = "the labels") -> SaveJob:
        """The next numbered snapshot (copies) of the work: a save goes to the dataset folder
        (which must be set), an autosave (``auto``) there or, without one, to the per-user folder.
        Raises :class:`~napari_grainlab.core.errors.DataError` for labels that cannot be saved."""
        image = self._require()
        data = np.array(labels, copy=True)
        if data.ndim != 2 or data.dtype.kind not in "ui":
            raise DataError(f"{what}: labels must be one 2-D integer plane")
        if data.dtype.kind == "i" and data.size and data.min() < 0:
            raise DataError(f"{what} has negative ids")
        if classes is not None and classes.regions is not None:
            classes = replace(classes, regions=np.array(classes.regions, copy=True))
        if self.folder is None and not auto:
            raise GrainLabError("no dataset folder chosen")
        folder = self.folder or self.fallback_dir
        self._seq += 1
        return SaveJob(seq=self._seq, session=self._session, folder=folder, name=self.stored_name(folder),
                       image=image, labels=data, classes=classes, pixel_size=self.pixel_size,
                       in_dataset=self.folder is not None, auto=auto)

    def _write_ordered(self, job: SaveJob) -> Path | None:
        with self._lock:
            if job.seq < self._written:
                return None
            folder = write_annotation(job.folder, job.name, job.image, job.labels, job.classes, job.pixel_size)
            self._written = job.seq
            return folder

    def write(self, job: SaveJob, *, fallback: bool = False) -> WriteResult:
        """Write ``job`` (thread-safe, one write at a time; skipped when a newer snapshot was
        written already).  With ``fallback``, an autosave the dataset folder refuses goes to the
        per-user folder instead (the result's ``error`` says why).  Raises the error of the
        write that failed last (``DataError``, ``OSError``, ...)."""
        try:
            return WriteResult(job, self._write_ordered(job))
        except USER_ERRORS as exc:
            if not (fallback and job.in_dataset):
                raise
            # in the dataset folder the stem is the image's name; the per-user folder adds its fingerprint
            spare = replace(job, folder=self.fallback_dir, name=_annotate.autosave_name(job.name, job.image),
                            in_dataset=False)
            return WriteResult(spare, self._write_ordered(spare), error=exc)

    def record(self, job: SaveJob) -> bool:
        """``job`` was written: it is the saved state, unless it belongs to another image than the
        open one or a newer snapshot was recorded already (returns whether it was recorded)."""
        if job.session != self._session or self.image is None or job.seq < self._recorded:
            return False
        self._recorded = job.seq
        self.saved = job.labels
        self.saved_classes = class_state(job.classes)
        self.in_dataset = job.in_dataset
        self.last_saved = job.folder
        return True
