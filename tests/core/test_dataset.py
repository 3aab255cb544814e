"""Dataset writer (folder contract) and the on-the-fly stream."""

from __future__ import annotations

import csv
import itertools
import json
import threading

import numpy as np
import pytest
import tifffile

from napari_grainlab.core.synthetic import ParameterError, SynthParams, generate, synthetic_stream, write_dataset
from napari_grainlab.core.synthetic.dataset import OutputExistsError
from napari_grainlab.core.synthetic.generate import item_seed


def small(**kw) -> SynthParams:
    p = SynthParams(height=96, width=128, **kw)
    p.tessellation.grains = 15
    return p


def test_writes_contract_folder(tmp_path):
    out = tmp_path / "ds"
    p = small(pixel_size=0.2)
    events = list(write_dataset(out, p, count=3, seed=5))
    assert [e.done for e in events] == [1, 2, 3]
    assert events[-1].total == 3 and events[-1].fraction == 1.0
    names = sorted(f.stem for f in (out / "images").glob("*.tif"))
    assert names == ["synth_0000", "synth_0001", "synth_0002"]
    for sub, ext in (("labels", "tif"), ("boundaries", "tif"), ("tables", "csv")):
        assert sorted(f.stem for f in (out / sub).glob(f"*.{ext}")) == names
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["seed"] == 5 and meta["count"] == 3 and meta["complete"] is True
    assert SynthParams.from_dict(meta["params"]) == p
    assert [it["name"] for it in meta["items"]] == names
    # item i is exactly generate(params, item_seed(seed, i))
    s1 = generate(p, item_seed(5, 1))
    img = tifffile.imread(out / "images" / "synth_0001.tif")
    lab = tifffile.imread(out / "labels" / "synth_0001.tif")
    np.testing.assert_array_equal(img, s1.image)
    np.testing.assert_array_equal(lab, s1.labels)
    assert lab.dtype == np.uint16  # fewer than 65535 grains
    # the pixel size travels in the TIFF resolution tags
    with tifffile.TiffFile(out / "images" / "synth_0001.tif") as tf:
        xres = tf.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(1e4 / 0.2, rel=1e-4)
    rows = list(csv.DictReader((out / "tables" / "synth_0001.csv").open()))
    assert len(rows) == len(np.unique(s1.labels))
    assert {"label", "area", "equivalent_diameter", "phase"} <= set(rows[0])


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match="not empty"):
        list(write_dataset(out, small(), count=1))
    list(write_dataset(out, small(), count=3, overwrite=True))
    # a second, smaller run with overwrite leaves no stale items behind, and keeps user files
    list(write_dataset(out, small(), count=2, seed=1, overwrite=True))
    assert len(list((out / "images").glob("*.tif"))) == 2
    assert (out / "notes.txt").read_text() == "my notes"


def test_output_path_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputExistsError):
        list(write_dataset(f, small(), count=1))


def test_stop_ends_early_and_leaves_valid_files(tmp_path):
    out = tmp_path / "ds"
    stop = threading.Event()
    done = []
    for ev in write_dataset(out, small(), count=20, stop=stop):
        done.append(ev.done)
        if ev.done == 2:
            stop.set()
    assert done == [1, 2]
    imgs = sorted((out / "images").glob("*.tif"))
    assert len(imgs) == 2
    assert not list(out.rglob("*.part"))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] is False and len(meta["items"]) == 2
    for f in imgs:
        assert tifffile.imread(f).shape == (96, 128)


def test_workers_give_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    p = small()
    list(write_dataset(a, p, count=4, seed=3, workers=1))
    events = list(write_dataset(b, p, count=4, seed=3, workers=2))
    assert events[-1].done == 4
    for sub in ("images", "labels", "boundaries", "tables"):
        for fa in sorted((a / sub).iterdir()):
            assert fa.read_bytes() == (b / sub / fa.name).read_bytes(), fa


def test_bad_arguments(tmp_path):
    with pytest.raises(ParameterError, match="count"):
        list(write_dataset(tmp_path / "x", small(), count=0))
    with pytest.raises(ParameterError, match="workers"):
        list(write_dataset(tmp_path / "x", small(), count=1, workers=0))
    bad = small()
    bad.tessellation.grains = -3
    with pytest.raises(ParameterError):
        list(write_dataset(tmp_path / "x", bad, count=1))
    assert not (tmp_path / "x").exists()


def test_stream_is_endless_and_matches_dataset(tmp_path):
    p = small()
    items = list(itertools.islice(synthetic_stream(p, seed=9), 3))
    assert len(items) == 3
    img, lab = items[2]
    assert img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
    assert lab.dtype == np.uint32 and lab.shape == img.shape
    list(write_dataset(tmp_path / "d", p, count=3, seed=9))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "d" / "labels" / "synth_0002.tif"), lab)
    assert not np.array_equal(items[0][1], items[1][1])


def test_overwrite_clears_temporaries_of_an_interrupted_run(tmp_path):
    out = tmp_path / "ds"
    list(write_dataset(out, small(), count=1))
    stale = out / "images" / ".synth_0007.tif.abc123.part"
    stale.write_bytes(b"half an image")
    list(write_dataset(out, small(), count=1, overwrite=True))
    assert not stale.exists()
    assert [f.name for f in (out / "images").iterdir()] == ["synth_0000.tif"]


def test_single_process_writes_an_item_while_the_next_is_generated(tmp_path, monkeypatch):
    """The write of item i (compression, disk) overlaps the generation of item i + 1."""
    from napari_grainlab.core.synthetic import dataset as ds

    generated = [threading.Event() for _ in range(3)]
    real_generate, real_write = ds.generate, ds.write_sample
    overlapped = []
    lock = threading.Lock()
    index = {item_seed(2, i): i for i in range(3)}

    def gen(params, seed):
        s = real_generate(params, seed)
        with lock:
            generated[index[seed]].set()
        return s

    def write(out, name, sample):
        i = int(name.rsplit("_", 1)[1])
        if i + 1 < len(generated):
            overlapped.append(generated[i + 1].wait(timeout=10))  # sequential code never gets there
        real_write(out, name, sample)

    monkeypatch.setattr(ds, "generate", gen)
    monkeypatch.setattr(ds, "write_sample", write)
    events = list(write_dataset(tmp_path / "ds", small(), count=3, seed=2))
    assert overlapped == [True, True]
    assert [e.done for e in events] == [1, 2, 3]
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert [it["name"] for it in meta["items"]] == ["synth_0000", "synth_0001", "synth_0002"]
    assert meta["complete"] is True


def test_closing_the_iterator_records_the_write_in_flight(tmp_path):
    out = tmp_path / "ds"
    it = write_dataset(out, small(), count=10)
    next(it)
    it.close()  # item 1 may be on its way to disk: it is finished and listed, nothing half-written stays
    names = sorted(f.stem for f in (out / "images").glob("*.tif"))
    meta = json.loads((out / "dataset.json").read_text())
    assert [m["name"] for m in meta["items"]] == names and 1 <= len(names) <= 2
    assert not list(out.rglob("*.part"))
    for sub, ext in (("labels", "tif"), ("boundaries", "tif"), ("tables", "csv")):
        assert sorted(f.stem for f in (out / sub).glob(f"*.{ext}")) == names


def test_label_tiffs_are_zlib_at_the_fast_level(tmp_path, monkeypatch):
    import tifffile as tf

    from napari_grainlab.core.synthetic import dataset as ds

    calls = []
    real = tf.imwrite

    def spy(path, data, **kw):
        calls.append(kw.get("compressionargs"))
        return real(path, data, **kw)

    monkeypatch.setattr(tf, "imwrite", spy)
    list(write_dataset(tmp_path / "ds", small(), count=1))
    assert calls.count({"level": ds.ZLIB_LEVEL}) == 2  # labels and boundaries; the image is uncompressed


def test_generate_ahead_threads_depend_on_cores_and_image_size(monkeypatch):
    from napari_grainlab.core.synthetic import dataset as ds

    monkeypatch.setattr(ds.os, "cpu_count", lambda: 2)
    assert ds._generator_threads(SynthParams(height=1024, width=1024)) == 2
    assert ds._generator_threads(SynthParams(height=8192, width=8192)) == 1  # memory first
    monkeypatch.setattr(ds.os, "cpu_count", lambda: 1)
    assert ds._generator_threads(SynthParams(height=1024, width=1024)) == 1
