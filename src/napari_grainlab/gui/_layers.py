"""Helpers the docks share: layer roles, a layer picker that follows the viewer, the pixel size
of a layer, and adding-or-updating result layers.

**Layer roles.** What a layer *is* to napari-grainlab (the user's annotation, an unapplied
proposal, a prediction's boundary map, ...) lives in ``layer.metadata["grainlab"]["role"]``,
never in its name: users rename layers, and a layer called ``"x annotation"`` that the user made
is not ours.  :data:`ROLES` lists the roles with the name a new layer of that role gets
(:func:`role_name`); :func:`set_role` / :func:`role_metadata` tag a layer, :func:`role_of` and
:func:`layers_with_role` read the tags.  The ``source`` of a tagged layer is the name of the
image layer it belongs to when it was made.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QSizePolicy, QWidget

from ..core.data.io import DataError, read_pixel_size

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari
    from napari.layers import Layer

__all__ = ["PREDICTION_ROLES", "ROLES", "LayerCombo", "grainlab_metadata", "is_prediction", "layer_pixel_size",
           "layers_with_role", "prediction_metadata", "prediction_name", "put_layer", "role_metadata", "role_name",
           "role_of", "set_role", "spatial_of"]

#: layer roles and the suffix of the name a new layer of that role gets (``"<image> <suffix>"``)
ROLES: dict[str, str] = {
    "annotation": "annotation",          # Labels: the user's grain annotation of an image (Annotate)
    "proposal": "proposal",              # Labels: an unapplied proposal (Annotate); not training data
    "classes": "classes",                # Labels: per-grain class painting (Annotate)
    "split_line": "split line",          # Shapes: the line drawn to split a grain (Annotate)
    "grains": "grains",                  # Labels: predicted grain instances (Predict, Train preview)
    "boundary": "boundary",              # Image: predicted boundary probability
    "twin_boundary": "twin boundary",    # Image: predicted twin-boundary probability (models with a twin class)
    "class_map": "classes",              # Labels: predicted class per pixel / tile
    "confidence": "confidence",          # Image: confidence of the predicted class
    "uncertainty": "uncertainty",        # Image: where the model is unsure of its boundaries (Annotate)
    "synthetic_image": "",               # Image: a synthetic micrograph (Synthesize)
    "synthetic_labels": "labels",        # Labels: its ground-truth grains
    "synthetic_boundary": "boundary",    # Labels/Image: its ground-truth boundary mask
    "measurement": "measurement",        # a layer made by the Measure dock
}
#: the roles of layers that hold a model's prediction (never training data, may be replaced)
PREDICTION_ROLES = frozenset({"grains", "boundary", "twin_boundary", "class_map", "confidence", "uncertainty"})

log = logging.getLogger(__name__)


def _plausible(value: Any) -> float | None:
    from ..core.data.io import plausible_pixel_size

    return plausible_pixel_size(value)


def layer_pixel_size(layer: Layer) -> tuple[float | None, str]:
    """The pixel size (µm) of ``layer`` and where it came from ("" when unknown).

    Looked up in the layer's scale when its units are lengths (napari's own calibration, which the
    reader of this plugin sets from the file's metadata and which the user may have changed since),
    then its metadata (``grainlab.pixel_size_um``, ``pixel_size_um``), then its scale in pixel units
    (napari's default unit; a scale other than 1 counts as µm), then the TIFF it was opened from
    (``layer.source.path``: FEI / Zeiss / Tescan SEM tags, vendor side files, ImageJ, the resolution tags).
    """
    meta = layer.metadata if isinstance(getattr(layer, "metadata", None), dict) else {}
    own = meta.get("grainlab") if isinstance(meta.get("grainlab"), dict) else {}
    scale = float(layer.scale[-1]) if len(layer.scale) else 1.0
    units = getattr(layer, "units", None)
    if units is not None and len(units):
        try:
            um = float((scale * units[-1]).to("micrometer").magnitude)
        except Exception:  # noqa: BLE001 - pixels or another non-length unit
            um = None
        if _plausible(um):
            return um, "layer scale"
    for value in (own.get("pixel_size_um"), meta.get("pixel_size_um")):
        if _plausible(value):
            return float(value), "layer metadata"
    if scale != 1.0 and _plausible(scale) and (units is None or not len(units) or str(units[-1]) == "pixel"):
        return scale, "layer scale (taken as µm)"
    path = getattr(getattr(layer, "source", None), "path", None)
    if path:
        try:
            value = read_pixel_size(path)
        except (DataError, OSError) as exc:
            log.debug("no pixel size from %s: %s", path, exc)
            value = None
        if _plausible(value):
            return float(value), "TIFF metadata"
    return None, ""


def pixel_size_spin(tooltip: str) -> QDoubleSpinBox:
    """A spin box for the pixel size in µm; 0 shows as "unknown (px)"."""
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 10000.0)
    spin.setDecimals(5)
    spin.setSingleStep(0.01)
    spin.setSuffix(" µm")
    spin.setSpecialValueText("unknown (px)")
    spin.setToolTip(tooltip)
    return spin


def spatial_of(layer: Layer) -> dict[str, Any]:
    """``scale``, ``translate`` (and ``units``) of a 2-D layer, to give its result layers."""
    out: dict[str, Any] = {"scale": tuple(float(s) for s in layer.scale[-2:]),
                           "translate": tuple(float(t) for t in layer.translate[-2:])}
    units = getattr(layer, "units", None)
    if units is not None and len(units) >= 2:
        out["units"] = tuple(str(u) for u in units[-2:])
    return out


def grainlab_metadata(layer: Layer) -> dict[str, Any]:
    """The napari-grainlab part of ``layer.metadata`` (an empty dict when there is none)."""
    meta = getattr(layer, "metadata", None)
    own = meta.get("grainlab") if isinstance(meta, dict) else None
    return own if isinstance(own, dict) else {}


def role_metadata(role: str, source: str | None = None, **info: Any) -> dict[str, Any]:
    """``metadata=`` for a new layer of ``role`` (one of :data:`ROLES`) made from image ``source``."""
    if role not in ROLES:
        raise KeyError(f"unknown layer role {role!r}")
    own: dict[str, Any] = {"role": role, **info}
    if source is not None:
        own["source"] = source
    if role in PREDICTION_ROLES:
        own.setdefault("prediction", True)
    return {"grainlab": own}


def set_role(layer: Layer, role: str, source: str | None = None, **info: Any) -> None:
    """Tag an existing layer with ``role`` (keeps the rest of its metadata)."""
    meta = dict(layer.metadata) if isinstance(layer.metadata, dict) else {}
    own = dict(grainlab_metadata(layer))
    own.update(role_metadata(role, source, **info)["grainlab"])
    meta["grainlab"] = own
    layer.metadata = meta


def role_of(layer: Layer) -> str | None:
    """The role of ``layer`` (``None`` for a layer napari-grainlab did not tag)."""
    role = grainlab_metadata(layer).get("role")
    if role is None and grainlab_metadata(layer).get("prediction"):
        return "grains"  # tagged before roles existed
    return role if isinstance(role, str) else None


def layers_with_role(layers: Any, role: str, source: str | None = None) -> list[Layer]:
    """The layers (of a viewer or a layer list) with ``role`` (and made from image ``source``)."""
    layers = getattr(layers, "layers", layers)
    return [ly for ly in layers if role_of(ly) == role
            and (source is None or grainlab_metadata(ly).get("source") == source)]


def role_name(base: str, role: str) -> str:
    """The name a new layer of ``role`` made from the image layer ``base`` gets."""
    suffix = ROLES[role]
    return f"{base} {suffix}" if suffix else base


def prediction_metadata(image: str, model: str, role: str = "grains", made_by: str | None = None,
                        scaling: Any = None, **extra: Any) -> dict[str, Any]:
    """``layer.metadata`` of a layer holding a model's prediction of the image layer ``image``
    (see :func:`is_prediction`); ``made_by`` names the dock (e.g. "Predict dock").

    ``scaling`` (the prediction's :class:`~napari_grainlab.core.inference._result.ScaleInfo`) adds the
    grain scale used: ``grain_diameter_px`` (the image's mean grain diameter, given or estimated; None:
    not known), ``grain_diameter_source`` ("given" / "estimated" / ""), ``model_grain_diameter_px``,
    ``scale_factor`` (the image was resized by this before the model) and ``scale_text`` (one line)."""
    info = {"made_by": made_by} if made_by else {}
    if scaling is not None:
        info.update(grain_diameter_px=scaling.diameter, grain_diameter_source=scaling.source,
                    model_grain_diameter_px=scaling.model_diameter, scale_factor=float(scaling.factor),
                    scale_text=scaling.text())
    return role_metadata(role, image, model=str(model), prediction=True, **info, **extra)


def is_prediction(layer: Layer) -> bool:
    """The layer holds a model's prediction (made by the Predict dock or the Train dock's preview)."""
    return bool(grainlab_metadata(layer).get("prediction")) or role_of(layer) in PREDICTION_ROLES


def prediction_name(viewer: napari.viewer.Viewer, name: str) -> str:
    """``name``, unless a layer of that name holds something else than a prediction (e.g. the user's
    annotations, which a prediction must never overwrite): then ``name (prediction)``."""
    taken = next((ly for ly in viewer.layers if ly.name == name), None)
    if taken is None or is_prediction(taken):
        return name
    return f"{name} (prediction)"


def put_layer(viewer: napari.viewer.Viewer, kind: str, data: np.ndarray, name: str, **kwargs: Any) -> Layer:
    """Add layer ``name`` of ``kind`` ("image" / "labels"), or replace the data (and features,
    metadata, placement) of the existing layer it replaces, keeping its display settings.

    When ``metadata`` gives a role and a source (:func:`role_metadata`), the existing layer is the
    one of that kind with the same role and source, whatever the user renamed it to; otherwise the
    one of that kind named ``name``."""
    from napari.layers import Image, Labels

    cls = {"image": Image, "labels": Labels}[kind]
    own = (kwargs.get("metadata") or {}).get("grainlab") or {}
    existing = None
    if own.get("role") and own.get("source") is not None:
        existing = next((ly for ly in reversed(layers_with_role(viewer, own["role"], own["source"]))
                         if isinstance(ly, cls)), None)
    if existing is None:
        existing = next((ly for ly in viewer.layers if ly.name == name and isinstance(ly, cls)
                         and role_of(ly) in (None, own.get("role"))), None)
    if existing is None:
        return getattr(viewer, f"add_{kind}")(data, name=name, **kwargs)
    layer = existing
    if "metadata" in kwargs:
        layer.metadata = kwargs["metadata"]
    if "units" in kwargs and hasattr(layer, "units"):
        try:
            layer.units = kwargs["units"]
        except Exception:  # noqa: BLE001 - an unknown unit name: keep the old units
            pass
    for key in ("scale", "translate"):
        if key in kwargs and tuple(getattr(layer, key)) != tuple(kwargs[key]):
            setattr(layer, key, kwargs[key])
    if kind == "labels":
        layer.features = kwargs.get("features", {})
        layer.data = data
    else:
        layer.data = data
        if "contrast_limits" in kwargs:
            layer.contrast_limits = kwargs["contrast_limits"]
    return layer


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one type (or those that ``accept``), top first or in the order
    ``key`` gives (a stable sort); follows insertions, removals, moves and renames.

    Without ``none_label`` a layer is always chosen while there is one (the first, and a layer added to
    an empty combo), and ``placeholder`` shows when there is none.  With ``none_label`` (e.g. ``"(none)"``)
    that entry comes first and is the choice until the user picks a layer: an optional input.

    ``layer_changed(layer or None)`` is emitted when the chosen layer changes.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer: napari.viewer.Viewer, kind: type, placeholder: str, parent: QWidget | None = None,
                 *, accept: Callable[[Layer], bool] | None = None, key: Callable[[Layer], Any] | None = None,
                 none_label: str | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.kind = kind
        self.placeholder = placeholder
        self._accept = accept
        self._key = key
        self.none_label = none_label
        self._layers: list[Layer | None] = []
        self._current: Layer | None = None
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.currentIndexChanged.connect(self._on_index)
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.moved.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _accepts(self, layer: Layer) -> bool:
        return isinstance(layer, self.kind) and (self._accept is None or bool(self._accept(layer)))

    def layers(self) -> list[Layer]:
        """The layers offered: of this type (and accepted), top first (as in the layer list) or by ``key``."""
        found = [ly for ly in reversed(list(self.viewer.layers)) if self._accepts(ly)]
        return sorted(found, key=self._key) if self._key is not None else found

    def current_layer(self) -> Layer | None:
        return self._current if self._current in self.viewer.layers else None

    def set_current_layer(self, layer: Layer | None) -> None:
        self.refresh()
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))

    def _on_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self.refresh)
        try:
            self.refresh()
            if self.none_label is None and self._current is None and layer is not None and self._accepts(layer):
                self.set_current_layer(layer)
        except RuntimeError:  # the combo's C++ part is gone
            pass

    def refresh(self, *_: Any) -> None:
        try:
            layers = self.layers()
            optional = self.none_label is not None
            if self._current in layers:
                current = self._current
            else:
                current = None if optional or not layers else layers[0]
            self.blockSignals(True)
            self.clear()
            if optional:
                self._layers = [None, *layers]
                self.addItems([self.none_label, *(ly.name for ly in layers)])
                self.setCurrentIndex(self._layers.index(current))
            else:
                self._layers = list(layers)
                if layers:
                    self.addItems([ly.name for ly in layers])
                    self.setCurrentIndex(layers.index(current))
                else:
                    self.addItem(self.placeholder)
                self.setEnabled(bool(layers))
            self.blockSignals(False)
        except RuntimeError:  # the combo's C++ part is gone (dock closed)
            return
        if current is not self._current:
            self._current = current
            self.layer_changed.emit(current)

    def _on_index(self, index: int) -> None:
        layer = self._layers[index] if 0 <= index < len(self._layers) else None
        if layer is not self._current:
            self._current = layer
            self.layer_changed.emit(layer)
