"""``grainlab models``: the built-in model registry (name, channels, training scale, size, installed or not)."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK, print_json


def _rows() -> list[dict]:
    from pathlib import Path

    from ..core.models.registry import cache_dir, installed, list_models, registry_file

    rows = []
    for entry in list_models():
        state = installed(entry)
        size = entry.size
        if entry.file and state == "bundled":
            size = (registry_file().parent / entry.file).stat().st_size
        elif state == "cached":
            size = Path(cache_dir() / entry.name / "model.safetensors").stat().st_size
        rows.append({**entry.to_dict(), "size": size, "installed": state})
    return rows


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no built-in models")
        return EXIT_OK
    width = max(4, *(len(r["name"]) for r in rows))
    print(f"{'name':<{width}}  channels  scale    size      installed      description")
    for r in rows:
        scale = "-" if r["grain_diameter"] is None else f"{r['grain_diameter']:.0f} px"
        print(f"{r['name']:<{width}}  {r['channels']:<8}  {scale:<7}  {_mb(r['size']):<8}  {r['installed']:<13}  "
              f"{r['description']}")
    return EXIT_OK


def register(sub) -> None:
    m = sub.add_parser("models", help="list the built-in models (use a name wherever a model folder is accepted)",
                       description="List the built-in model registry. A name works wherever a model folder is "
                                   "accepted, e.g. grainlab predict generalist IMAGE... --out DIR.")
    m.add_argument("--json", action="store_true", help="print the registry as JSON")
    m.set_defaults(func=run)
