"""The layer choice of the Annotate dock: the *Image* and *Grains* combo boxes, and the image
plane that is annotated (a 2-D grey or RGB image: the layer is shown as it is, proposals are made
on its colour and the dataset folder stores it in colour, as an RGB TIFF)."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QWidget

from ...core.data.channels import normalize_image, to_planes
from ...core.errors import DataError
from .._forms import ComboBox
from .._layers import role_of
from .._widgets import make_form

__all__ = ["HELPER_ROLES", "NEW_LAYER", "LayerPicker", "image_plane"]

NEW_LAYER = "New layer"
#: roles of the dock's helper layers: never offered as the grain annotation
HELPER_ROLES = frozenset({"proposal", "classes"})


def image_plane(layer: Image) -> tuple[np.ndarray, np.ndarray]:
    """(the image to store, in its own pixel type, and the float image in [0, 1] for proposals) of an
    image layer, each ``(H, W)`` grey or ``(H, W, 3)`` colour (an RGB layer with equal channels is grey);
    raises DataError."""
    if getattr(layer, "multiscale", False):
        raise DataError(f"{layer.name!r} is a multiscale image; open one resolution level to annotate it")
    data = np.asarray(layer.data)
    source = f"image {layer.name!r}"
    if layer.rgb:
        if data.dtype.kind not in "buif":
            raise DataError(f"{layer.name!r} has unsupported pixels ({data.dtype})")
        planes = to_planes(data, source, channel_axis=data.ndim - 1)
    elif data.ndim != 2:
        raise DataError(f"{layer.name!r} has shape {data.shape}: annotate one 2-D image (for a stack, "
                        "take one plane into its own layer)")
    else:
        planes = data
    if planes.dtype.kind not in "buif":
        raise DataError(f"{layer.name!r} has unsupported pixels ({planes.dtype})")
    if min(planes.shape[:2]) < 8:
        raise DataError(f"{layer.name!r} is too small ({planes.shape[0]} x {planes.shape[1]} px)")
    try:
        image = normalize_image(planes)
    except DataError:
        if planes.dtype.kind == "f":  # the normalisation refuses NaN and infinite pixels: name the image
            bad = int(np.count_nonzero(~np.isfinite(planes)))
            if bad:
                raise DataError(f"image {layer.name!r} contains NaN or infinite values ({bad} pixel"
                                f"{'s' if bad != 1 else ''}); replace them (e.g. numpy.nan_to_num) to annotate "
                                "it") from None
        raise
    return planes, image


class LayerPicker(QWidget):
    """The *Image* and *Grains* combo boxes, listing the viewer's layers by name."""

    def __init__(self, viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.syncing = False  # True while the combos are refilled (their signals mean nothing then)
        self.image_combo = ComboBox()
        self.image_combo.setToolTip("the micrograph to annotate (a 2-D grey or RGB image; proposals use its colour)")
        self.image_combo.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.image_combo.setMinimumContentsLength(8)
        self.labels_combo = ComboBox()
        self.labels_combo.setToolTip(f"the grain Labels layer; '{NEW_LAYER}' creates 'NAME annotation' "
                                     "(with the saved labels when there are any)")
        self.labels_combo.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.labels_combo.setMinimumContentsLength(8)
        form = make_form(self)
        form.addRow("Image", self.image_combo)
        form.addRow("Grains", self.labels_combo)

    def refresh(self, image: Image | None, labels: Labels | None, *_: Any) -> None:
        """Refill both combos from the viewer, keeping ``image`` and ``labels`` chosen."""
        self.syncing = True
        try:
            self.image_combo.clear()
            for layer in self.viewer.layers:
                if isinstance(layer, Image):
                    self.image_combo.addItem(layer.name)
            if image is not None:
                self.image_combo.setCurrentIndex(max(0, self.image_combo.findText(image.name)))
            self.labels_combo.clear()
            self.labels_combo.addItem(NEW_LAYER)
            for layer in self.viewer.layers:
                if isinstance(layer, Labels) and role_of(layer) not in HELPER_ROLES:
                    self.labels_combo.addItem(layer.name)
            if labels is not None:
                self.labels_combo.setCurrentIndex(max(0, self.labels_combo.findText(labels.name)))
        finally:
            self.syncing = False

    def choose_image(self, layer: Image) -> None:
        self.image_combo.setCurrentIndex(max(0, self.image_combo.findText(layer.name)))

    def chosen_image(self) -> Image | None:
        return self._chosen(self.image_combo, Image)

    def chosen_labels(self) -> Labels | None:
        """The Labels layer chosen under *Grains* (None: 'New layer')."""
        return self._chosen(self.labels_combo, Labels)

    def _chosen(self, combo: ComboBox, kind: type):
        index = combo.currentIndex()
        if index < 0 or (combo is self.labels_combo and index == 0):
            return None
        name = combo.itemText(index)
        layer = next((x for x in self.viewer.layers if x.name == name), None)
        return layer if isinstance(layer, kind) else None
