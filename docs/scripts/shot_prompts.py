"""Take the screenshot of the Annotate dock's model-backed Grain / Box tools used in the documentation.

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/shot_prompts.py [--out docs/images]

Writes ``annotate_clicks.jpg``: the sample SEM micrograph, grains added by twelve clicks with the Grain tool and
one Box drag (the built-in model's maps, predicted once), the uncertainty layer, and the dock with its Click
grains panel. Autosaves go to a temporary folder, not to the user's cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import _new_viewer, _process_until, _save, _settle


def annotate_clicks(out: Path) -> Path:
    import numpy as np
    from scipy import ndimage as ndi

    from napari_grainlab._sample_data import sample_sem_grains
    from napari_grainlab.core.annotate import AUTOSAVE_ENV

    os.environ.setdefault(AUTOSAVE_ENV, tempfile.mkdtemp(prefix="grainlab-shot-"))
    viewer = _new_viewer()
    (image, image_kwargs, _), (truth, _labels_kwargs, _) = sample_sem_grains()
    viewer.add_image(image, **image_kwargs)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Annotate")
    widget.ask_unsaved = lambda: "discard"
    _process_until(lambda: widget.labels_layer is not None)
    widget.sections["propose"].collapse(animate=False)  # the Click grains panel in view
    widget.set_tool("grain")
    _process_until(lambda: widget.prompts.segmenter is not None, timeout=300)
    # clicks at the centres of the twelve largest grains of the left half (as a user would click them)
    half = truth.shape[1] // 2
    ids, sizes = np.unique(truth[:, :half], return_counts=True)
    for g in ids[1:][np.argsort(-sizes[1:])][:12]:
        y, x = np.unravel_index(np.argmax(ndi.distance_transform_edt(truth == g)), truth.shape)
        widget.tools.click_grain(y, x)
    h, w = truth.shape
    widget.tools.box(np.array([[h * 0.55, w * 0.6], [h * 0.95, w * 0.95]]))
    widget.prompts.show_uncertainty()
    widget._refresh_stats()
    viewer.layers.selection.active = widget.labels_layer
    viewer.reset_view()
    _settle(0.8)
    path = _save(viewer, out / "annotate_clicks.jpg")
    viewer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(annotate_clicks(args.out))


if __name__ == "__main__":
    main()
