"""``grainlab measure``: grain table, mean size and ASTM E112 grain size number of label images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.batch import BatchOptions
from ._common import EXIT_OK, add_options, print_json


def run(args: argparse.Namespace) -> int:
    from ..core.batch import output_stems, write_rows_csv
    from ..core.data.io import read_labels, read_pixel_size
    from ..core.errors import DataError
    from ..core.measure import grain_table, summarize, write_table_csv

    rows = []
    paths = [Path(p) for p in args.labels]
    for path, stem in zip(paths, output_stems(paths)):
        labels = read_labels(path)
        px = args.pixel_size or read_pixel_size(path)
        try:
            stats = summarize(labels, px)
        except DataError as exc:  # e.g. a label image 1 px wide: say which file
            raise DataError(f"{path}: {exc}") from None
        rows.append({"labels": path.name, **({"output": stem} if args.out else {}), **stats})
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            write_table_csv(out / f"{stem}_grains.csv", grain_table(labels, px), px)
    if args.out:
        write_rows_csv(Path(args.out) / "summary.csv", rows)
    print_json(rows if len(rows) > 1 else rows[0])
    return EXIT_OK


def register(sub) -> None:
    m = sub.add_parser("measure", help="grain table, mean size and ASTM E112 grain size number of label images")
    m.add_argument("labels", nargs="+", metavar="LABELS")
    m.add_argument("--out", metavar="DIR", help="write NAME_grains.csv and summary.csv here")
    add_options(m, BatchOptions, only=("pixel_size",), grouped=False)
    m.set_defaults(func=run)
