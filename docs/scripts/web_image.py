"""Pictures for the docs and the napari hub page: JPEG, at most ``MAX_BYTES`` each.

The hub shows the README with its images; screenshots saved as PNG were 1-3 MB each. Every picture the
doc scripts write goes through :func:`save_web_image`, which writes a progressive JPEG (at most
``max_width`` px wide) and lowers the quality step by step until the file is at most ``MAX_BYTES``.

    python docs/scripts/web_image.py IMAGE... [--max-width 1500]   (converts existing pictures: NAME.jpg)
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

MAX_BYTES = 300_000
QUALITIES = (85, 80, 75, 70, 65, 60)


def save_web_image(image, path: str | Path, max_width: int = 1500) -> Path:
    """Write ``image`` (an array, a PIL image or a picture file) as a JPEG at ``path`` (suffix ``.jpg``)."""
    if isinstance(image, (str, Path, io.IOBase)):
        image = Image.open(image)
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image)[..., :3] if np.asarray(image).ndim == 3 else np.asarray(image))
    image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    path = Path(path).with_suffix(".jpg")
    for quality in QUALITIES:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
        if buf.tell() <= MAX_BYTES:
            break
    else:
        raise ValueError(f"{path.name}: over {MAX_BYTES} bytes even at quality {QUALITIES[-1]}; use a smaller max_width")
    path.write_bytes(buf.getvalue())
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--max-width", type=int, default=1500)
    a = ap.parse_args()
    for src in a.images:
        out = save_web_image(src, src.with_suffix(".jpg"), a.max_width)
        print(f"{src} -> {out} ({out.stat().st_size // 1000} kB)")


if __name__ == "__main__":
    main()
