"""A Qt form generated from a parameter dataclass and its field metadata.

Every editor comes from the field's type and ``metadata`` (``min``, ``max``, ``step``,
``choices``, ``help``, ``label``): spin boxes with ranges and steps, combo boxes for choices,
check boxes for booleans, and a check box (or a radio button within an exclusive group) on
the label of optional fields.  New core parameters show up without GUI code.  Docks share it.
"""

from __future__ import annotations

import dataclasses
import html
import math
import types
import typing
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from ..core.synthetic import ParameterError, param_fields

__all__ = ["ComboBox", "DoubleSpinBox", "FieldEditor", "ParamsForm", "SpinBox", "field_label", "field_tooltip"]

#: range of integer editors whose field has no bound of its own (Qt spin boxes are 32-bit)
INT_MAX = 2**31 - 1


class _NoWheelMixin:
    """Wheel events change the value only once the editor has focus, so scrolling the dock
    over an editor scrolls the dock instead of silently changing a parameter."""

    def _init_no_wheel(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event):  # noqa: N802 (Qt override)
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()


class SpinBox(_NoWheelMixin, QSpinBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._init_no_wheel()


class DoubleSpinBox(_NoWheelMixin, QDoubleSpinBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._init_no_wheel()


class ComboBox(_NoWheelMixin, QComboBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._init_no_wheel()


def _field_type(cls: type, f: dataclasses.Field) -> tuple[Any, bool]:
    """The value type of a field and whether None is allowed (``int | None`` → (int, True))."""
    tp = typing.get_type_hints(cls)[f.name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{cls.__name__}.{f.name}: cannot edit a value of type {tp}")
        return rest[0], len(rest) < len(args)
    return tp, False


def _decimals(meta: typing.Mapping[str, Any]) -> int:
    step = meta.get("step")
    if step:
        frac = f"{float(step):.10f}".rstrip("0").split(".")[1]
        return len(frac)
    lo = meta.get("min")
    if lo is not None and 0 < lo < 1:
        return min(4, max(2, math.ceil(-math.log10(lo))))
    return 2


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def field_label(f: dataclasses.Field) -> str:
    return f.metadata.get("label") or f.name.replace("_", " ").capitalize()


def field_tooltip(f: dataclasses.Field) -> str:
    meta = f.metadata
    parts = [html.escape(meta.get("help") or "")]
    lo, hi = meta.get("min"), meta.get("max")
    if meta.get("choices") is None and (lo is not None or hi is not None):
        parts.append(f"<i>range {_fmt(lo) if lo is not None else '−∞'} … {_fmt(hi) if hi is not None else '∞'}</i>")
    return "<p>" + "<br>".join(p for p in parts if p) + "</p>"


class FieldEditor:
    """Editor of one dataclass field: a label (a check box or radio button for optional
    fields, which switches them between a value and None) and a value widget."""

    def __init__(self, cls: type, f: dataclasses.Field, exclusive: bool = False) -> None:
        self.field = f
        self.name = f.name
        meta = f.metadata
        tp, optional = _field_type(cls, f)
        if meta.get("choices") is not None:
            w: QWidget = ComboBox()
            for choice in meta["choices"]:
                w.addItem(str(choice), choice)
        elif tp is bool:
            w = QCheckBox()
        elif tp is int:
            w = SpinBox()
            lo = -INT_MAX if meta.get("min") is None else int(meta["min"])
            hi = INT_MAX if meta.get("max") is None else int(min(meta["max"], INT_MAX))
            w.setRange(lo, hi)
            w.setSingleStep(int(meta.get("step") or 1))
            w.setAccelerated(True)
        elif tp is float:
            w = DoubleSpinBox()
            decimals = _decimals(meta)
            w.setDecimals(decimals)
            lo = -1e9 if meta.get("min") is None else max(float(meta["min"]), 10.0**-decimals if meta["min"] > 0 else meta["min"])
            hi = 1e9 if meta.get("max") is None else float(meta["max"])
            w.setRange(lo, hi)
            if meta.get("step"):
                w.setSingleStep(float(meta["step"]))
            else:
                w.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
            w.setAccelerated(True)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no editor for values of type {tp}")
        w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.editor = w
        self.toggle: QAbstractButton | None = None
        text = field_label(f)
        if optional:
            self.toggle = QRadioButton(text) if exclusive else QCheckBox(text)
            self.toggle.setAutoExclusive(False)
            self.toggle.toggled.connect(w.setEnabled)
            self.label: QWidget = self.toggle
        else:
            self.label = QLabel(text)
        tip = field_tooltip(f)
        self.label.setToolTip(tip)
        w.setToolTip(tip)
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is None and isinstance(w, (QSpinBox, QDoubleSpinBox)):
            # the value offered when an optional field is switched on: 1 if in range
            w.setValue(min(max(1, w.minimum()), w.maximum()))
        self.set_value(default)

    # ----------------------------------------------------------------- values
    def raw_value(self) -> Any:
        w = self.editor
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QSpinBox):
            return int(w.value())
        return float(w.value())

    def set_raw_value(self, value: Any) -> None:
        w = self.editor
        if isinstance(w, QComboBox):
            index = w.findData(value)
            if index < 0:
                raise ParameterError(f"{self.name}: unknown value {value!r}")
            w.setCurrentIndex(index)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(value))
        else:
            # show loaded values with more digits than the step suggests (e.g. 12.5°) exactly
            digits = len(f"{float(value):.6f}".rstrip("0").split(".")[1])
            if digits > w.decimals():
                w.setDecimals(digits)
            w.setValue(float(value))

    @property
    def enabled(self) -> bool:
        return self.toggle is None or self.toggle.isChecked()

    def value(self) -> Any:
        return self.raw_value() if self.enabled else None

    def set_value(self, value: Any) -> None:
        if value is not None:
            self.set_raw_value(value)
        if self.toggle is not None:
            self.toggle.setChecked(value is not None)
            self.editor.setEnabled(value is not None)

    def changed_signals(self) -> list:
        w = self.editor
        if isinstance(w, QComboBox):
            sig = w.currentIndexChanged
        elif isinstance(w, QCheckBox):
            sig = w.toggled
        else:
            sig = w.valueChanged
        return [sig] if self.toggle is None else [sig, self.toggle.toggled]


class ParamsForm(QWidget):
    """A form for the scalar fields of one parameter dataclass, built from its field metadata.

    Nested dataclass fields are skipped (they get their own form).  ``exclusive`` lists
    groups of optional fields of which exactly one is set (the others are None).
    ``changed(path)`` is emitted for every edit by the user (not for :meth:`set_values`), with
    ``path`` the field name prefixed by ``section`` (``"tessellation.grains"``);
    ``toggled(path, on)`` when an optional field is switched on or off by the user.
    """

    changed = Signal(str)
    toggled = Signal(str, bool)

    def __init__(self, params: Any, section: str = "", exclusive: Sequence[Sequence[str]] = (),
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.params_class = type(params)
        self.section = section
        self.editors: dict[str, FieldEditor] = {}
        self._loading = False
        self._groups: list[tuple[QButtonGroup, list[str]]] = []
        in_group = {name for group in exclusive for name in group}

        self.form = QFormLayout(self)
        self.form.setContentsMargins(4, 2, 4, 2)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for f in param_fields(params):
            if dataclasses.is_dataclass(getattr(params, f.name)):
                continue
            ed = FieldEditor(self.params_class, f, exclusive=f.name in in_group)
            self.editors[f.name] = ed
            self.form.addRow(ed.label, ed.editor)
            for sig in ed.changed_signals():
                sig.connect(lambda *_, n=f.name: self._emit_changed(n))
            if ed.toggle is not None:
                ed.toggle.toggled.connect(lambda on, n=f.name: self._emit_toggled(n, on))
        for names in exclusive:
            group = QButtonGroup(self)
            group.setExclusive(True)
            for name in names:
                group.addButton(self.editors[name].toggle)
            self._groups.append((group, list(names)))
        self.set_values(params)

    def path(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def _emit_changed(self, name: str) -> None:
        if not self._loading:
            self.changed.emit(self.path(name))

    def _emit_toggled(self, name: str, on: bool) -> None:
        if not self._loading:
            self.toggled.emit(self.path(name), on)

    def add_row(self, label: str | QWidget, widget: QWidget) -> None:
        """Append a row that is not a field of the dataclass (e.g. the seed)."""
        self.form.addRow(label, widget)

    def values(self) -> dict[str, Any]:
        return {name: ed.value() for name, ed in self.editors.items()}

    def set_values(self, params: Any) -> None:
        """Show the values of ``params`` (no ``changed`` signals)."""
        self._loading = True
        try:
            for group, _names in self._groups:
                group.setExclusive(False)
            for name, ed in self.editors.items():
                ed.set_value(getattr(params, name))
            for group, names in self._groups:
                # the first field that has a value wins (as in the generator)
                chosen = next((n for n in names if getattr(params, n) is not None), None)
                for n in names:
                    ed = self.editors[n]
                    ed.toggle.setChecked(n == chosen)
                    ed.editor.setEnabled(n == chosen)
                group.setExclusive(chosen is not None)
        finally:
            self._loading = False

    def set_field(self, name: str, value: Any) -> None:
        """Set the value widget of one field without signals (keeps its on/off state)."""
        self._loading = True
        try:
            self.editors[name].set_raw_value(value)
        finally:
            self._loading = False
