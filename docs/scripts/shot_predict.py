"""Screenshots of the Predict and Measure docks, after a real prediction.

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/shot_predict.py [--out docs/images] [--checkpoint MODEL] [--image FILE]

Without ``--checkpoint`` the dock predicts with the model it preselects, the built-in
``generalist`` (nothing chosen by the user); ``--train`` fine-tunes a small model first instead
(about four minutes of CPU time). Writes ``predict_dock.jpg`` (the SEM sample segmented, hovering
over a grain), ``predict_colour.jpg`` (a synthetic colour-etched micrograph, or ``--image``) and
``measure_dock.jpg`` (the SEM sample's grain table, size histogram and ASTM grain size).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import _new_viewer, _process_until, _save, _settle

TRAIN_IMAGES = 6
TRAIN_SIZE = 256


@lru_cache(maxsize=1)
def train_model(out: Path | None = None) -> Path:
    """Fine-tune a small segmentation model on synthetic SEM micrographs; returns its best checkpoint."""
    from napari_grainlab.core.data.datasets import samples_from_arrays
    from napari_grainlab.core.synthetic import generate
    from napari_grainlab.core.synthetic.samples import sem_sample_params
    from napari_grainlab.core.training import Epoch, Finished, TrainConfig, fit

    out = Path(out or Path(tempfile.mkdtemp(prefix="grainlab-shot-")) / "models" / "sem")
    params = sem_sample_params()
    params.height = params.width = TRAIN_SIZE
    params.tessellation.grains = 45
    samples = [generate(params, seed=1000 + k) for k in range(TRAIN_IMAGES)]
    data = samples_from_arrays([s.image for s in samples], [s.labels for s in samples],
                               names=[f"sem{k}" for k in range(TRAIN_IMAGES)],
                               pixel_sizes=[params.pixel_size] * TRAIN_IMAGES)
    cfg = TrainConfig(backbone="efficientnet_lite0", weights="imagenet", strategy="finetune", epochs=5,
                      steps_per_epoch=16, batch_size=4, patch_size=128, lr=2e-3, synthetic="randomized",
                      synthetic_ratio=0.25, patience=5, device="cpu", out=str(out), seed=0)
    best = None
    for ev in fit(cfg, data):
        if isinstance(ev, Epoch):
            print(ev, flush=True)
        elif isinstance(ev, Finished):
            best = ev.best_path
    if best is None:
        raise RuntimeError("training produced no model")
    return Path(best)


def _colour_sample(viewer, image: Path | None):
    """Add a colour micrograph: ``image`` (a file) or a synthetic tint-etched one; returns its layer."""
    import numpy as np

    if image is not None:
        from napari_grainlab.core.data.io import read_image

        layer = viewer.add_image(np.round(read_image(image).data * 255).astype(np.uint8), name=image.stem,
                                 rgb=None)
        return layer
    from napari_grainlab.core.synthetic import SynthParams, generate

    params = SynthParams.preset("tint", height=512, width=512, pixel_size=0.5)
    params.tessellation.grains = 120
    return viewer.add_image(generate(params, seed=77).image, name="tint-etched", rgb=True)


def _predicted_viewer(checkpoint: Path | None, colour: bool = False, image: Path | None = None):
    """A viewer with the SEM sample (or a colour micrograph) and the Predict dock, after predicting it;
    with no ``checkpoint`` the dock's preselected built-in model predicts."""
    viewer = _new_viewer()
    if colour:
        layer = _colour_sample(viewer, image)
    else:
        viewer.open_sample("napari-grainlab", "sem_grains")
        viewer.layers.remove("SEM grains labels")  # the ground truth; show the prediction instead
        layer = viewer.layers["SEM grains"]
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Predict")
    widget.set_image_layer(layer)
    if checkpoint is not None:
        # shown relative to its grandparent folder: the picture shows no path of the machine it was taken on
        checkpoint = Path(checkpoint).resolve()
        os.chdir(checkpoint.parents[2])
        widget.set_checkpoint(checkpoint.relative_to(checkpoint.parents[2]))
    else:
        _process_until(lambda: widget.model_panel.checkpoint is not None or widget.model_panel.problem is not None,
                       timeout=120)
        if widget.model_panel.checkpoint is None:
            raise RuntimeError(f"no built-in model: {widget.model_panel.problem}")
    widget.device_combo.setCurrentText("cpu")
    task = widget.run()
    if task is None:
        raise RuntimeError("the prediction did not start")
    _process_until(lambda: task.result is not None, timeout=300)
    if not task.result.ok:
        raise RuntimeError(f"the prediction failed: {task.result.error}")
    return viewer, widget, layer


def _hover(viewer, layer) -> None:
    """Put the cursor on a grain near the centre so the status bar shows its measurements."""
    import numpy as np

    data = layer.data
    h, w = data.shape
    label = int(data[h // 2, w // 2]) or int(np.max(data))
    ys, xs = np.nonzero(data == label)
    world = layer.data_to_world((float(ys.mean()), float(xs.mean())))
    viewer.cursor.position = tuple(world)
    viewer.status = layer.get_status(tuple(world), world=True)


def predict_dock(out: Path, checkpoint: Path | None = None) -> Path:
    viewer, _widget, _layer = _predicted_viewer(checkpoint)
    grains = viewer.layers["SEM grains grains"]
    viewer.layers.selection.active = grains
    viewer.reset_view()
    _settle()
    _hover(viewer, grains)
    _settle()
    path = _save(viewer, out / "predict_dock.jpg")
    viewer.close()
    return path


def predict_colour(out: Path, checkpoint: Path | None = None, image: Path | None = None) -> Path:
    viewer, _widget, layer = _predicted_viewer(checkpoint, colour=True, image=image)
    grains = viewer.layers[f"{layer.name} grains"]
    viewer.layers[f"{layer.name} boundary"].visible = False
    grains.contour = 2
    viewer.layers.selection.active = grains
    viewer.reset_view()
    _settle()
    path = _save(viewer, out / ("predict_colour.jpg" if image is None else f"predict_{image.stem}.jpg"))
    viewer.close()
    return path


def measure_dock(out: Path, checkpoint: Path | None = None) -> Path:
    viewer, predict, _layer = _predicted_viewer(checkpoint)
    grains = viewer.layers["SEM grains grains"]
    viewer.window.remove_dock_widget(predict)
    viewer.layers["SEM grains boundary"].visible = False
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Measure")
    widget.set_labels_layer(grains)
    _process_until(lambda: not widget.busy and widget.measurement is not None)
    from qtpy.QtCore import Qt

    widget.table_view.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # largest grains first
    widget.table_view.selectRow(0)
    viewer.layers.selection.active = grains
    viewer.reset_view()
    _settle()
    path = _save(viewer, out / "measure_dock.jpg")
    viewer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained segmentation model (default: the dock's preselected built-in model)")
    parser.add_argument("--train", action="store_true", help="fine-tune a small model first and use it")
    parser.add_argument("--train-into", type=Path, default=None,
                        help="folder for the model trained with --train (default: a temporary one)")
    parser.add_argument("--image", type=Path, default=None,
                        help="a colour micrograph for the colour picture (default: a synthetic tint-etched one)")
    parser.add_argument("--only", nargs="+", choices=("predict", "colour", "measure"), default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = train_model(args.train_into) if args.train else args.checkpoint
    shots = {"predict": lambda: predict_dock(args.out, checkpoint),
             "colour": lambda: predict_colour(args.out, checkpoint, args.image),
             "measure": lambda: measure_dock(args.out, checkpoint)}
    for name in args.only or shots:
        print(shots[name]())


if __name__ == "__main__":
    main()
