"""The prediction options of the Predict dock, generated from
:class:`~napari_grainlab.core.inference.options.InferenceOptions`.

Every shown field (not ``widget="hidden"``) gets its editor from its metadata
(:mod:`napari_grainlab.gui._forms`), one form per metadata ``group``: the groups in
:data:`INLINE_GROUPS` always visible, every other in a collapsed section of its own.  An option
added to ``InferenceOptions`` appears here, and in :meth:`OptionsPanel.options`, without edits.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QVBoxLayout, QWidget
from superqt import QCollapsible

from ...core.errors import ConfigError
from ...core.inference._rescale import model_grain_diameter
from ...core.inference.options import InferenceOptions
from .._engine import engine_loaded, when_engine_ready
from .._forms import FieldEditor, ParamsForm, field_groups, field_tooltip
from .._widgets import section

__all__ = ["INLINE_GROUPS", "SEGMENT_ONLY_GROUPS", "OptionsPanel", "available_devices"]

#: groups shown without a collapsible section (the options one changes per run), in this order
INLINE_GROUPS = ("Scale", "Adaptation")
#: groups that only a segmentation model uses (the watershed that separates grains)
SEGMENT_ONLY_GROUPS = ("Grains",)
#: a classification model's tile below this is its training patch size; a segmentation tile is at least
MIN_SEGMENT_TILE = 256
NO_REFERENCE = "this model records no intensity reference of its training data"
NOT_SEGMENTING = "a classification model separates no grains"
NO_SCALE = ("this model records no training grain scale: the image is predicted at its own resolution (train or "
            "fine-tune a model with this version to have one)")
#: the options that act only for a segmentation model that records its training grain scale
SCALE_FIELDS = ("diameter", "rescale")
#: the label of the grain-diameter editor (its value reads "auto" or "23 px")
DIAMETER_LABEL = "Grain diameter ≈"


def available_devices() -> list[str]:
    """``auto``, ``cpu`` and the accelerators torch finds here (only ``auto`` and ``cpu`` while torch is not
    imported yet: the dock adds the others when the background import is done)."""
    out = ["auto", "cpu"]
    if not engine_loaded():
        return out
    try:
        import torch

        if torch.cuda.is_available():
            out.append("cuda")
            if torch.cuda.device_count() > 1:
                out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
    except Exception:  # noqa: BLE001 - torch import problems show up when predicting
        pass
    return out


#: the offers of an editable field, computed when the dock opens (instead of the metadata's ``suggest``)
SUGGESTIONS = {"device": available_devices}


class OptionsPanel(QWidget):
    """One editor per shown :class:`InferenceOptions` field, grouped as its metadata says.

    :meth:`options` reads them into an ``InferenceOptions``; an option made unavailable with
    :meth:`set_available` (it does not apply to the chosen model) shows and gives its default.
    ``changed(name)`` is emitted for every edit by the user.
    """

    changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base = InferenceOptions()
        self.forms: dict[str, ParamsForm] = {}
        self.sections: dict[str, QCollapsible] = {}
        self.editors: dict[str, FieldEditor] = {}
        #: unavailable options -> the value the user had set (restored when available again)
        self._parked: dict[str, Any] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        groups = field_groups(self._base, order=INLINE_GROUPS)
        for group, names in groups.items():
            form = ParamsForm(self._base, fields=names, compact=True, error=ConfigError)
            form.form.setContentsMargins(0, 0, 0, 0)
            form.changed.connect(self.changed)
            self.forms[group] = form
            self.editors.update(form.editors)
            if group in INLINE_GROUPS:
                layout.addWidget(form)
                continue
            box = section(group or "Other", form)
            box.layout().setContentsMargins(6, 1, 0, 1)  # stacked sections: no wide gaps
            self.sections[group] = box
            layout.addWidget(box)
        for name, offers in SUGGESTIONS.items():
            if name in self.editors:
                self.set_suggestions(name, offers())
                when_engine_ready(self, lambda name=name, offers=offers: self.set_suggestions(name, offers()))
        diameter = self.editors.get("diameter")
        if diameter is not None and diameter.label is not None:
            diameter.label.setText(DIAMETER_LABEL)

    # ----------------------------------------------------------------- values
    def options(self) -> InferenceOptions:
        """The options shown (unavailable ones at their defaults); raises ``ConfigError`` for
        a value out of range."""
        defaults = InferenceOptions()
        values = {name: getattr(defaults, name) if name in self._parked else ed.value()
                  for name, ed in self.editors.items()}
        return self._base.replace(**values)

    def set_options(self, options: InferenceOptions) -> None:
        """Show ``options`` (no ``changed`` signals); hidden fields keep their values in :meth:`options`."""
        self._base = options.inference()
        defaults = InferenceOptions()
        for name in self.editors:
            if name in self._parked:
                self._parked[name] = getattr(self._base, name)
                self._show(name, getattr(defaults, name))
            else:
                self._show(name, getattr(self._base, name))

    def forms_of(self, name: str) -> ParamsForm:
        return next(form for form in self.forms.values() if name in form.editors)

    def group_fields(self, group: str) -> list[str]:
        form = self.forms.get(group)
        return list(form.editors) if form is not None else []

    def set_suggestions(self, name: str, items: list[str]) -> None:
        """Offer ``items`` in the combo box of ``name`` (keeps the value shown)."""
        combo = self.editors[name].editor
        if not isinstance(combo, QComboBox):
            raise TypeError(f"{name}: its editor offers no list")
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        for item in items:
            combo.addItem(item, item)
        index = combo.findText(current)
        if index >= 0:
            combo.setCurrentIndex(index)
        else:
            combo.setEditText(current)
        combo.blockSignals(False)

    # ----------------------------------------------------------- availability
    def is_available(self, name: str) -> bool:
        return name not in self._parked

    def set_available(self, name: str, available: bool, reason: str = "") -> None:
        """Enable the editor of ``name``, or disable it showing its default (``reason`` as its tooltip);
        the value set before comes back when it is enabled again."""
        ed = self.editors[name]
        if available and name in self._parked:
            self._show(name, self._parked.pop(name))
        elif not available and name not in self._parked:
            self._parked[name] = ed.value()
            self._show(name, getattr(InferenceOptions(), name))
        ed.set_enabled(available)
        tip = field_tooltip(ed.field) if available or not reason else f"<p>{reason}</p>"
        ed.editor.setToolTip(tip)
        if ed.label is not None:
            ed.label.setToolTip(tip)

    def _show(self, name: str, value: Any) -> None:
        """Put ``value`` into the editor of ``name`` (no ``changed`` signal); an unavailable one stays disabled."""
        ed = self.editors[name]
        widgets = [w for w in (ed.editor, ed.toggle) if w is not None]
        blocked = [w.blockSignals(True) for w in widgets]
        try:
            ed.set_value(value)
        finally:
            for w, was in zip(widgets, blocked):
                w.blockSignals(was)
        if name in self._parked:
            ed.set_enabled(False)

    def apply_model(self, meta: dict | None) -> None:
        """Fit the options to a model's metadata (None: no model chosen): histogram matching needs
        the model's intensity reference; the grain diameter and rescaling need a segmentation model
        that records its training grain scale; a classification model separates no grains and predicts
        at its training patch size; a segmentation model's tiles are at least ``MIN_SEGMENT_TILE``."""
        info = meta or {}
        has_ref = bool(info.get("histogram_reference"))
        if "histogram_match" in self.editors:
            self.set_available("histogram_match", has_ref or meta is None, NO_REFERENCE)
        segment = info.get("task", "segment") == "segment"
        for group in SEGMENT_ONLY_GROUPS:
            for name in self.group_fields(group):
                self.set_available(name, segment, NOT_SEGMENTING)
        scaled = meta is None or (segment and model_grain_diameter(info) is not None)
        for name in SCALE_FIELDS:
            if name in self.editors:
                self.set_available(name, scaled, NO_SCALE if segment else NOT_SEGMENTING)
        if meta is None or "tile" not in self.editors:
            return
        tile = self.editors["tile"]
        patch = (info.get("training") or {}).get("patch_size")
        if not segment and isinstance(patch, int) and patch >= 64:
            self._show("tile", patch)
        elif segment and tile.value() is not None and tile.value() < MIN_SEGMENT_TILE:
            self._show("tile", None)

