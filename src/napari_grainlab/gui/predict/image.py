"""The image chooser of the Predict dock: one image layer or every open micrograph, and the
pixel size (from the layer, its TIFF, or typed in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image
from qtpy.QtWidgets import QCheckBox, QWidget

from .._layers import LayerCombo, is_prediction
from .._widgets import PixelSizeInput, make_form
from ..jobs.predict import PredictJob, job_from_layer

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = ["ImagePanel"]


class ImagePanel(QWidget):
    """Image layer, *All open images* and the pixel size in µm."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.image_combo = LayerCombo(viewer, Image, "(no image layer)")
        self.image_combo.setToolTip("the micrograph to segment (grayscale or RGB, any bit depth)")
        self.image_combo.layer_changed.connect(self._on_layer_changed)
        self.all_check = QCheckBox("All open images")
        self.all_check.setToolTip("predict every image layer in the viewer, one after the other")
        self.all_check.toggled.connect(lambda _on: self._on_layer_changed(self.image_combo.current_layer()))
        self.pixel = PixelSizeInput("<p>Size of one pixel in µm, for grain sizes in µm and ASTM G. Filled in from "
                                    "the layer (its metadata or scale) or the TIFF it came from (SEM vendor tags, "
                                    "ImageJ, resolution tags); a value typed here wins.</p>",
                                    missing="not in the metadata: type it in for sizes in µm", parent=self)
        self.pixel.typed_changed.connect(self._on_pixel_typed)
        self.pixel_spin, self.pixel_hint = self.pixel.spin, self.pixel.hint

        form = make_form(self)
        form.addRow("Image", self.image_combo)
        form.addRow("", self.all_check)
        form.addRow("Pixel size", self.pixel_spin)
        form.addRow("", self.pixel_hint)
        self._on_layer_changed(self.image_combo.current_layer())

    @property
    def typed_pixel_size(self) -> float | None:
        """The pixel size typed in (µm), or None: each image's own."""
        return self.pixel.value if self.pixel.typed else None

    def set_image_layer(self, layer: Layer) -> None:
        self.all_check.setChecked(False)
        self.image_combo.set_current_layer(layer)

    def set_pixel_size(self, value: float | None) -> None:
        """Type a pixel size in µm (None or 0: use each image's own)."""
        self.pixel.set_value(value)

    def jobs(self) -> list[PredictJob]:
        """The chosen images, copied from their layers (bottom first, as listed in napari)."""
        if self.all_check.isChecked():  # every micrograph, not the maps predicted earlier
            layers = [ly for ly in self.image_combo.layers() if not is_prediction(ly)]
        else:
            layers = [self.image_combo.current_layer()]
        typed = self.typed_pixel_size
        return [job_from_layer(layer, typed) for layer in reversed([ly for ly in layers if ly is not None])]

    def _on_layer_changed(self, layer: Layer | None) -> None:
        every = "each image's own pixel size (type one to use it for all)" if self.all_check.isChecked() else None
        self.pixel.show_layer(layer, note=every)

    def _on_pixel_typed(self) -> None:
        if not self.pixel.typed:
            self._on_layer_changed(self.image_combo.current_layer())
