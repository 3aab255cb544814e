"""GUI-thread cost of the Annotate dock's remembered dataset folders (issue 14, item 1).

When an image is attached, the dock fingerprints its pixels
(:func:`napari_grainlab.core.annotate.image_fingerprint`, a sample of at most 512 x 512 pixels),
reads the remembered folders from the per-user settings and looks for the image's label file in
them.  This prints the time of each step for a large micrograph next to the full pixel hash
(:func:`~napari_grainlab.core.annotate.image_digest`, what the per-user autosave names use), and
their ratio; the brief allows ~50 ms on the GUI thread.

    python benchmarks/bench_annotate_recall.py [--size 8192] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192, help="image side in px (default 8192)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GRAINLAB_CONFIG_DIR"] = str(Path(tmp) / "config")
        from napari_grainlab.core import annotate as A
        from napari_grainlab.gui import _settings

        image = np.random.default_rng(0).integers(0, 4096, (args.size, args.size), dtype=np.uint16)
        fp = A.image_fingerprint(image)
        folders = [Path(tmp) / f"ds{i}" for i in range(_settings.MAX_DATASET_FOLDERS)]
        for folder in folders:
            _settings.remember_dataset_folder(fp, folder)
        for i in range(200):  # other images remembered too
            _settings.remember_dataset_folder(f"{i:016x}", Path(tmp) / f"other{i}")

        def lookup():
            return [f for f in _settings.dataset_folders(A.image_fingerprint(image)) if A.labels_file(f, "img")]

        fingerprint_ms = _median_ms(lambda: A.image_fingerprint(image), args.repeat)
        lookup_ms = _median_ms(lookup, args.repeat)
        digest_ms = _median_ms(lambda: A.image_digest(image), args.repeat)
    result = {"size": args.size, "fingerprint_ms": fingerprint_ms, "lookup_ms": lookup_ms, "digest_ms": digest_ms,
              "ratio": digest_ms / fingerprint_ms}
    print(f"{args.size} x {args.size} uint16: fingerprint {fingerprint_ms:.2f} ms, fingerprint + settings + "
          f"{len(folders)} folders {lookup_ms:.2f} ms; full pixel hash {digest_ms:.1f} ms "
          f"(ratio {result['ratio']:.0f}x)")
    return result


if __name__ == "__main__":
    main()
