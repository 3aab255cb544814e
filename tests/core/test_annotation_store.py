"""The Annotate dock's save state machine without a display (core/annotation_store.py)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import tifffile

from napari_grainlab.core import _io
from napari_grainlab.core import annotate as A
from napari_grainlab.core.annotation_store import AnnotationStore, SavedLabelsConflict, class_state, labels_differ
from napari_grainlab.core.errors import DataError, GrainLabError


def micrograph(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64), dtype=np.uint8)


def grains(*ids: int) -> np.ndarray:
    lab = np.zeros((48, 64), np.uint32)
    for i, gid in enumerate(ids):
        lab[4 + 10 * i: 12 + 10 * i, 4:40] = gid
    return lab


@pytest.fixture
def spare(tmp_path):
    """The per-user autosave folder."""
    return tmp_path / "autosave"


@pytest.fixture
def store(spare):
    s = AnnotationStore(fallback_dir=lambda: spare)
    s.open("sample", micrograph())
    s.adopt(*s.find_saved())
    return s


def stored_labels(folder, name):
    return tifffile.imread(folder / "labels" / f"{name}.tif")


# ------------------------------------------------------------------------ ordering
def test_an_older_write_finishing_after_a_newer_one_does_not_win(store, tmp_path):
    store.set_folder(tmp_path / "ds")
    old = store.snapshot(grains(3), None, auto=True)
    new = store.snapshot(grains(3, 9), None)
    assert new.seq > old.seq
    assert store.write(new).folder == tmp_path / "ds"
    skipped = store.write(old, fallback=True)
    assert skipped.folder is None and not skipped.fell_back
    np.testing.assert_array_equal(stored_labels(tmp_path / "ds", "sample"), grains(3, 9))
    # the results arrive in the same wrong order on the GUI thread: the older one is not recorded
    assert store.record(new)
    assert not store.record(old)
    np.testing.assert_array_equal(store.saved, grains(3, 9))
    assert not store.has_unsaved_changes(grains(3, 9), ())


def test_a_slow_older_write_in_a_thread_is_overwritten_by_the_newer(store, tmp_path, monkeypatch):
    store.set_folder(tmp_path / "ds")
    inside, release = threading.Event(), threading.Event()
    real = A.save_segmentation

    def slow_in_thread(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            assert release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(A, "save_segmentation", slow_in_thread)
    old = store.snapshot(grains(3), None, auto=True)
    new = store.snapshot(grains(3, 9), None)
    results = {}
    worker = threading.Thread(target=lambda: results.setdefault("old", store.write(old, fallback=True)))
    worker.start()
    assert inside.wait(10)  # the autosave is writing (and holds the write lock)
    saver = threading.Thread(target=lambda: results.setdefault("new", store.write(new)))
    saver.start()  # the user's save waits for it ...
    saver.join(0.2)
    assert saver.is_alive()
    release.set()
    worker.join(10)
    saver.join(10)
    assert results["old"].folder == results["new"].folder == tmp_path / "ds"
    # ... and is written after it: the newer work is on disk
    np.testing.assert_array_equal(stored_labels(tmp_path / "ds", "sample"), grains(3, 9))


def test_a_write_for_the_previous_image_is_not_recorded_for_the_next(store, tmp_path):
    job = store.snapshot(grains(5), None, auto=True)
    store.write(job)
    store.open("other", micrograph(seed=1))
    store.adopt(*store.find_saved())
    assert not store.record(job)
    assert not store.saved.any()


# ------------------------------------------------------------------------ dirty flag
def test_dirty_flag_and_unsaved_changes(store, tmp_path, spare):
    empty = grains()
    assert not store.dirty and not store.has_unsaved_changes(empty, ())
    store.mark_changed()
    assert store.dirty
    assert not store.update_dirty(labels_differ(empty, store.saved), ())  # the edit was undone
    work = grains(4)
    store.mark_changed()
    assert store.update_dirty(labels_differ(work, store.saved), ())
    assert store.has_unsaved_changes(work, ())
    # an autosave without a dataset folder: saved somewhere, still unsaved for closing
    job = store.snapshot(work, None, auto=True)
    written = store.write(job).job
    assert job.folder == spare and written.name == A.autosave_name("sample", store.image)
    assert store.record(written)
    assert not store.update_dirty(labels_differ(work, store.saved), ())
    assert store.has_unsaved_changes(work, ())
    # saved into the dataset folder: nothing unsaved
    store.set_folder(tmp_path / "ds")
    assert store.record(store.write(store.snapshot(work, None)).job)
    assert store.in_dataset and store.last_saved == tmp_path / "ds"
    assert not store.has_unsaved_changes(work, ())
    # the classification work counts too
    ann = A.ClassAnnotation(classes=["ferrite"], image_class="ferrite")
    assert store.has_unsaved_changes(work, class_state(ann))
    assert store.update_dirty(False, class_state(ann))
    # discarding takes the current work as saved
    store.discard(grains(4, 5), class_state(ann))
    assert not store.has_unsaved_changes(grains(4, 5), class_state(ann))
    store.close()
    assert not store.is_open and not store.has_unsaved_changes(work, ())


def test_snapshot_copies_and_checks_the_labels(store, tmp_path):
    work = grains(2)
    job = store.snapshot(work, None, auto=True)
    work[:] = 7  # the user paints on
    assert (job.labels == 7).sum() == 0
    with pytest.raises(DataError, match="negative"):
        store.snapshot(np.full((48, 64), -1, np.int32), None, auto=True)
    with pytest.raises(DataError, match="2-D integer"):
        store.snapshot(np.zeros((48, 64), np.float32), None, auto=True)
    with pytest.raises(GrainLabError, match="no dataset folder"):
        store.snapshot(grains(2), None)  # a save needs the dataset folder


# ------------------------------------------------------------------------ fallback folder
def test_autosave_falls_back_to_the_user_folder_when_the_dataset_folder_refuses(store, tmp_path, spare):
    blocked = tmp_path / "ds"
    blocked.write_text("a file where the dataset folder should be")
    store.set_folder(blocked)
    work = grains(6)
    job = store.snapshot(work, None, auto=True)
    assert job.in_dataset
    result = store.write(job, fallback=True)
    assert result.fell_back and isinstance(result.error, OSError)
    assert result.folder == spare and result.job.folder == spare and not result.job.in_dataset
    name = A.autosave_name("sample", store.image)
    np.testing.assert_array_equal(stored_labels(spare, name), work)
    # not the dataset folder's state: still unsaved, and found again by name and pixels
    assert store.has_unsaved_changes(work, ())
    store.set_folder(None)
    saved, where = store.find_saved()
    assert where == spare
    np.testing.assert_array_equal(saved, work)
    # a save (no fallback) reports the error
    store.set_folder(blocked)
    with pytest.raises(OSError):
        store.write(store.snapshot(work, None))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_autosave_falls_back_from_a_read_only_dataset_folder(store, tmp_path, spare):
    ds = tmp_path / "ds"
    (ds / "labels").mkdir(parents=True)
    (ds / "images").mkdir()
    os.chmod(ds / "labels", 0o500)
    try:
        store.set_folder(ds)
        result = store.write(store.snapshot(grains(1), None, auto=True), fallback=True)
        assert result.fell_back and result.folder == spare
    finally:
        os.chmod(ds / "labels", 0o700)


def test_another_image_of_the_same_name_is_a_user_error_and_falls_back(store, tmp_path, spare):
    ds = tmp_path / "ds"
    A.save_segmentation(ds, "sample", micrograph(seed=7), grains(1))  # another micrograph called "sample"
    store.set_folder(ds)
    with pytest.raises(DataError, match="another image"):
        store.write(store.snapshot(grains(2), None))
    result = store.write(store.snapshot(grains(2), None, auto=True), fallback=True)
    assert isinstance(result.error, DataError) and result.folder == spare
    np.testing.assert_array_equal(stored_labels(ds, "sample"), grains(1))  # theirs is untouched


# ------------------------------------------------------------------------ atomic writes
def test_a_write_failing_half_way_leaves_the_previous_files(store, tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    store.set_folder(ds)
    store.write(store.snapshot(grains(1), None))
    before = (ds / "labels" / "sample.tif").read_bytes()

    def broken(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"II*\x00 half a TIFF")
        raise OSError("disk full")

    monkeypatch.setattr(_io, "write_tiff", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write(store.snapshot(grains(1, 2), None))
    assert (ds / "labels" / "sample.tif").read_bytes() == before
    assert not [p for p in ds.rglob("*") if p.name.endswith(".part")]
    assert store.saved is not None and not store.saved.any()  # nothing recorded


def test_saved_labels_and_classes_are_found_again(tmp_path, spare):
    ds = tmp_path / "ds"
    image = micrograph()
    store = AnnotationStore(ds, fallback_dir=lambda: spare)
    store.open("sample", image)
    regions = np.zeros(image.shape, np.uint8)
    regions[:, :32] = 1
    ann = A.ClassAnnotation(classes=["ferrite", "pearlite"], image_class="pearlite", regions=regions, tile=32)
    job = store.snapshot(grains(3), ann)
    assert store.record(store.write(job).job)
    assert (ds / "classification" / "pearlite" / "sample.tif").is_file()
    fresh = AnnotationStore(ds, fallback_dir=lambda: spare)
    fresh.open("sample", image)
    saved, where = fresh.find_saved()
    assert where == ds
    np.testing.assert_array_equal(saved, grains(3))
    fresh.adopt(saved, where)
    assert fresh.in_dataset
    loaded = fresh.find_classes(where)
    assert loaded.image_class == "pearlite"
    np.testing.assert_array_equal(loaded.regions, regions)
    assert class_state(loaded) == store.saved_classes
    # unusable saved labels are reported, not raised
    warnings = []
    other = AnnotationStore(ds, fallback_dir=lambda: spare, warn=warnings.append)
    other.open("sample", micrograph(seed=3))
    assert other.find_saved() == (None, None)
    assert warnings and "another image" in warnings[0]


def test_annotation_store_has_no_gui_imports():
    import ast
    import inspect

    from napari_grainlab.core import annotation_store

    tree = ast.parse(inspect.getsource(annotation_store))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"qtpy", "napari", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6"}


# ------------------------------------------------------------------ issue 14: saved labels are never lost
def many_grains(n: int = 54) -> np.ndarray:
    lab = np.zeros((48, 64), np.uint32)
    for i in range(n):
        r, c = divmod(i, 9)
        lab[1 + 8 * r: 7 + 8 * r, 1 + 7 * c: 6 + 7 * c] = i + 1
    return lab


def saved_in(ds, spare, labels):
    """A first session: the labels saved in the dataset folder ``ds``."""
    first = AnnotationStore(ds, fallback_dir=lambda: spare)
    first.open("sample", micrograph())
    first.adopt(*first.find_saved())
    assert first.record(first.write(first.snapshot(labels, None)).job)


def test_a_saved_file_with_more_grains_is_not_replaced_by_an_autosave_after_a_restart(tmp_path, spare):
    ds = tmp_path / "ds"
    saved_in(ds, spare, many_grains())
    assert A.annotation_stats(stored_labels(ds, "sample"))[0] == 54
    # restart: a new store, the user paints before choosing the folder again
    store = AnnotationStore(fallback_dir=lambda: spare)
    store.open("sample", micrograph())
    store.adopt(*store.find_saved())
    one = grains(1)
    assert store.record(store.write(store.snapshot(one, None, auto=True)).job)  # to the per-user folder
    store.set_folder(ds)
    assert store.saved_elsewhere(ds)
    result = store.write(store.snapshot(one, None, auto=True), fallback=True)
    assert isinstance(result.error, SavedLabelsConflict) and result.folder == spare
    assert "54 grains" in str(result.error) and "sample" in str(result.error)
    np.testing.assert_array_equal(stored_labels(ds, "sample"), many_grains())  # untouched
    # Reload asks for the dataset folder's labels, though the per-user autosave is newer
    assert store.find_saved()[1] == spare
    saved, where = store.find_saved(prefer_dataset=store.saved_elsewhere())
    assert where == ds and A.annotation_stats(saved)[0] == 54
    # a save is refused too, until the user agrees; then the replaced file is kept as a backup
    job = store.snapshot(one, None)
    with pytest.raises(SavedLabelsConflict) as info:
        store.write(job)
    assert info.value.saved == (54, int(np.count_nonzero(many_grains()))) and info.value.current[0] == 1
    np.testing.assert_array_equal(stored_labels(ds, "sample"), many_grains())
    assert store.record(store.write(job, replace_saved=True).job)
    np.testing.assert_array_equal(stored_labels(ds, "sample"), one)
    backups = list((ds / "labels" / ".backup").glob("sample.*.tif"))
    assert len(backups) == 1
    np.testing.assert_array_equal(tifffile.imread(backups[0]), many_grains())


def test_a_saved_file_holding_less_is_replaced_with_a_backup(tmp_path, spare):
    ds = tmp_path / "ds"
    saved_in(ds, spare, grains(1))
    store = AnnotationStore(fallback_dir=lambda: spare)
    store.open("sample", micrograph())
    store.adopt(*store.find_saved())
    store.set_folder(ds)  # not loaded: unknown to this store, but it holds less than the work
    result = store.write(store.snapshot(grains(1, 2), None, auto=True), fallback=True)
    assert not result.fell_back
    np.testing.assert_array_equal(stored_labels(ds, "sample"), grains(1, 2))
    np.testing.assert_array_equal(tifffile.imread(next((ds / "labels" / ".backup").iterdir())), grains(1))


def test_edits_of_loaded_labels_are_saved_with_one_backup_per_session(tmp_path, spare):
    ds = tmp_path / "ds"
    saved_in(ds, spare, many_grains())
    for session in range(3):
        store = AnnotationStore(ds, fallback_dir=lambda: spare)
        store.open("sample", micrograph())
        saved, where = store.find_saved()
        store.adopt(saved, where)
        assert where == ds and not store.saved_elsewhere(ds)
        # the user deletes grains of the labels they loaded: no question, a backup of what was there
        fewer = np.where(saved > 50 - 10 * session, 0, saved)
        for _ in range(2):  # repeated autosaves replace the session's own file without new backups
            result = store.write(store.snapshot(fewer, None, auto=True), fallback=True)
            assert not result.fell_back and store.record(result.job)
        np.testing.assert_array_equal(stored_labels(ds, "sample"), fewer)
        assert len(list((ds / "labels" / ".backup").iterdir())) == session + 1
    # a file changed by someone else meanwhile is not the one loaded: compared again
    A.save_segmentation(ds, "sample", micrograph(), many_grains())
    result = store.write(store.snapshot(grains(1), None, auto=True), fallback=True)
    assert isinstance(result.error, SavedLabelsConflict)


def test_remembered_dataset_folders_are_recalled(tmp_path, spare):
    ds, other = tmp_path / "ds", tmp_path / "other"
    saved_in(ds, spare, many_grains())
    A.save_segmentation(other, "sample", micrograph(seed=9), grains(1))  # another micrograph of that name
    store = AnnotationStore(fallback_dir=lambda: spare)
    store.open("sample", micrograph())
    saved, where = store.find_saved(remembered=[tmp_path / "missing", other, ds])
    assert where == ds and store.folder == ds and store.recalled == ds
    np.testing.assert_array_equal(saved, many_grains())
    store.adopt(saved, where)
    assert store.in_dataset and not store.saved_elsewhere(ds)
    # a dataset folder that holds the image's labels is kept
    store.set_folder(tmp_path / "ds")
    store.open("sample", micrograph())
    assert store.find_saved(remembered=[other])[1] == ds and store.recalled is None
    # fingerprints are cheap and name the pixels
    assert store.fingerprint == A.image_fingerprint(micrograph())


def test_discard_removes_the_autosave_and_skips_writes_still_pending(store, spare):
    job = store.snapshot(grains(3), None, auto=True)
    assert store.record(store.write(job).job)
    name = A.autosave_name("sample", store.image)
    assert (spare / "labels" / f"{name}.tif").is_file()
    pending = store.snapshot(grains(3, 4), None, auto=True)  # e.g. an autosave in a worker
    removed = store.discard(grains(3, 4), ())
    assert spare / "labels" / f"{name}.tif" in removed
    assert not (spare / "labels" / f"{name}.tif").exists() and not (spare / "images" / f"{name}.tif").exists()
    assert store.write(pending).folder is None  # it no longer writes the discarded work
    assert not (spare / "labels" / f"{name}.tif").exists() and not store.dirty
    # the next session finds nothing
    fresh = AnnotationStore(fallback_dir=lambda: spare)
    fresh.open("sample", micrograph())
    assert fresh.find_saved() == (None, None)
    # later work is saved again
    assert store.write(store.snapshot(grains(5), None, auto=True)).folder == spare


# ----------------------------------------------- the pixel hash is computed only when needed, off the GUI thread
def count_digests(monkeypatch):
    calls = []
    real = A.image_digest

    def digest(image):
        calls.append(threading.current_thread().name)
        return real(image)

    monkeypatch.setattr(A, "image_digest", digest)
    return calls


def test_opening_an_image_hashes_no_pixels_when_the_user_folder_holds_nothing_of_its_name(spare, monkeypatch):
    other = AnnotationStore(fallback_dir=lambda: spare)
    other.open("another", micrograph(1))
    assert other.record(other.write(other.snapshot(grains(1), None, auto=True)).job)
    calls = count_digests(monkeypatch)
    store = AnnotationStore(fallback_dir=lambda: spare)
    store.open("sample", micrograph())
    assert store.find_saved() == (None, None)
    assert store.find_classes(None) is None
    assert calls == []


def test_the_first_autosave_names_its_file_in_the_writing_thread_and_is_found_again(spare, monkeypatch):
    expected = A.autosave_name("sample", micrograph())
    calls = count_digests(monkeypatch)
    store = AnnotationStore(fallback_dir=lambda: spare)
    store.open("sample", micrograph())
    store.adopt(*store.find_saved())
    job = store.snapshot(grains(1, 2), None, auto=True)
    assert calls == [] and job.name == ""
    results = {}
    writer = threading.Thread(target=lambda: results.setdefault("r", store.write(job, fallback=True)), name="writer")
    writer.start()
    writer.join()
    written = results["r"].job
    assert calls == ["writer"] and written.name == expected
    assert store.record(written)
    np.testing.assert_array_equal(stored_labels(spare, written.name), grains(1, 2))
    # the name is known now: later snapshots carry it, and nothing is hashed again
    assert store.snapshot(grains(1), None, auto=True).name == written.name and calls == ["writer"]
    # a new session finds the autosave (hashing the pixels once, as files of the name are there) ...
    fresh = AnnotationStore(fallback_dir=lambda: spare)
    fresh.open("sample", micrograph())
    saved, where = fresh.find_saved()
    assert where == spare and len(calls) == 2
    np.testing.assert_array_equal(saved, grains(1, 2))
    # ... but not for another micrograph of the same name
    third = AnnotationStore(fallback_dir=lambda: spare)
    third.open("sample", micrograph(5))
    assert third.find_saved() == (None, None)


def test_has_autosave_named_reads_labels_and_classification_work(tmp_path):
    folder = tmp_path / "spare"
    assert not A.has_autosave_named(folder, "sample", "classification")
    (folder / "labels").mkdir(parents=True)
    (folder / "labels" / "sample2-0123456789ab.tif").write_bytes(b"")  # another name
    (folder / "labels" / "sample-0123.tif").write_bytes(b"")  # not a fingerprint
    assert not A.has_autosave_named(folder, "sample", "classification")
    (folder / "classification").mkdir()
    (folder / "classification" / A.CLASSES_FILE).write_text('{"images": {"sample-0123456789ab": "ferrite"}}')
    assert A.has_autosave_named(folder, "sample", "classification")
    assert not A.has_autosave_named(folder, "sample")
    (folder / "labels" / "sample-0123456789AB.TIF").write_bytes(b"")
    assert A.has_autosave_named(folder, "sample")
