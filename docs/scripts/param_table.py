"""Print the generator's parameter reference as Markdown (from the dataclass metadata).

    python docs/scripts/param_table.py   (pasted at the end of docs/synthetic.md)
"""

from __future__ import annotations

from napari_grainlab.core.synthetic import OpticalParams, SEMParams, SynthParams, TessellationParams, param_fields
from napari_grainlab.core.synthetic.params import EBSDParams, PolarizedParams, TintParams


def table(cls, section: str) -> str:
    rows = [f"### `{section or 'top level'}`", "", "| parameter | default | range | meaning |", "|---|---|---|---|"]
    obj = cls()
    for f in param_fields(cls):
        if f.name in ("tessellation", "sem", "optical", "tint", "polarized", "ebsd"):
            continue
        m = f.metadata
        default = getattr(obj, f.name)
        if m.get("choices"):
            rng = " / ".join(str(c) for c in m["choices"])
        else:
            lo, hi = m.get("min"), m.get("max")
            rng = "" if lo is None and hi is None else f"{lo if lo is not None else ''} … {hi if hi is not None else ''}"
        name = f"{section}.{f.name}" if section else f.name
        rows.append(f"| `{name}` | `{default}` | {rng} | {m.get('help', '')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(SynthParams, ""))
    print(table(TessellationParams, "tessellation"))
    print(table(SEMParams, "sem"))
    print(table(OpticalParams, "optical"))
    print(table(TintParams, "tint"))
    print(table(PolarizedParams, "polarized"))
    print(table(EBSDParams, "ebsd"))
