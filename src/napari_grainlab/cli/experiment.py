"""``grainlab experiment``: run an experiment configuration and write its report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ._common import (
    EXIT_OK,
    Interrupted,
    StopOnInterrupt,
    UserError,
    positive_int,
    print_above,
    progress_bar,
    show_progress,
)

#: most worker processes chosen automatically (each holds a model and its data: about 1.5 GB)
MAX_AUTO_WORKERS = 4


def run(args: argparse.Namespace) -> int:
    from ..core.experiment import (
        ExperimentFinished,
        ExperimentStarted,
        RunDone,
        RunStarted,
        load_config,
        run_experiment,
        write_report,
    )

    if args.report_only and not args.report:
        raise UserError("--report-only needs --report FILE")
    cfg = load_config(args.config, quick=args.quick)
    out = Path(args.out or Path("grainlab-experiments") / (cfg.name + ("-quick" if args.quick else "")))
    command = " ".join(["grainlab experiment", args.config] + (["--quick"] if args.quick else [])
                       + ["--out", str(args.out or out)] + (["--report", args.report] if args.report else []))
    finished = None
    workers = args.workers
    if workers is None and not args.report_only:
        from ..core.training import resolve_device

        # on a CPU, single-threaded runs side by side use the cores far better than one process
        cpu = resolve_device(args.device).type == "cpu"
        workers = min(os.cpu_count() or 1, MAX_AUTO_WORKERS) if cpu else 1
    if not args.report_only:
        bar = None
        with StopOnInterrupt() as stop:
            events = run_experiment(cfg, out, device=args.device, overwrite=args.overwrite, only=args.only,
                                    workers=workers, threads=args.threads, stop=stop)
            try:
                for ev in events:
                    if isinstance(ev, ExperimentStarted):
                        print(ev, flush=True)
                        bar = progress_bar(total=ev.total, initial=ev.done, desc="experiment", unit="run",
                                           show=show_progress(args))
                    elif isinstance(ev, RunStarted):
                        if bar is not None:
                            bar.set_postfix_str(ev.id, refresh=True)
                    elif isinstance(ev, RunDone):
                        print_above(bar, str(ev))
                        if bar is not None:
                            bar.update(1)
                    elif isinstance(ev, ExperimentFinished):
                        finished = ev
            finally:
                if bar is not None:
                    bar.close()
                events.close()
        if finished is not None:
            print(finished, flush=True)
        if stop.requested or (finished is not None and finished.stopped):
            raise Interrupted(f"finished runs are kept in {out}; run the same command again to resume")
    if args.report:
        path = write_report(out, args.report, findings=cfg.findings_path(), command=command)
        print(f"report: {path}")
    return EXIT_OK


def register(sub) -> None:
    x = sub.add_parser(
        "experiment", help="run an experiment configuration (learning curves, transfer, leakage) and report it",
        description="Run every training and evaluation run of an experiment configuration (TOML; see "
                    "experiments/ in the source distribution) into OUT, then optionally write a Markdown report "
                    "with plots. Finished runs are kept in OUT/results.jsonl: running the same command again "
                    "resumes. Scores are group K-fold means ± sd on held-out images of the target look.",
        epilog="examples:\n"
               "  grainlab experiment experiments/transfer.toml --quick --report docs/report.md\n"
               "  grainlab experiment experiments/transfer.toml --out runs/full --device cuda\n"
               "  grainlab experiment experiments/transfer.toml --out runs/full --report-only --report report.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    x.add_argument("config", metavar="CONFIG", help="experiment file (.toml)")
    x.add_argument("--out", metavar="DIR", help="results folder (default: grainlab-experiments/NAME[-quick])")
    x.add_argument("--quick", action="store_true", help="apply the config's [quick] table: fewer images, folds and "
                                                        "steps (sized for a laptop CPU)")
    x.add_argument("--only", nargs="+", metavar="STUDY", help="run only these studies (and what they need)")
    x.add_argument("--report", metavar="FILE", help="write the Markdown report (figures go to FILE's stem folder)")
    x.add_argument("--report-only", action="store_true", help="do not run anything; report the stored results")
    x.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help=f"runs at once, in N worker processes (default: one per CPU core, at most {MAX_AUTO_WORKERS}, "
                        "when training on the CPU; 1 on a GPU)")
    x.add_argument("--threads", type=positive_int, default=None, metavar="T",
                   help="PyTorch threads per worker process (default: the cores shared out)")
    x.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | mps (default auto)")
    x.add_argument("--overwrite", action="store_true", help="discard earlier results in DIR")
    x.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    x.set_defaults(func=run)
