"""The Train dock's option sections come from the TrainConfig field metadata, and its layer
pairing follows the layer roles (real napari viewers, pytest-qt)."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from napari_grainlab.core._schema import field_kind, option
from napari_grainlab.core.training import TrainConfig

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]


@pytest.fixture
def dock(viewer, qtbot):
    from napari_grainlab.gui.train import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    return widget


def shown_fields(cls=TrainConfig) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("widget") != "hidden"]


def check_range(ed) -> None:
    """The spin box of ``ed`` spans exactly the field's declared range (in displayed units)."""
    meta, box = ed.field.metadata, ed.editor
    scale = meta.get("scale") or 1
    if meta.get("max") is not None:
        hi = meta["max"] * scale
        if meta.get("max_open"):
            assert hi - 0.02 < box.maximum() < hi, ed.name
        else:
            assert box.maximum() == pytest.approx(hi), ed.name
    if meta.get("min") is not None:
        lo = meta["min"] * scale
        if ed.none_at_minimum:  # one step below the range shows None ("auto")
            assert box.minimum() < lo and box.specialValueText() == meta["special"], ed.name
            box.setValue(box.minimum())
            assert ed.value() is None
            ed.set_raw_value(meta["min"])
            assert box.value() == pytest.approx(lo) and ed.value() == meta["min"], ed.name
        elif meta.get("min_open"):
            assert lo < box.minimum() < lo + 0.02, ed.name
        else:
            assert box.minimum() == pytest.approx(lo), ed.name


def other_value(cls, f: dataclasses.Field):
    """A valid value of ``f`` other than its default (the top of its range, another choice, ...)."""
    meta = f.metadata
    kind, _optional, is_tuple = field_kind(cls, f.name)
    if is_tuple:
        return tuple(meta["choices"])
    if meta.get("choices") is not None:
        return next(c for c in reversed(meta["choices"]) if c != f.default)
    if meta.get("suggest") is not None:
        return next(c for c in reversed(meta["suggest"]) if c != f.default)
    if kind is bool:
        return not f.default
    if meta.get("max") is not None and not meta.get("max_open"):
        return meta["max"]
    return (meta.get("min") or 0) + (1 if kind is int else 0.25)


def test_every_shown_option_has_an_editor_with_its_range_and_round_trips(dock):
    from qtpy.QtWidgets import QAbstractSpinBox, QComboBox

    fields = shown_fields()
    assert fields and {"lr", "augment", "dropout", "device", "steps_per_epoch"} <= {f.name for f in fields}
    # the fields the dock shows itself (weights, validation, synthetic data, output) are hidden from the forms
    assert set(dock.editors) == {f.name for f in fields}
    for f in fields:
        ed = dock.editors[f.name]
        meta = f.metadata
        if isinstance(ed.editor, QAbstractSpinBox):
            check_range(ed)
            assert ed.editor.suffix() == (meta.get("suffix") or "") and ed.editor.prefix() == (meta.get("prefix") or "")
        elif isinstance(ed.editor, QComboBox):
            items = [ed.editor.itemData(i) for i in range(ed.editor.count())]
            assert items == list(meta.get("choices") or meta.get("suggest")), f.name
            assert ed.editor.isEditable() == (meta.get("choices") is None), f.name
        if meta.get("help"):
            assert html.escape(meta["help"]) in ed.editor.toolTip(), f.name

    for f in fields:
        value = other_value(TrainConfig, f)
        dock.set_config(**{f.name: value})
        got = getattr(dock.config(), f.name)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), f.name
        dock.set_config(**{f.name: f.default})
        assert getattr(dock.config(), f.name) == f.default, f.name
    # the editors follow the metadata's widget hints
    from napari_grainlab.gui._forms import CheckList, LogSpinBox

    assert isinstance(dock.editors["lr"].editor, LogSpinBox)
    assert isinstance(dock.editors["augment"].editor, CheckList)
    dock.set_config(augment=())
    assert dock.config().augment == ()
    dock.set_config(device="cuda:1", steps_per_epoch=None)  # the device box takes any cuda:N
    assert dock.config().device == "cuda:1" and dock.config().steps_per_epoch is None
    assert dock.editors["steps_per_epoch"].editor.text() == "auto"


def test_item_tooltips_come_from_the_descriptions(dock):
    from qtpy.QtCore import Qt

    from napari_grainlab.core.training.config import AUGMENT_HELP, DEVICE_HELP

    device = dock.editors["device"].editor
    for i in range(device.count()):
        tip = device.itemData(i, Qt.ItemDataRole.ToolTipRole)
        key = device.itemData(i)
        assert DEVICE_HELP[key][1:] in tip or f"no {DEVICE_HELP[key]} on this machine" == tip
    boxes = dock.editors["augment"].editor.checks
    assert AUGMENT_HELP["noise"] in boxes["noise"].toolTip()


def test_a_new_option_with_metadata_appears_without_dock_code(viewer, qtbot, monkeypatch):
    from napari_grainlab.gui.train import TrainWidget

    @dataclass
    class MoreConfig(TrainConfig):
        ema_decay: float = option(0.0, min=0.0, max=0.999, step=0.001, group="Regularisation",
                                  help="exponential moving average of the weights")
        jitter: int = option(4, min=0, max=64, suffix=" px", group="Validation", help="tile jitter")
        probe: bool = option(False, group="Experimental", help="a group of its own")
        note: str = option("", widget="hidden", help="not in the dock")

    monkeypatch.setattr(TrainWidget, "config_class", MoreConfig)
    dock = TrainWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Train")
    assert {"ema_decay", "jitter", "probe"} <= set(dock.editors) and "note" not in dock.editors
    assert "ema_decay" in dock.options.forms["regularisation"].editors
    assert "jitter" in dock.options.forms["validation"].editors
    assert dock.sections["experimental"].text() == "Experimental"
    assert dock.editors["ema_decay"].editor.maximum() == pytest.approx(0.999)
    assert dock.editors["jitter"].editor.suffix() == " px"
    dock.set_config(ema_decay=0.5, jitter=64, probe=True)
    cfg = dock.config()
    assert isinstance(cfg, MoreConfig)
    assert (cfg.ema_decay, cfg.jitter, cfg.probe) == (pytest.approx(0.5), 64, True)
    with pytest.raises(ValueError, match="jitter"):
        dock.set_config(jitter=65)  # the range is the configuration's


def test_layer_roles_decide_the_pairs(viewer, dock):
    from napari_grainlab.gui._layers import role_metadata

    image = np.zeros((64, 64), np.uint8)
    labels = np.ones((64, 64), np.uint32)
    viewer.add_image(image, name="a")
    viewer.add_image(image, name="b")
    viewer.add_labels(labels, name="my work", metadata=role_metadata("annotation", source="a"))
    viewer.add_labels(labels, name="a proposal", metadata=role_metadata("proposal", source="a"))
    viewer.add_labels(labels, name="stale", metadata=role_metadata("annotation", source="renamed away"))
    viewer.add_labels(labels, name="a grains")  # the user's own layer: by name
    viewer.add_labels(labels, name="hand made")  # by shape: the topmost image
    pairs = {p.labels.name: p.image.name for p in dock.pairs}
    assert pairs == {"my work": "a", "stale": "b", "a grains": "a", "hand made": "b"}
    assert "a proposal" not in pairs  # proposals are not training data
    assert dock.pair_list.count() == 4
