"""``grainlab params``: print generator parameters as JSON, or list them all."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ._common import EXIT_OK, errors_about
from ._synthetic import add_param_options, build_params, field_type


def _param_reference() -> list[tuple[str, str, str, str]]:
    """(name, default, range or choices, help) for every generator parameter."""
    from ..core.synthetic import SynthParams, param_fields

    rows = []

    def walk(cls: type, prefix: str) -> None:
        for f in param_fields(cls):
            typ, _ = field_type(cls, f.name)
            if dataclasses.is_dataclass(typ):
                walk(typ, f"{prefix}{f.name}.")
                continue
            m = f.metadata
            if m.get("choices") is not None:
                rng = " | ".join(str(c) for c in m["choices"])
            elif typ is bool:
                rng = "true | false"
            elif m.get("min") is not None or m.get("max") is not None:
                lo = "" if m.get("min") is None else f"{m['min']:g}"
                hi = "" if m.get("max") is None else f"{m['max']:g}"
                rng = f"{lo} .. {hi}"
            else:
                rng = ""
            rows.append((prefix + f.name, json.dumps(f.default), rng, m.get("help", "")))

    walk(SynthParams, "")
    return rows


def run(args: argparse.Namespace) -> int:
    if args.list:
        rows = _param_reference()
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        print(f"{'parameter':<{w0}}  {'default':<{w1}}  {'range':<{w2}}  description")
        for name, default, rng, help_ in rows:
            print(f"{name:<{w0}}  {default:<{w1}}  {rng:<{w2}}  {help_}")
        return EXIT_OK
    params = build_params(args)
    text = params.to_json()
    if args.out:
        from ..core._io import atomic_write_text

        out = Path(args.out)
        with errors_about(out):
            atomic_write_text(out, text + "\n")
        print(f"wrote parameters to {out}")
    else:
        print(text)
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser(
        "params", help="print generator parameters as JSON, or list them all",
        description="Print the generator parameters that the options describe, as JSON to edit and pass "
                    "back with 'grainlab synth --params FILE'; or list every parameter with its range.",
    )
    p.add_argument("--list", action="store_true", help="list every parameter with default, range and description")
    p.add_argument("--out", metavar="FILE", help="write the JSON to FILE instead of printing it")
    add_param_options(p)
    p.set_defaults(func=run)
