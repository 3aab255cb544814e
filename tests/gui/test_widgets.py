"""The docks' shared styles and small widgets (gui/_widgets.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]


@pytest.mark.parametrize(("value", "digits", "text"), [
    (12.345, 3, "12.3"), (0.5, 3, "0.500"), (100.0, 3, "100"), (12345.6, 3, "12,346"), (7.2, 4, "7.200"),
    (None, 3, "—"), (math.nan, 3, "—"), (math.inf, 3, "—"), ("n/a", 3, "—"), (np.float32(2.5), 2, "2.5"),
])
def test_fmt_number(value, digits, text):
    from napari_grainlab.gui._widgets import fmt_number

    assert fmt_number(value, digits) == text


def test_show_status_colours_errors_only(qtbot):
    from napari_grainlab.gui._widgets import ERROR_STYLE, show_status, status_label

    label = status_label("Ready.")
    assert label.wordWrap() and label.text() == "Ready."
    show_status(label, "Failed: disk full", error=True)
    assert (label.text(), label.styleSheet()) == ("Failed: disk full", ERROR_STYLE)
    show_status(label, "Done")
    assert (label.text(), label.styleSheet()) == ("Done", "")


def test_section_starts_collapsed_unless_expanded(qtbot):
    from qtpy.QtWidgets import QLabel

    from napari_grainlab.gui._widgets import section

    assert not section("Advanced", QLabel("x")).isExpanded()
    assert section("Model", QLabel("x"), expanded=True).isExpanded()


def test_pixel_size_input_follows_the_layer_until_typed(qtbot):
    from napari.layers import Image

    from napari_grainlab.gui._widgets import PixelSizeInput

    pixel = PixelSizeInput("tip", missing="type it in")
    typed = []
    pixel.typed_changed.connect(lambda: typed.append(pixel.typed))
    with_size = Image(np.zeros((8, 8)), metadata={"grainlab": {"pixel_size_um": 0.25}})
    without = Image(np.zeros((8, 8)))

    pixel.show_layer(with_size)
    assert pixel.value == pytest.approx(0.25) and pixel.hint.text() == "from the layer metadata"
    pixel.show_layer(without)
    assert pixel.value is None and pixel.hint.text() == "type it in"
    pixel.show_layer(None)
    assert pixel.hint.text() == ""
    pixel.show_layer(with_size, note="each image's own")
    assert pixel.hint.text() == "each image's own"
    assert typed == []  # filling in from a layer is not typing

    pixel.set_value(0.5)
    assert pixel.typed and typed == [True] and pixel.hint.text() == "typed in"
    pixel.show_layer(without)  # a typed value wins
    assert pixel.value == pytest.approx(0.5) and pixel.hint.text() == "typed in"
    pixel.set_value(None)
    assert not pixel.typed and typed == [True, False]
    pixel.show_layer(with_size)
    assert pixel.value == pytest.approx(0.25)


def test_napari_theme(qtbot):
    from napari_grainlab.gui._widgets import napari_theme

    assert napari_theme("dark").id == "dark"
    assert napari_theme("no such theme") is None
