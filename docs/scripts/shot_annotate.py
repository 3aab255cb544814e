"""Take the screenshot of the Annotate dock used in the documentation.

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/shot_annotate.py [--out docs/images]

Writes ``annotate_dock.jpg``: the sample SEM micrograph, a few grains annotated by hand (the
left third), the classical proposal for the rest as contours, and the Annotate dock.
Autosaves go to a temporary folder, not to the user's cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import _new_viewer, _process_until, _save, _settle


def annotate_dock(out: Path) -> Path:
    import numpy as np

    from napari_grainlab._sample_data import sample_sem_grains
    from napari_grainlab.core.annotate import AUTOSAVE_ENV, LabelEdit

    os.environ.setdefault(AUTOSAVE_ENV, tempfile.mkdtemp(prefix="grainlab-shot-"))
    viewer = _new_viewer()
    (image, image_kwargs, _), (truth, _labels_kwargs, _) = sample_sem_grains()
    viewer.add_image(image, **image_kwargs)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Annotate")
    widget.ask_unsaved = lambda: "discard"
    _process_until(lambda: widget.labels_layer is not None)
    labels = widget.labels_layer
    # "hand-annotated" grains: the ground truth in the left third of the image
    hand = np.zeros(truth.shape, dtype=labels.data.dtype)
    third = truth.shape[1] // 3
    hand[:, :third] = truth[:, :third]
    widget._apply_edit(LabelEdit.between(labels.data, hand))
    widget.propose()
    _process_until(lambda: widget.proposal_layer is not None and not widget.proposal_busy, timeout=120)
    widget._refresh_stats()
    widget.set_tool("merge")
    widget.save_status.setText("Autosaved 10:42:07 to ~/data/steel-annotated")
    viewer.layers.selection.active = labels
    viewer.reset_view()
    _settle(0.8)
    path = _save(viewer, out / "annotate_dock.jpg")
    viewer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(annotate_dock(args.out))


if __name__ == "__main__":
    main()
