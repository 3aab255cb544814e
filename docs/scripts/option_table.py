"""Write the option references of docs/training.md from the dataclass metadata.

    python docs/scripts/option_table.py          # rewrites the marked blocks of docs/training.md
    python docs/scripts/option_table.py --check  # exit 1 when the file is out of date

The blocks are delimited by ``<!-- options:NAME -->`` and ``<!-- /options:NAME -->``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from napari_grainlab.core._schema import markdown_table
from napari_grainlab.core.inference.options import InferenceOptions
from napari_grainlab.core.retrain import RetrainOptions
from napari_grainlab.core.training.config import GROUPS, TrainConfig

DOC = Path(__file__).resolve().parents[1] / "training.md"
BLOCKS = {
    "train": lambda: markdown_table(TrainConfig, GROUPS),
    "predict": lambda: markdown_table(InferenceOptions),
    "retrain": lambda: markdown_table(RetrainOptions),
}


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- options:{name} -->\n).*?(<!-- /options:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no <!-- options:{name} --> block")
        text = pattern.sub(lambda m, t=make(): m.group(1) + "\n" + t + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    old = DOC.read_text(encoding="utf-8")
    new = render(old)
    if "--check" in sys.argv:
        sys.exit(0 if new == old else 1)
    if new != old:
        DOC.write_text(new, encoding="utf-8")
