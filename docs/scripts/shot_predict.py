"""Screenshots of the Predict and Measure docks, after a real prediction.

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/shot_predict.py [--out docs/images] [--checkpoint MODEL]

Without ``--checkpoint`` a small model is first fine-tuned (about four minutes of CPU time)
(efficientnet_lite0 from its offline ImageNet weights, on synthetic SEM micrographs). Writes
``predict_dock.png`` (the SEM sample segmented, hovering over a grain) and ``measure_dock.png``
(its grain table, size histogram and ASTM grain size).
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


def _predicted_viewer(checkpoint: Path):
    """A viewer with the SEM sample and the Predict dock, after predicting it."""
    viewer = _new_viewer()
    viewer.open_sample("napari-grainlab", "sem_grains")
    viewer.layers.remove("SEM grains labels")  # the ground truth; show the prediction instead
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Predict")
    widget.set_image_layer(viewer.layers["SEM grains"])
    # shown relative to its grandparent folder: the picture shows no path of the machine it was taken on
    checkpoint = Path(checkpoint).resolve()
    os.chdir(checkpoint.parents[2])
    widget.set_checkpoint(checkpoint.relative_to(checkpoint.parents[2]))
    widget.device_combo.setCurrentText("cpu")
    task = widget.run()
    if task is None:
        raise RuntimeError("the prediction did not start")
    _process_until(lambda: task.result is not None, timeout=300)
    if not task.result.ok:
        raise RuntimeError(f"the prediction failed: {task.result.error}")
    return viewer, widget


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
    viewer, _widget = _predicted_viewer(checkpoint or train_model())
    grains = viewer.layers["SEM grains grains"]
    viewer.layers.selection.active = grains
    viewer.reset_view()
    _settle()
    _hover(viewer, grains)
    _settle()
    path = _save(viewer, out / "predict_dock.png")
    viewer.close()
    return path


def measure_dock(out: Path, checkpoint: Path | None = None) -> Path:
    viewer, predict = _predicted_viewer(checkpoint or train_model())
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
    path = _save(viewer, out / "measure_dock.png")
    viewer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained segmentation model (default: train one, about four CPU minutes)")
    parser.add_argument("--train-into", type=Path, default=None,
                        help="folder for the model trained when no --checkpoint is given (default: a temporary one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or train_model(args.train_into)
    for shoot in (predict_dock, measure_dock):
        print(shoot(args.out, checkpoint))


if __name__ == "__main__":
    main()
