"""The ``grainlab`` command line.

One module per command (``synth``, ``params``, ``demo``, ``train``, ``retrain``, ``predict``, ``eval``,
``measure``, ``export``, ``predict-onnx``, ``experiment``, ``models``), each with a ``register(subparsers)``
function; they share :mod:`._common` (exit codes, the error reporter, Ctrl-C handling, argument
types, flags generated from option dataclasses, the training progress printer) and small helper
modules (``_synthetic``, ``_data``), never each other.

Conventions: every user error (:class:`~napari_grainlab.core.errors.GrainLabError`, ``OSError``,
``MemoryError``, :class:`UserError`) is reported as one line ``grainlab: error: ...`` on stderr
with exit code 2 and no traceback; Ctrl-C exits with 130. At start-up only the standard library
and the torch-free option schema are imported, so ``grainlab --help`` is instant: NumPy, the
generator and anything heavier are imported inside the commands that need them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

from .. import __version__
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    REPORTED,
    Interrupted,
    Parser,
    UserError,
    error_message,
)

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Interrupted", "UserError", "build_parser", "main"]

#: the command modules, in the order ``grainlab --help`` lists them
COMMANDS = ("synth", "params", "demo", "train", "retrain", "predict", "eval", "measure", "export", "predict_onnx",
            "experiment", "models")


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="GrainLab: synthetic grain micrographs and grain segmentation for materials science.",
        epilog="Run 'grainlab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grainlab`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.func(args)
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except REPORTED as exc:
        _error(error_message(exc))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"{PROG}: interrupted{detail}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
