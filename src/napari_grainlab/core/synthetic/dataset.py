"""Synthetic datasets on disk (the dataset-folder contract) and as an endless stream.

Folder layout::

    OUT/
      images/synth_0000.tif       micrograph (uint8 / uint16, grey or RGB for the colour styles; pixel size in
                                  the TIFF resolution tags)
      labels/synth_0000.tif       grain instances (uint16 or uint32, 0 = pore)
      boundaries/synth_0000.tif   boundary band (uint8 0/1) of the configured width
      twins/synth_0000.tif        twin boundaries (uint8 0/1), only when the parameters draw twins
                                  (``tessellation.twin_fraction`` > 0); twins keep their parent grain's label
      tables/synth_0000.csv       per-grain table
      dataset.json                generator, version, look, channels, parameters, seed and the per-item seeds

Every file is written to a temporary name and renamed, so an interrupted run leaves only
complete files; ``dataset.json`` is rewritten after every item and lists exactly the items
on disk.  With one process, threads generate the next items while item ``i`` is written
(generation, compression and disk writes release the GIL for most of their time, so every core works).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_write_text, atomic_writer, write_tiff
from ..errors import OutputExistsError, ParameterError
from .generate import SyntheticSample, generate, item_seed
from .params import SynthParams

__all__ = ["DatasetProgress", "OutputExistsError", "write_dataset", "synthetic_stream", "write_sample",
           "DATASET_SUBDIRS"]

DATASET_SUBDIRS = ("images", "labels", "boundaries", "tables")
#: written only by datasets whose microstructures have twins
TWINS_SUBDIR = "twins"
FORMAT = "napari-grainlab-dataset"
FORMAT_VERSION = 1
#: zlib level of the label and boundary TIFFs: 3 is ~3x faster to write than the default 6, for
#: files ~1.4x larger (they stay a few percent of the raw size)
ZLIB_LEVEL = 3


@dataclass(frozen=True)
class DatasetProgress:
    """Progress of :func:`write_dataset`: ``done`` of ``total`` items, last one ``name``."""

    done: int
    total: int
    name: str | None
    path: Path
    elapsed: float = 0.0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def _table_csv(table: dict[str, np.ndarray]) -> str:
    buf = io.StringIO()
    cols = list(table)
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(cols)
    columns = []
    for c in cols:
        v = table[c]
        if v.dtype.kind == "f":
            columns.append([f"{x:.6g}" for x in v])
        elif v.dtype.kind == "b":
            columns.append(["true" if x else "false" for x in v])
        else:
            columns.append([str(x) for x in v])
    wr.writerows(zip(*columns))
    return buf.getvalue()


def _write_image(path: Path, image: np.ndarray, pixel_size_um: float | None) -> None:
    """Grey images as a minisblack TIFF (``write_tiff``), (H, W, 3) ones as an RGB TIFF."""
    if image.ndim == 2:
        write_tiff(path, image, pixel_size_um=pixel_size_um)
        return
    import tifffile

    kwargs = {}
    if pixel_size_um:
        ppcm = 1e4 / float(pixel_size_um)
        kwargs.update(resolution=(ppcm, ppcm), resolutionunit="CENTIMETER")
    tifffile.imwrite(path, image, photometric="rgb", planarconfig="contig", metadata=None, **kwargs)


def write_sample(out: Path, name: str, sample: SyntheticSample) -> None:
    """Write one sample into the dataset folder ``out``.

    All files are first written under temporary names, then renamed with the image last:
    whatever interrupts the write, an image on disk always has its labels, boundaries and
    table next to it.
    """
    out = Path(out)
    ps = sample.params.pixel_size
    lab = sample.labels
    lab = lab.astype(np.uint16) if lab.max(initial=0) < 65535 else lab.astype(np.uint32)
    twins = sample.twin_boundaries
    files = [("images", out / "images" / f"{name}.tif"),
             ("labels", out / "labels" / f"{name}.tif"),
             ("boundaries", out / "boundaries" / f"{name}.tif"),
             ("tables", out / "tables" / f"{name}.csv")]
    if twins is not None:
        (out / TWINS_SUBDIR).mkdir(exist_ok=True)
        files.append((TWINS_SUBDIR, out / TWINS_SUBDIR / f"{name}.tif"))
    with contextlib.ExitStack() as stack:
        tmp = {}  # entered first, renamed last: the image
        for key, path in files:
            tmp[key] = stack.enter_context(atomic_writer(path))
        _write_image(tmp["images"], sample.image, ps)
        write_tiff(tmp["labels"], lab, pixel_size_um=ps, compression="zlib", compression_level=ZLIB_LEVEL)
        write_tiff(tmp["boundaries"], sample.boundaries.astype(np.uint8), pixel_size_um=ps, compression="zlib",
                   compression_level=ZLIB_LEVEL)
        tmp["tables"].write_text(_table_csv(sample.table), encoding="utf-8")
        if twins is not None:
            write_tiff(tmp[TWINS_SUBDIR], twins.astype(np.uint8), pixel_size_um=ps, compression="zlib",
                       compression_level=ZLIB_LEVEL)


def _make_item(args: tuple[dict, int, str, str]) -> str:
    params_dict, seed, out, name = args
    params = SynthParams.from_dict(params_dict)
    write_sample(Path(out), name, generate(params, seed))
    return name


def _ignore_sigint() -> None:
    """Worker processes leave Ctrl-C to the parent, which stops after complete items."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out} is not empty (use overwrite to replace its dataset)")
        # replace only what a dataset consists of; anything else the user keeps there stays
        for sub in (*DATASET_SUBDIRS, TWINS_SUBDIR):
            d = out / sub
            if d.is_dir():
                for f in d.iterdir():
                    if f.is_file() and (f.suffix.lower() in (".tif", ".tiff", ".png", ".csv")
                                        or (f.name.startswith(".") and f.name.endswith(".part"))):
                        f.unlink()  # dataset files and temporaries of an interrupted run
        meta = out / "dataset.json"
        if meta.exists():
            meta.unlink()


def _metadata(params: SynthParams, seed: int, count: int, items: list[dict], complete: bool) -> str:
    from ... import __version__

    return json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "synthetic",
            "generator": f"napari-grainlab {__version__}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "look": params.look,
            "channels": params.channels,
            "seed": int(seed),
            "count": int(count),
            "complete": bool(complete),
            "pixel_size_um": params.pixel_size,
            # twin-boundary masks (twins/NAME.tif) of every item, or None: no twins drawn
            "twins": TWINS_SUBDIR if params.tessellation.twin_fraction > 0 else None,
            "params": params.to_dict(),
            "items": items,
        },
        indent=2,
    )


def _stop_fn(stop) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    if callable(stop):
        return stop
    raise TypeError("stop must be a callable or a threading.Event")


#: above this many pixels per image, one thread generates ahead (memory: each item in flight holds
#: its image, labels and boundaries, plus the generator's temporaries)
_PARALLEL_MAX_PIXELS = 4096 * 4096


def _generator_threads(params: SynthParams) -> int:
    """Threads that generate ahead in a one-process run: the kernels, FFTs and array code release
    the GIL for most of their time, so a second core nearly doubles the rate."""
    if (os.cpu_count() or 1) < 2 or params.height * params.width > _PARALLEL_MAX_PIXELS:
        return 1
    return 2


def _write_pipelined(out: Path, params: SynthParams, names: list[str], seeds: list[int],
                     should_stop: Callable[[], bool],
                     record: Callable[[int], DatasetProgress]) -> Iterator[DatasetProgress]:
    """One process: threads generate the next items while another thread writes the current one.

    Items are written and recorded in order; an item is recorded in ``dataset.json`` only once its
    files are on disk.  When the run ends early (stop, error, the consumer closing the iterator),
    items generated ahead are dropped and the write in flight is finished and recorded, so
    ``dataset.json`` keeps listing exactly the images on disk.
    """
    from concurrent.futures import ThreadPoolExecutor

    count = len(names)
    ahead = _generator_threads(params)
    samples: dict[int, Future] = {}
    pending = None  # (future of the write in flight, item index)
    gen_pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="grainlab-synth-generate")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grainlab-synth-write")
    try:
        for i in range(count):
            if should_stop():
                break
            for k in range(i, min(count, i + ahead)):
                if k not in samples:
                    samples[k] = gen_pool.submit(generate, params, seeds[k])
            sample = samples.pop(i).result()  # generated while item i - 1 was written
            if pending is not None:
                fut, j = pending
                pending = None
                fut.result()
                yield record(j)
                if should_stop():
                    break  # the run ends after the item that was on its way to disk
            pending = (writer.submit(write_sample, out, names[i], sample), i)
        if pending is not None:
            fut, j = pending
            pending = None
            fut.result()
            yield record(j)
    finally:
        for f in samples.values():
            f.cancel()
        if pending is not None:
            fut, j = pending
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - the error that ended the run is what matters
                pass
            else:
                record(j)
        writer.shutdown()
        gen_pool.shutdown(cancel_futures=True)


def write_dataset(out: str | Path, params: SynthParams, count: int, seed: int = 0, *, overwrite: bool = False,
                  workers: int = 1, stop=None, prefix: str = "synth") -> Iterator[DatasetProgress]:
    """Generate ``count`` micrographs into the folder ``out``; yields progress after each item.

    ``stop`` (callable returning True, or a ``threading.Event``) ends the run after the item
    in progress; everything already written stays valid.  ``workers > 1`` uses that many
    processes; the files are identical to a single-process run.
    """
    params.validate()
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ParameterError(f"count must be a positive integer, got {count!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r}")
    if int(seed) < 0:
        raise ParameterError(f"seed must be >= 0, got {seed}")
    out = Path(out)
    _check_output(out, overwrite)
    for sub in DATASET_SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    should_stop = _stop_fn(stop)
    width = max(4, len(str(count - 1)))
    names = [f"{prefix}_{i:0{width}d}" for i in range(count)]
    seeds = [item_seed(seed, i) for i in range(count)]
    items: list[dict] = []
    t0 = time.perf_counter()

    def record(i: int) -> DatasetProgress:
        items.append({"name": names[i], "seed": seeds[i]})
        items.sort(key=lambda it: it["name"])
        atomic_write_text(out / "dataset.json", _metadata(params, seed, count, items, len(items) == count))
        return DatasetProgress(len(items), count, names[i], out, time.perf_counter() - t0)

    atomic_write_text(out / "dataset.json", _metadata(params, seed, count, items, False))
    if workers == 1 or count == 1:
        yield from _write_pipelined(out, params, names, seeds, should_stop, record)
        return

    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pdict = params.to_dict()
    ctx = mp.get_context("spawn")  # safe next to threads (GUI, torch); children import only numpy/scipy
    with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx, initializer=_ignore_sigint) as pool:
        pending = {}
        nxt = 0
        try:
            while nxt < count or pending:
                while nxt < count and len(pending) < 2 * workers and not should_stop():
                    fut = pool.submit(_make_item, (pdict, seeds[nxt], str(out), names[nxt]))
                    pending[fut] = nxt
                    nxt += 1
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    fut.result()
                    yield record(i)
                if should_stop():
                    nxt = count  # submit nothing more; let the running items finish
        finally:
            # interrupted or failed: nothing new starts; items already running finish in their
            # processes (they ignore Ctrl-C) and are recorded, so dataset.json keeps listing
            # exactly the images on disk
            running = [(fut, i) for fut, i in pending.items() if not fut.cancel()]
            for fut, i in running:
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 - the error that ended the run is what matters
                    continue
                record(i)


def synthetic_stream(params: SynthParams, seed: int = 0, *, as_float: bool = True,
                     start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless iterator of ``(image, labels)`` pairs generated on the fly.

    Images are float32 in [0, 1] (``as_float``) or the raw integer image; labels uint32.
    Item ``i`` is identical to item ``i`` of :func:`write_dataset` with the same seed.
    """
    params.validate()
    i = int(start)
    while True:
        s = generate(params, item_seed(seed, i))
        yield (s.image_float() if as_float else s.image), s.labels
        i += 1
