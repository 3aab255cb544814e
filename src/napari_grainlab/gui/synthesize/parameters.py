"""The parameter sections of the Synthesize dock, generated from the generator's dataclasses
(:mod:`napari_grainlab.core.synthetic.params`): every field's type and ``metadata`` (range,
step, choices, help) decide its editor (:class:`~napari_grainlab.gui._forms.ParamsForm`), so a
new generator parameter appears in the dock without GUI code.  One form per section (the top
level of :class:`~napari_grainlab.core.synthetic.SynthParams`, then each nested dataclass) in a
collapsible group, and the seed."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton, QVBoxLayout, QWidget
from superqt import QCollapsible

from ...core.synthetic import ParameterError, SynthParams, param_fields
from .._forms import ParamsForm, SpinBox
from .._widgets import scroll_area, section

__all__ = ["DERIVED_VALUES", "EXCLUSIVE_FIELDS", "EXPANDED_SECTIONS", "SECTION_TITLES", "SEED_MAX", "ParametersPanel"]

SEED_MAX = 2**31 - 1
#: titles of the parameter sections ("" is the top level of SynthParams); a section without
#: a title here is named after its field's help text
SECTION_TITLES = {"": "Image", "tessellation": "Grains", "sem": "SEM look", "optical": "Optical look",
                  "tint": "Tint etching look (colour)", "polarized": "Polarised light look (colour)",
                  "ebsd": "EBSD IPF look (colour)"}
#: sections expanded when the dock opens
EXPANDED_SECTIONS = ("", "tessellation")
#: optional fields of which exactly one is used: radio buttons instead of check boxes
EXCLUSIVE_FIELDS = {"tessellation": (("grains", "mean_diameter"),)}
#: when an optional field is switched on, start from the value the current parameters imply
DERIVED_VALUES: dict[str, Callable[[SynthParams], float]] = {
    "tessellation.grains": lambda p: p.n_grains(),
    "tessellation.mean_diameter": lambda p: p.mean_diameter(),
}


def _sections(params: SynthParams) -> list[tuple[str, str]]:
    """(key, title) of the parameter sections: the top level, then each nested dataclass."""
    out = [("", SECTION_TITLES[""])]
    for f in param_fields(params):
        if dataclasses.is_dataclass(getattr(params, f.name)):
            fallback = (f.metadata.get("help") or f.name).capitalize()
            out.append((f.name, SECTION_TITLES.get(f.name, fallback)))
    return out


class ParametersPanel(QScrollArea):
    """The generator parameters and the seed, in a scroll area.

    ``changed()`` is emitted for every edit by the user (parameters and seed), not for
    :meth:`set_params`.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        #: the last parameters that were valid (the start of derived values)
        self.valid_params = SynthParams()
        defaults = SynthParams()
        self.forms: dict[str, ParamsForm] = {}
        self.sections: dict[str, QCollapsible] = {}
        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(2)
        for key, title in _sections(defaults):
            obj = getattr(defaults, key) if key else defaults
            form = ParamsForm(obj, section=key, exclusive=EXCLUSIVE_FIELDS.get(key, ()))
            form.changed.connect(self._on_changed)
            form.toggled.connect(self._on_toggled)
            box = section(title, form, expanded=key in EXPANDED_SECTIONS)
            content_layout.addWidget(box)
            self.forms[key] = form
            self.sections[key] = box
        content_layout.addStretch(1)

        # seed: not a generator parameter but part of the image's identity
        self.seed_spin = SpinBox()
        self.seed_spin.setRange(0, SEED_MAX)
        self.seed_spin.setToolTip("<p>random seed: the same parameters and seed give the same image</p>")
        self.seed_spin.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.seed_spin.valueChanged.connect(lambda *_: self.changed.emit())
        self.dice_button = QToolButton()
        self.dice_button.setText("⚄")
        font = self.dice_button.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        self.dice_button.setFont(font)
        self.dice_button.setToolTip("pick a random seed")
        self.dice_button.clicked.connect(self.randomize_seed)
        seed_row = QWidget()
        seed_layout = QHBoxLayout(seed_row)
        seed_layout.setContentsMargins(0, 0, 0, 0)
        seed_layout.addWidget(self.seed_spin)
        seed_layout.addWidget(self.dice_button)
        seed_label = QLabel("Seed")
        seed_label.setToolTip(self.seed_spin.toolTip())
        self.forms[""].add_row(seed_label, seed_row)
        self._form_labels = [seed_label] + [ed.label for form in self.forms.values() for ed in form.editors.values()]

        scroll_area(content, self)
        self.sync_style_sections()

    def align_labels(self) -> None:
        """One label-column width for all sections, so that the editors line up.  Measured
        with the font of the current napari theme (it is applied only once docked)."""
        for lab in self._form_labels:
            lab.setMinimumWidth(0)
        width = max(lab.sizeHint().width() for lab in self._form_labels)
        for lab in self._form_labels:
            lab.setMinimumWidth(width)

    # ------------------------------------------------------------------ parameters
    def params(self) -> SynthParams:
        """The parameters shown (raises ParameterError if they are invalid)."""
        kwargs = self.forms[""].values()
        for key, form in self.forms.items():
            if key:
                kwargs[key] = form.params_class(**form.values())
        params = SynthParams(**kwargs)
        params.validate()
        return params

    def set_params(self, params: SynthParams) -> None:
        """Show ``params`` (no ``changed`` signal)."""
        for key, form in self.forms.items():
            form.set_values(getattr(params, key) if key else params)
        try:
            params.validate()
            self.valid_params = params
        except ParameterError:
            pass  # shown by the next preview update
        self.sync_style_sections()

    @property
    def seed(self) -> int:
        return int(self.seed_spin.value())

    def randomize_seed(self) -> None:
        self.seed_spin.setValue(random.SystemRandom().randrange(SEED_MAX))

    def _on_changed(self, path: str) -> None:
        if path == "style":
            self.sync_style_sections()
        self.changed.emit()

    def _on_toggled(self, path: str, on: bool) -> None:
        derive = DERIVED_VALUES.get(path)
        if on and derive is not None:
            try:
                value = derive(self.valid_params)
            except (ArithmeticError, ParameterError, TypeError, ValueError):
                return
            section, _, name = path.rpartition(".")
            self.forms[section].set_field(name, value)

    def sync_style_sections(self) -> None:
        """Show only the look section of the chosen style (sections named like a style)."""
        style_editor = self.forms[""].editors["style"]
        styles = style_editor.field.metadata["choices"]
        for key, box in self.sections.items():
            if key in styles:
                box.setVisible(key == style_editor.value())
