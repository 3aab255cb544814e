"""The Synthesize dock (real napari viewers, pytest-qt)."""

from __future__ import annotations

import dataclasses
import gc
import json
import time

import numpy as np
import pytest

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from napari_grainlab.core.synthetic import (
    OpticalParams,
    ParameterError,
    SEMParams,
    SynthParams,
    TessellationParams,
    generate,
    param_fields,
)

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")]

WAIT_MS = 15_000


def small_params(**changes) -> SynthParams:
    p = SynthParams(height=128, width=128, tessellation=TessellationParams(grains=30))
    return dataclasses.replace(p, **changes)


def wait_preview(qtbot, widget) -> None:
    from napari_grainlab.gui.synthesize import PREVIEW_LABELS

    qtbot.waitUntil(lambda: not widget.preview_busy and PREVIEW_LABELS in widget.viewer.layers, timeout=WAIT_MS)


@pytest.fixture
def dock(viewer, qtbot):
    """The Synthesize dock in ``viewer``, showing the preview of 128 x 128 px parameters."""
    from napari_grainlab.gui.synthesize import SynthesizeWidget

    widget = SynthesizeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Synthesize")
    widget.set_params(small_params())
    wait_preview(qtbot, widget)
    return widget


def preview_layers(viewer):
    from napari_grainlab.gui.synthesize import PREVIEW_IMAGE, PREVIEW_LABELS

    return viewer.layers[PREVIEW_IMAGE], viewer.layers[PREVIEW_LABELS]


def wait_task(qtbot, task):
    qtbot.waitUntil(lambda: task.result is not None, timeout=WAIT_MS)
    return task.result


# --------------------------------------------------------------------------- the dock
def test_dock_opens_from_manifest_with_preview(viewer, qtbot):
    from napari_grainlab.gui.synthesize import SynthesizeWidget

    _dw, widget = viewer.window.add_plugin_dock_widget("napari-grainlab", "Synthesize")
    assert isinstance(widget, SynthesizeWidget)
    assert widget.minimumWidth() >= 380
    assert [s.text() for s in widget.sections.values()] == ["Image", "Grains", "SEM look", "Optical look",
                                                            "Tint etching look (colour)",
                                                            "Polarised light look (colour)", "EBSD IPF look (colour)"]
    # only the chosen style's look section shows (the default: SEM)
    assert not widget.sections["sem"].isHidden()
    assert all(widget.sections[k].isHidden() for k in ("optical", "tint", "polarized", "ebsd"))

    wait_preview(qtbot, widget)  # the default parameters: 512 x 512, 8 bit
    image, labels = preview_layers(viewer)
    assert image.data.shape == labels.data.shape == (512, 512)
    assert image.data.dtype == np.uint8 and labels.data.dtype == np.uint32
    assert tuple(image.contrast_limits) == (0, 255)
    assert image.metadata["grainlab"]["params"] == SynthParams().to_dict()
    assert labels.features["index"].tolist() == np.unique(labels.data[labels.data > 0]).tolist()
    assert "grains" in widget.status_label.text() and not widget.status_label.styleSheet()


def test_form_is_generated_from_field_metadata(dock):
    form = dock.forms["tessellation"]
    scalar = [f.name for f in param_fields(TessellationParams)]
    assert list(form.editors) == scalar
    # every scalar field of every section has an editor; nested sections have none
    defaults = SynthParams()
    top = [f.name for f in param_fields(SynthParams) if not dataclasses.is_dataclass(getattr(defaults, f.name))]
    assert list(dock.forms[""].editors) == top
    assert list(dock.forms["sem"].editors) == [f.name for f in param_fields(SEMParams)]

    meta = {f.name: f.metadata for f in param_fields(TessellationParams)}
    sigma = form.editors["size_sigma"].editor
    assert (sigma.minimum(), sigma.maximum(), sigma.singleStep()) == (0.0, 1.5, 0.05)
    assert meta["size_sigma"]["help"] in sigma.toolTip()
    method = form.editors["method"].editor
    assert [method.itemData(i) for i in range(method.count())] == list(meta["method"]["choices"])
    steps = form.editors["lloyd_steps"].editor
    assert (steps.minimum(), steps.maximum()) == (0, 50)
    # optional fields are switched on and off by their label
    assert form.editors["grains"].toggle is not None and form.editors["grains"].toggle.isChecked()
    assert not form.editors["mean_diameter"].toggle.isChecked()
    assert not form.editors["mean_diameter"].editor.isEnabled()


def test_set_params_round_trips_every_field(dock):
    p = SynthParams(
        height=200, width=150, style="optical", bit_depth=16, pixel_size=0.25,
        tessellation=TessellationParams(method="voronoi", grains=None, mean_diameter=17.5, periodic=True,
                                        lloyd_steps=3, twin_fraction=0.4, boundary_width=3),
        sem=SEMParams(edge_mode="groove", dose=1234.0, blur=2.5),
        optical=OpticalParams(line_width=2.2, missing_fraction=0.12, noise=0.03),
    )
    dock.set_params(p)
    assert dock.params() == p
    assert dock.sections["sem"].isHidden() and not dock.sections["optical"].isHidden()
    dock.set_params(SynthParams())
    assert dock.params() == SynthParams()


def test_changing_parameters_updates_preview(dock, qtbot):
    image, labels = preview_layers(dock.viewer)
    grains_before = len(np.unique(labels.data))
    before = image.data.copy()

    dock.forms[""].editors["width"].editor.setValue(160)
    qtbot.waitUntil(lambda: image.data.shape == (128, 160), timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    assert labels.data.shape == (128, 160)

    dock.forms["tessellation"].editors["grains"].editor.setValue(60)
    qtbot.waitUntil(lambda: len(np.unique(labels.data)) > grains_before + 20, timeout=WAIT_MS)

    style = dock.forms[""].editors["style"].editor
    style.setCurrentIndex(style.findData("optical"))
    assert dock.sections["sem"].isHidden() and not dock.sections["optical"].isHidden()
    qtbot.waitUntil(lambda: image.metadata["grainlab"]["params"]["style"] == "optical", timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    expected = generate(dock.params(), seed=dock.seed).image
    np.testing.assert_array_equal(image.data, expected)
    assert not np.array_equal(image.data[:, :128], before)
    # the layers were updated in place, not added again
    assert len(dock.viewer.layers) == 2


def test_only_the_latest_request_is_shown(dock, qtbot):
    image, _labels = preview_layers(dock.viewer)
    shown = []
    image.events.data.connect(lambda e: shown.append(image.metadata["grainlab"]["seed"]))
    for seed in range(1, 9):  # a burst of edits: each one supersedes the previous
        dock.set_seed(seed)
        dock.refresh_preview()
    wait_preview(qtbot, dock)
    assert image.metadata["grainlab"]["seed"] == 8
    np.testing.assert_array_equal(image.data, generate(dock.params(), seed=8).image)
    assert shown == [8]  # superseded results are dropped, never flashed on screen


def test_sixteen_bit_preview_resets_contrast(dock, qtbot):
    image, _labels = preview_layers(dock.viewer)
    bits = dock.forms[""].editors["bit_depth"].editor
    bits.setCurrentIndex(bits.findData(16))
    qtbot.waitUntil(lambda: image.data.dtype == np.uint16, timeout=WAIT_MS)
    assert tuple(image.contrast_limits) == (0, 65535)


def test_pixel_size_scales_preview(dock, qtbot):
    image, labels = preview_layers(dock.viewer)
    ps = dock.forms[""].editors["pixel_size"]
    ps.editor.setValue(0.5)
    ps.toggle.setChecked(True)
    qtbot.waitUntil(lambda: tuple(image.scale) == (0.5, 0.5), timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    assert tuple(labels.scale) == (0.5, 0.5)
    assert [str(u) for u in image.units] == ["micrometer", "micrometer"]
    assert dock.params().pixel_size == 0.5
    # the table is in µm: areas of the whole image add up to its physical area
    assert labels.features["area"].sum() == pytest.approx(128 * 128 * 0.25)

    ps.toggle.setChecked(False)  # unknown pixel size: back to pixels
    qtbot.waitUntil(lambda: tuple(image.scale) == (1, 1), timeout=WAIT_MS)
    assert [str(u) for u in labels.units] == ["pixel", "pixel"]


def test_grains_and_mean_diameter_are_exclusive(dock, qtbot):
    form = dock.forms["tessellation"]
    expected = dock.params().mean_diameter()
    form.editors["mean_diameter"].toggle.click()
    p = dock.params()
    assert p.tessellation.grains is None
    assert p.tessellation.mean_diameter == pytest.approx(expected, abs=0.01)
    assert not form.editors["grains"].toggle.isChecked()
    assert not form.editors["grains"].editor.isEnabled()
    wait_preview(qtbot, dock)
    assert not dock.status_label.styleSheet()

    form.editors["grains"].toggle.click()
    assert dock.params().tessellation.grains == p.n_grains()
    assert dock.params().tessellation.mean_diameter is None


def test_invalid_parameters_show_error_not_exception(dock, qtbot, notifications):
    image, labels = preview_layers(dock.viewer)
    data_before = image.data
    dock.forms["tessellation"].editors["grains"].editor.setValue(5000)  # 5000 * 16 px > 128 * 128
    qtbot.waitUntil(lambda: "tessellation.grains" in dock.status_label.text(), timeout=WAIT_MS)
    assert "#" in dock.status_label.styleSheet()  # shown in red
    with pytest.raises(ParameterError):
        dock.params()
    qtbot.wait(300)
    assert image.data is data_before and len(dock.viewer.layers) == 2
    assert not notifications.messages("error")

    dock.forms["tessellation"].editors["grains"].editor.setValue(40)
    qtbot.waitUntil(lambda: image.data is not data_before, timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    assert not dock.status_label.styleSheet() and "grains" in dock.status_label.text()


def test_invalid_change_discards_running_preview(dock, qtbot):
    image, _labels = preview_layers(dock.viewer)
    data_before = image.data
    dock.set_seed(99)
    dock.refresh_preview()  # a valid request is running ...
    dock.forms["tessellation"].editors["grains"].editor.setValue(5000)
    dock.refresh_preview()  # ... when the parameters become invalid: its result must not show
    qtbot.waitUntil(lambda: not dock.preview_busy, timeout=WAIT_MS)
    qtbot.wait(100)
    assert image.data is data_before
    assert "tessellation.grains" in dock.status_label.text()


def test_deleted_or_renamed_preview_layers(dock, qtbot):
    from napari_grainlab.gui.synthesize import PREVIEW_IMAGE, PREVIEW_LABELS

    viewer = dock.viewer
    image, labels = preview_layers(viewer)
    image.name = "my favourite preview"
    viewer.layers.remove(labels)
    dock.set_seed(5)
    qtbot.waitUntil(lambda: PREVIEW_LABELS in viewer.layers, timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    assert PREVIEW_IMAGE not in viewer.layers  # the renamed layer is still ours: updated in place
    assert image.metadata["grainlab"]["seed"] == 5 and len(viewer.layers) == 2

    viewer.layers.clear()
    dock.set_seed(6)
    qtbot.waitUntil(lambda: PREVIEW_IMAGE in viewer.layers and PREVIEW_LABELS in viewer.layers, timeout=WAIT_MS)


def test_live_preview_off(dock, qtbot):
    image, _labels = preview_layers(dock.viewer)
    dock.live_check.setChecked(False)
    dock.set_seed(42)
    qtbot.wait(400)
    assert image.metadata["grainlab"]["seed"] != 42
    dock.preview_button.click()
    qtbot.waitUntil(lambda: image.metadata["grainlab"]["seed"] == 42, timeout=WAIT_MS)


def test_dice_picks_a_new_seed(dock):
    seeds = set()
    for _ in range(3):
        dock.dice_button.click()
        seeds.add(dock.seed)
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)


def test_previews_are_generated_off_the_gui_thread_and_the_event_loop_keeps_running(dock, qtbot, monkeypatch):
    """Generating runs in a worker: the main thread keeps serving its event loop meanwhile. (How long the
    loop may stall is a speed target, measured by ``benchmarks/bench_gui_responsiveness.py --stalls``.)"""
    import threading

    from qtpy.QtCore import QTimer

    from napari_grainlab.gui.synthesize import preview as preview_module

    threads, ticks_during = [], []
    real = preview_module.generate
    ticks = []

    def generate(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        before = len(ticks)
        time.sleep(0.3)  # a slow generation: the GUI thread must go on ticking meanwhile
        out = real(*args, **kwargs)
        ticks_during.append(len(ticks) - before)
        return out

    monkeypatch.setattr(preview_module, "generate", generate)
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(5)
    try:
        for seed in (11, 12):
            dock.set_seed(seed)
            qtbot.waitUntil(lambda s=seed: preview_layers(dock.viewer)[0].metadata["grainlab"]["seed"] == s,
                            timeout=WAIT_MS)
    finally:
        timer.stop()
    assert threads and not any(threads), threads  # never on the GUI thread
    # the event loop served its timer while each generation ran (blocked, it would not tick at all)
    assert ticks_during and min(ticks_during) >= 5, ticks_during


def test_large_images_are_previewed_as_a_window_at_the_same_grain_size():
    from napari_grainlab.gui.synthesize import PREVIEW_MAX_PIXELS, preview_params

    small = small_params()
    assert preview_params(small) == (small, "")
    big = SynthParams(height=8192, width=4096, tessellation=TessellationParams(grains=5000))
    shown, note = preview_params(big)
    assert shown.height * shown.width <= PREVIEW_MAX_PIXELS
    assert shown.height / shown.width == pytest.approx(2.0, rel=0.01)
    assert shown.tessellation.grains is None
    assert shown.mean_diameter() == pytest.approx(big.mean_diameter())
    shown.validate()
    assert "8192 × 4096" in note


# ---------------------------------------------------------------------- datasets
def test_generate_dataset_writes_folder(dock, qtbot, tmp_path, notifications):
    import tifffile
    from napari.utils.progress import progress

    out = tmp_path / "synth"
    dock.ask_directory = lambda: out
    dock.count_spin.setValue(3)
    dock.generate_button.click()
    task = dock._task
    assert task is not None and not dock.generate_button.isEnabled() and dock.cancel_button.isEnabled()
    result = wait_task(qtbot, task)

    assert result.status == "completed", result
    images = sorted(p.name for p in (out / "images").glob("*.tif"))
    labels = sorted(p.name for p in (out / "labels").glob("*.tif"))
    assert len(images) == 3 and images == labels
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and meta["seed"] == dock.seed and meta["params"] == dock.params().to_dict()
    assert tifffile.imread(out / "images" / images[0]).shape == (128, 128)
    assert dock.progress_bar.value() == dock.progress_bar.maximum() == 3
    assert dock.generate_button.isEnabled() and not dock.cancel_button.isEnabled()
    assert "Wrote 3" in dock.dataset_label.text()
    assert any("Wrote 3 synthetic images" in m for m in notifications.messages("info"))
    assert not [p for p in progress._all_instances if p.desc.startswith("Writing")]  # activity bar closed


def test_non_empty_folder_asks_before_overwriting(dock, qtbot, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    asked = []
    dock.count_spin.setValue(2)

    dock.ask_overwrite = lambda folder: asked.append(folder) or False
    assert dock.generate_dataset(out) is None
    assert asked == [out] and sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    dock.ask_overwrite = lambda folder: asked.append(folder) or True
    result = wait_task(qtbot, dock.generate_dataset(out))
    assert result.status == "completed"
    assert len(list((out / "images").glob("*.tif"))) == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_cancel_stops_early_and_leaves_valid_files(dock, qtbot, tmp_path, notifications):
    import tifffile

    out = tmp_path / "cancelled"
    dock.set_params(small_params(height=256, width=256))
    dock.count_spin.setValue(200)
    task = dock.generate_dataset(out)
    task.yielded.connect(lambda _ev: dock.cancel_button.click() if dock.cancel_button.isEnabled() else None)
    result = wait_task(qtbot, task)

    assert result.status == "cancelled"
    images = sorted(p.stem for p in (out / "images").glob("*.tif"))
    labels = sorted(p.stem for p in (out / "labels").glob("*.tif"))
    assert 1 <= len(images) < 200 and images == labels
    assert result.progress.done == len(images)
    meta = json.loads((out / "dataset.json").read_text())
    assert not meta["complete"] and [it["name"] for it in meta["items"]] == images
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]
    for stem in images:
        assert tifffile.imread(out / "images" / f"{stem}.tif").shape == (256, 256)
        assert tifffile.imread(out / "labels" / f"{stem}.tif").max() > 0
    assert "Cancelled" in dock.dataset_label.text()
    assert any(f"{len(images)} of 200" in m for m in notifications.messages("info"))
    assert dock.cancel_button.text() == "Cancel" and not dock.cancel_button.isEnabled()


def test_dataset_error_becomes_notification(dock, qtbot, tmp_path, notifications):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    result = wait_task(qtbot, dock.generate_dataset(target))
    assert result.status == "failed"
    assert "not a folder" in str(result.error)
    assert any("not a folder" in m for m in notifications.messages("error"))
    assert "Failed" in dock.dataset_label.text() and dock.generate_button.isEnabled()


def test_invalid_parameters_block_dataset(dock, notifications, tmp_path):
    dock.forms["tessellation"].editors["grains"].editor.setValue(5000)
    dock.ask_directory = lambda: pytest.fail("no folder should be asked for")
    assert dock.generate_dataset() is None
    assert any("tessellation.grains" in m for m in notifications.messages("error"))


# --------------------------------------------------------------- parameter files
def test_save_and_load_parameters(dock, qtbot, tmp_path, notifications):
    path = tmp_path / "params"
    dock.set_params(small_params(style="optical", tessellation=TessellationParams(grains=44, twin_fraction=0.2)))
    saved = dock.params()
    dock.ask_save_path = lambda: path.with_suffix(".json")
    assert dock.save_parameters() == path.with_suffix(".json")
    assert SynthParams.load(path.with_suffix(".json")) == saved

    dock.reset_parameters()
    assert dock.params() == SynthParams()
    dock.ask_open_path = lambda: path.with_suffix(".json")
    assert dock.load_parameters() == saved
    assert dock.params() == saved
    wait_preview(qtbot, dock)
    assert preview_layers(dock.viewer)[0].metadata["grainlab"]["params"] == saved.to_dict()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tessellation": {"grains": -3}}))
    assert dock.load_parameters(bad) is None
    assert dock.params() == saved
    assert any("bad.json" in m for m in notifications.messages("error"))


def test_closing_the_dock_while_busy(viewer, qtbot, tmp_path):
    """Removing the dock while a preview and a dataset run stops them without errors (whether or not the
    binding destroys the removed widget: PySide6 keeps it while Python holds a reference)."""
    from napari_grainlab.gui.synthesize import SynthesizeWidget

    widget = SynthesizeWidget(viewer)
    dw = viewer.window.add_dock_widget(widget, name="Synthesize")
    widget.set_params(small_params(height=256, width=256))
    widget.count_spin.setValue(500)
    task = widget.generate_dataset(tmp_path / "closing")
    stop = task.stop_flag
    widget.refresh_preview()
    viewer.window.remove_dock_widget(dw)  # unparents the widget
    qtbot.waitUntil(stop.is_set, timeout=WAIT_MS)  # while the widget is still referenced here
    del widget, dw
    gc.collect()
    from napari.utils.progress import progress

    qtbot.waitUntil(lambda: not [p for p in progress._all_instances if p.desc.startswith("Writing")],
                    timeout=WAIT_MS)
    assert len(list((tmp_path / "closing" / "images").glob("*.tif"))) < 500


@pytest.mark.parametrize("style", ["tint", "ebsd"])
def test_colour_looks_preview_as_rgb_with_titled_sections(dock, qtbot, style):
    image, _labels = preview_layers(dock.viewer)
    assert not image.rgb
    titles = {key: box.text() for key, box in dock.sections.items()}
    for key, title in (("tint", "Tint etching look (colour)"), ("polarized", "Polarised light look (colour)"),
                       ("ebsd", "EBSD IPF look (colour)")):
        assert title in str(titles[key]), titles
    editor = dock.forms[""].editors["style"].editor
    editor.setCurrentIndex(editor.findData(style))
    assert not dock.sections[style].isHidden() and dock.sections["sem"].isHidden()
    qtbot.waitUntil(lambda: any(ly.rgb for ly in dock.viewer.layers if hasattr(ly, "rgb")), timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    image, labels = preview_layers(dock.viewer)
    expected = generate(dock.params(), seed=dock.seed).image
    assert image.rgb and image.data.shape == (128, 128, 3) and labels.data.shape == (128, 128)
    np.testing.assert_array_equal(image.data, expected)
    assert image.metadata["grainlab"]["role"] == "synthetic_image" and len(dock.viewer.layers) == 2
    # and back to grey: a grey layer again
    editor.setCurrentIndex(editor.findData("optical"))
    qtbot.waitUntil(lambda: not preview_layers(dock.viewer)[0].rgb, timeout=WAIT_MS)
    wait_preview(qtbot, dock)
    assert preview_layers(dock.viewer)[0].data.shape == (128, 128)


def test_preview_waits_for_the_labels_layer_modules(viewer, qtbot, monkeypatch):
    """While what napari's first Labels layer imports is still loading in the background, a finished preview
    is held (not shown by importing it on the GUI thread); the newest one appears once loading is done."""
    from napari_grainlab.gui.synthesize import PREVIEW_LABELS, SynthesizeWidget
    from napari_grainlab.gui.synthesize import dock as dock_module

    state = {"ready": False}
    monkeypatch.setattr(dock_module, "labels_layer_ready", lambda: state["ready"])
    widget = SynthesizeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Synthesize")
    widget.set_params(small_params())
    qtbot.waitUntil(lambda: widget._waiting_preview is not None, timeout=WAIT_MS)
    assert PREVIEW_LABELS not in viewer.layers
    assert widget.preview_busy and "Preparing" in widget.status_label.text()
    widget.set_seed(widget.seed + 1)  # a newer preview replaces the held one
    widget.refresh_preview()
    qtbot.waitUntil(lambda: widget._waiting_preview is not None and not widget._runner.is_busy, timeout=WAIT_MS)
    qtbot.wait(100)
    assert PREVIEW_LABELS not in viewer.layers
    state["ready"] = True
    wait_preview(qtbot, widget)
    assert widget._waiting_preview is None and not widget._layers_poll.isActive()
    newest = generate(small_params(), seed=widget.seed).labels
    np.testing.assert_array_equal(viewer.layers[PREVIEW_LABELS].data, newest)
    assert "Preview" in widget.status_label.text()
