"""Qt forms generated from a parameter dataclass and its field metadata.

Every editor comes from the field's type and ``metadata`` (the keys of
:mod:`napari_grainlab.core._schema`): spin boxes with ranges, steps, prefix / suffix, a ``special``
text at the minimum (an optional ``special`` field shows its None there) and a display ``scale``
(fractions as per cent); a :class:`LogSpinBox` for ``widget="log"``; combo boxes for ``choices``
(one tooltip per item from ``descriptions``) and editable ones for ``suggest``; one check box per
choice for ``widget="checklist"``; check boxes for booleans; a text line for other text; and a check
box (or a radio button within an exclusive group) on the label of other optional fields.  Fields
with ``widget="hidden"`` stay out of generated forms.  New core options show up without GUI code.
Docks share it.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QValidator
from qtpy.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from ..core._schema import field_kind, fmt_value, option_fields
from ..core.errors import ParameterError

__all__ = ["CheckList", "ComboBox", "DoubleSpinBox", "FieldEditor", "LogSpinBox", "ParamsForm", "SpinBox",
           "field_groups", "field_label", "field_tooltip", "form_fields", "make_compact", "sentence"]

#: range of integer editors whose field has no bound of its own (Qt spin boxes are 32-bit)
INT_MAX = 2**31 - 1


class _NoWheelMixin:
    """Wheel events change the value only once the editor has focus, so scrolling the dock
    over an editor scrolls the dock instead of silently changing a parameter."""

    def _init_no_wheel(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event):
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


class LogSpinBox(DoubleSpinBox):
    """A spin box for values spanning decades (learning rates): shows ``0.001`` / ``3e-05``, steps
    by doubling and halving, and accepts typed values like ``3e-4``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(10)

    def textFromValue(self, value: float) -> str:
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok = all(c in "0123456789.eE+-" for c in t)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        state = QValidator.State.Acceptable if self.minimum() <= v <= self.maximum() else \
            QValidator.State.Intermediate
        return state, text, pos

    def stepBy(self, steps: int) -> None:
        self.setValue(min(self.maximum(), max(self.minimum(), self.value() * 2.0 ** steps)))


class CheckList(QWidget):
    """One check box per choice (in ``columns`` columns); the value is the tuple of the checked
    choices, in the order of ``choices``.  ``changed`` is emitted when a box is toggled."""

    changed = Signal()

    def __init__(self, choices: Sequence[Any], descriptions: dict | None = None, columns: int = 2,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.checks: dict[Any, QCheckBox] = {}
        for i, choice in enumerate(choices):
            box = QCheckBox(str(choice))
            text = (descriptions or {}).get(choice)
            if text:
                box.setToolTip(f"<p>{html.escape(sentence(text))}</p>")
            box.toggled.connect(lambda _on: self.changed.emit())
            self.checks[choice] = box
            grid.addWidget(box, i // columns, i % columns)

    def value(self) -> tuple:
        return tuple(c for c, box in self.checks.items() if box.isChecked())

    def set_value(self, value: Sequence[Any]) -> None:
        for choice, box in self.checks.items():
            box.setChecked(choice in value)


def make_compact(*widgets: QWidget, min_width: int = 56) -> None:
    """Let combo boxes and spin boxes shrink to a narrow dock (their size hints follow the longest text)."""
    for w in widgets:
        if isinstance(w, QComboBox):
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(6)
        w.setMinimumWidth(min_width)
        w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)


def sentence(text: str) -> str:
    """``text`` as a sentence: capitalised, ending with a full stop (item tooltips)."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _decimals(meta: Any, scale: float = 1.0) -> int:
    step = meta.get("step")
    if step:
        frac = f"{float(step) * scale:.10f}".rstrip("0").split(".")[1]
        return len(frac)
    lo = meta.get("min")
    if lo is not None and 0 < lo * scale < 1:
        return min(4, max(2, math.ceil(-math.log10(lo * scale))))
    if scale != 1:
        return max(0, 2 - round(math.log10(scale)))  # per cent: whole numbers
    return 2


def field_label(f: dataclasses.Field) -> str:
    return f.metadata.get("label") or f.name.replace("_", " ").capitalize()


def field_tooltip(f: dataclasses.Field) -> str:
    """Rich-text tooltip: the help, the range (as shown in the form) and what each choice means."""
    meta = f.metadata
    parts = [html.escape(meta.get("help") or "")]
    lo, hi = meta.get("min"), meta.get("max")
    scale = meta.get("scale") or 1
    if meta.get("choices") is None and (lo is not None or hi is not None):
        lo_text = fmt_value(lo * scale if scale != 1 else lo) if lo is not None else "−∞"
        hi_text = fmt_value(hi * scale if scale != 1 else hi) if hi is not None else "∞"
        parts.append(f"<i>range {lo_text} … {hi_text}{html.escape(meta.get('suffix') or '')}</i>")
    descriptions = meta.get("descriptions") or {}
    if descriptions:
        parts.append("<br>".join(f"<b>{html.escape(str(k))}</b>: {html.escape(v)}" for k, v in descriptions.items()))
    return "<p>" + "<br>".join(p for p in parts if p) + "</p>"


def form_fields(params: Any) -> list[dataclasses.Field]:
    """The fields a generated form shows: every option field except nested dataclasses and
    ``widget="hidden"`` ones."""
    return [f for f in option_fields(params) if f.metadata.get("widget") != "hidden"
            and not dataclasses.is_dataclass(getattr(params, f.name))]


def field_groups(params: Any, order: Sequence[str] = ()) -> dict[str, list[str]]:
    """The names of :func:`form_fields` by their metadata ``group`` ("" for none): the groups in
    ``order`` first, then any other in the order of its first field; groups without fields are left out."""
    groups: dict[str, list[str]] = {g: [] for g in order}
    for f in form_fields(params):
        groups.setdefault(f.metadata.get("group") or "", []).append(f.name)
    return {g: names for g, names in groups.items() if names}


class FieldEditor:
    """Editor of one dataclass field: a label (a check box or radio button for optional
    fields, which switches them between a value and None) and a value widget.

    ``compact``: the editor may shrink to a narrow dock, and a boolean is a check box that carries
    its label, as is a check list (``label`` is then None: the editor spans the form's row).
    ``error`` is raised for a value the editor cannot show.
    """

    def __init__(self, cls: type, f: dataclasses.Field, exclusive: bool = False, *, compact: bool = False,
                 error: type[Exception] = ParameterError) -> None:
        self.field = f
        self.name = f.name
        self.error = error
        meta = f.metadata
        tp, optional, is_tuple = field_kind(cls, f.name)
        self.kind = tp
        self.scale = float(meta.get("scale") or 1.0)
        #: an optional field with a ``special`` text shows None as the spin box's minimum
        self.none_at_minimum = optional and bool(meta.get("special")) and tp in (int, float) and not is_tuple
        text = field_label(f)
        spans = compact and (is_tuple or (tp is bool and not optional))
        w = self._make_editor(cls, tp, is_tuple, text if spans else "")
        if compact and not isinstance(w, (QCheckBox, CheckList)):
            make_compact(w)
        else:
            w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.editor = w
        self.toggle: QAbstractButton | None = None
        self.label: QWidget | None
        if optional and not self.none_at_minimum:
            self.toggle = QRadioButton(text) if exclusive else QCheckBox(text)
            self.toggle.setAutoExclusive(False)
            self.toggle.toggled.connect(w.setEnabled)
            self.label = self.toggle
        else:
            self.label = None if spans else QLabel(text)
        tip = field_tooltip(f)
        if self.label is not None:
            self.label.setToolTip(tip)
        w.setToolTip(tip)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if default is None and self.toggle is not None and isinstance(w, (QSpinBox, QDoubleSpinBox)):
            # the value offered when an optional field is switched on: 1 if in range
            w.setValue(min(max(1, w.minimum()), w.maximum()))
        self.set_value(default)

    def _make_editor(self, cls: type, tp: Any, is_tuple: bool, text: str) -> QWidget:
        meta = self.field.metadata
        choices, descriptions = meta.get("choices"), meta.get("descriptions") or {}
        where = f"{cls.__name__}.{self.name}"
        if is_tuple:
            if choices is None:
                raise TypeError(f"{where}: no editor for a list without choices")
            return CheckList(choices, descriptions)
        if choices is not None or (meta.get("suggest") is not None and meta.get("widget") != "line"):
            w = ComboBox()
            if choices is None:
                w.setEditable(True)
                w.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            for i, item in enumerate(choices if choices is not None else meta["suggest"]):
                w.addItem(str(item), item)
                if descriptions.get(item):
                    w.setItemData(i, sentence(descriptions[item]), Qt.ItemDataRole.ToolTipRole)
            return w
        if tp is bool:
            return QCheckBox(text)
        if tp is int:
            return self._int_spin(meta)
        if tp is float:
            return self._float_spin(meta)
        if tp is str:
            return QLineEdit()
        raise TypeError(f"{where}: no editor for values of type {tp}")

    def _decorate(self, w: QSpinBox | QDoubleSpinBox) -> None:
        meta = self.field.metadata
        w.setPrefix(meta.get("prefix") or "")
        w.setSuffix(meta.get("suffix") or "")
        if meta.get("special"):
            w.setSpecialValueText(meta["special"])
        w.setAccelerated(True)

    def _int_spin(self, meta: Any) -> QSpinBox:
        w = SpinBox()
        s = self.scale
        step = max(1, int(round((meta.get("step") or 1) * s)))
        lo, hi = -INT_MAX, INT_MAX
        if meta.get("min") is not None:
            lo = int(math.ceil(meta["min"] * s)) + (1 if meta.get("min_open") else 0)
        if meta.get("max") is not None:
            hi = int(min(meta["max"] * s, INT_MAX)) - (1 if meta.get("max_open") else 0)
        if self.none_at_minimum:
            lo -= step
        w.setRange(lo, hi)
        w.setSingleStep(step)
        self._decorate(w)
        return w

    def _float_spin(self, meta: Any) -> QDoubleSpinBox:
        s = self.scale
        if meta.get("widget") == "log":
            w: QDoubleSpinBox = LogSpinBox()
        else:
            w = DoubleSpinBox()
            w.setDecimals(_decimals(meta, s))
        eps = 10.0 ** -w.decimals()
        if meta.get("min") is None:
            lo = -1e9
        else:
            lo = float(meta["min"]) * s
            if lo > 0:
                lo = max(lo, eps)
            if meta.get("min_open"):
                lo += eps
        hi = 1e9 if meta.get("max") is None else float(meta["max"]) * s - (eps if meta.get("max_open") else 0.0)
        step = float(meta["step"]) * s if meta.get("step") else None
        if self.none_at_minimum:
            lo -= step or eps
        w.setRange(lo, hi)
        if step:
            w.setSingleStep(step)
        elif not isinstance(w, LogSpinBox):
            w.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self._decorate(w)
        return w

    # ----------------------------------------------------------------- values
    def raw_value(self) -> Any:
        w = self.editor
        if isinstance(w, CheckList):
            return w.value()
        if isinstance(w, QComboBox):
            if not w.isEditable():
                return w.currentData()
            text = w.currentText().strip()
            if self.kind in (int, float):
                try:
                    return self.kind(text)
                except ValueError:
                    raise self.error(f"{self.name}: {text!r} is not a number") from None
            return text
        if isinstance(w, QLineEdit):
            return w.text().strip()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QSpinBox):
            return int(w.value()) if self.scale == 1 else int(round(w.value() / self.scale))
        return float(w.value()) if self.scale == 1 else float(w.value()) / self.scale

    def set_raw_value(self, value: Any) -> None:
        w = self.editor
        if isinstance(w, CheckList):
            unknown = [v for v in value if v not in w.checks]
            if unknown:
                raise self.error(f"{self.name}: unknown value {unknown[0]!r}")
            w.set_value(value)
        elif isinstance(w, QComboBox):
            index = w.findData(value)
            if index >= 0:
                w.setCurrentIndex(index)
            elif w.isEditable():
                w.setEditText(str(value))
            else:
                raise self.error(f"{self.name}: unknown value {value!r}")
        elif isinstance(w, QLineEdit):
            w.setText(str(value))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(round(value * self.scale)))
        else:
            shown = float(value) * self.scale
            # show loaded values with more digits than the step suggests (e.g. 12.5°) exactly
            digits = len(f"{shown:.6f}".rstrip("0").split(".")[1])
            if digits > w.decimals():
                w.setDecimals(digits)
            w.setValue(shown)

    @property
    def enabled(self) -> bool:
        return self.toggle is None or self.toggle.isChecked()

    def value(self) -> Any:
        if self.none_at_minimum and self.editor.value() == self.editor.minimum():
            return None
        return self.raw_value() if self.enabled else None

    def set_value(self, value: Any) -> None:
        if value is None and self.none_at_minimum:
            self.editor.setValue(self.editor.minimum())
            return
        if value is not None:
            self.set_raw_value(value)
        if self.toggle is not None:
            self.toggle.setChecked(value is not None)
            self.editor.setEnabled(value is not None)

    def set_enabled(self, on: bool) -> None:
        """Enable or disable the editor and its label (e.g. an option that does not apply now)."""
        self.editor.setEnabled(on and self.enabled)
        if self.label is not None:
            self.label.setEnabled(on)

    def changed_signals(self) -> list:
        w = self.editor
        if isinstance(w, CheckList):
            sig = w.changed
        elif isinstance(w, QComboBox):
            sig = w.currentTextChanged if w.isEditable() else w.currentIndexChanged
        elif isinstance(w, QLineEdit):
            sig = w.textChanged
        elif isinstance(w, QCheckBox):
            sig = w.toggled
        else:
            sig = w.valueChanged
        return [sig] if self.toggle is None else [sig, self.toggle.toggled]


class ParamsForm(QWidget):
    """A form for the scalar fields of one parameter dataclass, built from its field metadata.

    ``fields`` names the fields to show, in that order (default: :func:`form_fields`: nested
    dataclass fields get their own form, ``widget="hidden"`` ones none).  ``exclusive`` lists
    groups of optional fields of which exactly one is set (the others are None).  ``compact``
    and ``error`` are passed to every :class:`FieldEditor`.
    ``changed(path)`` is emitted for every edit by the user (not for :meth:`set_values`), with
    ``path`` the field name prefixed by ``section`` (``"tessellation.grains"``);
    ``toggled(path, on)`` when an optional field is switched on or off by the user.
    """

    changed = Signal(str)
    toggled = Signal(str, bool)

    def __init__(self, params: Any, section: str = "", exclusive: Sequence[Sequence[str]] = (),
                 parent: QWidget | None = None, *, fields: Sequence[str] | None = None, compact: bool = False,
                 error: type[Exception] = ParameterError) -> None:
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
        if fields is None:
            shown = form_fields(params)
        else:
            by_name = {f.name: f for f in option_fields(params)}
            shown = [by_name[name] for name in fields]
        for f in shown:
            ed = FieldEditor(self.params_class, f, exclusive=f.name in in_group, compact=compact, error=error)
            self.editors[f.name] = ed
            if ed.label is None:
                self.form.addRow(ed.editor)
            else:
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

    def add_row(self, label: str | QWidget | None, widget: QWidget, *, after: str | QWidget | None = None,
                row: int | None = None) -> None:
        """Add a row that is not a field of the dataclass (e.g. the seed): at the end, at ``row``, or
        after the row of ``after`` (a field name or a widget of the form); a ``label`` of None lets
        ``widget`` span the row."""
        if after is not None:
            anchor = self.editors[after].editor if isinstance(after, str) else after
            row = self.form.getWidgetPosition(anchor)[0] + 1
        args = (widget,) if label is None else (label, widget)
        if row is None:
            self.form.addRow(*args)
        else:
            self.form.insertRow(row, *args)

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
