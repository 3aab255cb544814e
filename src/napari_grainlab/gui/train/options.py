"""The Train dock's option sections, generated from the :class:`TrainConfig` field metadata.

Every section is a :class:`~napari_grainlab.gui._forms.ParamsForm` of the fields of some metadata
groups (:data:`SECTIONS`); a group :data:`SECTIONS` does not name gets a section of its own, so a
new training option with metadata shows up here without an edit.  The few widgets that map several
fields, or a field in a way of their own, are built here: the weights source (a combo box and a
path), hold-out vs K-fold validation, and the output folder.  Fields the data panel shows
(the synthetic source and mix) and the rest the dock does not offer are ``widget="hidden"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QLineEdit,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...core.errors import ConfigError
from ...core.training.config import DEVICE_HELP, GROUPS, STRATEGY_HELP
from .._engine import when_engine_ready
from .._forms import ComboBox, FieldEditor, ParamsForm, SpinBox, field_groups, make_compact, sentence
from .._widgets import section
from .data import row

__all__ = ["SECTIONS", "STRATEGY_TIPS", "WEIGHT_SOURCES", "OptionsPanel", "default_out", "mark_unavailable_devices"]

#: the dock's option sections: title, the metadata groups whose fields it shows, expanded at first
SECTIONS = (
    ("Model and training", ("Model", "Training"), True),
    ("Augmentation", ("Augmentation",), False),
    ("Validation", ("Validation",), False),
    ("Regularisation", ("Regularisation",), False),
    ("Advanced", ("Advanced", ""), False),
)
#: one sentence per strategy: the item tooltips of the strategy box (from the field's descriptions)
STRATEGY_TIPS = {name: sentence(text) for name, text in STRATEGY_HELP.items()}
WEIGHT_SOURCES = (("imagenet", "ImageNet"), ("none", "none (random)"), ("file", "weights file…"),
                  ("model", "GrainLab model folder…"))
#: how a built-in model is named in the weights list (after ImageNet)
BUILTIN_WEIGHTS = "{name} (built-in model)"


def builtin_weight_sources() -> list[tuple[str, str, str]]:
    """(registry name, text, tooltip) of every built-in model: starting weights to fine-tune."""
    from ...core.errors import USER_ERRORS
    from ...core.models.registry import installed, list_models

    try:
        models = list_models()
    except USER_ERRORS:
        return []
    out = []
    for m in models:
        tip = f"fine-tune the built-in {m.name} model" + (f": {m.description}" if m.description else "")
        if installed(m) == "not installed":
            tip += " (not installed)"
        out.append((m.name, BUILTIN_WEIGHTS.format(name=m.name), tip))
    return out


def default_out() -> Path:
    import time

    return Path.home() / "grainlab-models" / time.strftime("run-%Y%m%d-%H%M%S")


def mark_unavailable_devices(combo: QComboBox) -> None:
    """Disable the devices this machine lacks in a device combo box (with a tooltip saying so)."""
    import torch

    available = {"auto": True, "cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    model = combo.model()
    for i in range(combo.count()):
        key = combo.itemData(i)
        if not available.get(key, True):
            item = model.item(i)
            item.setEnabled(False)
            item.setToolTip(f"no {DEVICE_HELP.get(key, key)} on this machine")


class OptionsPanel(QWidget):
    """The option sections of the Train dock for ``config_class`` (a :class:`TrainConfig`).

    ``editors`` holds the generated editor of every shown field, ``forms`` and ``sections`` the
    form and the collapsible of every section (by the lower-case first word of its title).
    :meth:`values` are the configuration's fields shown here; :meth:`show_config` shows a configuration.
    """

    def __init__(self, config_class: type, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_class = config_class
        self._fields = {f.name: f for f in dataclasses.fields(config_class)}
        defaults = config_class()
        self.forms: dict[str, ParamsForm] = {}
        self.sections: dict[str, QCollapsible] = {}
        self.editors: dict[str, FieldEditor] = {}
        self._weights_path = ""
        self.auto_out = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)

        groups = field_groups(defaults, order=GROUPS)
        plan = [(title, names, expanded) for title, names, expanded in SECTIONS]
        named = {g for _title, names, _expanded in SECTIONS for g in names}
        plan += [(group, (group,), False) for group in groups if group not in named]
        for title, names, expanded in plan:
            fields = [name for group in names for name in groups.get(group, ())]
            form = ParamsForm(defaults, fields=fields, compact=True, error=ConfigError)
            key = title.lower().split()[0]
            self.forms[key] = form
            self.editors.update(form.editors)
            self.sections[key] = section(title, form, expanded)
            layout.addWidget(self.sections[key])
        self._build_weights(self.forms["model"])
        self._build_output(self.forms["model"])
        self._build_validation(self.forms["validation"], defaults)
        for key, form in self.forms.items():
            self.sections[key].setVisible(form.form.rowCount() > 0)
        if "device" in self.editors:  # needs torch: once the background import has it, not on this thread now
            combo = self.editors["device"].editor
            when_engine_ready(combo, lambda: mark_unavailable_devices(combo))

    # ======================================================================= layout
    def _build_weights(self, form: ParamsForm) -> None:
        self.weights_combo = ComboBox()
        for key, text in WEIGHT_SOURCES[:1]:
            self.weights_combo.addItem(text, key)
        for key, text, tip in builtin_weight_sources():  # fine-tune the generalist
            self.weights_combo.addItem(text, key)
            self.weights_combo.setItemData(self.weights_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        for key, text in WEIGHT_SOURCES[1:]:
            self.weights_combo.addItem(text, key)
        self.weights_combo.setToolTip("<p>initial weights: ImageNet (offline for efficientnet_lite0; otherwise from "
                                      "local caches), a built-in model such as the generalist (the whole network, "
                                      "its backbone and channels), random, a .safetensors / .pth file, or a GrainLab "
                                      "model folder (e.g. a synthetic pre-training run)</p>")
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("path of the weights")
        self.weights_edit.textEdited.connect(lambda t: setattr(self, "_weights_path", t.strip()))
        self.weights_browse = QToolButton()
        self.weights_browse.setText("…")
        self.weights_browse.setToolTip("choose the weights")
        self.weights_row = row(self.weights_edit, self.weights_browse)
        make_compact(self.weights_combo, self.weights_edit)
        after = "backbone" if "backbone" in form.editors else None
        form.add_row("Weights", self.weights_combo, after=after, row=None if after else 0)
        form.add_row("", self.weights_row, after=self.weights_combo)
        self._weights_label = form.form.labelForField(self.weights_row)

    def _build_output(self, form: ParamsForm) -> None:
        self.out_edit = QLineEdit(str(default_out()))
        self.out_edit.setToolTip("<p>the run writes best/, last/, config.json and history.json here; the default "
                                 "is a new time-stamped folder for every run</p>")
        self.out_edit.textEdited.connect(lambda _t: setattr(self, "auto_out", False))
        self.out_browse = QToolButton()
        self.out_browse.setText("…")
        self.out_browse.setToolTip("choose the output folder")
        make_compact(self.out_edit)
        form.add_row("Output", row(self.out_edit, self.out_browse))

    def _build_validation(self, form: ParamsForm, defaults: Any) -> None:
        self.holdout_radio = QRadioButton("Hold out micrographs")
        self.kfold_radio = QRadioButton("K-fold")
        group = QButtonGroup(self)
        group.addButton(self.holdout_radio)
        group.addButton(self.kfold_radio)
        self.holdout_radio.setChecked(True)
        self.val_editor = FieldEditor(self.config_class, self._fields["val_fraction"], compact=True, error=ConfigError)
        self.val_editor.editor.setSpecialValueText("no validation")
        self.val_editor.set_value(defaults.val_fraction)
        self.k_spin = SpinBox()
        self.k_spin.setRange(2, 20)
        self.k_spin.setValue(5)
        self.k_spin.setSuffix(" folds")
        self.k_spin.setToolTip("<p>Group K-fold cross-validation: one model per fold (OUT/fold1 …), then mean ± sd "
                               "of the metrics.</p>")
        self.holdout_radio.setToolTip(self.val_editor.editor.toolTip())
        self.kfold_radio.setToolTip(self.k_spin.toolTip())
        make_compact(self.k_spin)
        form.add_row(self.holdout_radio, self.val_editor.editor, row=0)
        form.add_row(self.kfold_radio, self.k_spin, row=1)

    # ======================================================================== state
    def value(self, name: str) -> Any:
        """The value of the field ``name`` in its editor (the field's default when it has none here)."""
        ed = self.editors.get(name)
        return ed.value() if ed is not None else self._fields[name].default

    def sync_enabled(self) -> None:
        """Enable the options that apply to the current choices."""
        weights = self.weights_combo.currentData() in ("file", "model")
        self.weights_row.setVisible(weights)
        if self._weights_label is not None:
            self._weights_label.setVisible(weights)
        strategy = self.value("strategy")
        for name, on in (("finetune_stages", strategy == "finetune"), ("unfreeze_every", strategy == "gradual"),
                         ("backbone_lr_factor", strategy in ("finetune", "gradual"))):
            if name in self.editors:
                self.editors[name].set_enabled(on)
        self.val_editor.editor.setEnabled(self.holdout_radio.isChecked())
        self.k_spin.setEnabled(self.kfold_radio.isChecked())

    @property
    def kfold(self) -> int:
        """K of K-fold cross-validation, 0 for hold-out validation."""
        return self.k_spin.value() if self.kfold_radio.isChecked() else 0

    def weights_source(self) -> str:
        kind = self.weights_combo.currentData()
        return self._weights_path if kind in ("file", "model") else kind

    def set_weights_path(self, path: str) -> None:
        self._weights_path = path
        self.weights_edit.setText(path)

    def output_folder(self, ask_overwrite: Callable[[Path], bool]) -> Path | None:
        """The output folder of a new run: a new time-stamped one unless the user chose one; None
        (with a notification) when it cannot be used or ``ask_overwrite(folder)`` refuses a non-empty one."""
        if self.auto_out or not self.out_edit.text().strip():
            out = default_out()
            while out.exists():
                out = out.with_name(out.name + "-1")
            self.out_edit.setText(str(out))
            self.auto_out = True
            return out
        out = Path(self.out_edit.text().strip()).expanduser()
        if out.exists() and not out.is_dir():
            show_error(f"Cannot train into {out}: it is a file")
            return None
        try:
            non_empty = out.is_dir() and any(out.iterdir())
        except OSError as exc:
            show_error(f"Cannot use {out}: {exc.strerror or exc}")
            return None
        if non_empty and not ask_overwrite(out):
            return None
        return out

    def values(self) -> dict[str, Any]:
        """The configuration fields these sections show (raises ConfigError without weights)."""
        out: dict[str, Any] = {}
        for form in self.forms.values():
            out.update(form.values())
        weights = self.weights_source()
        if not weights:
            raise ConfigError("weights: choose a weights file or a GrainLab model folder")
        out["weights"] = weights
        out["val_fraction"] = self.val_editor.value() if self.holdout_radio.isChecked() else \
            self._fields["val_fraction"].default
        text = self.out_edit.text().strip()
        out["out"] = str(Path(text).expanduser()) if text else None
        return out

    def show_config(self, cfg: Any, kfold: int | None = None) -> None:
        """Show the values of ``cfg`` (and the validation mode: ``kfold`` K, 0 for hold-out)."""
        for form in self.forms.values():
            form.set_values(cfg)
        w = str(cfg.weights)
        if w.lower() in ("imagenet", "none"):
            self.weights_combo.setCurrentIndex(self.weights_combo.findData(w.lower()))
        elif self.weights_combo.findData(w) >= 0:  # a built-in model's name
            self.weights_combo.setCurrentIndex(self.weights_combo.findData(w))
        else:
            self.weights_combo.setCurrentIndex(self.weights_combo.findData("model" if Path(w).is_dir() else "file"))
            self.set_weights_path(w)
        self.val_editor.set_value(cfg.val_fraction)
        if cfg.out:
            self.out_edit.setText(str(cfg.out))
            self.auto_out = False
        if kfold is not None:
            (self.kfold_radio if kfold else self.holdout_radio).setChecked(True)
            if kfold:
                self.k_spin.setValue(int(kfold))
