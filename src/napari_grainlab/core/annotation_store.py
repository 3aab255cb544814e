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
* **Nothing lost.** A label file that this store neither loaded nor wrote (e.g. saved in an
  earlier session, before the user chose its folder again) is not replaced by labels holding
  fewer grains or fewer labelled pixels: the write raises :class:`SavedLabelsConflict` (an
  autosave goes to the per-user folder instead) until the caller writes with
  ``replace_saved=True`` (the user agreed).  The first replacement of a file in a session keeps
  the replaced version as a backup (:func:`~napari_grainlab.core.annotate.backup_labels`).
  :meth:`~AnnotationStore.discard` removes the per-user autosave of the discarded work.
* **Remembered folders.** :attr:`~AnnotationStore.fingerprint` identifies the open image's pixels
  (cheaply); the caller keeps the dataset folders it was saved in and passes them to
  :meth:`~AnnotationStore.find_saved`, which takes the first holding its labels as the dataset
  folder when the chosen one holds none.
* **Saved vs. current.** :meth:`~AnnotationStore.has_unsaved_changes` compares the labels and
  the classification work with what was written last; the :attr:`~AnnotationStore.dirty` flag
  is the cheap version the caller keeps between comparisons (set by
  :meth:`~AnnotationStore.mark_changed`, recomputed by :meth:`~AnnotationStore.update_dirty`).

Every file is written atomically by :mod:`napari_grainlab.core.annotate` (a temporary file next
to the target, renamed over it), so a write that fails half-way leaves the previous file as it was.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import annotate as _annotate
from .errors import USER_ERRORS, DataError, GrainLabError

__all__ = ["CLASSIFICATION_DIR", "AnnotationStore", "SaveJob", "SavedLabelsConflict", "WriteResult", "class_state",
           "holds_more", "labels_differ", "write_annotation"]

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


class SavedLabelsConflict(DataError):
    """A saved label file holds more than the labels that would replace it (see :func:`holds_more`).

    ``path`` is the file, ``saved`` and ``current`` are ``(grains, labelled pixels)`` of the file
    and of the new labels."""

    def __init__(self, path: Path, saved: tuple[int, int], current: tuple[int, int], what: str = "the annotation"):
        self.path, self.saved, self.current = Path(path), saved, current
        super().__init__(f"{path} holds {_amount(saved)}, more than {what} ({_amount(current)}); it is not replaced "
                         "without asking (Reload loads it)")


def _amount(counts: tuple[int, int]) -> str:
    grains, pixels = counts
    return f"{grains} grain{'s' if grains != 1 else ''}, {pixels} labelled px"


def _counts(labels: np.ndarray) -> tuple[int, int]:
    grains, _fraction = _annotate.annotation_stats(labels)
    return grains, int(np.count_nonzero(labels))


def holds_more(saved: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``saved`` has more grains or more labelled pixels than ``labels``."""
    a, b = _counts(saved), _counts(labels)
    return a[0] > b[0] or a[1] > b[1]


def _signature(path: Path) -> tuple[int, int, int] | None:
    """Identifies one version of a file (an atomic replacement is a new file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def write_annotation(folder: Path, name: str, image: np.ndarray, labels: np.ndarray | None,
                     classes: _annotate.ClassAnnotation | None, pixel_size: float | None) -> Path:
    """Write the grain labels (when there are any, or were before) into ``folder``, then the
    classification work into ``folder/classification/``; returns ``folder``.

    Raises :class:`~napari_grainlab.core.errors.DataError` for files or arrays that cannot be
    written (and ``OSError`` from the file system)."""
    if labels is not None and (labels.any() or _annotate.labels_file(folder, name) is not None):
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
    what: str = "the annotation"  # the labels, for messages
    base: str = ""          # the image's name; ``name`` "" = the per-user folder's stem, to compute (write())


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
        self.image: np.ndarray | None = None  # the image written to images/: grey (H, W) or colour (H, W, 3)
        self.pixel_size: float | None = None
        self.saved: np.ndarray | None = None  # the labels as last written (anywhere)
        self.saved_classes: tuple = ()  # class_state() of the classification work as last written or loaded
        self.in_dataset = False  # the last write (or the labels loaded) is in the dataset folder
        self.last_saved: Path | None = None
        self.dirty = False
        self.fingerprint = ""  # image_fingerprint() of the open image
        self.recalled: Path | None = None  # the remembered dataset folder find_saved() took, if it did
        self._digest = ""  # autosave_name() of the open image (a hash of all its pixels: computed once)
        # the versions of label files the open image's work derives from (loaded or written by this
        # store), and the files already backed up in this session: {(folder, name): signature}
        self._known: dict[tuple[Path, str], tuple[int, int, int]] = {}
        self._backed_up: set[tuple[Path, str]] = set()
        self._found: tuple[Path, str, tuple[int, int, int] | None] | None = None  # what find_saved() loaded
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
        """Work on ``image`` (files named ``name``; grey ``(H, W)`` or colour ``(H, W, 3)``, which is saved
        as an RGB TIFF); results of writes for an earlier image are
        no longer recorded.  Call :meth:`adopt` with what :meth:`find_saved` returns next."""
        self._session += 1
        self._known, self._backed_up = {}, set()  # new objects: a write still running keeps the old ones
        self.name, self.image, self.pixel_size = name, image, pixel_size
        self.fingerprint = _annotate.image_fingerprint(image)
        self._digest = ""
        self.recalled = None
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
        image = self._require()
        if not self._digest:
            self._digest = _annotate.autosave_name(self.name, image)
        return self._digest

    def _fallback_may_hold(self) -> bool:
        """The per-user folder may hold work of the open image (files of its name are there, or the name is
        known already)."""
        return bool(self._digest) or _annotate.has_autosave_named(self.fallback_dir, self.name, CLASSIFICATION_DIR)

    def stored_name(self, folder: Path | None) -> str:
        """The stem of the open image's files in ``folder``."""
        return self.autosave_name if folder is not None and Path(folder) == self.fallback_dir else self.name

    def _require(self) -> np.ndarray:
        if self.image is None:
            raise GrainLabError("no image is open")
        return self.image

    # ------------------------------------------------------------------- saved files
    def find_saved(self, remembered: Sequence[str | Path] = (), *,
                   prefer_dataset: bool = False) -> tuple[np.ndarray | None, Path | None]:
        """The newest saved labels of the open image (dataset folder by name, per-user folder by
        name and pixels) and their folder; ``(None, None)`` when there are none or they cannot
        be used (``warn`` says why).  ``prefer_dataset``: the dataset folder's when it has them,
        even when an autosave in the per-user folder is newer.

        ``remembered`` are dataset folders the image's labels were saved in before: when the
        dataset folder holds none of them, the first of these holding them (for these pixels)
        becomes the dataset folder (:attr:`recalled`)."""
        image = self._require()
        self.recalled = None
        loaded: dict[Path, np.ndarray] = {}
        if remembered and (self.folder is None or _annotate.labels_file(self.folder, self.name) is None):
            for folder in map(Path, remembered):
                if folder == self.folder or _annotate.labels_file(folder, self.name) is None:
                    continue
                try:
                    loaded[folder] = _annotate.load_segmentation(folder, self.name, shape=image.shape[:2],
                                                                 image=image)
                except (ValueError, OSError):  # another micrograph of the name, unreadable: not this one's
                    continue
                self.set_folder(folder)
                self.recalled = folder
                break
        candidates = [(self.folder, self.name)]
        if self._fallback_may_hold():  # else no need to hash every pixel for the per-user folder's name
            candidates.append((self.fallback_dir, self.autosave_name))
        found = [(f, n) for f, n in candidates if f is not None and _annotate.labels_file(f, n) is not None]
        if not found:
            return None, None
        if prefer_dataset and found[0][0] == self.folder:
            found = found[:1]
        where, stored_name = max(found, key=lambda fn: _annotate.labels_mtime(fn[0], fn[1]))
        signature = _signature(_annotate.labels_file(where, stored_name))
        try:
            saved = loaded.get(where)
            if saved is None:
                saved = _annotate.load_segmentation(where, stored_name, shape=image.shape[:2], image=image)
        except ValueError as exc:  # DataError, and tifffile's errors for a corrupt file
            self._warn(f"saved labels not used: {exc}")
            return None, None
        self._found = (where, stored_name, signature)
        return saved, where

    def saved_elsewhere(self, folder: str | Path | None = None) -> bool:
        """Whether ``folder`` (default: the dataset folder) holds labels of the open image that its
        work does not derive from (neither loaded nor written by this store)."""
        folder = self.folder if folder is None else Path(folder)
        if folder is None or not self.is_open:
            return False
        name = self.stored_name(folder)
        path = _annotate.labels_file(folder, name)
        return path is not None and self._known.get((folder, name)) != _signature(path)

    def find_classes(self, where: Path | None) -> _annotate.ClassAnnotation | None:
        """The saved classification work of the open image: from the dataset folder, ``where``
        (the folder its labels came from) or the per-user folder, the first that has it."""
        image = self._require()
        for folder in (self.folder, where, self.fallback_dir):
            if folder is None or (folder == self.fallback_dir and not self._fallback_may_hold()):
                continue
            try:
                ann = _annotate.load_class_annotation(folder / CLASSIFICATION_DIR, self.stored_name(folder),
                                                      shape=image.shape[:2])
            except ValueError as exc:  # DataError, and tifffile's errors for a corrupt file
                self._warn(f"saved classes not used: {exc}")
                continue
            if ann is not None:
                return ann
        return None

    def adopt(self, saved: np.ndarray | None, where: Path | None, *, derived: bool = True) -> None:
        """The labels found by :meth:`find_saved` (or none) are the saved state from now on.

        ``derived``: the work shown derives from them (they were loaded into it); when it does not
        (e.g. a layer of other labels), their file is not replaced without the checks of
        :meth:`write`."""
        image = self._require()
        self.saved = saved if saved is not None else np.zeros(image.shape[:2], dtype=np.uint32)
        self.in_dataset = saved is not None and self.folder is not None and where == self.folder
        found, self._found = self._found, None
        if derived and saved is not None and found is not None and found[0] == where and found[2] is not None:
            self._known[(Path(where), found[1])] = found[2]

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

    def discard(self, labels: np.ndarray | None, classes: tuple) -> list[Path]:
        """The user discarded the unsaved changes: take the current work as saved, skip the writes
        of earlier snapshots still pending, and remove the open image's autosave from the per-user
        folder (so that the discarded work does not come back).  Returns the files removed."""
        removed: list[Path] = []
        # waits for a write running now (at most one); the snapshots taken so far are not written any more
        with self._lock:
            self._written = self._seq + 1
            if self.image is not None:
                try:
                    removed = _annotate.remove_annotation(self.fallback_dir, self.autosave_name)
                except OSError as exc:
                    self._warn(f"the autosave of {self.name!r} could not be removed: {exc}")
        self.saved = None if labels is None else np.array(labels, copy=True)
        self.in_dataset = True  # nothing more to ask
        self.saved_classes = classes
        self.dirty = False
        return removed

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
        # the per-user folder's stem hashes every pixel: left to write() (a worker) until it is known
        lazy = folder == self.fallback_dir and not self._digest
        return SaveJob(seq=self._seq, session=self._session, folder=folder,
                       name="" if lazy else self.stored_name(folder), image=image, labels=data, classes=classes,
                       pixel_size=self.pixel_size, in_dataset=self.folder is not None, auto=auto, what=what,
                       base=self.name)

    def _before_replacing(self, job: SaveJob, replace_saved: bool) -> None:
        """The labels file of ``job`` is about to be replaced: refuse to replace one holding more
        that the work does not derive from (unless ``replace_saved``), keep a backup of the first
        version replaced in this session.  Called under the lock."""
        if job.labels is None:
            return
        key = (Path(job.folder), job.name)
        path = _annotate.labels_file(job.folder, job.name)
        if path is None:
            self._backed_up.add(key)  # a new file: no earlier version to keep
            return
        mine = job.session == self._session
        signature = _signature(path)
        known = mine and signature is not None and self._known.get(key) == signature
        if not known and job.in_dataset and not replace_saved:
            try:
                old = _annotate.load_segmentation(job.folder, job.name)
            except (ValueError, OSError):  # unreadable: kept as the backup below, then replaced
                old = None
            if old is not None and old.shape == job.labels.shape and holds_more(old, job.labels):
                raise SavedLabelsConflict(path, _counts(old), _counts(job.labels), job.what)
        if not known or key not in self._backed_up:
            _annotate.backup_labels(job.folder, job.name)
            if mine:
                self._backed_up.add(key)

    def _write_ordered(self, job: SaveJob, replace_saved: bool = False) -> Path | None:
        with self._lock:
            if job.seq < self._written:
                return None
            self._before_replacing(job, replace_saved)
            folder = write_annotation(job.folder, job.name, job.image, job.labels, job.classes, job.pixel_size)
            self._written = job.seq
            path = _annotate.labels_file(job.folder, job.name)
            if job.session == self._session and path is not None:
                self._known[(Path(job.folder), job.name)] = _signature(path)
            return folder

    def write(self, job: SaveJob, *, fallback: bool = False, replace_saved: bool = False) -> WriteResult:
        """Write ``job`` (thread-safe, one write at a time; skipped when a newer snapshot was
        written already).  With ``fallback``, an autosave the dataset folder refuses goes to the
        per-user folder instead (the result's ``error`` says why).  A saved label file holding
        more than the job that the work does not derive from raises :class:`SavedLabelsConflict`
        unless ``replace_saved`` (the user agreed; the file is kept as a backup).  Raises the
        error of the write that failed last (``DataError``, ``OSError``, ...)."""
        if not job.name:
            job = replace(job, name=_annotate.autosave_name(job.base, job.image))
            with self._lock:
                if job.session == self._session and not self._digest:
                    self._digest = job.name
        try:
            return WriteResult(job, self._write_ordered(job, replace_saved))
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
