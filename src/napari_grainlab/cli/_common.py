"""What the ``grainlab`` commands share: exit codes, the one error reporter, Ctrl-C handling,
argument types, flags generated from option dataclasses and the training progress printer.

Like every module of :mod:`napari_grainlab.cli`, this imports only the standard library and the
torch-free parts of ``core`` (errors, the option schema) at start-up, so ``grainlab --help`` is
instant; tqdm and the engine are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..core._schema import cli_flag, field_kind, fmt_value, option_fields
from ..core.errors import USER_ERRORS, GrainLabError

PROG = "grainlab"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input or environment: one line on stderr, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a command after it stopped cleanly (the message says what was kept)."""


#: what ``main`` reports as one line ``grainlab: error: ...`` with exit code 2 instead of a traceback
#: (a diverging training raises FloatingPointError: too high a learning rate is the user's to fix)
REPORTED: tuple[type[BaseException], ...] = (UserError, *USER_ERRORS, FloatingPointError)


def error_message(exc: BaseException) -> str:
    """The one-line message of a :data:`REPORTED` exception."""
    if isinstance(exc, OSError) and not isinstance(exc, GrainLabError):
        if exc.filename:
            reason = "exists and is not a folder" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
            text = f"{exc.filename}: {reason}"
        else:
            text = str(exc)
    elif isinstance(exc, MemoryError):
        text = f"out of memory: {exc}"
    else:
        text = str(exc)
    return " ".join(text.split("\n"))


@contextlib.contextmanager
def errors_about(path: str | os.PathLike) -> Iterator[None]:
    """An ``OSError`` raised in the block that names no file (a full disk) is reported as about ``path``."""
    try:
        yield
    except OSError as exc:
        if not exc.filename and not isinstance(exc, GrainLabError):
            exc.filename = os.fspath(path)
        raise


class StopOnInterrupt:
    """Context manager: the first Ctrl-C asks the running job to stop after the current item
    (so only complete items stay on disk), a second one aborts at once.

    The instance is the ``stop`` callable that the core generators poll.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: stopping after the current image (press Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (and lets ``main`` decide the exit)."""

    def error(self, message: str):
        raise UserError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------ argument types
def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        v = _whole_number(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def finite_float(text: str) -> float:
    """argparse type: a finite number (no nan / inf)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def nonnegative_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def show_progress(args: argparse.Namespace) -> bool:
    """``--progress`` / ``--no-progress``, by default a bar only when stderr is a terminal."""
    return args.progress if args.progress is not None else sys.stderr.isatty()


def resolve_workers(n: int) -> int:
    """``--workers 0`` means one per CPU core."""
    return max(1, os.cpu_count() or 1) if n == 0 else n


# ------------------------------------------------------------------------- flags from option metadata
def _range_problem(value: float, meta: Any) -> str | None:
    """What ``value`` breaks of the field's ``min`` / ``max`` / ``multiple_of`` (``"at least 32 px"``), or None.

    A range with both bounds names the one crossed, in words with the unit; a one-sided range is
    written as a comparison (``">= 0"``, ``"> 0"``)."""
    lo, hi, lo_open, hi_open = meta.get("min"), meta.get("max"), meta.get("min_open"), meta.get("max_open")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    unit = meta.get("suffix") or ""
    if (below or above) and lo is not None and hi is not None:
        if below:
            return f"{'more than' if lo_open else 'at least'} {fmt_value(lo)}{unit}"
        return f"{'less than' if hi_open else 'at most'} {fmt_value(hi)}{unit}"
    if below:
        return f"{'>' if lo_open else '>='} {fmt_value(lo)}"
    if above:
        return f"{'<' if hi_open else '<='} {fmt_value(hi)}"
    step = meta.get("multiple_of")
    if step and isinstance(value, int) and value % step:
        return f"a multiple of {step}"
    return None


def _special_word(f: dataclasses.Field, optional: bool) -> str | None:
    """The word (``auto``) that stands for None on the command line: the ``special`` text of an optional
    field whose default is None; None for other fields."""
    special = f.metadata.get("special")
    if optional and f.default is None and isinstance(special, str) and special.strip():
        return special.strip()
    return None


def _value_type(f: dataclasses.Field, kind: type, optional: bool = False) -> Callable[[str], Any]:
    """argparse type of one value of ``f``: converts it and checks the range as ``check_options`` does.

    An optional field with a ``special`` text and default None also takes that text (``--diameter auto``)
    for None, in any letter case."""
    meta = f.metadata
    word = _special_word(f, optional)

    def parse(text: str) -> Any:
        if word is not None and text.strip().lower() == word.lower():
            return None
        if kind is str:
            return text
        try:
            value = _whole_number(text) if kind is int else finite_float(text)
        except argparse.ArgumentTypeError as exc:
            if word is None:
                raise
            raise argparse.ArgumentTypeError(f"{exc} (or {word})") from None
        problem = _range_problem(value, meta)
        if problem:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return value

    return parse


def _list_type(f: dataclasses.Field, kind: type) -> Callable[[str], tuple]:
    """argparse type of a tuple field: comma-separated values (each checked), ``none`` for the empty list."""
    item = _value_type(f, kind)
    choices = f.metadata.get("choices")

    def parse(text: str) -> tuple:
        if text.strip().lower() == "none":
            return ()
        values = tuple(item(part.strip()) for part in text.split(",") if part.strip())
        for v in values:
            if choices is not None and v not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown value {v!r}; choose from {', '.join(str(c) for c in choices)} (or none)")
        return values

    return parse


def _fields_dest(cls: type) -> str:
    return f"_options_{cls.__module__}.{cls.__qualname__}"


def add_options(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None,
                exclude: Iterable[str] = (), grouped: bool = True,
                group_order: Sequence[str] = ()) -> dict[str, Any]:
    """Add a flag to ``parser`` for every option field of the dataclass ``cls`` that has one.

    A field's metadata (see :mod:`napari_grainlab.core._schema`) gives the flag: ``cli`` its name
    (default: the field name with ``-``; ``False``: no flag), ``metavar``, ``help`` (plus the
    default), ``choices`` and the range, checked by the argument type so that a bad value is an
    argparse error naming the flag. A bool becomes a switch (``--flag``, or ``--flag`` /
    ``--no-flag`` when the default is True); a tuple a comma-separated list (``none``: empty);
    an optional field defaults to None. ``only`` / ``exclude`` pick fields by name. With
    ``grouped``, flags go into one argument group per metadata ``group`` (in ``group_order``,
    then as they come).

    Returns the argument groups by group name (so a command can add its own flags to one); read
    the values back with :func:`options_from_args`.
    """
    only = None if only is None else set(only)
    exclude = set(exclude)
    chosen = [f for f in option_fields(cls) if f.metadata.get("cli") is not False
              and (only is None or f.name in only) and f.name not in exclude]
    groups: dict[str, Any] = {}
    present = {f.metadata.get("group") or "" for f in chosen} if grouped else set()
    for name in [*group_order, *(f.metadata.get("group") or "" for f in chosen)]:
        if name and name in present and name not in groups:
            groups[name] = parser.add_argument_group(f"{name.lower()} options")
    for f in chosen:
        meta = f.metadata
        kind, optional, is_tuple = field_kind(cls, f.name)
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line flag for this type; give it cli=False")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = cli_flag(f)
        text = (meta.get("help") or "").replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        if kind is bool and not is_tuple:
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
            if default:
                text += " (default: on)"
        else:
            kwargs["metavar"] = meta.get("metavar")
            if is_tuple:
                kwargs["type"] = _list_type(f, kind)
                kwargs["metavar"] = kwargs["metavar"] or "LIST"
                if meta.get("choices") is not None:
                    text += f"; comma-separated: {', '.join(str(c) for c in meta['choices'])} (or none)"
                shown = ",".join(fmt_value(v) for v in default) or "none"
            else:
                kwargs["type"] = _value_type(f, kind, optional)
                if meta.get("choices") is not None:
                    kwargs["choices"] = meta["choices"]
                shown = None if default is None else fmt_value(default)
            if shown is not None:
                text += f" (default: {shown})"
        kwargs["help"] = text.strip() or None
        (groups.get(meta.get("group") or "") or parser).add_argument(flag, **kwargs)
    parser.set_defaults(**{_fields_dest(cls): tuple(f.name for f in chosen)})
    return groups


def options_from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """An instance of ``cls`` from the flags that :func:`add_options` added, plus ``values``
    (fields without a flag); the other fields keep their defaults."""
    names = getattr(args, _fields_dest(cls))
    return cls(**{name: getattr(args, name) for name in names}, **values)


# ---------------------------------------------------------------------------------------------- output
def scale_report(info: Any, *, rescale: bool = True) -> str:
    """The one-line grain-scale report of a prediction (a ``ScaleInfo``: ``grain diameter ≈ 23 px
    (estimated), scaled ×1.39``); '' when the image's grain diameter is not known.  An image that was not
    resized says why: the model records no training scale, rescaling is off (``rescale``), the change
    would be under the resampling tolerance (5 %), or the factor was limited."""
    if info.diameter is None:
        return ""
    if info.factor == 1.0 and not info.note:
        from ..core.inference._rescale import TOLERANCE

        if info.model_diameter is None:
            note = "the model records no training scale"
        elif not rescale:
            note = "rescaling off"
        else:
            wanted = float(info.model_diameter) / float(info.diameter)
            note = f"change under {TOLERANCE * 100:g} %" if abs(wanted - 1.0) < TOLERANCE else \
                f"limited from ×{wanted:.3g}"
        info = dataclasses.replace(info, note=note)
    return info.text()


def _json_safe(obj):
    """``obj`` with NumPy values as Python ones and NaN / inf as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars
        return _json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def print_json(obj) -> None:
    """Strict JSON on stdout (NaN and infinities as null)."""
    print(json.dumps(_json_safe(obj), indent=2, allow_nan=False))


def progress_bar(*, total: int, desc: str, unit: str, show: bool, initial: int = 0) -> Any:
    """A tqdm progress bar on stderr, hidden unless ``show``."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=not show,
                dynamic_ncols=True)


def print_above(bar: Any, line: str, file: Any = None) -> None:
    """Print ``line`` (to ``file``, default stdout) above the progress ``bar``, or plainly when
    no bar is shown (``bar`` None or hidden)."""
    if bar is not None and not bar.disable:
        bar.write(line, file=file)
    else:
        print(line, file=file, flush=True)


def follow_training(events: Iterator, *, progress: bool, indent: str = "") -> tuple[Any, Any]:
    """Print the events of ``fit`` / ``cross_validate`` (a tqdm bar of the steps on stderr, the
    other events as lines, ``[fold K]`` in front within a cross-validation) and close ``events``.

    Returns the last ``Finished`` event and the ``CrossValidated`` one (None where there is none).
    """
    from ..core.training.events import Checkpoint, CrossValidated, Finished, Started, Step

    bar = None
    finished = summary = None
    try:
        for ev in events:
            fold = f"[fold {ev.fold + 1}] " if getattr(ev, "fold", None) is not None else ""
            if isinstance(ev, Started):
                print(indent + fold + str(ev), flush=True)
                if bar is not None:
                    bar.close()
                bar = progress_bar(total=ev.epochs * ev.steps_per_epoch, desc=fold + "train", unit="step",
                                   show=progress)
            elif isinstance(ev, Step):
                if bar is not None:
                    bar.update(ev.step - bar.n)
                    bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
            elif isinstance(ev, Finished):
                finished = ev
                if bar is not None:
                    bar.close()
                    bar = None
                print(indent + fold + str(ev), flush=True)
            elif isinstance(ev, CrossValidated):
                summary = ev
            elif not isinstance(ev, Checkpoint):  # epochs, folds, unfreezing, early stopping, warnings
                print_above(bar, indent + fold + str(ev))
    finally:
        if bar is not None:
            bar.close()
        events.close()
    return finished, summary
