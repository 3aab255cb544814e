"""Generator parameters on the command line (``--preset``, ``--params``, the named options and
``--set``) and the dataset writer with its progress bar: shared by ``synth``, ``params`` and ``demo``.

Imports only the standard library at start-up (importing the generator's parameters would slow
down ``--help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from ._common import Interrupted, StopOnInterrupt, UserError, nonnegative_int, positive_int, progress_bar

# Kept in sync with params.py by tests/test_cli.py (importing params here would slow down --help).
PRESETS = ("sem", "sem-elongated", "sem-twins", "optical", "porous", "bse", "film", "sem-halo", "tint", "polarized",
           "ebsd", "growth")
STYLES = ("sem", "optical", "tint", "polarized", "ebsd")
METHODS = ("voronoi", "laguerre", "growth")
BIT_DEPTHS = (8, 16)
#: the named options that set the generator parameter of their name: (section, option names), "" the top level
NAMED_OPTIONS = (("", ("style", "bit_depth", "pixel_size")), ("tessellation", ("method", "grains", "mean_diameter")))


def parse_size(text: str) -> tuple[int, int]:
    """``512`` -> (512, 512); ``384x512`` (height x width) -> (384, 512)."""
    t = text.strip().lower().replace("×", "x")
    parts = t.split("x") if "x" in t else [t, t]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected PX or HxW, got {text!r}")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PX or HxW with whole numbers, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected section.field=value, got {text!r}")
    return key.strip(), value.strip()


def add_param_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generator parameters (precedence: --preset/--params < options < --set)")
    g.add_argument("--preset", metavar="NAME", help=f"starting point: {', '.join(PRESETS)} (default: sem)")
    g.add_argument("--params", metavar="JSON",
                   help="start from a parameter file (or a dataset folder / dataset.json made by synth)")
    g.add_argument("--size", type=parse_size, metavar="PX|HxW", help="image size: 512 or 384x512 (height x width)")
    g.add_argument("--grains", type=positive_int, metavar="G", help="number of grains per image")
    g.add_argument("--mean-diameter", type=float, metavar="PX",
                   help="mean grain diameter in px (used instead of a grain count)")
    g.add_argument("--style", metavar="STYLE", help=f"rendering style: {' | '.join(STYLES)}")
    g.add_argument("--method", metavar="METHOD", help=f"tessellation: {' | '.join(METHODS)}")
    g.add_argument("--bit-depth", type=int, metavar="BITS", help=" | ".join(str(b) for b in BIT_DEPTHS))
    g.add_argument("--pixel-size", type=float, metavar="UM", help="pixel size in µm written to the TIFF metadata")
    g.add_argument("--set", type=_assignment, action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="set any parameter, e.g. --set sem.dose=30 --set tessellation.twin_fraction=0.3 "
                        "(repeatable; list them with 'grainlab params --list')")


def add_run_options(p: argparse.ArgumentParser, workers: int) -> None:
    p.add_argument("--workers", type=nonnegative_int, default=workers, metavar="W",
                   help="worker processes, 0 = one per CPU core; the output does not depend on it "
                        f"(default: {workers})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar on stderr (default: only when stderr is a terminal)")


# ------------------------------------------------------------------ parameter building
def field_type(cls: type, name: str) -> tuple[type, bool]:
    """The type of a params dataclass field and whether it may be None (``int | None``)."""
    import typing

    from ..core._schema import type_hints

    hint = type_hints(cls)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    return (rest[0] if rest else hint), optional


def _coerce(text: str, key: str, cls: type, name: str) -> Any:
    """Parse the ``--set`` value ``text`` for field ``name`` of the params class ``cls``."""
    typ, optional = field_type(cls, name)
    low = text.lower()
    if dataclasses.is_dataclass(typ):
        example = dataclasses.fields(typ)[0].name
        raise UserError(f"{key} is a section; set one of its fields, e.g. --set {key}.{example}=...")
    if low in ("null", "none") and optional:
        return None
    if typ is bool:
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise UserError(f"{key}: expected true or false, got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:
            v = float(text)  # 1e3 is a fine way to write 1000
        except ValueError:
            v = math.nan
        if v.is_integer():
            return int(v)
        raise UserError(f"{key}: expected an integer, got {text!r}")
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{key}: expected a number, got {text!r}") from None
    return text  # strings: validation checks the choices and names the valid ones


def _apply_set(data: dict, key: str, text: str) -> None:
    """Apply ``section.field=value`` (or ``field=value`` for a top-level field) to ``data``."""
    import difflib

    from ..core.synthetic import SynthParams, param_fields

    cls: type = SynthParams
    target = data
    done: list[str] = []
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in param_fields(cls)]
        if part not in names:
            known = [".".join([*done, n]) for n in names]
            close = difflib.get_close_matches(".".join([*done, part]), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UserError(f"--set: unknown parameter {key!r}{hint} (see 'grainlab params --list')")
        done.append(part)
        if i == len(parts) - 1:
            target[part] = _coerce(text, key, cls, part)
            return
        typ, _ = field_type(cls, part)
        if not dataclasses.is_dataclass(typ):
            where = ".".join(done)
            raise UserError(f"--set: {where} is not a section, write --set {where}=VALUE")
        cls = typ
        target = target[part]


def _load_params_file(path: str):
    from ..core.synthetic import ParameterError, SynthParams

    p = Path(path)
    if p.is_dir():
        p = p / "dataset.json"
    if not p.exists():
        raise UserError(f"--params: no such file {str(p)!r}")
    try:
        return SynthParams.load(p)
    except ParameterError as exc:
        raise UserError(f"--params {p}: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        msg = str(exc).splitlines()[0]
        raise UserError(f"--params {p}: not a valid JSON parameter file ({msg})") from None


def build_params(args: argparse.Namespace):
    """The :class:`SynthParams` described by the options (preset or file, then options, then --set).

    Precedence, lowest to highest: the ``--preset`` (default ``sem``) or the ``--params`` file;
    the named options (``--size``, ``--grains``, ...); ``--set`` assignments in order. Giving a
    mean grain diameter without a grain count switches the count off so the diameter is used.
    """
    from ..core.synthetic import SynthParams

    if args.params and args.preset:
        raise UserError("give either --preset or --params, not both")
    base = _load_params_file(args.params) if args.params else SynthParams.preset(args.preset or "sem")
    data = base.to_dict()
    tess = data["tessellation"]
    if args.size is not None:
        data["height"], data["width"] = args.size
    for section, names in NAMED_OPTIONS:
        target = data[section] if section else data
        for name in names:
            if getattr(args, name) is not None:
                target[name] = getattr(args, name)
    for key, value in args.set or ():
        _apply_set(data, key, value)
    set_keys = {k for k, _ in (args.set or ())}
    diameter_given = args.mean_diameter is not None or "tessellation.mean_diameter" in set_keys
    grains_given = args.grains is not None or "tessellation.grains" in set_keys
    if diameter_given and not grains_given and tess["mean_diameter"] is not None:
        tess["grains"] = None
    params = SynthParams.from_dict(data)
    params.validate()
    return params


# ---------------------------------------------------------------------------- writing
def write_dataset(out: Path, params, *, count: int, seed: int, overwrite: bool, workers: int,
                  progress: bool, desc: str) -> int:
    """Run the dataset writer with a progress bar; returns the number of images written.

    Ctrl-C stops after the image in progress and raises :class:`Interrupted`.
    """
    from ..core.synthetic import write_dataset as write

    done = 0
    with StopOnInterrupt() as stop:
        events = write(out, params, count=count, seed=seed, overwrite=overwrite, workers=workers, stop=stop)
        with progress_bar(total=count, desc=desc, unit="img", show=progress) as bar:
            try:
                for ev in events:
                    bar.update(ev.done - bar.n)
                    done = ev.done
            finally:
                events.close()
        if stop.requested:
            raise Interrupted(f"{done} of {count} images complete in {out}")
    return done
