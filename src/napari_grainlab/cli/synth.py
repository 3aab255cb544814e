"""``grainlab synth``: write a synthetic dataset folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import EXIT_OK, UserError, errors_about, nonnegative_int, positive_int, resolve_workers, show_progress
from ._synthetic import add_param_options, add_run_options, build_params, write_dataset


def run(args: argparse.Namespace) -> int:
    params = build_params(args)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} is not empty; pass --overwrite to replace the dataset in it")
    t0 = time.perf_counter()
    with errors_about(out):
        n = write_dataset(out, params, count=args.count, seed=args.seed, overwrite=args.overwrite,
                          workers=resolve_workers(args.workers), progress=show_progress(args), desc="synth")
    dt = time.perf_counter() - t0
    style = {"sem": "SEM"}.get(params.style, params.style)
    print(f"wrote {n} {style} image{'' if n == 1 else 's'} of {params.height}x{params.width} px "
          f"({params.bit_depth}-bit, seed {args.seed}) to {out} in {dt:.1f} s")
    return EXIT_OK


def register(sub) -> None:
    s = sub.add_parser(
        "synth", help="write a synthetic dataset folder (images/, labels/, dataset.json)",
        description="Generate synthetic grain micrographs with their grain labels into a dataset folder:\n"
                    "OUT/images/NAME.tif, OUT/labels/NAME.tif (grain instances), OUT/boundaries/NAME.tif,\n"
                    "OUT/tables/NAME.csv (per-grain table) and OUT/dataset.json (parameters and seeds).\n"
                    "The same parameters and seed always give the same files, whatever --workers is.",
        epilog="examples:\n"
               "  grainlab synth data/sem --count 100 --size 512 --grains 300 --seed 1\n"
               "  grainlab synth data/twins --preset sem-twins --set tessellation.twin_fraction=0.8\n"
               "  grainlab synth data/more --params data/sem --seed 2   # same parameters, new images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("out", metavar="OUT", help="dataset folder to create (must be empty or absent unless --overwrite)")
    s.add_argument("--count", type=positive_int, default=16, metavar="N", help="number of images (default: 16)")
    s.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="random seed (default: 0)")
    s.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty OUT")
    add_run_options(s, workers=1)
    add_param_options(s)
    s.set_defaults(func=run)
