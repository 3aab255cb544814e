"""Options declared once: a dataclass field carries its default, range, choices, help text,
group and GUI hint in ``field.metadata``; validation, JSON, the CLI flags, the dock forms and the
reference docs are all derived from it.

>>> @dataclass
... class Options:
...     tile: int = option(512, min=32, help="tile size in px", group="Tiling")
...     tta: bool = option(False, help="test-time augmentation")
>>> check_options(Options(), ConfigError)

Metadata keys (all optional):

``min`` / ``max``
    bounds of a number; ``min_open`` / ``max_open`` make them exclusive (``> min``, ``< max``).
``choices``
    the allowed values (of each item, for a tuple field); ``descriptions`` maps a choice to one
    line of help (tooltips, ``--help``).
``suggest``
    values offered first (an editable combo box, ``--help``) where any value of the type is allowed.
``multiple_of``
    an integer must be a multiple of this.
``help``, ``label``, ``group``
    one line of help, the label in forms (default: the name, capitalised), the form / ``--help``
    section the option belongs to.
``step``
    the spin-box step in forms.
``widget``
    a GUI hint: ``"hidden"`` keeps the option out of generated forms, ``"checklist"`` shows a tuple
    of choices as check boxes, ``"line"`` a free-text line, ``"log"`` a number stepped by factors of
    two (learning rates).
``suffix``, ``prefix``, ``special``
    text around a spin box value; ``special`` is shown for the minimum (``"auto"``), and a
    ``special`` optional field shows its ``None`` as that minimum instead of a check box.
``scale``
    a form shows ``value * scale`` (``100`` shows a fraction as per cent).
``cli``
    the flag's name without dashes (default: the field name with ``-``), or ``False`` for no flag.
``metavar``
    the flag's metavar in ``--help``.

Importing this module imports no numpy, torch or Qt (the CLI builds its parser from it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import MISSING
from typing import Any

__all__ = [
    "check_options",
    "cli_flag",
    "field_kind",
    "fmt_value",
    "markdown_table",
    "option",
    "option_fields",
    "option_range_text",
]


def option(default: Any = MISSING, *, default_factory: Any = MISSING, min: float | None = None,
           max: float | None = None, min_open: bool = False, max_open: bool = False, choices=None,
           descriptions: dict | None = None, suggest=None, multiple_of: int | None = None, help: str = "", label: str | None = None, group: str = "",
           step: float | None = None, widget: str | None = None, suffix: str = "", prefix: str = "",
           special: str | None = None, scale: float = 1.0, cli: str | bool | None = None,
           metavar: str | None = None) -> Any:
    """A dataclass field with the option metadata described in the module docstring."""
    meta = {"min": min, "max": max, "min_open": min_open, "max_open": max_open,
            "choices": tuple(choices) if choices is not None else None,
            "descriptions": dict(descriptions or {}), "suggest": tuple(suggest) if suggest is not None else None,
            "multiple_of": multiple_of,
            "help": help, "label": label, "group": group, "step": step, "widget": widget,
            "suffix": suffix, "prefix": prefix, "special": special, "scale": scale, "cli": cli,
            "metavar": metavar}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_fields(obj_or_cls) -> list[dataclasses.Field]:
    """The option fields of a dataclass (in definition order; names starting with ``_`` are private)."""
    return [f for f in dataclasses.fields(obj_or_cls) if not f.name.startswith("_")]


_SCALARS = (bool, int, float, str)


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class (building the CLI asks for it per field)."""
    return typing.get_type_hints(cls)


@functools.cache
def field_kind(cls: type, name: str) -> tuple[type | None, bool, bool]:
    """``(scalar type, None allowed, is a tuple)`` of a field from its annotation.

    ``int | None`` → ``(int, True, False)``; ``tuple[str, ...]`` → ``(str, False, True)``;
    anything else (a nested dataclass, a mapping) → ``(None, ..., ...)``.
    """
    hint = type_hints(cls)[name]
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    if hint is None:
        return None, optional, False
    if typing.get_origin(hint) is tuple:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args and args[0] in _SCALARS else None
        return item, optional, True
    return (hint if hint in _SCALARS else None), optional, False


_KIND_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "text"}


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def fmt_value(v: Any) -> str:
    """A bound or default as text: floats compactly (``1e-06``, ``0.5``), anything else as ``str``."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def option_range_text(f: dataclasses.Field) -> str:
    """The allowed values of an option in words (``"in [0, 1)"``, ``">= 1"``, ``"one of a, b"``, or "")."""
    meta = f.metadata
    if meta.get("choices") is not None:
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    lo, hi = meta.get("min"), meta.get("max")
    text = ""
    if lo is not None and hi is not None:
        text = f"in {'(' if meta.get('min_open') else '['}{fmt_value(lo)}, {fmt_value(hi)}{')' if meta.get('max_open') else ']'}"
    elif lo is not None:
        text = f"{'>' if meta.get('min_open') else '>='} {fmt_value(lo)}"
    elif hi is not None:
        text = f"{'<' if meta.get('max_open') else '<='} {fmt_value(hi)}"
    if meta.get("multiple_of"):
        text = f"a multiple of {meta['multiple_of']}" + (f", {text}" if text else "")
    return text


def _check_value(name: str, value: Any, f: dataclasses.Field, kind: type | None, error: type[Exception]) -> None:
    meta = f.metadata
    if kind is not None and not _is_kind(value, kind):
        raise error(f"{name}: expected {_KIND_NAMES[kind]}, got {value!r}")
    choices = meta.get("choices")
    if choices is not None:
        if value not in choices:
            raise error(f"{name}: unknown value {value!r}; choose one of {', '.join(repr(c) for c in choices)}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise error(f"{name}: must be a finite number, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    # the message names the bound that is crossed, as the old hand-written checks did
    if lo is not None and (value <= lo if meta.get("min_open") else value < lo):
        raise error(f"{name}: must be {'>' if meta.get('min_open') else '>='} {fmt_value(lo)}, got {value!r}")
    if hi is not None and (value >= hi if meta.get("max_open") else value > hi):
        raise error(f"{name}: must be {'<' if meta.get('max_open') else '<='} {fmt_value(hi)}, got {value!r}")
    step = meta.get("multiple_of")
    if step and isinstance(value, int) and value % step:
        raise error(f"{name}: must be a multiple of {step}, got {value!r}")



def check_options(obj: Any, error: type[Exception], section: str = "") -> None:
    """Check every option field of the dataclass instance ``obj`` against its type and metadata;
    raise ``error`` with a message naming the option (``section.name``) on the first bad value."""
    cls = type(obj)
    for f in option_fields(obj):
        value = getattr(obj, f.name)
        name = f"{section}.{f.name}" if section else f.name
        kind, optional, is_tuple = field_kind(cls, f.name)
        if value is None:
            if not optional:
                raise error(f"{name}: a value is required")
            continue
        if dataclasses.is_dataclass(value):
            continue
        if is_tuple:
            if not isinstance(value, (tuple, list)):
                raise error(f"{name}: expected a list, got {value!r}")
            for item in value:
                _check_value(name, item, f, kind, error)
            continue
        _check_value(name, value, f, kind, error)


def cli_flag(f: dataclasses.Field) -> str | None:
    """The command-line flag of an option (``--batch-size``), or None when it has none."""
    cli = f.metadata.get("cli")
    if cli is False:
        return None
    return "--" + (cli if isinstance(cli, str) else f.name.replace("_", "-"))


def markdown_table(cls: type, groups: typing.Sequence[str] | None = None) -> str:
    """The reference of the options of ``cls`` as Markdown tables, one per group (``docs/``)."""
    obj = cls()
    by_group: dict[str, list[dataclasses.Field]] = {}
    for f in option_fields(cls):
        by_group.setdefault(f.metadata.get("group") or "Other", []).append(f)
    order = [g for g in (groups or ()) if g in by_group] + [g for g in by_group if g not in (groups or ())]
    out: list[str] = []
    for group in order:
        out += [f"#### {group}", "", "| option | flag | default | allowed | meaning |", "|---|---|---|---|---|"]
        for f in by_group[group]:
            default = getattr(obj, f.name)
            if isinstance(default, tuple):
                default = ",".join(str(v) for v in default) or "none"
            allowed = option_range_text(f)
            if not allowed and f.metadata.get("suggest"):
                allowed = "e.g. " + ", ".join(str(v) for v in f.metadata["suggest"])
            flag = cli_flag(f)
            text = " ".join(str(f.metadata.get("help") or "").split()).replace("|", "\\|")
            out.append(f"| `{f.name}` | {f'`{flag}`' if flag else '—'} | `{default}` | {allowed} | {text} |")
        out.append("")
    return "\n".join(out)
