"""The *Annotate* dock: label grains by hand, helped by proposals, and never lose the work.

Pick an image layer; the dock attaches a grain Labels layer ``NAME annotation`` (0 = not
annotated, ignored by training), reloading the labels saved for ``NAME`` in the dataset folder
or the autosave folder.

* **Tools**: napari's own paint / fill / erase / pick modes, plus *Merge* (click two grains),
  *Split* (drag a line across a grain), *Delete* (click a grain) and *Fill holes*.  Every edit
  is one step of napari's Labels history, so Ctrl+Z / Ctrl+Shift+Z undo and redo it.
* **Propose grains**: the classical pipeline (smoothing, ridge / edge filter, marker watershed;
  sliders with a live, debounced preview computed off the GUI thread) or a trained model (in a
  worker).  A proposal is shown as contours in the layer ``NAME proposal`` and put into the
  annotation only on *Apply*, by default into the unannotated pixels only, as one undoable step.
* **Classification**: the class of the whole image, and / or class regions painted into the
  Labels layer ``NAME classes``; saved as ``classes.json`` + a region mask, exported as
  ``CLASS/NAME.tif`` and ``CLASS/NAME_rR_cC.tif`` tiles (see :mod:`napari_grainlab.core.annotate`).
* **Saving**: to a dataset folder (``images/NAME.tif`` + ``labels/NAME.tif``), atomically;
  autosave every N seconds when something changed and when the image layer is switched (to the
  dataset folder, or without one to :func:`~napari_grainlab.core.annotate.autosave_dir`);
  closing the dock or the viewer with unsaved changes asks Save / Discard / Cancel.

The dialogs are methods (:meth:`AnnotateWidget.ask_directory`, :meth:`~AnnotateWidget.ask_unsaved`,
:meth:`~AnnotateWidget.ask_checkpoint`) that scripts and tests may replace.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QLabeledDoubleSlider, QLabeledSlider

from ...core import annotate as core
from ...core.data.io import DataError, normalize_intensity, to_grayscale
from .._engine import ensure_engine
from .._forms import ComboBox, SpinBox
from .._layers import layer_pixel_size
from ..workers import GeneratorTask, LatestOnlyRunner, TaskProgress, TaskResult, report_error, shutdown_on_destroy

if TYPE_CHECKING:
    import napari

__all__ = ["AnnotateWidget", "ClassicalSettings", "TOOLS"]

#: tool key -> (button text, napari Labels mode or None for the dock's own tools, help text)
TOOLS: dict[str, tuple[str, str | None, str]] = {
    "pan": ("Pan", "pan_zoom", "Pan and zoom; hover a grain to see its id."),
    "paint": ("Paint", "paint", "Paint the selected id (New id: an unused one). Brush size below."),
    "fill": ("Fill", "fill", "Flood-fill the clicked region with the selected id."),
    "erase": ("Erase", "erase", "Erase to 0 (not annotated)."),
    "pick": ("Pick", "pick", "Click a grain to select its id for painting."),
    "merge": ("Merge", None, "Click a grain, then a second one: the second joins the first."),
    "split": ("Split", None, "Drag a line across a grain to cut it in two."),
    "delete": ("Delete", None, "Click a grain to delete it (back to not annotated)."),
}
CUSTOM_TOOLS = tuple(k for k, (_, mode, _) in TOOLS.items() if mode is None)
NEW_LAYER = "New layer"
NO_CLASS = "—"
DEBOUNCE_MS = 200
STATS_DELAY_MS = 150
#: above this many pixels the grain count is computed in a worker thread
SYNC_STATS_PIXELS = 2**20
MERGE_BRIDGE_PX = 2
SPLIT_LINE = "split line"
#: the classification dataset inside the dataset folder (class folders must not sit next to
#: images/ and labels/, which the classification loader would take for classes)
CLASSIFICATION_DIR = "classification"
ERROR_STYLE = "color: #f0524f;"


# ============================================================================ helpers
@dataclass(frozen=True)
class ClassicalSettings:
    """Slider values of the classical proposal (see :func:`~napari_grainlab.core.inference.classical_grains`)."""

    smoothing: float = 1.5
    ridge_scale: float = 1.0
    edge_weight: float = 0.5
    threshold: float = 0.8
    h: float = 2.0
    min_size: int = 30
    polarity: str = "auto"

    def kwargs(self) -> dict[str, Any]:
        s = float(self.ridge_scale)
        return dict(smoothing=float(self.smoothing), ridge_sigma=(s, 2 * s), polarity=self.polarity,
                    edge_weight=float(self.edge_weight), threshold=float(self.threshold), h=float(self.h),
                    min_size=int(self.min_size))


#: (field, label, minimum, maximum, decimals, tooltip)
SLIDERS = (
    ("smoothing", "Smoothing", 0.0, 5.0, 1, "Gaussian pre-smoothing (px); raise it for noisy images"),
    ("ridge_scale", "Line width", 0.5, 6.0, 1,
     "scale (px) of the ridge filter: about half the width of the boundary lines (also twice this)"),
    ("edge_weight", "Edge weight", 0.0, 2.0, 2,
     "share of the intensity step (gradient) in the boundary map; raise it when grains differ in "
     "brightness but boundaries show no line"),
    ("threshold", "Threshold", 0.2, 2.0, 2,
     "grain interiors are where the boundary map is below this times its Otsu level; lower it when "
     "grains leak into each other"),
    ("h", "Marker depth", 0.5, 10.0, 1,
     "depth (px) of the distance maxima that seed grains; raise it when large grains are split, lower "
     "it when touching grains merge"),
    ("min_size", "Min. size", 0, 500, 0, "grains smaller than this (px) join their neighbour"),
)


def classical_job(gray: np.ndarray, settings: ClassicalSettings) -> tuple[np.ndarray, float]:
    """Worker body of the classical proposal: labels and seconds taken."""
    from ...core.inference import classical_grains

    t0 = time.perf_counter()
    labels, _ridge = classical_grains(gray, **settings.kwargs())
    return labels, time.perf_counter() - t0


def model_job(checkpoint: str, gray: np.ndarray, *, stop) -> Any:
    """Worker body of the model proposal (a generator for :class:`GeneratorTask`)."""
    from ...core.inference.tiling import Cancelled

    yield TaskProgress(0, None, "loading the model")
    try:
        return core.propose_from_model(checkpoint, gray, stop=stop.is_set)
    except Cancelled:
        return None


def stats_job(data: np.ndarray, saved: np.ndarray | None) -> tuple[int, float, bool]:
    """Grain count, annotated fraction and whether ``data`` differs from ``saved``."""
    n, frac = core.annotation_stats(data)
    dirty = saved is None or saved.shape != data.shape or not np.array_equal(data, saved)
    return n, frac, dirty


def ordered_write(state: dict[str, Any], seq: int, *args: Any) -> Path | None:
    """:func:`write_job` for snapshot number ``seq``, one write at a time; a snapshot older than
    the one already written is skipped (returns None), so a slow autosave never overwrites a
    newer save. ``state`` holds the lock and the number written last (no Qt objects: it is
    used from worker threads)."""
    with state["lock"]:
        if seq < state["written"]:
            return None
        folder = write_job(*args)
        state["written"] = seq
        return folder


def write_job(folder: Path, name: str, image: np.ndarray, labels: np.ndarray | None,
              classes: core.ClassAnnotation | None, pixel_size: float | None) -> Path:
    """Worker body of a save (also used synchronously): the grain labels (when there are any,
    or were before), then the classification work into ``FOLDER/classification/``."""
    if labels is not None and (labels.any() or core.load_segmentation(folder, name) is not None):
        core.save_segmentation(folder, name, image, labels, pixel_size=pixel_size)
    if classes is not None:
        core.save_class_annotation(folder / CLASSIFICATION_DIR, name, image, classes, pixel_size=pixel_size)
    return folder


def _guarded(context: str) -> Callable:
    """Slot decorator: expected errors become a notification, nothing escapes to Qt."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def inner(self, *args, **kwargs):
            try:
                return func(self, *args, **kwargs)
            except (ValueError, OSError) as exc:  # DataError is a ValueError
                show_error(f"{context}: {exc}")
            except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into Qt
                report_error(exc, context)
            return None

        return inner

    return wrap


def _hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def _section(title: str, widget: QWidget, expanded: bool) -> QCollapsible:
    section = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
    section.setDuration(120)
    section.addWidget(widget)
    if expanded:
        section.expand(animate=False)
    return section


class _CloseFilter(QObject):
    """Event filter on napari's main window: ask before it closes with unsaved work."""

    def __init__(self, widget: AnnotateWidget) -> None:
        super().__init__(widget)
        self._widget = weakref.ref(widget)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Close:
            widget = self._widget()
            if widget is not None and not widget.confirm_close():
                event.ignore()
                return True
        return False


# ============================================================================== widget
class AnnotateWidget(QWidget):
    """Dock for annotating grains (segmentation) and classes (classification).

    Public methods drive the dock from scripts and tests: :meth:`attach`, :meth:`set_tool`,
    :meth:`merge`, :meth:`split`, :meth:`delete`, :meth:`fill_holes`, :meth:`propose`,
    :meth:`apply_proposal`, :meth:`save`, :meth:`autosave`, :meth:`reload`.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # napari hands plugin docks a proxy of the viewer whose layers are fresh proxies on every
        # access; the dock keeps weak references to and identities of layers, so it needs the
        # real objects
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.setMinimumWidth(340)
        self._image_ref: weakref.ref | None = None
        self._labels_ref: weakref.ref | None = None
        self._proposal_ref: weakref.ref | None = None
        self._classes_ref: weakref.ref | None = None
        self._line_ref: weakref.ref | None = None
        self.name = ""
        self._base_name = ""
        self._gray: np.ndarray | None = None  # float32 [0, 1] for the proposals
        self._store: np.ndarray | None = None  # the 2-D image written to images/
        self._pixel_size: float | None = None
        self._saved: np.ndarray | None = None  # labels as last written (anywhere)
        self._saved_classes: tuple | None = None
        self._in_dataset = False  # the last write went to the dataset folder
        self.folder: Path | None = None
        self.last_saved: Path | None = None
        self._dirty = False
        self._tool = "pan"
        self._merge_first: int | None = None
        self._autosave_worker = None
        self._model_task: GeneratorTask | None = None
        self._proposal_generation = 0  # bumped when the image changes: older model proposals are dropped
        self._writes: dict[str, Any] = {"lock": threading.Lock(), "written": 0}
        self._write_seq = 0  # snapshot numbers of saves and autosaves
        self._recorded_seq = 0  # the newest snapshot recorded as saved
        self._torn_down = False
        self._syncing = False
        self._dock_hooked = False
        self._docked = False
        self._main_window: weakref.ref | None = None
        self.proposals_shown = 0

        self._build()

        self._stats_timer = QTimer(self)
        self._stats_timer.setSingleShot(True)
        self._stats_timer.setInterval(STATS_DELAY_MS)
        self._stats_timer.timeout.connect(self._refresh_stats)
        self._stats_runner = LatestOnlyRunner(self)
        self._stats_runner.result.connect(self._show_stats)
        self._proposal_debounce = QTimer(self)
        self._proposal_debounce.setSingleShot(True)
        self._proposal_debounce.setInterval(DEBOUNCE_MS)
        self._proposal_debounce.timeout.connect(self.propose)
        self._proposal_runner = LatestOnlyRunner(self)
        self._proposal_runner.result.connect(self._show_proposal)
        self._proposal_runner.failed.connect(self._proposal_failed)
        self._proposal_runner.busy_changed.connect(self._on_proposal_busy)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self._on_autosave_timer)
        self._restart_autosave_timer()
        self._set_classes([])

        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layer_removed)
        self._close_filter = _CloseFilter(self)  # installed on napari's main window once docked
        self.destroyed.connect(shutdown_on_destroy(self._stats_runner, self._proposal_runner))

        self._watch_names()
        self._refresh_layer_choices()
        self._update_tool_help()
        self._show_stats((0, 0.0, False))
        if self._combo_layer(self.image_combo, Image) is not None:
            self._on_image_chosen()

    # ===================================================================== layout
    def _build(self) -> None:
        # --- layers
        self.image_combo = ComboBox()
        self.image_combo.setToolTip("the micrograph to annotate (a 2-D grayscale image; RGB is annotated as gray)")
        self.image_combo.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.image_combo.setMinimumContentsLength(8)
        self.image_combo.activated.connect(self._on_image_chosen)
        self.labels_combo = ComboBox()
        self.labels_combo.setToolTip(f"the grain Labels layer; '{NEW_LAYER}' creates 'NAME annotation' "
                                     "(with the saved labels when there are any)")
        self.labels_combo.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.labels_combo.setMinimumContentsLength(8)
        self.labels_combo.activated.connect(self._on_labels_chosen)
        layer_form = QFormLayout()
        layer_form.setContentsMargins(0, 0, 0, 0)
        layer_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layer_form.addRow("Image", self.image_combo)
        layer_form.addRow("Grains", self.labels_combo)
        self.stats_label = QLabel()
        self.stats_label.setToolTip("grains in the annotation and the share of annotated (nonzero) pixels")
        font = self.stats_label.font()
        font.setBold(True)
        self.stats_label.setFont(font)
        self.state_label = QLabel()
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        stats_row = QHBoxLayout()
        stats_row.addWidget(self.stats_label, 1)
        stats_row.addWidget(self.state_label)

        # --- tools
        tools = QWidget()
        tools_layout = QVBoxLayout(tools)
        tools_layout.setContentsMargins(0, 0, 0, 0)
        grid = QGridLayout()
        grid.setSpacing(3)
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, (key, (text, mode, help_text)) in enumerate(TOOLS.items()):
            button = QPushButton()
            button.setText(text)
            button.setCheckable(True)
            button.setToolTip(help_text)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            button.clicked.connect(functools.partial(self.set_tool, key))
            self.tool_group.addButton(button)
            self.tool_buttons[key] = button
            grid.addWidget(button, i // 4, i % 4)
        self.tool_buttons["pan"].setChecked(True)
        tools_layout.addLayout(grid)
        self.tool_help = QLabel()
        self.tool_help.setWordWrap(True)
        self.tool_help.setStyleSheet("color: palette(mid);")
        tools_layout.addWidget(self.tool_help)
        self.brush_spin = SpinBox()
        self.brush_spin.setRange(1, 200)
        self.brush_spin.setValue(10)
        self.brush_spin.setToolTip("brush size (px) for Paint and Erase")
        self.brush_spin.valueChanged.connect(self._on_brush)
        self.new_id_button = QPushButton("New id")
        self.new_id_button.setToolTip("select an unused grain id for painting a new grain")
        self.new_id_button.clicked.connect(self.select_new_id)
        self.holes_button = QPushButton("Fill holes")
        self.holes_button.setToolTip("give unannotated holes enclosed by one grain to that grain")
        self.holes_button.clicked.connect(self.fill_holes)
        brush_row = QHBoxLayout()
        brush_label = QLabel("Brush")
        brush_label.setToolTip(self.brush_spin.toolTip())
        brush_row.addWidget(brush_label)
        brush_row.addWidget(self.brush_spin, 1)
        brush_row.addWidget(self.new_id_button)
        brush_row.addWidget(self.holes_button)
        tools_layout.addLayout(brush_row)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("undo the last edit (Ctrl+Z in the canvas)")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("redo (Ctrl+Shift+Z in the canvas)")
        self.redo_button.clicked.connect(self.redo)
        undo_row = QHBoxLayout()
        undo_row.addWidget(self.undo_button)
        undo_row.addWidget(self.redo_button)
        tools_layout.addLayout(undo_row)

        # --- proposals
        prop = QWidget()
        prop_layout = QVBoxLayout(prop)
        prop_layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.sliders: dict[str, QLabeledDoubleSlider | QLabeledSlider] = {}
        defaults = ClassicalSettings()
        for key, text, lo, hi, decimals, tip in SLIDERS:
            if decimals == 0:
                slider = QLabeledSlider(Qt.Orientation.Horizontal)
            else:
                slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
                slider.setDecimals(decimals)
            slider.setRange(lo, hi)
            slider.setValue(getattr(defaults, key))
            slider.setToolTip(tip)
            slider.valueChanged.connect(self._schedule_proposal)
            label = QLabel(text)
            label.setToolTip(tip)
            form.addRow(label, slider)
            self.sliders[key] = slider
        self.polarity_combo = ComboBox()
        self.polarity_combo.addItems(["auto", "bright", "dark"])
        self.polarity_combo.setToolTip("boundaries brighter (SEM edge effect) or darker (etched grooves) than grains")
        self.polarity_combo.currentIndexChanged.connect(self._schedule_proposal)
        form.addRow("Boundaries", self.polarity_combo)
        prop_layout.addLayout(form)
        self.live_check = QCheckBox("Live")
        self.live_check.setChecked(True)
        self.live_check.setToolTip("update the classical proposal whenever a slider moves")
        self.propose_button = QPushButton("Propose grains")
        self.propose_button.setToolTip("run the classical pipeline (smoothing, ridge filter, marker watershed)")
        self.propose_button.clicked.connect(self.propose)
        row = QHBoxLayout()
        row.addWidget(self.live_check)
        row.addWidget(self.propose_button, 1)
        prop_layout.addLayout(row)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("model folder")
        self.model_edit.setToolTip("a segmentation checkpoint trained with GrainLab")
        self.model_browse = QToolButton()
        self.model_browse.setText("…")
        self.model_browse.setToolTip("choose a model folder")
        self.model_browse.clicked.connect(self._on_browse_model)
        self.model_button = QPushButton("From model")
        self.model_button.setToolTip("propose grains with the model (runs in the background)")
        self.model_button.clicked.connect(self._on_model_clicked)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(self.model_browse)
        model_row.addWidget(self.model_button)
        prop_layout.addLayout(model_row)
        self.model_progress = QProgressBar()
        self.model_progress.setRange(0, 1)
        self.model_progress.setValue(0)
        self.model_progress.setFormat("")
        self.model_progress.setMaximumHeight(14)
        self.model_cancel = QPushButton("Cancel")
        self.model_cancel.setEnabled(False)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.model_progress, 1)
        progress_row.addWidget(self.model_cancel)
        prop_layout.addLayout(progress_row)
        self.apply_mode = ComboBox()
        self.apply_mode.addItem("into unannotated pixels", "unannotated")
        self.apply_mode.addItem("replacing everything", "replace")
        self.apply_mode.setToolTip("unannotated: your grains stay as they are; replacing: the proposal "
                                   "becomes the annotation (one undoable step either way)")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("put the proposal into the annotation (Ctrl+Z undoes it)")
        self.apply_button.clicked.connect(self.apply_proposal)
        apply_row = QHBoxLayout()
        apply_row.addWidget(self.apply_button)
        apply_row.addWidget(self.apply_mode, 1)
        prop_layout.addLayout(apply_row)
        self.proposal_label = QLabel()
        self.proposal_label.setWordWrap(True)
        prop_layout.addWidget(self.proposal_label)

        # --- classification
        cls = QWidget()
        cls_form = QFormLayout(cls)
        cls_form.setContentsMargins(0, 0, 0, 0)
        cls_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.classes_edit = QLineEdit()
        self.classes_edit.setPlaceholderText("e.g. ferrite, pearlite")
        self.classes_edit.setToolTip("class names, separated by commas (they become folder names)")
        self.classes_edit.editingFinished.connect(self._on_classes_edited)
        cls_form.addRow("Classes", self.classes_edit)
        self.image_class_combo = ComboBox()
        self.image_class_combo.setToolTip("the class of the whole image (saved as CLASS/NAME.tif)")
        self.image_class_combo.activated.connect(self._on_classes_changed)
        cls_form.addRow("Image class", self.image_class_combo)
        self.region_class_combo = ComboBox()
        self.region_class_combo.setToolTip("the class painted into the 'NAME classes' layer")
        self.region_class_combo.activated.connect(self._on_region_class)
        self.regions_button = QPushButton("Paint regions")
        self.regions_button.setToolTip("paint class regions into the Labels layer 'NAME classes'")
        self.regions_button.clicked.connect(self.paint_regions)
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_class_combo, 1)
        region_row.addWidget(self.regions_button)
        cls_form.addRow("Region", region_row)
        self.tile_spin = SpinBox()
        self.tile_spin.setRange(32, 4096)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setValue(256)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("tiles at least 90 % inside one class region are exported as CLASS/NAME_rR_cC.tif")
        cls_form.addRow("Tile", self.tile_spin)

        # --- saving
        save = QWidget()
        save_layout = QVBoxLayout(save)
        save_layout.setContentsMargins(0, 0, 0, 0)
        self.folder_label = QLabel("no dataset folder")
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("the dataset folder: images/NAME.tif + labels/NAME.tif (and class folders)")
        self.folder_button.clicked.connect(self._on_folder_clicked)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_label, 1)
        folder_row.addWidget(self.folder_button)
        save_layout.addLayout(folder_row)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("write the annotation into the dataset folder (atomic)")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("replace the annotation by the saved one (undoable)")
        self.reload_button.clicked.connect(self._on_reload_clicked)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_button, 2)
        save_row.addWidget(self.reload_button, 1)
        save_layout.addLayout(save_row)
        self.autosave_check = QCheckBox("Autosave every")
        self.autosave_check.setChecked(True)
        self.autosave_check.setToolTip("save changes periodically and when switching images; without a dataset "
                                       f"folder into {core.autosave_dir()}")
        self.autosave_check.toggled.connect(self._restart_autosave_timer)
        self.autosave_spin = SpinBox()
        self.autosave_spin.setRange(5, 3600)
        self.autosave_spin.setValue(60)
        self.autosave_spin.setSuffix(" s")
        self.autosave_spin.setToolTip("autosave interval")
        self.autosave_spin.valueChanged.connect(self._restart_autosave_timer)
        autosave_row = QHBoxLayout()
        autosave_row.addWidget(self.autosave_check)
        autosave_row.addWidget(self.autosave_spin, 1)
        save_layout.addLayout(autosave_row)
        self.save_status = QLabel()
        self.save_status.setWordWrap(True)
        self.save_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        save_layout.addWidget(self.save_status)

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(2)
        self.sections = {
            "tools": _section("Tools", tools, True),
            "propose": _section("Propose grains", prop, True),
            "classes": _section("Classification", cls, False),
            "save": _section("Save", save, True),
        }
        for section in self.sections.values():
            content_layout.addWidget(section)
        content_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        self.scroll_area = scroll

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addLayout(layer_form)
        layout.addLayout(stats_row)
        layout.addWidget(_hline())
        layout.addWidget(scroll, 1)

    # ================================================================ layer choices
    @property
    def image_layer(self) -> Image | None:
        return self._live(self._image_ref)

    @property
    def labels_layer(self) -> Labels | None:
        return self._live(self._labels_ref)

    @property
    def proposal_layer(self) -> Labels | None:
        return self._live(self._proposal_ref)

    @property
    def classes_layer(self) -> Labels | None:
        return self._live(self._classes_ref)

    def _live(self, ref: weakref.ref | None):
        layer = ref() if ref is not None else None
        return layer if layer is not None and layer in self.viewer.layers else None

    def _helper_layers(self) -> set[int]:
        return {id(x) for x in (self.proposal_layer, self.classes_layer, self._live(self._line_ref)) if x is not None}

    def _refresh_layer_choices(self, *_: Any) -> None:
        self._syncing = True
        try:
            current_image = self.image_layer
            self.image_combo.clear()
            for layer in self.viewer.layers:
                if isinstance(layer, Image):
                    self.image_combo.addItem(layer.name)
            if current_image is not None:
                self.image_combo.setCurrentIndex(max(0, self.image_combo.findText(current_image.name)))
            current_labels = self.labels_layer
            self.labels_combo.clear()
            self.labels_combo.addItem(NEW_LAYER)
            helpers = self._helper_layers()
            for layer in self.viewer.layers:
                if isinstance(layer, Labels) and id(layer) not in helpers:
                    self.labels_combo.addItem(layer.name)
            if current_labels is not None:
                self.labels_combo.setCurrentIndex(max(0, self.labels_combo.findText(current_labels.name)))
        finally:
            self._syncing = False

    def _combo_layer(self, combo: ComboBox, kind: type):
        """The layer named by ``combo``'s current item (None: none, or 'New layer')."""
        index = combo.currentIndex()
        if index < 0 or (combo is self.labels_combo and index == 0):
            return None
        name = combo.itemText(index)
        layer = next((x for x in self.viewer.layers if x.name == name), None)
        return layer if isinstance(layer, kind) else None

    def _watch_names(self) -> None:
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layer_choices)  # connecting twice is a no-op

    def _on_layers_changed(self, event=None) -> None:
        if self._torn_down:
            return
        self._watch_names()
        self._refresh_layer_choices()
        if self.image_layer is None and event is not None and getattr(event, "type", "") == "inserted":
            if isinstance(event.value, Image):  # the first image: attach to it
                self.image_combo.setCurrentIndex(max(0, self.image_combo.findText(event.value.name)))
                QTimer.singleShot(0, self._on_image_chosen)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if self._image_ref is not None and layer is self._image_ref():
            self._leave_current(autosave=True, labels=self.labels_layer)
        elif self._labels_ref is not None and layer is self._labels_ref():
            self._leave_current(autosave=True, labels=layer)
        elif self._line_ref is not None and layer is self._line_ref() and self._tool == "split":
            self._line_ref = None

    @_guarded("Annotate")
    def _on_image_chosen(self, *_: Any) -> None:
        if self._syncing:
            return
        layer = self._combo_layer(self.image_combo, Image)
        if layer is not None and layer is not self.image_layer:
            self.attach(layer)

    @_guarded("Annotate")
    def _on_labels_chosen(self, *_: Any) -> None:
        if self._syncing:
            return
        image = self.image_layer
        if image is None:
            show_error("Annotate: choose an image layer first")
            return
        labels = self._combo_layer(self.labels_combo, Labels)
        if labels is not self.labels_layer:
            self.attach(image, labels)

    # ======================================================================= attach
    def _image_plane(self, layer: Image) -> tuple[np.ndarray, np.ndarray]:
        """(image to store, float image for proposals) of an image layer; raises ValueError."""
        if getattr(layer, "multiscale", False):
            raise ValueError(f"{layer.name!r} is a multiscale image; open one resolution level to annotate it")
        data = np.asarray(layer.data)
        if layer.rgb:
            gray = to_grayscale(data, f"image {layer.name!r}", channel_axis=data.ndim - 1)
            if data.dtype.kind in "ui":
                gray = np.clip(np.round(gray), 0, np.iinfo(data.dtype).max).astype(data.dtype)
            show_warning(f"Annotate: {layer.name!r} is an RGB image; it is annotated and saved as grayscale "
                         "(luminance)")
            data = gray
        elif data.ndim != 2:
            raise ValueError(f"{layer.name!r} has shape {data.shape}: annotate one 2-D image (for a stack, "
                             "take one plane into its own layer)")
        if data.dtype.kind not in "buif":
            raise ValueError(f"{layer.name!r} has unsupported pixels ({data.dtype})")
        if min(data.shape) < 8:
            raise ValueError(f"{layer.name!r} is too small ({data.shape[0]} x {data.shape[1]} px)")
        return data, normalize_intensity(data)

    def attach(self, image: Image, labels: Labels | None = None) -> bool:
        """Annotate ``image`` in ``labels`` (None: the layer ``NAME annotation``, created when
        missing, with the saved labels).  Problems become notifications; returns success."""
        try:
            return self._attach(image, labels)
        except (ValueError, OSError, DataError) as exc:
            show_error(f"Annotate: {exc}")
        except Exception as exc:  # noqa: BLE001
            report_error(exc, "Annotate")
        self._refresh_layer_choices()
        return False

    def _attach(self, image: Image, labels: Labels | None) -> bool:
        if not isinstance(image, Image):
            raise ValueError("choose an image layer")
        store, gray = self._image_plane(image)
        name = core.safe_name(_source_stem(image) or image.name)
        if labels is not None:
            if not isinstance(labels, Labels):
                raise ValueError(f"{labels.name!r} is not a Labels layer")
            if getattr(labels, "multiscale", False) or labels.data.shape != store.shape:
                raise ValueError(f"the labels {labels.name!r} ({' x '.join(map(str, labels.data.shape))} px) do not "
                                 f"match the image {image.name!r} ({store.shape[0]} x {store.shape[1]} px)")
        # leave the current image (autosave on switching)
        if self.labels_layer is not None:
            self._leave_current(autosave=True, labels=self.labels_layer)
        self.name, self._store, self._gray = name, store, gray
        self._base_name = image.name
        self._pixel_size = _pixel_size(image)
        self._image_ref = weakref.ref(image)
        saved, where = self._find_saved(name, store.shape)
        if labels is None:
            layer_name = f"{image.name} annotation"
            existing = [x for x in self.viewer.layers if isinstance(x, Labels) and x.name == layer_name
                        and x.data.shape == store.shape]
            if existing:
                labels = existing[0]
            else:
                data = saved if saved is not None else np.zeros(store.shape, dtype=np.uint32)
                labels = self.viewer.add_labels(data, name=layer_name, opacity=0.5, **_spatial(image))
                if saved is not None:
                    show_info(f"Annotate: reloaded the labels of {name!r} from {where}")
        self._labels_ref = weakref.ref(labels)
        self._saved = saved if saved is not None else np.zeros(store.shape, dtype=np.uint32)
        self._in_dataset = saved is not None and self.folder is not None and where == self.folder
        if saved is not None and labels.data is not saved and not np.array_equal(labels.data, saved):
            self.save_status.setText(f"{labels.name!r} differs from the labels saved in {where}; Reload loads those")
        self._connect_labels(labels)
        self._load_classes(where)
        self._refresh_layer_choices()
        self.set_tool(self._tool)
        self.viewer.layers.selection.active = labels
        self._schedule_stats()
        return True

    def _find_saved(self, name: str, shape: tuple[int, int]) -> tuple[np.ndarray | None, Path | None]:
        # the dataset folder by name; the autosave folder by name and pixels (see core.autosave_name)
        candidates = [(self.folder, name), (core.autosave_dir(), self._autosave_name(name))]
        found = [(f, n, core.find_annotation(n, [f])) for f, n in candidates if f is not None]
        found = [(f, n) for f, n, hit in found if hit is not None]
        if not found:
            return None, None
        where, stored_name = max(found, key=lambda fn: core.labels_mtime(fn[0], fn[1]))
        try:
            return core.load_segmentation(where, stored_name, shape=shape, image=self._store), where
        except ValueError as exc:
            show_warning(f"Annotate: saved labels not used: {exc}")
            return None, None

    def _autosave_name(self, name: str | None = None) -> str:
        return core.autosave_name(self.name if name is None else name, self._store)

    def _stored_name(self, folder: Path | None) -> str:
        """The name of the current image's files in ``folder`` (the autosave folder adds a fingerprint)."""
        return self._autosave_name() if folder is not None and folder == core.autosave_dir() else self.name

    def _connect_labels(self, labels: Labels) -> None:
        for ev in (labels.events.paint, labels.events.data, labels.events.set_data):
            ev.connect(self._on_labels_changed)
        labels.events.mode.connect(self._on_layer_mode)
        if self._on_mouse not in labels.mouse_drag_callbacks:
            labels.mouse_drag_callbacks.append(self._on_mouse)
        labels.brush_size = self.brush_spin.value()

    def _disconnect_labels(self, labels: Labels) -> None:
        for ev in (labels.events.paint, labels.events.data, labels.events.set_data):
            ev.disconnect(self._on_labels_changed)
        labels.events.mode.disconnect(self._on_layer_mode)
        if self._on_mouse in labels.mouse_drag_callbacks:
            labels.mouse_drag_callbacks.remove(self._on_mouse)
        labels.mouse_pan = True

    def _leave_current(self, autosave: bool, labels: Labels | None) -> None:
        if autosave and labels is not None and self._store is not None:
            try:
                if self.has_unsaved_changes(labels):
                    self.autosave(wait=True, labels=labels)
            except Exception as exc:  # noqa: BLE001 - leaving must not fail
                report_error(exc, "Autosave")
        if labels is not None:
            self._disconnect_labels(labels)
        for ref in (self._proposal_ref, self._line_ref):
            layer = self._live(ref)
            if layer is not None:
                self.viewer.layers.remove(layer)
        self._proposal_ref = self._line_ref = None
        self._proposal_runner.discard()
        self._proposal_generation += 1
        if self._model_task is not None and self._model_task.is_running:
            self._model_task.cancel()
        self._image_ref = self._labels_ref = self._classes_ref = None
        self._store = self._gray = self._saved = None
        self._merge_first = None
        self._show_stats((0, 0.0, False))

    def _require(self) -> Labels:
        labels = self.labels_layer
        if labels is None or self._store is None:
            raise ValueError("no image layer chosen; open a micrograph and pick it under Image")
        return labels

    # ======================================================================== tools
    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, key: str, *_: Any) -> None:
        """Switch to a tool of :data:`TOOLS`."""
        if key not in TOOLS:
            raise ValueError(f"unknown tool {key!r}; one of {', '.join(TOOLS)}")
        self._tool = key
        self._merge_first = None
        self.tool_buttons[key].setChecked(True)
        labels = self.labels_layer
        if labels is not None:
            mode = TOOLS[key][1]
            self._syncing = True
            try:
                labels.mode = mode or "pan_zoom"
            finally:
                self._syncing = False
            labels.mouse_pan = mode is not None or key != "split"
            if self.viewer.layers.selection.active is not labels and key != "pan":
                self.viewer.layers.selection.active = labels
        if key == "split":
            self._line_layer()
        else:
            line = self._live(self._line_ref)
            if line is not None:
                self.viewer.layers.remove(line)
            self._line_ref = None
        self._update_tool_help()

    def _on_layer_mode(self, event) -> None:
        if self._syncing:
            return
        mode = str(event.mode)
        for key, (_, m, _) in TOOLS.items():
            if m == mode and not (mode == "pan_zoom" and self._tool in CUSTOM_TOOLS):
                if key != self._tool:
                    self.set_tool(key)
                return

    def _update_tool_help(self, extra: str = "") -> None:
        self.tool_help.setText(extra or TOOLS[self._tool][2])

    def _on_brush(self, value: int) -> None:
        labels = self.labels_layer
        if labels is not None:
            labels.brush_size = int(value)

    @_guarded("New id")
    def select_new_id(self, *_: Any) -> int:
        labels = self._require()
        new = int(np.max(labels.data)) + 1
        labels.selected_label = new
        if self._tool not in ("paint", "fill"):
            self.set_tool("paint")
        return new

    def _line_layer(self) -> Shapes | None:
        line = self._live(self._line_ref)
        labels = self.labels_layer
        if line is None and labels is not None:
            line = self.viewer.add_shapes(name=SPLIT_LINE, edge_color="yellow", edge_width=1.5, face_color="transparent",
                                          opacity=0.9, **_spatial(labels))
            self._line_ref = weakref.ref(line)
            self.viewer.layers.selection.active = labels
        return line

    def _on_mouse(self, layer: Labels, event):
        """Mouse callback of the annotation layer for the dock's own tools."""
        tool = self._tool
        if tool not in CUSTOM_TOOLS or event.button != 1 or layer.mode != "pan_zoom":
            return
        pos = np.asarray(layer.world_to_data(event.position))[-2:]
        if tool == "split":
            points = [pos]
            line = self._line_layer()
            yield
            while event.type == "mouse_move":
                points.append(np.asarray(layer.world_to_data(event.position))[-2:])
                if line is not None and len(points) >= 2:
                    line.data = [np.array(points)]
                    line.shape_type = ["path"]
                yield
            if line is not None:
                line.data = []
            if len(points) >= 2:
                self.split(np.array(points))
            return
        r, c = int(np.floor(pos[0] + 0.5)), int(np.floor(pos[1] + 0.5))
        h, w = layer.data.shape
        if not (0 <= r < h and 0 <= c < w):
            return
        gid = int(layer.data[r, c])
        if tool == "delete":
            self.delete([gid])
        elif tool == "merge":
            self._merge_click(gid)

    def _merge_click(self, gid: int) -> None:
        if gid == 0:
            self._merge_first = None
            self._update_tool_help("Not a grain. Click a grain, then a second one to merge them.")
            return
        if self._merge_first is None or self._merge_first == gid:
            self._merge_first = gid
            self._update_tool_help(f"Grain {gid} chosen: click the grain to merge into it.")
            return
        first, self._merge_first = self._merge_first, None
        self.merge([first, gid])
        self._update_tool_help(f"Merged grain {gid} into {first}. Click the next pair.")

    # ======================================================================== edits
    def _apply_edit(self, edit: core.LabelEdit, labels: Labels | None = None) -> bool:
        """Apply ``edit`` to the annotation as one step of napari's undo history."""
        labels = labels or self._require()
        if not edit:
            return False
        with labels.block_history():
            labels.data_setitem(edit.indices, edit.values)
        self._mark_changed()
        return True

    @_guarded("Merge")
    def merge(self, ids) -> bool:
        """Merge the grains ``ids`` into the first (closing a drawn gap between them)."""
        labels = self._require()
        return self._apply_edit(core.merge_grains(labels.data, ids, bridge=MERGE_BRIDGE_PX))

    @_guarded("Split")
    def split(self, points: np.ndarray) -> bool:
        """Cut the grains the polyline ``points`` (data coordinates, row / column) crosses."""
        labels = self._require()
        edit = core.split_grain(labels.data, np.asarray(points, dtype=float), width=1)
        if not edit:
            self._update_tool_help("The line must cross a grain from side to side.")
            return False
        self._update_tool_help(f"Split: new grain(s) {', '.join(map(str, edit.new_ids))}. Ctrl+Z undoes it.")
        return self._apply_edit(edit)

    @_guarded("Delete")
    def delete(self, ids) -> bool:
        labels = self._require()
        return self._apply_edit(core.delete_grains(labels.data, ids))

    @_guarded("Fill holes")
    def fill_holes(self, *_: Any) -> bool:
        labels = self._require()
        edit = core.fill_holes(labels.data)
        if not edit:
            show_info("Fill holes: no unannotated hole enclosed by one grain")
        return self._apply_edit(edit)

    def undo(self) -> None:
        if self.labels_layer is not None:
            self.labels_layer.undo()
            self._mark_changed()

    def redo(self) -> None:
        if self.labels_layer is not None:
            self.labels_layer.redo()
            self._mark_changed()

    # ================================================================== statistics
    def _on_labels_changed(self, *_: Any) -> None:
        self._mark_changed()

    def _mark_changed(self) -> None:
        self._dirty = True
        self._schedule_stats()

    def _schedule_stats(self) -> None:
        if not self._stats_timer.isActive():
            self._stats_timer.start()

    def _refresh_stats(self) -> None:
        labels = self.labels_layer
        if labels is None:
            return
        data = labels.data
        if data.size <= SYNC_STATS_PIXELS:
            self._show_stats(stats_job(data, self._saved))
        else:
            self._stats_runner.submit(stats_job, np.array(data, copy=True), self._saved)  # the user may paint on

    def _show_stats(self, stats: tuple[int, float, bool]) -> None:
        n, frac, dirty = stats
        self.grain_count, self.annotated_fraction = n, frac
        if self.labels_layer is None:
            self.stats_label.setText("No image chosen")
            self.state_label.setText("")
            return
        self.stats_label.setText(f"{n} grain{'s' if n != 1 else ''} · {100 * frac:.1f} % annotated")
        dirty = dirty or self._class_state() != self._saved_classes
        self._dirty = dirty
        self.state_label.setText("● unsaved" if dirty or not self._in_dataset and n else "saved")
        self.state_label.setStyleSheet("color: #e8a33d;" if dirty or not self._in_dataset and n else "")
        self.state_label.setToolTip("changes not yet in the dataset folder" if dirty or not self._in_dataset
                                    else "everything is saved in the dataset folder")

    def stats(self) -> tuple[int, float]:
        """Grain count and annotated fraction now (computed synchronously)."""
        labels = self._require()
        return core.annotation_stats(labels.data)

    # ==================================================================== proposals
    def settings(self) -> ClassicalSettings:
        values = {k: s.value() for k, s in self.sliders.items()}
        values["min_size"] = int(values["min_size"])
        return ClassicalSettings(polarity=self.polarity_combo.currentText(), **values)

    def set_settings(self, settings: ClassicalSettings) -> None:
        for key, slider in self.sliders.items():
            slider.setValue(getattr(settings, key))
        self.polarity_combo.setCurrentText(settings.polarity)

    def _schedule_proposal(self, *_: Any) -> None:
        if self.live_check.isChecked() and self._gray is not None:
            self._proposal_debounce.start()

    @property
    def proposal_busy(self) -> bool:
        return self._proposal_runner.is_busy or self._proposal_debounce.isActive() or (
            self._model_task is not None and self._model_task.is_running)

    @_guarded("Propose grains")
    def propose(self, *_: Any) -> None:
        """Run the classical proposal in a worker (only the newest request is shown)."""
        self._proposal_debounce.stop()
        if self._gray is None:
            raise ValueError("no image layer chosen; open a micrograph and pick it under Image")
        self._proposal_runner.submit(classical_job, self._gray, self.settings())

    def _on_proposal_busy(self, busy: bool) -> None:
        if busy:
            self.proposal_label.setStyleSheet("")
            self.proposal_label.setText("Proposing grains…")

    def _proposal_failed(self, error: BaseException) -> None:
        self.proposal_label.setStyleSheet(ERROR_STYLE)
        self.proposal_label.setText(f"Proposal failed: {error}")
        report_error(error, "Propose grains")

    def _show_proposal(self, result: tuple[np.ndarray, float], source: str = "classical") -> None:
        labels_data, elapsed = result
        labels = self.labels_layer
        if labels is None or labels_data.shape != labels.data.shape:
            return  # the image changed meanwhile
        layer = self.proposal_layer
        if layer is None:
            layer = self.viewer.add_labels(labels_data, name=f"{self._base_name} proposal", opacity=0.8,
                                           **_spatial(labels))
            layer.contour = 1
            layer.editable = False
            self._proposal_ref = weakref.ref(layer)
            self.viewer.layers.selection.active = labels
            self._refresh_layer_choices()
        else:
            layer.data = labels_data
            layer.visible = True
        self.proposals_shown += 1
        n = int(labels_data.max())
        self.proposal_label.setStyleSheet("")
        self.proposal_label.setText(f"Proposal ({source}): {n} grains in {elapsed:.2f} s; Apply puts them into "
                                    "the annotation")

    def _on_browse_model(self) -> None:
        path = self.ask_checkpoint()
        if path is not None:
            self.model_edit.setText(str(path))

    def ask_checkpoint(self) -> Path | None:
        path = QFileDialog.getExistingDirectory(self, "Model folder (model.safetensors + model.json)",
                                                self.model_edit.text() or str(Path.home()))
        return Path(path) if path else None

    def _on_model_clicked(self) -> None:
        self.propose_from_model()

    @_guarded("Proposal from model")
    def propose_from_model(self, checkpoint: str | Path | None = None) -> GeneratorTask | None:
        """Segment the image with a trained model in a worker; the result becomes the proposal."""
        if self._gray is None:
            raise ValueError("no image layer chosen")
        if self._model_task is not None and self._model_task.is_running:
            return None
        checkpoint = str(checkpoint or self.model_edit.text()).strip()
        if not checkpoint:
            path = self.ask_checkpoint()
            if path is None:
                return None
            checkpoint = str(path)
            self.model_edit.setText(checkpoint)
        if not Path(checkpoint).exists():
            raise ValueError(f"no model at {checkpoint}")
        if not ensure_engine(lambda text, error=False: self.proposal_label.setText(text)):
            return None
        task = GeneratorTask(model_job, checkpoint, self._gray, description="Grain proposal from model",
                             progress_bar=self.model_progress, cancel_button=self.model_cancel, parent=self)
        started = time.perf_counter()
        shape = self._gray.shape
        generation = self._proposal_generation
        task.finished.connect(lambda result: self._model_finished(result, shape, started, generation))
        self._model_task = task
        self.model_button.setEnabled(False)
        self.proposal_label.setText("Running the model…")
        task.start()
        return task

    def _model_finished(self, result: TaskResult, shape: tuple[int, int], started: float, generation: int) -> None:
        self.model_button.setEnabled(True)
        if generation != self._proposal_generation:
            self.proposal_label.setText("Model proposal dropped: the image changed while it ran")
        elif result.ok and result.value is not None and result.value.shape == shape:
            self._show_proposal((result.value, time.perf_counter() - started), source="model")
        elif result.status == "cancelled" or result.value is None:
            self.proposal_label.setText("Model proposal cancelled")
        else:
            self.proposal_label.setStyleSheet(ERROR_STYLE)
            self.proposal_label.setText(f"Model proposal failed: {result.error}")

    @_guarded("Apply proposal")
    def apply_proposal(self, *_: Any, mode: str | None = None) -> bool:
        """Put the proposal into the annotation (one undoable step): ``"unannotated"`` pixels
        only (default) or ``"replace"`` everything."""
        labels = self._require()
        proposal = self.proposal_layer
        if proposal is None:
            raise ValueError("no proposal yet; press Propose grains first")
        mode = mode or self.apply_mode.currentData()
        data = np.asarray(labels.data)
        if mode == "replace":
            top = int(proposal.data.max(initial=0))
            if data.dtype.kind in "iu" and top > np.iinfo(data.dtype).max:
                raise ValueError(f"the proposal has grain ids up to {top}, more than the {data.dtype} labels layer "
                                 f"{labels.name!r} can hold; choose 'New layer' under Grains for a uint32 layer")
            new = proposal.data.astype(data.dtype, copy=False)
            edit = core.LabelEdit.between(data, new)
        else:
            edit = core.fill_unannotated(data, proposal.data, min_fraction=0.5, min_size=4)
        changed = self._apply_edit(edit, labels)
        self.viewer.layers.remove(proposal)
        self._proposal_ref = None
        self._refresh_layer_choices()
        self.proposal_label.setText("Applied: Ctrl+Z undoes it" if changed else "Nothing to apply: every pixel "
                                    "is annotated already")
        self.viewer.layers.selection.active = labels
        return changed

    # ============================================================== classification
    def class_names(self) -> list[str]:
        return [c.strip() for c in self.classes_edit.text().split(",") if c.strip()]

    def _set_classes(self, classes: list[str]) -> None:
        self.classes_edit.setText(", ".join(classes))
        self._on_classes_edited()

    def _on_classes_edited(self) -> None:
        classes = self.class_names()
        current = self.image_class_combo.currentText()
        self.image_class_combo.clear()
        self.image_class_combo.addItem(NO_CLASS)
        self.image_class_combo.addItems(classes)
        self.image_class_combo.setCurrentIndex(max(0, self.image_class_combo.findText(current)))
        region = self.region_class_combo.currentText()
        self.region_class_combo.clear()
        self.region_class_combo.addItems(classes)
        if region in classes:
            self.region_class_combo.setCurrentText(region)
        self.regions_button.setEnabled(bool(classes))
        self._on_classes_changed()

    def _on_classes_changed(self, *_: Any) -> None:
        self._dirty = True
        self._schedule_stats()

    def set_image_class(self, name: str | None) -> None:
        if name and name not in self.class_names():
            self._set_classes(self.class_names() + [name])
        self.image_class_combo.setCurrentText(name or NO_CLASS)
        self._on_classes_changed()

    def image_class(self) -> str | None:
        text = self.image_class_combo.currentText()
        return None if text in ("", NO_CLASS) else text

    def _on_region_class(self, *_: Any) -> None:
        layer = self.classes_layer
        if layer is not None:
            layer.selected_label = self.region_class_combo.currentIndex() + 1

    @_guarded("Paint regions")
    def paint_regions(self, *_: Any) -> Labels | None:
        """Show (or create) the Labels layer ``NAME classes`` and start painting the chosen class."""
        labels = self._require()
        if not self.class_names():
            raise ValueError("enter class names first (e.g. ferrite, pearlite)")
        layer = self.classes_layer
        if layer is None:
            layer = self.viewer.add_labels(np.zeros(labels.data.shape, dtype=np.uint8), name=f"{self._base_name} classes",
                                           opacity=0.35, **_spatial(labels))
            self._classes_ref = weakref.ref(layer)
            layer.events.paint.connect(self._on_classes_changed)
            self._refresh_layer_choices()
        self.viewer.layers.selection.active = layer
        layer.visible = True
        layer.brush_size = max(20, self.brush_spin.value())
        layer.selected_label = self.region_class_combo.currentIndex() + 1
        layer.mode = "paint"
        return layer

    def class_annotation(self) -> core.ClassAnnotation | None:
        """The classification work on the current image (None when there is none)."""
        classes = self.class_names()
        layer = self.classes_layer
        # no layer: keep the saved regions; an all-0 layer: the regions were erased
        regions = np.asarray(layer.data) if layer is not None else None
        image_class = self.image_class()
        if not classes or (regions is None and image_class is None):
            return None
        return core.ClassAnnotation(classes=classes, image_class=image_class, regions=regions,
                                    tile=int(self.tile_spin.value()))

    def _load_classes(self, where: Path | None) -> None:
        for folder in (self.folder, where, core.autosave_dir()):
            if folder is None:
                continue
            try:
                ann = core.load_class_annotation(folder / CLASSIFICATION_DIR, self._stored_name(folder),
                                                 shape=self._store.shape)
            except ValueError as exc:
                show_warning(f"Annotate: saved classes not used: {exc}")
                continue
            if ann is None:
                continue
            self._set_classes(ann.classes)
            self.image_class_combo.setCurrentText(ann.image_class or NO_CLASS)
            self.tile_spin.setValue(ann.tile)
            if ann.regions is not None and ann.regions.any():
                layer = self.paint_regions()
                if layer is not None:
                    layer.data = ann.regions.astype(np.uint8)
                    layer.mode = "pan_zoom"
                    self.viewer.layers.selection.active = self.labels_layer
            self._saved_classes = self._class_state()
            return
        self.image_class_combo.setCurrentIndex(0)
        self._saved_classes = self._class_state()

    def _class_state(self) -> tuple:
        ann = self.class_annotation()
        if ann is None:
            return ()
        regions = None if ann.regions is None else hash(ann.regions.tobytes())
        return tuple(ann.classes), ann.image_class, regions, ann.tile

    # ======================================================================= saving
    def has_unsaved_changes(self, labels: Labels | None = None) -> bool:
        """Changes not yet written to the dataset folder (or, without one, anywhere)."""
        labels = labels or self.labels_layer
        if labels is None or self._store is None:
            return False
        changed = stats_job(labels.data, self._saved)[2] or self._class_state() != self._saved_classes
        if changed:
            return True
        return not self._in_dataset and bool(np.any(labels.data))

    def ask_directory(self) -> Path | None:
        start = str(self.folder or Path.home())
        path = QFileDialog.getExistingDirectory(self, "Dataset folder for the annotation", start)
        return Path(path) if path else None

    def ask_unsaved(self) -> str:
        """Ask what to do with unsaved changes: ``"save"``, ``"discard"`` or ``"cancel"``."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Unsaved annotation")
        box.setText(f"The annotation of {self.name!r} has unsaved changes.")
        box.setInformativeText("Save them into the dataset folder?")
        save = box.addButton(QMessageBox.StandardButton.Save)
        discard = box.addButton(QMessageBox.StandardButton.Discard)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(save)
        box.exec_()
        clicked = box.clickedButton()
        return "save" if clicked is save else "discard" if clicked is discard else "cancel"

    def confirm_close(self) -> bool:
        """Whether the dock (or the viewer) may close: asks when there are unsaved changes."""
        try:
            if not self.has_unsaved_changes():
                return True
        except Exception:  # noqa: BLE001 - a half-deleted viewer: never block closing
            return True
        answer = self.ask_unsaved()
        if answer == "cancel":
            return False
        if answer == "save":
            return self.save() is not None
        self._saved = None if self.labels_layer is None else np.array(self.labels_layer.data, copy=True)
        self._in_dataset = True  # discarded: nothing more to ask
        self._saved_classes = self._class_state()
        return True

    def set_folder(self, folder: str | Path | None) -> None:
        """Use ``folder`` as the dataset folder (the labels saved there are offered by Reload)."""
        self.folder = Path(folder) if folder else None
        self._in_dataset = False
        if self.folder is None:
            self.folder_label.setText("no dataset folder")
            self.folder_label.setToolTip("")
        else:
            self.folder_label.setText(f"{self.folder.name}/")
            self.folder_label.setToolTip(str(self.folder))
            labels = self.labels_layer
            if labels is not None and self._store is not None and not np.any(labels.data):
                self.reload(quiet=True)
        self._schedule_stats()

    def _on_folder_clicked(self) -> None:
        folder = self.ask_directory()
        if folder is not None:
            self.set_folder(folder)

    def _on_save_clicked(self) -> None:
        self.save()

    def _on_reload_clicked(self) -> None:
        self.reload()

    def _snapshot(self, labels: Labels | None = None) -> tuple[np.ndarray, core.ClassAnnotation | None]:
        labels = labels or self._require()
        data = np.array(labels.data, copy=True)
        if data.ndim != 2 or data.dtype.kind not in "ui":
            raise ValueError(f"{labels.name!r}: labels must be one 2-D integer plane")
        if data.dtype.kind == "i" and data.size and data.min() < 0:
            raise ValueError(f"{labels.name!r} has negative ids")
        ann = self.class_annotation()
        if ann is not None and ann.regions is not None:
            ann.regions = np.array(ann.regions, copy=True)
        return data, ann

    def save(self, folder: str | Path | None = None) -> Path | None:
        """Write the annotation into the dataset folder (asked for when none is set); returns it."""
        try:
            self._require()
            if folder is not None:
                self.set_folder(folder)
            if self.folder is None:
                chosen = self.ask_directory()
                if chosen is None:
                    return None
                self.set_folder(chosen)
            data, ann = self._snapshot()
            seq = self._next_seq()
            ordered_write(self._writes, seq, self.folder, self.name, self._store, data, ann, self._pixel_size)
        except (ValueError, OSError) as exc:
            show_error(f"Saving the annotation failed: {exc}")
            self._set_save_status(f"Save failed: {exc}", error=True)
            return None
        except Exception as exc:  # noqa: BLE001
            report_error(exc, "Saving the annotation")
            return None
        self._saved_write(data, ann, self.folder, in_dataset=True, seq=seq)
        return self.folder

    def _next_seq(self) -> int:
        self._write_seq += 1
        return self._write_seq

    def autosave(self, wait: bool = False, labels: Labels | None = None) -> bool:
        """Save changes now (dataset folder, else :func:`~napari_grainlab.core.annotate.autosave_dir`)
        in a worker thread, or synchronously with ``wait``.  Returns whether a write started."""
        labels = labels or self.labels_layer
        if labels is None or self._store is None:
            return False
        if self._autosave_worker is not None and not wait:
            return False  # one at a time
        try:
            data, ann = self._snapshot(labels)
        except ValueError as exc:
            self._set_save_status(f"Autosave failed: {exc}", error=True)
            return False
        target = self.folder or core.autosave_dir()
        in_dataset = self.folder is not None
        args = (target, self._stored_name(target), self._store, data, ann, self._pixel_size)
        seq = self._next_seq()
        if wait:
            try:
                ordered_write(self._writes, seq, *args)
            except (ValueError, OSError) as exc:
                return self._autosave_failed(exc, data, ann, in_dataset, seq)
            self._saved_write(data, ann, target, in_dataset, auto=True, seq=seq)
            return True
        worker = create_worker(ordered_write, self._writes, seq, *args, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(
            lambda written: written is not None and self._saved_write(data, ann, target, in_dataset, auto=True, seq=seq))
        worker.errored.connect(lambda exc: self._autosave_failed(exc, data, ann, in_dataset, seq))
        worker.finished.connect(self._autosave_done)
        self._autosave_worker = worker
        worker.start()
        return True

    def _autosave_failed(self, exc: BaseException, data: np.ndarray, ann, in_dataset: bool, seq: int) -> bool:
        """An autosave failed: when the dataset folder refused it, keep the work in the per-user
        autosave folder instead; tell the user either way. Returns whether the work is on disk."""
        if in_dataset and self._store is not None and isinstance(exc, (ValueError, OSError)):
            fallback = core.autosave_dir()
            try:
                ordered_write(self._writes, seq, fallback, self._autosave_name(), self._store, data, ann,
                              self._pixel_size)
            except (ValueError, OSError) as second:
                exc = second
            else:
                self._set_save_status(f"Autosave to the dataset folder failed ({exc}); kept in {fallback}",
                                      error=True)
                show_warning(f"Annotate: autosave to the dataset folder failed: {exc}. The work is kept in {fallback}")
                return True
        self._set_save_status(f"Autosave failed: {exc}", error=True)
        show_error(f"Autosave failed: {exc}")
        return False

    def _autosave_done(self) -> None:
        self._autosave_worker = None

    @property
    def autosave_busy(self) -> bool:
        return self._autosave_worker is not None

    def _saved_write(self, data: np.ndarray, ann, folder: Path, in_dataset: bool, auto: bool = False,
                     seq: int = 0) -> None:
        labels = self.labels_layer
        if labels is None or labels.data.shape != data.shape:
            return  # switched image meanwhile; that write was for the previous one
        if seq < self._recorded_seq:
            return  # a newer snapshot was recorded already
        self._recorded_seq = seq
        self._saved = data
        self._saved_classes = () if ann is None else (tuple(ann.classes), ann.image_class,
                                                      None if ann.regions is None else hash(ann.regions.tobytes()),
                                                      ann.tile)
        self._in_dataset = in_dataset
        self.last_saved = folder
        what = "Autosaved" if auto else "Saved"
        self._set_save_status(f"{what} {time.strftime('%H:%M:%S')} to {folder}")
        self._schedule_stats()

    def _set_save_status(self, text: str, error: bool = False) -> None:
        self.save_status.setStyleSheet(ERROR_STYLE if error else "")
        self.save_status.setText(text)

    def _restart_autosave_timer(self, *_: Any) -> None:
        self._autosave_timer.stop()
        if self.autosave_check.isChecked():
            self._autosave_timer.start(int(self.autosave_spin.value()) * 1000)

    def _on_autosave_timer(self) -> None:
        if self.labels_layer is not None:
            try:
                # the flag the layer's events and the (off-thread) statistics keep: no full
                # comparison of a large label image on the GUI thread every N seconds
                if self._dirty:
                    self.autosave()
            except Exception as exc:  # noqa: BLE001 - never raise from a timer
                report_error(exc, "Autosave")

    @_guarded("Reload")
    def reload(self, quiet: bool = False) -> bool:
        """Replace the annotation by the newest saved one (an undoable step)."""
        labels = self._require()
        saved, where = self._find_saved(self.name, self._store.shape)
        if saved is None:
            if not quiet:
                show_info(f"Annotate: no saved labels for {self.name!r}")
            return False
        edit = core.LabelEdit.between(np.asarray(labels.data), saved.astype(labels.data.dtype, copy=False))
        self._apply_edit(edit, labels)
        self._saved = saved
        self._in_dataset = self.folder is not None and where == self.folder
        self._load_classes(where)
        self._set_save_status(f"Reloaded from {where}")
        self._schedule_stats()
        return True

    # ================================================================ dock closing
    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if not self._dock_hooked or self._main_window is None:
            self._hook_dock_close()

    def event(self, ev) -> bool:  # noqa: D401 (Qt override)
        # docked: hook the dock's close button; taken out of its dock (napari's remove_dock_widget
        # only unparents the widget): let go of the layers
        if ev.type() == QEvent.Type.ParentChange and not self._torn_down:
            if self.parent() is None:
                if self._docked:
                    self.teardown()
            else:
                self._docked = True
                self._hook_dock_close()
        return super().event(ev)

    def _hook_dock_close(self) -> None:
        """Ask before napari's dock close button (or the main window) closes with unsaved work.

        Called when the widget is docked and when it is shown, until both hooks are in place
        (the main window is an ancestor only once the dock is added to it)."""
        if self._main_window is None:
            main = self.parent()
            while main is not None and not isinstance(main, QMainWindow):
                main = main.parent()
            if main is not None:
                main.installEventFilter(self._close_filter)
                self._main_window = weakref.ref(main)
        if self._dock_hooked:
            return
        dock = self.parent()
        while dock is not None and not hasattr(dock, "destroyOnClose"):
            dock = dock.parent()
        if dock is None:
            return
        original = dock.destroyOnClose
        me = weakref.ref(self)

        def destroy_on_close() -> None:
            widget = me()
            if widget is not None:
                if not widget.confirm_close():
                    return
                widget.teardown()
            original()

        dock.destroyOnClose = destroy_on_close
        self._dock_hooked = True

    def teardown(self) -> None:
        """The dock is closing (its work was saved or discarded): let go of the layers, stop the
        timers and the workers, and stop listening to the viewer, so that nothing of the closed
        dock acts on a layer any more."""
        if self._torn_down:
            return
        self._torn_down = True
        self._autosave_timer.stop()
        self._stats_timer.stop()
        labels = self.labels_layer
        self._leave_current(autosave=False, labels=labels)
        layers = self.viewer.layers
        for handler, emitter in ((self._on_layers_changed, layers.events.inserted),
                                 (self._on_layers_changed, layers.events.removed),
                                 (self._on_layer_removed, layers.events.removed)):
            emitter.disconnect(handler)
        for layer in layers:
            layer.events.name.disconnect(self._refresh_layer_choices)
        main = self._main_window() if self._main_window is not None else None
        if main is not None:
            main.removeEventFilter(self._close_filter)
        self._stats_runner.close()
        self._proposal_runner.close()


# ============================================================================ helpers
def _source_stem(layer) -> str | None:
    path = getattr(getattr(layer, "source", None), "path", None)
    return Path(str(path)).name if path else None


def _spatial(layer) -> dict[str, Any]:
    """``scale``, ``translate`` (and ``units``, napari >= 0.6) of a new layer aligned with ``layer``."""
    kwargs: dict[str, Any] = {"scale": tuple(layer.scale)[-2:], "translate": tuple(layer.translate)[-2:]}
    units = getattr(layer, "units", None)
    if units is not None:
        kwargs["units"] = tuple(str(u) for u in units)[-2:]
    return kwargs


def _pixel_size(layer) -> float | None:
    """µm per pixel from the layer (metadata, scale with units) or its source TIFF, as the other docks read it."""
    return layer_pixel_size(layer)[0]
