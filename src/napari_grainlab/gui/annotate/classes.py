"""The Classification panel of the Annotate dock: the class of the whole image and / or class
regions painted into the Labels layer ``NAME classes``; saved as ``classes.json`` + a region
mask, exported as ``CLASS/NAME.tif`` and ``CLASS/NAME_rR_cC.tif`` tiles (see
:mod:`napari_grainlab.core.annotate`)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from qtpy.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QWidget

from ...core import annotate as core
from ...core.annotation_store import class_state
from ...core.errors import GrainLabError
from .._forms import ComboBox, SpinBox
from .._layers import role_metadata, role_name, spatial_of
from .._widgets import make_form
from ._common import guarded, live

if TYPE_CHECKING:
    from .dock import AnnotateWidget

__all__ = ["NO_CLASS", "ClassesPanel"]

NO_CLASS = "—"


class ClassesPanel(QWidget):
    """Class names, the image class, the class-region layer and the export tile size."""

    def __init__(self, dock: AnnotateWidget) -> None:
        super().__init__()
        self._dock = dock
        self._classes_ref: weakref.ref | None = None
        form = make_form(self)
        self.classes_edit = QLineEdit()
        self.classes_edit.setPlaceholderText("e.g. ferrite, pearlite")
        self.classes_edit.setToolTip("class names, separated by commas (they become folder names)")
        self.classes_edit.editingFinished.connect(self._on_classes_edited)
        form.addRow("Classes", self.classes_edit)
        self.image_class_combo = ComboBox()
        self.image_class_combo.setToolTip("the class of the whole image (saved as CLASS/NAME.tif)")
        self.image_class_combo.activated.connect(self._changed)
        form.addRow("Image class", self.image_class_combo)
        self.region_class_combo = ComboBox()
        self.region_class_combo.setToolTip("the class painted into the 'NAME classes' layer")
        self.region_class_combo.activated.connect(self._on_region_class)
        self.regions_button = QPushButton("Paint regions")
        self.regions_button.setToolTip("paint class regions into the Labels layer 'NAME classes'")
        self.regions_button.clicked.connect(self.paint_regions)
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_class_combo, 1)
        region_row.addWidget(self.regions_button)
        form.addRow("Region", region_row)
        self.tile_spin = SpinBox()
        self.tile_spin.setRange(32, 4096)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setValue(256)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("tiles at least 90 % inside one class region are exported as CLASS/NAME_rR_cC.tif")
        form.addRow("Tile", self.tile_spin)

    @property
    def classes_layer(self) -> Labels | None:
        return live(self._dock.viewer, self._classes_ref)

    def reset(self) -> None:
        """The dock leaves its image (the class-region layer stays in the viewer)."""
        self._classes_ref = None

    # ------------------------------------------------------------------ classes
    def class_names(self) -> list[str]:
        return [c.strip() for c in self.classes_edit.text().split(",") if c.strip()]

    def set_classes(self, classes: list[str]) -> None:
        self.classes_edit.setText(", ".join(classes))
        self._on_classes_edited()

    def _on_classes_edited(self) -> None:
        classes = self.class_names()
        current = self.image_class_combo.currentText()
        self.image_class_combo.clear()
        self.image_class_combo.addItem(NO_CLASS)
        self.image_class_combo.addItems(classes)
        self.image_class_combo.setCurrentIndex(max(0, self.image_class_combo.findText(current)))
        region = self.region_class_combo.currentText()
        self.region_class_combo.clear()
        self.region_class_combo.addItems(classes)
        if region in classes:
            self.region_class_combo.setCurrentText(region)
        self.regions_button.setEnabled(bool(classes))
        self._changed()

    def _changed(self, *_: Any) -> None:
        self._dock._mark_changed()

    def set_image_class(self, name: str | None) -> None:
        if name and name not in self.class_names():
            self.set_classes(self.class_names() + [name])
        self.image_class_combo.setCurrentText(name or NO_CLASS)
        self._changed()

    def image_class(self) -> str | None:
        text = self.image_class_combo.currentText()
        return None if text in ("", NO_CLASS) else text

    def _on_region_class(self, *_: Any) -> None:
        layer = self.classes_layer
        if layer is not None:
            layer.selected_label = self.region_class_combo.currentIndex() + 1

    @guarded("Paint regions")
    def paint_regions(self, *_: Any) -> Labels | None:
        """Show (or create) the Labels layer ``NAME classes`` and start painting the chosen class."""
        dock = self._dock
        labels = dock._require()
        if not self.class_names():
            raise GrainLabError("enter class names first (e.g. ferrite, pearlite)")
        layer = self.classes_layer
        if layer is None:
            layer = dock.viewer.add_labels(np.zeros(labels.data.shape, dtype=np.uint8),
                                           name=role_name(dock._base_name, "classes"), opacity=0.35,
                                           metadata=role_metadata("classes", source=dock._base_name),
                                           **spatial_of(labels))
            self._classes_ref = weakref.ref(layer)
            layer.events.paint.connect(self._changed)
            dock._refresh_layer_choices()
        dock.viewer.layers.selection.active = layer
        layer.visible = True
        layer.brush_size = max(20, dock.tools.brush_spin.value())
        layer.selected_label = self.region_class_combo.currentIndex() + 1
        layer.mode = "paint"
        return layer

    # ------------------------------------------------------------------ the work
    def class_annotation(self) -> core.ClassAnnotation | None:
        """The classification work on the current image (None when there is none)."""
        classes = self.class_names()
        layer = self.classes_layer
        # no layer: keep the saved regions; an all-0 layer: the regions were erased
        regions = np.asarray(layer.data) if layer is not None else None
        image_class = self.image_class()
        if not classes or (regions is None and image_class is None):
            return None
        return core.ClassAnnotation(classes=classes, image_class=image_class, regions=regions,
                                    tile=int(self.tile_spin.value()))

    def state(self) -> tuple:
        """A comparable summary of the work (see :func:`~napari_grainlab.core.annotation_store.class_state`)."""
        return class_state(self.class_annotation())

    def show_saved(self, ann: core.ClassAnnotation | None) -> None:
        """Show the saved classification work ``ann`` of the image just attached (None: there is none)."""
        if ann is None:
            self.image_class_combo.setCurrentIndex(0)
            return
        self.set_classes(ann.classes)
        self.image_class_combo.setCurrentText(ann.image_class or NO_CLASS)
        self.tile_spin.setValue(ann.tile)
        if ann.regions is not None and ann.regions.any():
            layer = self.paint_regions()
            if layer is not None:
                layer.data = ann.regions.astype(np.uint8)
                layer.mode = "pan_zoom"
                self._dock.viewer.layers.selection.active = self._dock.labels_layer
