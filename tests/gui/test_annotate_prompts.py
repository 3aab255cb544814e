"""The Annotate dock's model-backed Grain / Box / Stroke tools, the uncertainty layer and Next uncertain region
(pytest-qt; run under xvfb-run)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_grainlab.core import annotate as core
from napari_grainlab.core.synthetic import SynthParams, generate

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(core.AUTOSAVE_ENV, str(tmp_path / "autosave"))
    monkeypatch.setenv("GRAINLAB_CONFIG_DIR", str(tmp_path / "config"))


def _sample(side=224, diameter=48, seed=5):
    p = SynthParams()
    p.width = p.height = side
    p.tessellation.grains = None
    p.tessellation.mean_diameter = diameter
    return generate(p, seed=seed)


def _mouse(layer, kind, position, modifiers=()):
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    event = SimpleNamespace(type=kind, is_dragging=kind == "mouse_move", position=tuple(float(p) for p in position),
                            button=1, buttons=[1], modifiers=list(modifiers), handled=False, pos=np.zeros(2),
                            view_direction=None, dims_displayed=[0, 1], delta=np.zeros(2))
    event = ReadOnlyWrapper(event, exceptions=("handled",))
    {"mouse_press": mouse_press_callbacks, "mouse_move": mouse_move_callbacks,
     "mouse_release": mouse_release_callbacks}[kind](layer, event)


def _click(layer, position, modifiers=()):
    _mouse(layer, "mouse_press", position, modifiers)
    _mouse(layer, "mouse_release", position, modifiers)


def _drag(layer, points):
    _mouse(layer, "mouse_press", points[0])
    for p in points[1:]:
        _mouse(layer, "mouse_move", p)
    _mouse(layer, "mouse_release", points[-1])


def _centre(mask):
    return np.unravel_index(int(np.argmax(ndi.distance_transform_edt(mask))), mask.shape)


@pytest.fixture
def dock(viewer, qtbot):
    from napari_grainlab.gui.annotate import AnnotateWidget

    s = _sample()
    viewer.add_image(s.image, name="sem")
    widget = AnnotateWidget(viewer)
    widget.ask_unsaved = lambda: "discard"
    viewer.window.add_dock_widget(widget, name="Annotate", area="right")
    qtbot.waitUntil(lambda: not widget.attach_pending, timeout=20000)
    widget.truth = s.labels
    return widget


def _ready(dock, qtbot):
    qtbot.waitUntil(lambda: dock.prompts.segmenter is not None or not dock.prompts.busy, timeout=90_000)
    assert dock.prompts.segmenter is not None, dock.prompts.status_label.text()
    return dock.prompts.segmenter


def test_grain_tool_clicks_add_and_remove_model_grains_with_undo(dock, viewer, qtbot, notifications):
    labels = dock.labels_layer
    assert dock.proposals.model_edit.text() == "generalist"
    dock.set_tool("grain")  # choosing the tool starts predicting the maps in the background
    assert labels.mode == "pan_zoom" and labels.mouse_pan
    assert dock.prompts.busy or dock.prompts.segmenter is not None
    seg = _ready(dock, qtbot)
    assert "Maps ready" in dock.prompts.status_label.text() and "grain diameter ≈" in dock.prompts.status_label.text()
    truth = dock.truth
    sizes = np.bincount(truth.ravel())
    g = int(np.argmax(sizes[1:])) + 1  # the largest true grain (the core tests score the clicks)
    y, x = _centre(truth == g)
    _click(labels, (y, x))
    assert labels.data.max() == 1 and np.array_equal(labels.data == 1, seg.grain_at(y, x))
    assert labels.data[y, x] == 1 and (labels.data == 1).sum() > 100
    # a second click, on a pixel the first grain does not cover
    free = (labels.data == 0) & (truth > 0)
    y2, x2 = _centre(free & (truth == np.bincount(truth[free]).argmax()))
    _click(labels, (y2, x2))
    assert set(np.unique(labels.data)) == {0, 1, 2}
    labels.undo()  # each click is one undo step
    assert set(np.unique(labels.data)) == {0, 1}
    _click(labels, (y, x), modifiers=["Shift"])  # shift-click removes the grain
    assert not labels.data.any()
    labels.undo()
    assert (labels.data == 1).any()
    assert not notifications.messages("error")


def test_box_and_stroke_tools(dock, viewer, qtbot):
    labels = dock.labels_layer
    dock.set_tool("box")
    assert not labels.mouse_pan  # dragging draws the box, it does not pan
    seg = _ready(dock, qtbot)
    _drag(labels, [(20, 20), (120, 110), (200, 200)])
    added = len(np.unique(labels.data)) - 1
    expected = int(seg.grains_in_box(20, 20, 200, 200).max())
    assert added == expected >= 3
    line = [ly for ly in viewer.layers if ly.metadata.get("grainlab", {}).get("role") == "split_line"]
    assert line and len(line[0].data) == 0  # the drawn box is cleared after the drag
    labels.undo()
    assert not labels.data.any()
    # Stroke: merge two neighbouring annotated grains by drawing from one into the other
    data = dock.truth.astype(np.uint32)
    dock._apply_edit(core.LabelEdit.between(labels.data, data))
    a = int(data[_centre(data > 0)])
    b = next(int(v) for v in np.unique(data[ndi.binary_dilation(data == a, iterations=2)]) if v not in (0, a))
    dock.set_tool("stroke")
    _drag(labels, [_centre(data == a), _centre(data == b)])
    assert not (labels.data == b).any() and (labels.data == a).sum() == ((data == a) | (data == b)).sum()


def test_uncertainty_layer_and_next_region(dock, viewer, qtbot):
    from napari_grainlab.gui._layers import is_prediction, role_of

    labels = dock.labels_layer
    assert dock.prompts.show_uncertainty() is None  # starts the maps first
    _ready(dock, qtbot)
    layer = dock.prompts.show_uncertainty()
    assert layer is not None and role_of(layer) == "uncertainty" and is_prediction(layer)
    assert layer.name == "sem uncertainty" and layer.data.shape == labels.data.shape
    where = dock.prompts.next_uncertain()
    assert where is not None
    camera = viewer.scene.camera if hasattr(getattr(viewer, "scene", None), "camera") else viewer.camera
    centre = np.asarray(camera.center)[-2:]
    assert np.allclose(centre, labels.data_to_world(np.asarray(where, float))[-2:])
    # annotate everything: nothing uncertain is left to visit
    dock._apply_edit(core.LabelEdit.between(labels.data, np.ones(labels.data.shape, np.uint32)))
    assert dock.prompts.next_uncertain() is None
    # leaving the image removes the layer and forgets the maps
    viewer.layers.remove(viewer.layers["sem"])
    assert dock.prompts.uncertainty_layer is None and dock.prompts.segmenter is None


def test_a_missing_model_is_one_clear_message(dock, qtbot, notifications):
    dock.proposals.model_edit.setText("/no/such/model")
    dock.set_tool("grain")
    assert any("no model at" in m for m in notifications.messages())
    assert dock.prompts.segmenter is None and not dock.prompts.busy


def test_retrain_keeps_rounds_and_makes_the_new_model_current(dock, viewer, qtbot, notifications):
    from napari_grainlab.core.retrain import RoundStore

    labels = dock.labels_layer
    panel = dock.retrain_panel
    assert panel.retrain() is None  # nothing annotated yet: one clear message
    assert any("nothing to retrain on" in m for m in notifications.messages())
    truth = dock.truth.astype(np.uint32)
    truth[:, 112:] = 0  # half the image annotated
    dock._apply_edit(core.LabelEdit.between(labels.data, truth))
    panel.form.set_field("epochs", 1)
    panel.form.set_field("steps_per_epoch", 2)
    dock.set_tool("grain")
    _ready(dock, qtbot)
    task = panel.retrain()
    assert task is not None and panel.busy and not panel.retrain_button.isEnabled()
    qtbot.waitUntil(lambda: task.result is not None, timeout=180_000)
    assert task.result.status == "completed", task.result.error
    rounds = RoundStore(panel.rounds_folder()).rounds()
    assert [r.number for r in rounds] == [1] and rounds[0].images == [dock.name]
    assert dock.proposals.model_edit.text() == rounds[0].path  # the new round is the current model
    assert "round 1" in panel.status_label.text()
    assert panel.round_combo.count() == 2 and panel.round_combo.currentData() == rounds[0].path
    # the Grain tool's maps are predicted again with the new model
    qtbot.waitUntil(lambda: dock.prompts.segmenter is not None, timeout=90_000)
    assert dock.prompts.segmenter.model_name == rounds[0].path
    # go back to the starting model
    panel.round_combo.setCurrentIndex(0)
    panel._on_round_chosen(0)
    assert dock.proposals.model_edit.text() == "generalist"
    assert len(notifications.messages("error")) == 1  # only the one about nothing annotated


def test_from_model_uses_the_grain_tools_maps_and_gives_what_the_model_run_gives(dock, viewer, qtbot):
    """With the maps of this image, model and diameter predicted, *From model* shows their grains at once
    (no second prediction); they are what the model run gives without the maps."""
    props = dock.proposals
    task = props.propose_from_model()  # no maps yet: the model runs in a worker
    assert task is not None
    qtbot.waitUntil(lambda: not props.busy and props.proposal_layer is not None, timeout=90_000)
    from_run = np.array(props.proposal_layer.data)
    dock.set_tool("grain")
    seg = _ready(dock, qtbot)
    assert props.propose_from_model() is None  # answered at once, no worker
    assert not props.busy
    shown = np.array(props.proposal_layer.data)
    assert np.array_equal(shown, seg.labels)
    assert np.array_equal(shown, from_run)
    assert "Grain tool's maps" in props.proposal_label.text() and "grain diameter" in props.proposal_label.text()
    # another diameter: other maps, so the model runs again
    props.diameter_form.editors["diameter"].set_value(float(seg.diameter or 30) * 1.5)
    assert dock.prompts.segmenter is None
    task = props.propose_from_model()
    assert task is not None
    qtbot.waitUntil(lambda: not props.busy, timeout=90_000)
