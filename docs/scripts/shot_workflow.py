"""A short animation of the workflow for the README / napari hub page: annotate → train → predict → measure.

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/shot_workflow.py [--out docs/images]

Drives the same docks as the single screenshots (``shot_annotate.py``: a classical proposal over
partly annotated grains; ``shot_train.py``: a short real fine-tuning run with its live plot;
``shot_predict.py``: the built-in model's grains and the Measure dock) and writes their windows as the
frames of one looping animated WebP, ``workflow.webp`` (900 px wide, at most 300 kB). A few minutes of
CPU time, most of it the training run.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import screenshots
import shot_annotate
import shot_predict
import shot_train
from PIL import Image
from web_image import MAX_BYTES

WIDTH = 900
FRAME_MS = 2200
CAPTIONS = ("1  Annotate: a few grains by hand, the rest proposed", "2  Train: fine-tune in the background",
            "3  Predict: grains as layers", "4  Measure: ASTM E112 grain size")


def _collect(frames: list[np.ndarray]):
    """A stand-in for ``screenshots._save`` that keeps the window's picture instead of writing it."""

    def keep(viewer, path: Path) -> Path:
        frames.append(np.asarray(viewer.screenshot(canvas_only=False, flash=False))[..., :3].copy())
        return path

    return keep


def _caption(frame: np.ndarray, text: str) -> Image.Image:
    from PIL import ImageDraw, ImageFont

    im = Image.fromarray(frame)
    im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=20)  # Pillow >= 10.1
    except TypeError:
        font = ImageFont.load_default()
    box = draw.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    draw.rectangle([0, 0, w + 24, h + 20], fill=(20, 20, 20))
    draw.text((12, 8), text, fill=(255, 255, 255), font=font)
    return im


def write_animation(frames: list[Image.Image], path: Path) -> Path:
    for quality in (60, 50, 40, 30):
        buf = io.BytesIO()
        frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0,
                       quality=quality, method=6)
        if buf.tell() <= MAX_BYTES:
            break
    path.write_bytes(buf.getvalue())
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    args = parser.parse_args(argv)
    frames: list[np.ndarray] = []
    keep = _collect(frames)
    for module in (screenshots, shot_annotate, shot_train, shot_predict):
        module._save = keep
    shot_annotate.annotate_dock(args.out)
    shot_train.train_dock(args.out)
    shot_predict.predict_dock(args.out)
    shot_predict.measure_dock(args.out)
    if len(frames) != len(CAPTIONS):
        raise RuntimeError(f"expected {len(CAPTIONS)} frames, got {len(frames)}")
    path = write_animation([_caption(f, c) for f, c in zip(frames, CAPTIONS)], args.out / "workflow.webp")
    print(f"wrote {path} ({path.stat().st_size // 1000} kB, {len(frames)} frames)")


if __name__ == "__main__":
    main()
