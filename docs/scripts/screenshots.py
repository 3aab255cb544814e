"""Take the screenshots used in the documentation.

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/screenshots.py [--out docs/images]

Writes one picture of each dock in use: ``annotate_dock.jpg`` (a classical proposal over
partly annotated grains, ``shot_annotate.py``), ``train_dock.jpg`` (a short fine-tuning run
with its live plot and a preview, ``shot_train.py``), ``predict_dock.jpg`` and
``measure_dock.jpg`` (a prediction with its grain table, ``shot_predict.py``; without
``--checkpoint`` the built-in model that the Predict dock preselects), ``predict_colour.jpg`` (a
colour-etched micrograph segmented by it),
``synthesize_dock.jpg`` (the Synthesize dock and its live preview) and ``sample_data.jpg``
(File ▸ Open Sample ▸ Synthetic SEM grains, hovering over a grain). ``--only NAME ...``
takes a subset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

WINDOW_SIZE = (1500, 960)


def _process_until(condition, timeout: float = 30.0) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    t0 = time.perf_counter()
    while not condition():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the viewer did not reach the expected state in time")
        app.processEvents()
        time.sleep(0.01)


def _settle(seconds: float = 0.5) -> None:
    t0 = time.perf_counter()
    _process_until(lambda: time.perf_counter() - t0 > seconds)


def _save(viewer, path: Path) -> Path:
    """Screenshot of the whole window (docks included) as a JPEG of at most 300 kB (``web_image``); refuses
    an empty canvas. Returns the file written (``path`` with the suffix ``.jpg``)."""
    from web_image import save_web_image

    canvas = viewer.screenshot(canvas_only=True, flash=False)
    if canvas[..., :3].std() < 5:
        raise RuntimeError(f"the canvas is empty; not writing {path}")
    return save_web_image(viewer.screenshot(canvas_only=False, flash=False), path)


def _new_viewer():
    import napari

    viewer = napari.Viewer(show=True, title="napari-grainlab")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    _settle(0.3)
    return viewer


def synthesize_dock(out: Path) -> Path:
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams
    from napari_grainlab.gui.synthesize import PREVIEW_IMAGE, PREVIEW_LABELS

    viewer = _new_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Synthesize")
    params = SynthParams(height=768, width=768,
                         tessellation=TessellationParams(grains=180, hard_core=0.35, twin_fraction=0.3))
    widget.set_params(params)
    widget.set_seed(7)
    widget.refresh_preview()
    _process_until(lambda: PREVIEW_LABELS in viewer.layers and not widget.preview_busy)
    viewer.layers[PREVIEW_LABELS].visible = False
    viewer.layers.selection.active = viewer.layers[PREVIEW_IMAGE]
    viewer.reset_view()
    _settle()
    path = _save(viewer, out / "synthesize_dock.jpg")
    viewer.close()
    return path


def sample_data(out: Path) -> Path:
    viewer = _new_viewer()
    viewer.open_sample("napari-grainlab", "sem_grains")
    labels = viewer.layers["SEM grains labels"]
    viewer.layers.selection.active = labels
    viewer.reset_view()
    _settle()
    # hover over the grain in the middle so the status bar shows its measurements
    centre = tuple(s * n / 2 for s, n in zip(labels.scale, labels.data.shape))
    viewer.cursor.position = centre
    viewer.status = labels.get_status(centre, world=True)
    _settle()
    path = _save(viewer, out / "sample_data.jpg")
    viewer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shot_annotate import annotate_dock
    from shot_predict import measure_dock, predict_colour, predict_dock
    from shot_train import train_dock

    shots = {"annotate": annotate_dock, "train": train_dock, "predict": predict_dock, "colour": predict_colour,
             "measure": measure_dock, "synthesize": synthesize_dock, "sample": sample_data}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    parser.add_argument("--only", nargs="+", choices=list(shots), default=list(shots))
    parser.add_argument("--checkpoint", type=Path, help="model for the Predict and Measure pictures (default: the "
                                                        "built-in model the Predict dock preselects)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    for name in args.only:
        if name in ("predict", "colour", "measure"):
            print(shots[name](args.out, checkpoint))
        else:
            print(shots[name](args.out))


if __name__ == "__main__":
    main()
