"""The *Train* dock: fine-tune a grain model on the annotations in the viewer.

Data come from three sources, in any mix:

* **layers**: every 2-D Labels layer paired with the Image layer it annotates (the Annotate
  dock's naming convention ``<image> grains`` first, then ``<image> labels``, then the only
  image of the same shape), shown as a checkable list;
* **dataset folders** (``images/`` + ``labels/``, or one sub-folder per class);
* **synthetic** micrographs drawn on the fly (domain randomisation or a generator preset),
  mixed in at a ratio, or alone for synthetic pre-training.

*Start* copies the layer data on the main thread (the user may keep painting), then runs
:func:`~napari_grainlab.core.training.fit` (or ``cross_validate`` for K-fold) in a napari
``thread_worker`` through :class:`~napari_grainlab.gui.workers.GeneratorTask`; dataset folders
are read inside the worker.  Events come back on the main thread and drive the progress bar,
napari's activity progress, a throttled matplotlib plot of the losses and the monitored
metric, and the ETA / device / speed labels.  *Stop* asks ``fit()`` to finish its step: it then
writes ``last/`` and keeps ``best/``.  Errors become napari notifications.  After a run, the
dock segments the current image with the best checkpoint (*Preview on …*).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .._engine import avoid_triton_llvm_clash
from .._layers import is_prediction, layer_pixel_size

avoid_triton_llvm_clash()  # again before timm / torchvision are first imported (see the module)

from ...core.data import DataError  # noqa: E402
from ...core.training import (  # noqa: E402
    Checkpoint,
    ConfigError,
    CrossValidated,
    EarlyStopped,
    Epoch,
    Finished,
    FoldStarted,
    Started,
    Step,
    TrainConfig,
    TrainWarning,
    Unfrozen,
)
from ...core.training.config import AUGMENT_PRESETS, DEVICES, STRATEGIES, TASKS  # noqa: E402
from .._forms import ComboBox, DoubleSpinBox, SpinBox  # noqa: E402
from ..workers import GeneratorTask, TaskResult, report_error  # noqa: E402
from ...core.inference.options import InferenceOptions  # noqa: E402
from ..jobs.predict import ImageDone, ImageFailed, PredictStatus, job_from_layer, predict_jobs, show_prediction  # noqa: E402
from ..jobs.train import DataStatus, StepProgress, TrainJob, run_training  # noqa: E402

if TYPE_CHECKING:
    import napari

__all__ = [
    "BACKBONES",
    "DataStatus",
    "LayerPair",
    "TrainJob",
    "TrainWidget",
    "TrainingPlot",
    "find_pairs",
    "fmt_duration",
    "run_training",
]

#: offered in the backbone box (any timm name may be typed)
BACKBONES = ("efficientnet_lite0", "resnet18", "resnet34", "resnet50", "convnext_tiny", "efficientnet_b0",
             "mobilenetv3_large_100", "regnety_008")
SYNTHETIC_SOURCES = (
    ("none", "no synthetic data"),
    ("randomized", "domain randomisation: every look and artefact of the generator varied widely (SEM and optical, "
                   "faint or missing boundaries, charging, noise, inverted polarity)"),
    ("sem", "preset: the generator's SEM look, grain size varied"),
    ("sem-elongated", "preset: SEM look with elongated grains"),
    ("sem-twins", "preset: SEM look with annealing twins"),
    ("optical", "preset: etched light-optical look (dark boundary lines)"),
    ("porous", "preset: SEM look with pores and second-phase particles"),
)
STRATEGY_TIPS = {
    "scratch": "Trains every layer from random weights; needs much more data than the others.",
    "frozen": "Keeps the pretrained backbone fixed (weights and BatchNorm statistics) and trains only the decoder.",
    "finetune": "Also trains the last backbone stages, at a lower learning rate, on top of the decoder.",
    "gradual": "Starts frozen and unfreezes one more backbone stage, deepest first, every few epochs.",
}
AUGMENT_TIPS = {
    "geometric": "flips, 90° turns, free rotation and isotropic scaling",
    "intensity": "brightness, contrast and gamma",
    "noise": "Gaussian noise, Poisson shot noise at a random dose, and blur",
    "sem": "SEM artefacts: scan-line shifts, line noise, charging, scratches, dust, shading",
}
WEIGHT_SOURCES = (("imagenet", "ImageNet"), ("none", "none (random)"), ("file", "weights file…"),
                  ("model", "GrainLab model folder…"))
DEVICE_TEXT = {"auto": "CUDA if available, else Apple MPS, else the CPU", "cuda": "CUDA GPU", "mps": "Apple MPS",
               "cpu": "CPU"}
METRIC_NAMES = {"boundary_f1": "boundary F1", "macro_f1": "macro F1", "val_loss": "val loss",
                "train_loss": "train loss", "accuracy": "accuracy"}
#: the name of a preview layer, by kind
ERROR_STYLE = "color: #f0524f;"
HINT_STYLE = "color: #9aa0a6;"
PLOT_REFRESH_MS = 1500  # at most one plot redraw every 1.5 s (a draw costs tens of ms of the main thread)
LABEL_REFRESH_MS = 1000  # speed / ETA labels and the progress-bar text
SPINNER_SPEED = 10  # % of normal speed of napari's activity animation while training (see _throttle_spinner)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Engine errors whose message is enough for the user (no traceback)."""
    from ...core.models import CheckpointError, ModelError, WeightsError

    return (DataError, ConfigError, ModelError, WeightsError, CheckpointError, MemoryError, FloatingPointError,
            OSError)


def _notify_failure(error: BaseException, context: str) -> None:
    if isinstance(error, _user_errors()):
        msg = str(error) or type(error).__name__
        if isinstance(error, MemoryError):
            msg = f"out of memory: {msg}"
        show_error(f"{context} failed: {msg}")
    else:
        report_error(error, context)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def _default_out() -> Path:
    return Path.home() / "grainlab-models" / time.strftime("run-%Y%m%d-%H%M%S")


# ============================================================================ layer pairs
def _unwrap(obj: Any) -> Any:
    """The napari object behind a plugin's ``PublicOnlyProxy`` (identity and selection need it)."""
    return getattr(obj, "__wrapped__", obj)


def _spatial_shape(layer) -> tuple[int, ...]:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in np.shape(data))
    return shape[:-1] if isinstance(layer, Image) and layer.rgb else shape


@dataclass
class LayerPair:
    """A Labels layer and the Image layer it annotates (``image`` None: no usable image; see ``problem``)."""

    labels: Any
    image: Any | None
    problem: str = ""
    prediction: bool = False  # the labels are a model's prediction (unchecked by default)

    @property
    def key(self) -> str:
        return str(self.labels.unique_id)

    @property
    def usable(self) -> bool:
        return self.image is not None and not self.problem

    def text(self) -> str:
        if self.image is None:
            return f"{self.labels.name}: {self.problem}"
        return f"{self.image.name}  ←  {self.labels.name}"


def find_pairs(layers) -> list[LayerPair]:
    """Pair every Labels layer with the Image layer it annotates.

    Preference: the image named like the labels without a ``" grains"`` / ``" labels"``
    suffix, else the only (or the topmost) 2-D image of the same shape.
    """
    images = [ly for ly in layers if isinstance(ly, Image) and not is_prediction(ly)]
    by_name = {ly.name: ly for ly in images}
    pairs = []
    for lab in layers:
        if not isinstance(lab, Labels):
            continue
        pred = is_prediction(lab)
        shape = _spatial_shape(lab)
        if len(shape) != 2:
            pairs.append(LayerPair(lab, None, f"{len(shape)}-D labels (only 2-D images can be used)", pred))
            continue
        match = None
        base = lab.name.removesuffix(" (prediction)")
        for suffix in (" annotation", " grains", " labels", " annotations"):
            if base.endswith(suffix):
                cand = by_name.get(base[: -len(suffix)])
                if cand is not None and _spatial_shape(cand) == shape:
                    match = cand
                    break
        if match is None:
            same = [im for im in images if _spatial_shape(im) == shape]
            match = same[-1] if same else None  # the topmost in the layer list
        if match is None:
            h, w = shape
            problem = "no image layer" if not images else f"no image of its shape ({h} × {w} px)"
            pairs.append(LayerPair(lab, None, problem, pred))
        else:
            pairs.append(LayerPair(lab, match, "", pred))
    return pairs


# ================================================================================= plot
class TrainingPlot(QWidget):
    """Live plot: training loss per step (raw and smoothed), validation loss and the monitored
    metric per epoch.  Updates are collected and drawn at most every ``PLOT_REFRESH_MS``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 2.3), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        self._colors = {"train": "#6fa8dc", "val": "#f6b26b", "metric": "#93c47d", "text": "#d0d2d6",
                        "face": "#262930"}
        ax, ax2 = self.ax, self.ax2
        (self.raw_line,) = ax.plot([], [], lw=0.7, alpha=0.35)
        (self.train_line,) = ax.plot([], [], lw=1.6, label="train loss")
        (self.val_line,) = ax.plot([], [], "o-", ms=3.5, lw=1.2, label="val loss")
        (self.metric_line,) = ax2.plot([], [], "s-", ms=3.5, lw=1.2, label="boundary F1")
        (self.best_marker,) = ax2.plot([], [], "*", ms=11, label="_best")
        self._placeholder = ax.text(0.5, 0.5, "loss and validation curves\nappear here during training",
                                    ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xlabel("step", fontsize=8, labelpad=1)
        ax.set_ylabel("loss", fontsize=8, labelpad=2)
        ax2.set_ylim(0, 1)
        for a in (ax, ax2):
            a.tick_params(labelsize=7, length=2, pad=1)
            a.margins(x=0.02)
        self._legend = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PLOT_REFRESH_MS)
        self._timer.timeout.connect(self._redraw)
        self.redraws = 0
        self.clear()
        self.set_theme(None)

    # ---------------------------------------------------------------------- data
    def clear(self, metric: str = "boundary_f1") -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.smooth: list[float] = []
        self._ema: float | None = None
        self._n_ema = 0
        self.epoch_x: list[int] = []
        self.val_losses: list[float] = []
        self.metrics: list[float] = []
        self.best: tuple[int, float] | None = None
        self.metric = metric
        self.metric_line.set_label(METRIC_NAMES.get(metric, metric))
        self.ax2.set_ylabel(METRIC_NAMES.get(metric, metric), fontsize=8, labelpad=2)
        self._placeholder.set_visible(True)
        self._schedule()

    def add_step(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self._n_ema += 1
        a = 0.1
        self._ema = loss if self._ema is None else (1 - a) * self._ema + a * loss
        # bias-corrected start: the first points are not pulled towards the first loss
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.smooth.append(self._ema if self._n_ema > 10 else float(np.mean(self.losses[-self._n_ema:])))
        self._schedule()

    def add_epoch(self, x: int, val_loss: float, metric: float | None, improved: bool) -> None:
        self.epoch_x.append(int(x))
        self.val_losses.append(float(val_loss) if val_loss is not None else float("nan"))
        self.metrics.append(float(metric) if metric is not None else float("nan"))
        if improved and metric is not None and math.isfinite(metric):
            self.best = (int(x), float(metric))
        self._schedule()

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Draw pending updates now (e.g. when training ends)."""
        self._timer.stop()
        self._redraw()

    def _redraw(self) -> None:
        self.raw_line.set_data(self.steps, self.losses)
        self.train_line.set_data(self.steps, self.smooth)
        vx = [x for x, v in zip(self.epoch_x, self.val_losses) if math.isfinite(v)]
        self.val_line.set_data(vx, [v for v in self.val_losses if math.isfinite(v)])
        mx = [x for x, m in zip(self.epoch_x, self.metrics) if math.isfinite(m)]
        my = [m for m in self.metrics if math.isfinite(m)]
        self.metric_line.set_data(mx, my)
        self.best_marker.set_data([self.best[0]] if self.best else [], [self.best[1]] if self.best else [])
        has_data = bool(self.steps or vx)
        self._placeholder.set_visible(not has_data)
        if has_data:
            self.ax.relim()
            self.ax.autoscale_view()
            top = max(my) if my else 1.0
            self.ax2.set_ylim(0, 1.0 if top <= 1.0 else top * 1.05)
            xmax = max(self.steps[-1] if self.steps else 1, self.epoch_x[-1] if self.epoch_x else 1)
            self.ax.set_xlim(0, max(2, xmax) * 1.02)
        self._update_legend()
        self.redraws += 1
        self.canvas.draw_idle()

    def _update_legend(self) -> None:
        handles = [self.train_line]
        if len(self.val_line.get_xdata()):
            handles.append(self.val_line)
        if len(self.metric_line.get_xdata()):
            handles.append(self.metric_line)
        if self._legend is not None and getattr(self, "_legend_n", 0) == len(handles):
            return
        if self._legend is not None:
            self._legend.remove()
        c = self._colors
        self._legend = self.ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0, 1.0, 0.1),
                                      ncol=3, mode="expand", fontsize=7, frameon=False, labelcolor=c["text"],
                                      handlelength=1.4, borderaxespad=0.2, columnspacing=0.8)
        self._legend_n = len(handles)

    # --------------------------------------------------------------------- look
    def set_theme(self, theme: Any | None) -> None:
        """Colours from a napari theme (None: napari's dark theme)."""
        c = self._colors
        if theme is not None:
            try:
                c["face"] = theme.background.as_hex()
                c["text"] = theme.text.as_hex()
            except AttributeError:
                pass
        self.figure.set_facecolor(c["face"])
        for a in (self.ax, self.ax2):
            a.set_facecolor(c["face"])
            a.tick_params(colors=c["text"])
            for spine in a.spines.values():
                spine.set_color(c["text"])
                spine.set_alpha(0.5)
            a.xaxis.label.set_color(c["text"])
            a.yaxis.label.set_color(c["text"])
        self.ax2.patch.set_visible(False)
        self._placeholder.set_color(c["text"])
        self.raw_line.set_color(c["train"])
        self.train_line.set_color(c["train"])
        self.val_line.set_color(c["val"])
        self.metric_line.set_color(c["metric"])
        self.best_marker.set_color(c["metric"])
        self._legend_n = -1
        self._schedule()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._fit_margins()

    def _fit_margins(self) -> None:
        """Margins in pixels, so tick labels are not clipped at narrow dock widths."""
        w, h = max(self.canvas.width(), 100), max(self.canvas.height(), 80)
        self.figure.subplots_adjust(left=min(0.3, 44 / w), right=1 - min(0.3, 40 / w), bottom=min(0.4, 34 / h),
                                    top=1 - min(0.3, 22 / h))


# =============================================================================== widget
def _hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def _section(title: str, widget: QWidget, expanded: bool = False) -> QCollapsible:
    sec = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
    sec.setDuration(120)
    sec.addWidget(widget)
    if expanded:
        sec.expand(animate=False)
    return sec


def _form() -> tuple[QWidget, QFormLayout]:
    w = QWidget()
    form = QFormLayout(w)
    form.setContentsMargins(4, 2, 4, 2)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return w, form


def _row(*widgets: QWidget, stretch: int | None = 0) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(4)
    for i, x in enumerate(widgets):
        lay.addWidget(x, 1 if i == stretch else 0)
    return w


def _compact(*widgets: QWidget, min_width: int = 56) -> None:
    """Let combo boxes and spin boxes shrink to a narrow dock (their size hints follow the longest text)."""
    for w in widgets:
        if isinstance(w, ComboBox):
            w.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(6)
        w.setMinimumWidth(min_width)
        w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)


def _tip(widget: QWidget, text: str) -> QWidget:
    widget.setToolTip(f"<p>{text}</p>")
    return widget


class LogSpinBox(DoubleSpinBox):
    """A spin box for learning rates: shows ``0.001`` / ``3e-05``, steps by doubling and halving."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(10)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 (Qt override)
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # noqa: D102 (Qt override)
        from qtpy.QtGui import QValidator

        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok = all(c in "0123456789.eE+-" for c in t)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        state = QValidator.State.Acceptable if self.minimum() <= v <= self.maximum() else \
            QValidator.State.Intermediate
        return state, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        self.setValue(min(self.maximum(), max(self.minimum(), self.value() * 2.0 ** steps)))


class TrainWidget(QWidget):
    """Dock that trains a grain model from layers, dataset folders and synthetic data.

    Scripts and tests drive it with :meth:`set_config`, :meth:`start`, :meth:`stop` and
    :meth:`preview`; the dialogs are methods (:meth:`ask_dataset_folder`,
    :meth:`ask_output_folder`, :meth:`ask_weights_file`, :meth:`ask_model_folder`,
    :meth:`ask_overwrite`) that may be replaced.

    Signals: ``event_received(object)`` for every training event (after the dock handled it),
    ``training_finished(TaskResult)`` and ``preview_finished(TaskResult)``.
    """

    event_received = Signal(object)
    training_finished = Signal(object)
    preview_finished = Signal(object)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.setMinimumWidth(330)
        self._pairs: list[LayerPair] = []
        self._unchecked: set[str] = set()
        self._checked: set[str] = set()  # predictions the user checked explicitly
        self._folders: list[str] = []
        self._weights_path = ""
        self._auto_out = True
        self._task: GeneratorTask | None = None
        self._preview_task: GeneratorTask | None = None
        self._finished: Finished | None = None
        self._best_path: str | None = None
        self._started: Started | None = None
        self._kfold = 0
        self._speed: float | None = None
        self._preview_layer_ref: Any = None
        self._preview_done: Any = None
        self._connected_layers: list[Any] = []
        self._pending_step: Step | None = None
        self._label_timer = QTimer(self)
        self._label_timer.setSingleShot(True)
        self._label_timer.setInterval(LABEL_REFRESH_MS)
        self._label_timer.timeout.connect(self._show_step)

        settings = QWidget()
        s_layout = QVBoxLayout(settings)
        s_layout.setContentsMargins(0, 0, 0, 0)
        s_layout.setSpacing(2)
        s_layout.addWidget(_section("Data", self._build_data(), expanded=True))
        s_layout.addWidget(_section("Model and training", self._build_model(), expanded=True))
        self.sections = {
            "augmentation": _section("Augmentation", self._build_augmentation()),
            "validation": _section("Validation", self._build_validation()),
            "advanced": _section("Advanced", self._build_advanced()),
        }
        for sec in self.sections.values():
            s_layout.addWidget(sec)
        s_layout.addStretch(1)
        self.settings = settings
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(settings)
        self.scroll_area = scroll

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(scroll)
        splitter.addWidget(self._build_run_panel())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(splitter)

        self._sync_enabled()
        self._apply_theme()
        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.reordered.connect(self._on_layers_changed)
        layers.selection.events.active.connect(self._update_preview_button)
        self.viewer.events.theme.connect(self._apply_theme)
        self.refresh_pairs()

    # ======================================================================= layout
    def _build_data(self) -> QWidget:
        w, form = _form()
        self.pair_list = QListWidget()
        self.pair_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.pair_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.pair_list.setMaximumHeight(84)
        self.pair_list.setToolTip("<p>Image layers and the Labels layers that annotate them (0 = not annotated). "
                                  "A labels layer named <i>&lt;image&gt; grains</i> belongs to that image; "
                                  "otherwise to an image of the same shape. Uncheck pairs to leave them out.</p>")
        self.pair_list.itemChanged.connect(self._on_pair_item_changed)
        self.pairs_hint = QLabel()
        self.pairs_hint.setWordWrap(True)
        self.pairs_hint.setStyleSheet(HINT_STYLE)
        form.addRow(QLabel("Annotated layers"))
        form.addRow(self.pair_list)
        form.addRow(self.pairs_hint)

        self.folder_list = QListWidget()
        self.folder_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.folder_list.setMaximumHeight(60)
        self.folder_list.setToolTip("<p>dataset folders: images/ + labels/ (segmentation), or one sub-folder of "
                                    "images per class (classification)</p>")
        self.add_folder_button = QPushButton("Add…")
        self.add_folder_button.setToolTip("add a dataset folder")
        self.add_folder_button.clicked.connect(lambda: self.add_dataset_folder())
        self.remove_folder_button = QPushButton("Remove")
        self.remove_folder_button.setToolTip("remove the selected dataset folder")
        self.remove_folder_button.clicked.connect(self._remove_selected_folder)
        form.addRow(_row(QLabel("Dataset folders"), QWidget(), self.add_folder_button, self.remove_folder_button,
                         stretch=1))
        form.addRow(self.folder_list)

        self.synthetic_combo = ComboBox()
        for i, (key, text) in enumerate(SYNTHETIC_SOURCES):
            self.synthetic_combo.addItem(key, key)
            self.synthetic_combo.setItemData(i, text, Qt.ItemDataRole.ToolTipRole)
        self.synthetic_combo.setCurrentIndex(self.synthetic_combo.findData("randomized"))
        _tip(self.synthetic_combo, "Synthetic micrographs with exact grain labels, drawn on the fly: domain "
                                   "randomisation varies the look widely (SEM and optical, faint boundaries, "
                                   "artefacts), a preset keeps one look.")
        self.synthetic_combo.currentIndexChanged.connect(self._sync_enabled)
        self.ratio_slider = QSlider(Qt.Orientation.Horizontal)
        self.ratio_slider.setRange(0, 100)
        self.ratio_slider.setSingleStep(5)
        self.ratio_slider.setPageStep(10)
        self.ratio_slider.setValue(0)
        self.ratio_label = QLabel("0 %")
        self.ratio_label.setMinimumWidth(self.ratio_label.fontMetrics().horizontalAdvance("100 %") + 4)
        self.ratio_slider.valueChanged.connect(lambda v: self.ratio_label.setText(f"{v} %"))
        _tip(self.ratio_slider, "fraction of the training patches drawn from the synthetic source")
        self.synthetic_only_check = QCheckBox("Synthetic only (pre-training)")
        _tip(self.synthetic_only_check, "Train on synthetic micrographs alone, validated on synthetic images; "
                                        "layers and folders are ignored. Use the result as the weights "
                                        "(GrainLab model folder) of a later run on real data.")
        self.synthetic_only_check.toggled.connect(self._on_synthetic_only)
        _compact(self.synthetic_combo)
        self.ratio_slider.setMinimumWidth(40)
        form.addRow("Synthetic", self.synthetic_combo)
        form.addRow("Mix", _row(self.ratio_slider, self.ratio_label))
        form.addRow(self.synthetic_only_check)
        return w

    def _build_model(self) -> QWidget:
        w, form = _form()
        self.task_combo = ComboBox()
        for t in TASKS:
            self.task_combo.addItem({"segment": "segment grains", "classify": "classify images"}[t], t)
        _tip(self.task_combo, "segment: grain boundaries and instances (U-Net); classify: one class per image or "
                              "tile, from class folders")
        self.task_combo.currentIndexChanged.connect(self._sync_enabled)
        self.backbone_combo = ComboBox()
        self.backbone_combo.setEditable(True)
        self.backbone_combo.setInsertPolicy(ComboBox.InsertPolicy.NoInsert)
        self.backbone_combo.addItems(BACKBONES)
        _tip(self.backbone_combo, "the ImageNet encoder: any timm model name works (checked before training)")
        self.weights_combo = ComboBox()
        for key, text in WEIGHT_SOURCES:
            self.weights_combo.addItem(text, key)
        _tip(self.weights_combo, "initial weights: ImageNet (offline for efficientnet_lite0; otherwise from local "
                                 "caches), random, a .safetensors / .pth file, or a GrainLab model folder (e.g. "
                                 "a synthetic pre-training run)")
        self.weights_combo.activated.connect(self._on_weights_activated)
        self.weights_combo.currentIndexChanged.connect(self._sync_enabled)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("path of the weights")
        self.weights_edit.textEdited.connect(lambda t: setattr(self, "_weights_path", t.strip()))
        self.weights_browse = QToolButton()
        self.weights_browse.setText("…")
        self.weights_browse.setToolTip("choose the weights")
        self.weights_browse.clicked.connect(self._browse_weights)
        self.weights_row = _row(self.weights_edit, self.weights_browse)
        self.strategy_combo = ComboBox()
        for i, s in enumerate(STRATEGIES):
            self.strategy_combo.addItem(s, s)
            self.strategy_combo.setItemData(i, STRATEGY_TIPS[s], Qt.ItemDataRole.ToolTipRole)
        self.strategy_combo.setCurrentIndex(self.strategy_combo.findData("finetune"))
        self.strategy_combo.currentIndexChanged.connect(self._sync_enabled)

        self.epochs_spin = SpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(30)
        _tip(self.epochs_spin, "passes over the training patches; early stopping may end sooner")
        self.lr_spin = LogSpinBox()
        self.lr_spin.setRange(1e-6, 1.0)
        self.lr_spin.setValue(1e-3)
        _tip(self.lr_spin, "learning rate of the decoder / head (AdamW, warm-up then cosine decay); the arrows "
                           "halve or double it, and values like 3e-4 may be typed")
        self.batch_spin = SpinBox()
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(8)
        _tip(self.batch_spin, "patches per step; halved automatically when the GPU runs out of memory")
        self.patch_spin = SpinBox()
        self.patch_spin.setRange(32, 2048)
        self.patch_spin.setSingleStep(32)
        self.patch_spin.setValue(256)
        self.patch_spin.setSuffix(" px")
        _tip(self.patch_spin, "side of the square training patches (a multiple of 32)")
        self.out_edit = QLineEdit(str(_default_out()))
        self.out_edit.setToolTip("<p>the run writes best/, last/, config.json and history.json here; the default "
                                 "is a new time-stamped folder for every run</p>")
        self.out_edit.textEdited.connect(lambda _t: setattr(self, "_auto_out", False))
        self.out_browse = QToolButton()
        self.out_browse.setText("…")
        self.out_browse.setToolTip("choose the output folder")
        self.out_browse.clicked.connect(self._browse_out)

        _compact(self.task_combo, self.backbone_combo, self.weights_combo, self.strategy_combo, self.epochs_spin,
                 self.lr_spin, self.batch_spin, self.patch_spin, self.weights_edit, self.out_edit)
        form.addRow("Task", self.task_combo)
        form.addRow("Backbone", self.backbone_combo)
        form.addRow("Weights", self.weights_combo)
        form.addRow("", self.weights_row)
        form.addRow("Strategy", self.strategy_combo)
        for text, spin in (("Epochs", self.epochs_spin), ("Learning rate", self.lr_spin),
                           ("Batch size", self.batch_spin), ("Patch size", self.patch_spin)):
            lab = QLabel(text)
            lab.setToolTip(spin.toolTip())
            form.addRow(lab, spin)
        form.addRow("Output", _row(self.out_edit, self.out_browse))
        self._weights_form_label = form.labelForField(self.weights_row)
        return w

    def _build_augmentation(self) -> QWidget:
        w, form = _form()
        self.augment_checks: dict[str, QCheckBox] = {}
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for i, name in enumerate(AUGMENT_PRESETS):
            cb = QCheckBox(name)
            cb.setChecked(True)
            _tip(cb, AUGMENT_TIPS[name])
            self.augment_checks[name] = cb
            grid.addWidget(cb, i // 2, i % 2)
        form.addRow(grid)
        self.oriented_check = QCheckBox("Oriented growth")
        _tip(self.oriented_check, "The grains have a growth direction (e.g. columnar or rolled): keep only zoom and "
                                  "the 180° turn, which preserve directions, instead of free rotations and flips.")
        form.addRow(self.oriented_check)
        return w

    def _build_validation(self) -> QWidget:
        w, form = _form()
        self.holdout_radio = QRadioButton("Hold out micrographs")
        self.kfold_radio = QRadioButton("K-fold")
        group = QButtonGroup(w)
        group.addButton(self.holdout_radio)
        group.addButton(self.kfold_radio)
        self.holdout_radio.setChecked(True)
        self.val_spin = SpinBox()
        self.val_spin.setRange(0, 90)
        self.val_spin.setValue(20)
        self.val_spin.setSuffix(" %")
        self.val_spin.setSpecialValueText("no validation")
        _tip(self.val_spin, "Whole micrographs (groups: tiles of one micrograph stay together) held out for "
                            "validation; with a single image, a spatial cut of it.")
        self.k_spin = SpinBox()
        self.k_spin.setRange(2, 20)
        self.k_spin.setValue(5)
        self.k_spin.setSuffix(" folds")
        _tip(self.k_spin, "Group K-fold cross-validation: one model per fold (OUT/fold1 …), then mean ± sd of the "
                          "metrics.")
        _tip(self.holdout_radio, self.val_spin.toolTip()[3:-4])
        _tip(self.kfold_radio, self.k_spin.toolTip()[3:-4])
        _compact(self.val_spin, self.k_spin)
        self.holdout_radio.toggled.connect(self._sync_enabled)
        form.addRow(self.holdout_radio, self.val_spin)
        form.addRow(self.kfold_radio, self.k_spin)
        return w

    def _build_advanced(self) -> QWidget:
        w, form = _form()
        self.stages_spin = SpinBox()
        self.stages_spin.setRange(1, 8)
        self.stages_spin.setValue(2)
        _tip(self.stages_spin, "finetune: how many of the deepest backbone stages train")
        self.unfreeze_spin = SpinBox()
        self.unfreeze_spin.setRange(1, 1000)
        self.unfreeze_spin.setValue(2)
        self.unfreeze_spin.setSuffix(" epochs")
        _tip(self.unfreeze_spin, "gradual: epochs between unfreezing one more backbone stage")
        self.backbone_lr_spin = DoubleSpinBox()
        self.backbone_lr_spin.setDecimals(3)
        self.backbone_lr_spin.setRange(0.001, 10.0)
        self.backbone_lr_spin.setSingleStep(0.05)
        self.backbone_lr_spin.setValue(0.1)
        self.backbone_lr_spin.setPrefix("× ")
        _tip(self.backbone_lr_spin, "learning rate of the trained backbone stages, relative to the decoder's")
        self.patience_spin = SpinBox()
        self.patience_spin.setRange(1, 10_000)
        self.patience_spin.setValue(8)
        self.patience_spin.setSuffix(" epochs")
        _tip(self.patience_spin, "early stopping: stop after this many epochs without improvement of the "
                                 "validation metric")
        self.device_combo = ComboBox()
        for i, d in enumerate(DEVICES):
            self.device_combo.addItem(d, d)
            self.device_combo.setItemData(i, DEVICE_TEXT.get(d, d), Qt.ItemDataRole.ToolTipRole)
        _tip(self.device_combo, "where to train: " + "; ".join(f"{d}: {t}" for d, t in DEVICE_TEXT.items()))
        self._mark_unavailable_devices()
        self.amp_check = QCheckBox("Mixed precision (AMP, CUDA only)")
        self.amp_check.setChecked(True)
        _tip(self.amp_check, "bf16 where the GPU supports it, fp16 with a gradient scaler otherwise; ignored on "
                             "the CPU and MPS")
        self.seed_spin = SpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        _tip(self.seed_spin, "runs with the same seed, data and settings draw the same patches")
        self.steps_spin = SpinBox()
        self.steps_spin.setRange(0, 1_000_000)
        self.steps_spin.setSpecialValueText("auto")
        _tip(self.steps_spin, "training steps per epoch; auto: from the annotated area (10 to 500)")
        _compact(self.stages_spin, self.unfreeze_spin, self.backbone_lr_spin, self.patience_spin, self.device_combo,
                 self.seed_spin, self.steps_spin)
        form.addRow("Fine-tuned stages", self.stages_spin)
        form.addRow("Unfreeze every", self.unfreeze_spin)
        form.addRow("Backbone LR", self.backbone_lr_spin)
        form.addRow("Patience", self.patience_spin)
        form.addRow("Device", self.device_combo)
        form.addRow(self.amp_check)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Steps / epoch", self.steps_spin)
        return w

    def _mark_unavailable_devices(self) -> None:
        import torch

        available = {"auto": True, "cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
        model = self.device_combo.model()
        for i in range(self.device_combo.count()):
            key = self.device_combo.itemData(i)
            if not available.get(key, True):
                item = model.item(i)
                item.setEnabled(False)
                item.setToolTip(f"no {DEVICE_TEXT[key]} on this machine")

    def _build_run_panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip("train with the settings above (in the background)")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("<p>stop after the current step: the run writes last/ and keeps the best "
                                    "checkpoint in best/</p>")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.stop_button, 1)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.setTextVisible(True)
        self.device_label = QLabel()
        self.eta_label = QLabel()
        self.eta_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        info = QHBoxLayout()
        info.addWidget(self.device_label, 1)
        info.addWidget(self.eta_label)
        self.best_label = QLabel()
        self.status_label = QLabel("Ready.")
        for lab in (self.best_label, self.status_label):
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = TrainingPlot()
        self.preview_button = QPushButton("Preview")
        self.preview_button.setEnabled(False)
        self.preview_button.setToolTip("<p>segment the current image with the best model of the last run and add "
                                       "its grains and boundary map as layers</p>")
        self.preview_button.clicked.connect(lambda: self.preview())
        lay.addWidget(_hline())
        lay.addLayout(buttons)
        lay.addWidget(self.progress_bar)
        lay.addLayout(info)
        lay.addWidget(self.best_label)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.status_label)
        lay.addWidget(self.preview_button)
        return panel

    def _apply_theme(self, *_: Any) -> None:
        try:
            from napari.utils.theme import get_theme

            name = self.viewer.theme
            if name == "system":
                from napari.utils.theme import get_system_theme

                name = get_system_theme()
            theme = get_theme(name)
        except Exception:  # noqa: BLE001 - any theme trouble: keep the default colours
            theme = None
        self.plot.set_theme(theme)

    # ================================================================ data: layers
    def _on_layers_changed(self, *_: Any) -> None:
        self.refresh_pairs()

    def _watch_names(self) -> None:
        for layer in self._connected_layers:
            try:
                layer.events.name.disconnect(self._on_layers_changed)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._connected_layers = []
        for layer in self.viewer.layers:
            if isinstance(layer, (Image, Labels)):
                layer.events.name.connect(self._on_layers_changed)
                self._connected_layers.append(layer)

    @property
    def pairs(self) -> list[LayerPair]:
        """The Labels / Image pairs listed in the dock (as of the last refresh)."""
        return list(self._pairs)

    def refresh_pairs(self) -> None:
        """Re-pair the Labels and Image layers of the viewer and list them."""
        self._watch_names()
        self._pairs = find_pairs(self.viewer.layers)
        self.pair_list.blockSignals(True)
        try:
            self.pair_list.clear()
            for pair in self._pairs:
                item = QListWidgetItem(pair.text())
                item.setData(Qt.ItemDataRole.UserRole, pair.key)
                if pair.usable:
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                    item.setCheckState(Qt.CheckState.Checked if self._is_checked(pair) else Qt.CheckState.Unchecked)
                    h, w = _spatial_shape(pair.labels)
                    tip = f"image <b>{pair.image.name}</b>, labels <b>{pair.labels.name}</b>, {h} × {w} px"
                    if pair.prediction:
                        tip += ("<br>these labels are a model's prediction: check them once you have corrected "
                                "them")
                    item.setToolTip(f"<p>{tip}</p>")
                else:
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                    item.setToolTip(f"<p>{pair.labels.name}: {pair.problem}</p>")
                self.pair_list.addItem(item)
        finally:
            self.pair_list.blockSignals(False)
        if not self._pairs:
            self.pairs_hint.setText("No Labels layer: annotate grains (Annotate dock) or add a dataset folder.")
        else:
            n = sum(1 for p in self._pairs if p.usable and self._is_checked(p))
            self.pairs_hint.setText(f"{n} of {len(self._pairs)} labels layer(s) selected")
        self._update_preview_button()

    def _is_checked(self, pair: LayerPair) -> bool:
        if pair.prediction:
            return pair.key in self._checked
        return pair.key not in self._unchecked

    def _on_pair_item_changed(self, item: QListWidgetItem) -> None:
        key = item.data(Qt.ItemDataRole.UserRole)
        on = item.checkState() == Qt.CheckState.Checked
        (self._unchecked.discard if on else self._unchecked.add)(key)
        (self._checked.add if on else self._checked.discard)(key)
        n = sum(1 for p in self._pairs if p.usable and self._is_checked(p))
        self.pairs_hint.setText(f"{n} of {len(self._pairs)} labels layer(s) selected")

    def set_pair_checked(self, labels_name: str, checked: bool) -> None:
        """Include (or leave out) the pair of the Labels layer ``labels_name``."""
        for i, pair in enumerate(self._pairs):
            if pair.labels.name == labels_name:
                item = self.pair_list.item(i)
                if item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                    item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
                return
        raise KeyError(labels_name)

    def selected_pairs(self) -> list[LayerPair]:
        return [p for p in self._pairs if p.usable and self._is_checked(p)]

    # =============================================================== data: folders
    def ask_dataset_folder(self) -> Path | None:
        start = self._folders[-1] if self._folders else str(Path.home())
        path = QFileDialog.getExistingDirectory(self, "Dataset folder (images/ + labels/, or class folders)", start)
        return Path(path) if path else None

    def add_dataset_folder(self, path: str | Path | None = None) -> bool:
        """Add a dataset folder (asked for when None); checks its layout, not its files."""
        from ...core.data import detect_task

        path = self.ask_dataset_folder() if path is None else Path(path)
        if path is None:
            return False
        try:
            kind = detect_task(path)
        except DataError as exc:
            show_error(f"Cannot use {path}: {exc}")
            return False
        folder = str(Path(path).resolve())
        if folder in self._folders:
            return False
        self._folders.append(folder)
        item = QListWidgetItem(f"{Path(folder).name}  ({kind})")
        item.setToolTip(folder)
        self.folder_list.addItem(item)
        return True

    @property
    def dataset_folders(self) -> list[str]:
        return list(self._folders)

    def _remove_selected_folder(self) -> None:
        row = self.folder_list.currentRow()
        if row < 0 and self.folder_list.count():
            row = self.folder_list.count() - 1
        if row >= 0:
            self.folder_list.takeItem(row)
            del self._folders[row]

    def clear_dataset_folders(self) -> None:
        self.folder_list.clear()
        self._folders.clear()

    # ============================================================== model options
    def ask_weights_file(self) -> Path | None:
        path, _ = QFileDialog.getOpenFileName(self, "Initial weights", str(Path.home()),
                                              "Weights (*.safetensors *.pth *.pt *.bin);;All files (*)")
        return Path(path) if path else None

    def ask_model_folder(self) -> Path | None:
        path = QFileDialog.getExistingDirectory(self, "GrainLab model folder (model.safetensors + model.json)",
                                                str(Path.home()))
        return Path(path) if path else None

    def ask_output_folder(self) -> Path | None:
        path = QFileDialog.getExistingDirectory(self, "Output folder of the training run",
                                                str(Path(self.out_edit.text()).expanduser().parent))
        return Path(path) if path else None

    def ask_overwrite(self, folder: Path) -> bool:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Output folder is not empty")
        box.setText(f"{folder} is not empty.")
        box.setInformativeText("Train into it anyway? Its best/ and last/ models, config.json and history.json are "
                               "replaced.")
        replace = box.addButton("Train into it", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec_()
        return box.clickedButton() is replace

    def _on_weights_activated(self, _index: int) -> None:
        if self.weights_combo.currentData() in ("file", "model") and not self._weights_path:
            self._browse_weights()

    def _browse_weights(self) -> None:
        kind = self.weights_combo.currentData()
        path = self.ask_model_folder() if kind == "model" else self.ask_weights_file()
        if path is not None:
            self._weights_path = str(path)
            self.weights_edit.setText(str(path))

    def _browse_out(self) -> None:
        path = self.ask_output_folder()
        if path is not None:
            self._auto_out = False
            self.out_edit.setText(str(path))

    def _on_synthetic_only(self, on: bool) -> None:
        if on and self.synthetic_combo.currentData() == "none":
            self.synthetic_combo.setCurrentIndex(self.synthetic_combo.findData("randomized"))
        self._sync_enabled()

    def _sync_enabled(self, *_: Any) -> None:
        """Enable the options that apply to the current choices."""
        segment = self.task_combo.currentData() == "segment"
        synth_only = segment and self.synthetic_only_check.isChecked()
        self.synthetic_only_check.setEnabled(segment)
        self.synthetic_combo.setEnabled(segment)
        self.ratio_slider.setEnabled(segment and not synth_only and self.synthetic_combo.currentData() != "none")
        self.ratio_label.setEnabled(self.ratio_slider.isEnabled())
        self.pair_list.setEnabled(segment and not synth_only)
        self.folder_list.setEnabled(not synth_only)
        self.add_folder_button.setEnabled(not synth_only)
        self.remove_folder_button.setEnabled(not synth_only)
        weights = self.weights_combo.currentData()
        self.weights_row.setVisible(weights in ("file", "model"))
        if self._weights_form_label is not None:
            self._weights_form_label.setVisible(weights in ("file", "model"))
        strategy = self.strategy_combo.currentData()
        self.strategy_combo.setToolTip("<p><b>" + strategy + "</b>: " + STRATEGY_TIPS[strategy] + "</p><p>"
                                       + "<br>".join(f"<b>{s}</b>: {t}" for s, t in STRATEGY_TIPS.items()) + "</p>")
        self.stages_spin.setEnabled(strategy == "finetune")
        self.unfreeze_spin.setEnabled(strategy == "gradual")
        self.backbone_lr_spin.setEnabled(strategy in ("finetune", "gradual"))
        self.val_spin.setEnabled(self.holdout_radio.isChecked())
        self.k_spin.setEnabled(self.kfold_radio.isChecked())

    # ==================================================================== config
    def weights_source(self) -> str:
        kind = self.weights_combo.currentData()
        if kind in ("file", "model"):
            return self._weights_path
        return kind

    def config(self) -> TrainConfig:
        """The training configuration shown in the dock (raises ConfigError when invalid)."""
        segment = self.task_combo.currentData() == "segment"
        synth = self.synthetic_combo.currentData() if segment else "none"
        synth_only = segment and self.synthetic_only_check.isChecked()
        ratio = 1.0 if synth_only else (self.ratio_slider.value() / 100 if synth != "none" else 0.0)
        weights = self.weights_source()
        if not weights:
            raise ConfigError("weights: choose a weights file or a GrainLab model folder")
        return TrainConfig(
            task=self.task_combo.currentData(),
            backbone=self.backbone_combo.currentText().strip(),
            weights=weights,
            strategy=self.strategy_combo.currentData(),
            finetune_stages=self.stages_spin.value(),
            unfreeze_every=self.unfreeze_spin.value(),
            backbone_lr_factor=self.backbone_lr_spin.value(),
            epochs=self.epochs_spin.value(),
            steps_per_epoch=self.steps_spin.value() or None,
            batch_size=self.batch_spin.value(),
            patch_size=self.patch_spin.value(),
            lr=self.lr_spin.value(),
            patience=self.patience_spin.value(),
            val_fraction=self.val_spin.value() / 100 if self.holdout_radio.isChecked() else 0.2,
            augment=tuple(n for n, cb in self.augment_checks.items() if cb.isChecked()),
            oriented_growth=self.oriented_check.isChecked(),
            synthetic=synth,
            synthetic_ratio=ratio,
            device=self.device_combo.currentData(),
            amp=self.amp_check.isChecked(),
            seed=self.seed_spin.value(),
            out=str(Path(self.out_edit.text().strip()).expanduser()) if self.out_edit.text().strip() else None,
        )

    def set_config(self, cfg: TrainConfig | None = None, **changes: Any) -> None:
        """Show ``cfg`` (default: the dock's current configuration) with ``changes`` applied.

        Besides the :class:`TrainConfig` fields, ``kfold=K`` (0: hold-out validation) and
        ``synthetic_only=bool`` are accepted.
        """
        kfold = changes.pop("kfold", None)
        synth_only = changes.pop("synthetic_only", None)
        if cfg is None:
            try:
                cfg = self.config()
            except ConfigError:
                cfg = TrainConfig()
        cfg = cfg.replace(**changes) if changes else cfg

        def pick(combo, value):
            i = combo.findData(value)
            if i < 0:
                raise ConfigError(f"unknown value {value!r}")
            combo.setCurrentIndex(i)

        pick(self.task_combo, cfg.task)
        self.backbone_combo.setCurrentText(cfg.backbone)
        w = str(cfg.weights)
        if w.lower() in ("imagenet", "none"):
            pick(self.weights_combo, w.lower())
        else:
            pick(self.weights_combo, "model" if Path(w).is_dir() else "file")
            self._weights_path = w
            self.weights_edit.setText(w)
        pick(self.strategy_combo, cfg.strategy)
        self.stages_spin.setValue(cfg.finetune_stages)
        self.unfreeze_spin.setValue(cfg.unfreeze_every)
        self.backbone_lr_spin.setValue(cfg.backbone_lr_factor)
        self.epochs_spin.setValue(cfg.epochs)
        self.steps_spin.setValue(cfg.steps_per_epoch or 0)
        self.batch_spin.setValue(cfg.batch_size)
        self.patch_spin.setValue(cfg.patch_size)
        self.lr_spin.setValue(cfg.lr)
        self.patience_spin.setValue(cfg.patience)
        self.val_spin.setValue(int(round(cfg.val_fraction * 100)))
        for n, cb in self.augment_checks.items():
            cb.setChecked(n in cfg.augment)
        self.oriented_check.setChecked(cfg.oriented_growth)
        pick(self.synthetic_combo, cfg.synthetic if cfg.synthetic in dict(SYNTHETIC_SOURCES) else "randomized")
        if cfg.synthetic_ratio < 1.0:
            self.ratio_slider.setValue(int(round(cfg.synthetic_ratio * 100)))
        pick(self.device_combo, cfg.device)
        self.amp_check.setChecked(cfg.amp)
        self.seed_spin.setValue(cfg.seed)
        if cfg.out:
            self.out_edit.setText(str(cfg.out))
            self._auto_out = False
        if kfold is not None:
            (self.kfold_radio if kfold else self.holdout_radio).setChecked(True)
            if kfold:
                self.k_spin.setValue(int(kfold))
        if synth_only is not None:
            self.synthetic_only_check.setChecked(bool(synth_only))
        self._sync_enabled()

    @property
    def kfold(self) -> int:
        """K of K-fold cross-validation, 0 for hold-out validation."""
        return self.k_spin.value() if self.kfold_radio.isChecked() else 0

    # ===================================================================== start
    @property
    def is_running(self) -> bool:
        return self._task is not None and self._task.is_running

    @property
    def task(self) -> GeneratorTask | None:
        """The task of the current (or last) training run."""
        return self._task

    def _layer_data(self, cfg: TrainConfig) -> tuple[TrainJob, list[str]] | str:
        """Copies of the selected layers' data (main thread), or the reason why there is nothing to train on."""
        job = TrainJob(config=cfg)
        notes: list[str] = []
        if cfg.task != "segment" or self.synthetic_only_check.isChecked():
            return job, notes
        self.refresh_pairs()
        selected = self.selected_pairs()
        empty = []
        for pair in selected:
            image, labels = pair.image, pair.labels
            img = image.data[0] if image.multiscale else image.data
            lab = labels.data[0] if labels.multiscale else labels.data
            img = np.array(img, copy=True)
            lab = np.array(lab, copy=True)
            if img.shape[:2] != lab.shape:
                return (f"labels '{labels.name}' ({lab.shape[0]} × {lab.shape[1]} px) do not match image "
                        f"'{image.name}' ({img.shape[0]} × {img.shape[1]} px)")
            if lab.dtype.kind not in "biu":
                return f"labels '{labels.name}' have {lab.dtype} values; expected grain numbers"
            if not lab.any():
                empty.append(labels.name)
                continue
            if image.rgb:
                notes.append(f"'{image.name}' is an RGB image: training uses its luminance")
            job.images.append(img)
            job.labels.append(lab)
            job.names.append(str(image.name))
            job.pixel_sizes.append(layer_pixel_size(image)[0])
        if empty:
            names = ", ".join(f"'{n}'" for n in empty)
            if not job.images and not self._folders:
                return (f"the labels {names} have no annotated pixel: paint some grains (0 means not annotated), "
                        "or add a dataset folder")
            notes.append(f"labels {names} have no annotated pixel and are left out")
        if not job.images and not self._folders:
            return self._no_data_reason()
        return job, notes

    def _no_data_reason(self) -> str:
        labels = [p for p in self._pairs]
        images = [ly for ly in self.viewer.layers if isinstance(ly, Image)]
        if not labels and not images:
            return ("there is no image layer and no labels layer: open a micrograph, annotate grains (Annotate dock) "
                    "or add a dataset folder, or choose synthetic-only pre-training")
        if not labels:
            return ("no labels layer: annotate grains in a Labels layer named '<image> grains' (Annotate dock), "
                    "or add a dataset folder")
        if not images:
            return f"no image layer for the labels '{labels[0].labels.name}': open the micrograph it annotates"
        bad = [p for p in labels if not p.usable]
        if bad and len(bad) == len(labels):
            p = bad[0]
            shapes = ", ".join(f"'{im.name}' {' × '.join(map(str, _spatial_shape(im)))}" for im in images[:3])
            return f"labels '{p.labels.name}': {p.problem} (images: {shapes})"
        return "no labels layer is selected: check one in the Data section, or add a dataset folder"

    def _output_folder(self, cfg: TrainConfig) -> Path | None:
        if self._auto_out or not self.out_edit.text().strip():
            out = _default_out()
            while out.exists():
                out = out.with_name(out.name + "-1")
            self.out_edit.setText(str(out))
            self._auto_out = True
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
        if non_empty and not self.ask_overwrite(out):
            return None
        return out

    def start(self) -> GeneratorTask | None:
        """Start training with the dock's settings; returns the task (None: not started, with a notification)."""
        if self.is_running or (self._preview_task is not None and self._preview_task.is_running):
            return None
        avoid_triton_llvm_clash()
        try:
            cfg = self.config()
        except ConfigError as exc:
            show_error(f"Cannot train: {exc}")
            return None
        from ...core.models import ModelError
        from ...core.models.networks import check_backbone

        try:
            check_backbone(cfg.backbone)
        except ModelError as exc:
            show_error(f"Cannot train: {exc}")
            return None
        kind = self.weights_combo.currentData()
        if kind in ("file", "model") and not Path(cfg.weights).exists():
            show_error(f"Cannot train: the weights {cfg.weights} do not exist")
            return None
        collected = self._layer_data(cfg)
        if isinstance(collected, str):
            show_error(f"Cannot train: {collected}")
            self._set_status(f"Cannot train: {collected}", error=True)
            return None
        job, notes = collected
        job.folders = list(self._folders) if not self.synthetic_only_check.isChecked() else []
        if cfg.task == "classify" and not job.folders:
            show_error("Cannot train: classification needs dataset folders with one sub-folder per class")
            return None
        job.kfold = self.kfold
        if job.kfold and self.synthetic_only_check.isChecked():
            show_error("Cannot train: K-fold cross-validation needs annotated images, not synthetic-only data")
            return None
        out = self._output_folder(cfg)
        if out is None:
            return None
        job.config = cfg.replace(out=str(out))
        for note in notes:
            show_info(note)

        self._reset_run_display(job.config)
        self._kfold = job.kfold
        task = GeneratorTask(run_training, job, description="Training", progress_bar=self.progress_bar,
                             cancel_button=self.stop_button, progress_of=StepProgress(job.kfold),
                             notify_errors=False, parent=self)
        task.yielded.connect(self._on_event)
        task.finished.connect(self._on_training_finished)
        if self._task is not None:
            self._task.deleteLater()
        self._task = task
        self.settings.setEnabled(False)
        self.start_button.setEnabled(False)
        self.preview_button.setEnabled(False)
        task.start()
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self._throttle_spinner(True)
        return task

    def stop(self) -> None:
        """Stop training after the current step (``last/`` is written, ``best/`` kept)."""
        if self._task is not None and self._task.is_running:
            self._task.cancel()
            self._on_stop_clicked()
        if self._preview_task is not None and self._preview_task.is_running:
            self._preview_task.cancel()

    def _on_stop_clicked(self) -> None:
        if self._task is not None and self._task.is_running:
            self.stop_button.setText("Stopping…")
            self._set_status("Stopping after the current step; writing last/ and keeping best/…")

    def _reset_run_display(self, cfg: TrainConfig) -> None:
        self._finished = None
        self._best_path = None
        self._started = None
        self._speed = None
        self._monitor = cfg.monitor_metric
        self.plot.clear(cfg.monitor_metric)
        self.device_label.setText("")
        self.eta_label.setText("")
        self.best_label.setText("")
        self._set_status(f"Preparing… (output: {cfg.out})")

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet(ERROR_STYLE if error else "")
        self.status_label.setText(text)

    # ==================================================================== events
    def _fold_prefix(self, ev: Any) -> str:
        fold = getattr(ev, "fold", None)
        return f"fold {fold + 1}/{self._kfold}: " if fold is not None and self._kfold else ""

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Step):
            self.plot.add_step(ev.step, ev.loss)
            a = 0.2
            self._speed = ev.images_per_s if self._speed is None else (1 - a) * self._speed + a * ev.images_per_s
            self._pending_step = ev
            if not self._label_timer.isActive():
                self._label_timer.start()
        elif isinstance(ev, DataStatus):
            self._set_status(ev.message)
        elif isinstance(ev, Started):
            self._started = ev
            amp = {"off": "fp32"}.get(ev.amp, ev.amp)
            self.device_label.setText(f"{ev.device} · {amp}")
            self.device_label.setToolTip(str(ev))
            self._set_status(f"{self._fold_prefix(ev)}{ev.n_train} train / {ev.n_val} validation image(s), "
                             f"{ev.epochs} epochs × {ev.steps_per_epoch} steps; {ev.trainable_params:,} of "
                             f"{ev.total_params:,} parameters train; weights: {ev.weights}")
        elif isinstance(ev, Epoch):
            spe = self._started.steps_per_epoch if self._started else 1
            value = ev.metrics.get(self._monitor)
            self.plot.add_epoch(ev.epoch * spe, ev.val_loss, value, ev.improved)
            self.eta_label.setText(f"{ev.images_per_s:.1f} img/s · ETA {fmt_duration(ev.eta_s)}")
            if ev.improved:
                name = METRIC_NAMES.get(self._monitor, self._monitor)
                shown = value if value is not None else ev.train_loss
                self.best_label.setText(f"{self._fold_prefix(ev)}best {name} {shown:.3f} (epoch {ev.epoch})")
            self._set_status(f"{self._fold_prefix(ev)}epoch {ev.epoch}/{ev.epochs}: train loss {ev.train_loss:.3f}, "
                             f"val loss {ev.val_loss:.3f} ({fmt_duration(ev.seconds)})")
        elif isinstance(ev, Checkpoint):
            if ev.kind == "best":
                self._best_path = ev.path
        elif isinstance(ev, Unfrozen):
            self._set_status(f"{self._fold_prefix(ev)}{ev}")
        elif isinstance(ev, TrainWarning):
            show_warning(f"Training: {ev.message}")
        elif isinstance(ev, EarlyStopped):
            self._set_status(f"{self._fold_prefix(ev)}{ev}")
        elif isinstance(ev, FoldStarted):
            self.plot.clear(self._monitor)
            self.best_label.setText("")
            self._set_status(str(ev))
        elif isinstance(ev, Finished):
            self._finished = ev
            if ev.best_path:
                self._best_path = ev.best_path
            elif ev.last_path and not self._best_path:
                self._best_path = ev.last_path
        elif isinstance(ev, CrossValidated):
            name = METRIC_NAMES.get(self._monitor, self._monitor)
            m, sd = ev.mean.get(self._monitor), ev.sd.get(self._monitor)
            text = f"{ev.k}-fold cross-validation: {name} {m:.3f} ± {sd:.3f}" if m is not None else str(ev)
            self.best_label.setText(text)
            show_info(text)
        self.event_received.emit(ev)

    def _show_step(self) -> None:
        """Speed, ETA and epoch of the latest step (throttled by ``_label_timer``)."""
        ev, self._pending_step = self._pending_step, None
        if ev is None:
            return
        self.eta_label.setText(f"{self._speed:.1f} img/s · ETA {fmt_duration(ev.eta_s)}")
        epochs = self._started.epochs if self._started else "?"
        fmt = f"{self._fold_prefix(ev)}epoch {ev.epoch}/{epochs} · " + ("%p %" if self._kfold else "step %v / %m")
        if self.progress_bar.format() != fmt:
            self.progress_bar.setFormat(fmt)

    def _throttle_spinner(self, on: bool) -> None:
        """Slow napari's activity animation (status bar) while training, restore it afterwards.

        Every frame of that animation repaints the main window, which is recomposited as a whole
        because it holds the OpenGL canvas; with software OpenGL (virtual machines, remote
        desktops) each frame costs milliseconds of CPU taken from training (see
        ``benchmarks/bench_gui_responsiveness.py``).  Best effort: napari internals may change,
        so nothing happens when the animation is not found.
        """
        try:
            window = self.window()
            for label in window.findChildren(QLabel) if window is not None else []:
                parent = label.parent()
                movie = label.movie()
                if movie is not None and parent is not None and type(parent).__name__ == "ActivityToggleItem":
                    movie.setSpeed(SPINNER_SPEED if on else 100)
        except RuntimeError:  # a deleted Qt object
            pass

    def _on_training_finished(self, result: TaskResult) -> None:
        self._label_timer.stop()
        self._show_step()
        self._throttle_spinner(False)
        try:
            self.stop_button.clicked.disconnect(self._on_stop_clicked)
        except (TypeError, RuntimeError):
            pass
        self.plot.flush()
        self.settings.setEnabled(True)
        self.start_button.setEnabled(True)
        fin = self._finished
        where = self._best_path or (fin.last_path if fin else None)
        if result.status == "failed":
            err = result.error
            self._set_status(f"Training failed: {err}", error=True)
            _notify_failure(err, "Training")
        elif fin is not None:
            name = METRIC_NAMES.get(self._monitor, self._monitor)
            best = f"best {name} {fin.best_metric:.3f} at epoch {fin.best_epoch}" if fin.best_metric is not None \
                else "no epoch completed"
            verb = {"completed": "Finished", "early_stopped": "Stopped early", "stopped": "Stopped"}.get(
                fin.reason, "Finished")
            text = f"{verb} after {fin.epochs_run} epoch(s) in {fmt_duration(fin.seconds)}: {best}."
            if where:
                text += f" Model: {where}"
            self._set_status(text)
            show_info(f"Training {verb.lower()}: {best}" + (f"; model in {where}" if where else ""))
        else:
            self._set_status("Stopped before training began." if result.status == "cancelled" else "Done.")
        self.eta_label.setText(f"took {fmt_duration(result.elapsed)}")
        self._update_preview_button()
        self.training_finished.emit(result)

    # =================================================================== preview
    @property
    def model_path(self) -> str | None:
        """The model of the last run (its best checkpoint, or ``last/`` when none improved)."""
        return self._best_path

    def _preview_target(self) -> Any | None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and not is_prediction(active):
            return active
        if isinstance(active, Labels):
            for pair in self._pairs:
                if _unwrap(pair.labels) is _unwrap(active) and pair.image is not None:
                    return pair.image
        pairs = self.selected_pairs()
        if pairs:
            return pairs[0].image
        images = [ly for ly in self.viewer.layers
                  if isinstance(ly, Image) and not is_prediction(ly) and len(_spatial_shape(ly)) == 2]
        return images[-1] if images else None

    def _update_preview_button(self, *_: Any) -> None:
        target = self._preview_target()
        name = target.name if target is not None else None
        if name:
            metrics = self.preview_button.fontMetrics()
            shown = metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, 220)
            self.preview_button.setText(f"Preview on “{shown}”")
        else:
            self.preview_button.setText("Preview (no image layer)")
        busy = self.is_running or (self._preview_task is not None and self._preview_task.is_running)
        self.preview_button.setEnabled(bool(self._best_path and name and not busy))

    def preview(self, layer: Any | None = None) -> GeneratorTask | None:
        """Segment ``layer`` (default: the current image) with the last run's model, in a worker."""
        if self.is_running or (self._preview_task is not None and self._preview_task.is_running):
            return None
        if not self._best_path:
            show_error("Preview: train a model first")
            return None
        avoid_triton_llvm_clash()
        layer = self._preview_target() if layer is None else layer
        if layer is None or not isinstance(layer, Image):
            show_error("Preview: select an image layer")
            return None
        ndim = len(_spatial_shape(layer))
        if ndim != 2:
            show_error(f"Preview: '{layer.name}' is not a 2-D image (shape {layer.data.shape})")
            return None
        job = job_from_layer(layer)
        self._preview_layer_ref = layer
        self._preview_done = None
        options = InferenceOptions(device=self.device_combo.currentData() or "auto")
        task = GeneratorTask(predict_jobs, [job], self._best_path, options, description=f"Segmenting {layer.name}",
                             progress_bar=self.progress_bar, cancel_button=self.stop_button,
                             progress_of=lambda ev: None, notify_errors=False, parent=self)
        task.yielded.connect(self._on_preview_event)
        task.finished.connect(self._on_preview_finished)
        if self._preview_task is not None:
            self._preview_task.deleteLater()
        self._preview_task = task
        self.start_button.setEnabled(False)
        self.preview_button.setEnabled(False)
        task.start()
        return task

    def _on_preview_event(self, event: Any) -> None:
        if isinstance(event, PredictStatus):
            self._set_status(event.message)
        elif isinstance(event, ImageDone):
            self._preview_done = event
        elif isinstance(event, ImageFailed):
            show_error(f"Preview of {event.job.name} failed: {event.error}")

    def _on_preview_finished(self, result: TaskResult) -> None:
        self.start_button.setEnabled(True)
        layer, self._preview_layer_ref = self._preview_layer_ref, None
        done, self._preview_done = self._preview_done, None
        if result.status == "failed":
            self._set_status(f"Preview failed: {result.error}", error=True)
            _notify_failure(result.error, "Preview")
        elif result.status == "completed" and done is not None and layer is not None:
            try:
                shown = show_prediction(self.viewer, done, source="Train dock preview")
            except Exception as exc:  # noqa: BLE001 - never let a layer problem escape into Qt
                report_error(exc, "Showing the preview")
            else:
                res = done.result
                what = f"{int(res.labels.max())} grains" if res.task == "segment" else "class map"
                self._set_status(f"Preview: {what} in '{shown.name}' ({fmt_duration(done.elapsed)}).")
        elif result.status == "completed":
            self._set_status("Preview failed: see the notification.", error=True)
        else:
            self._set_status("Preview cancelled.")
        self._update_preview_button()
        self.preview_finished.emit(result)

