"""The *Synthesize* dock: tune the synthetic-micrograph generator with a live preview and
write training datasets.

The parameter editors are derived from the generator's dataclasses
(:mod:`napari_grainlab.core.synthetic.params`): every field's type and ``metadata`` (range,
step, choices, help) decide its editor, so a new generator parameter appears in the dock
without GUI code.  :class:`ParamsForm` is that generic mapping; :class:`SynthesizeWidget`
arranges one form per parameter section in collapsible groups and adds the preview, the
dataset writer and parameter files.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..._sample_data import sample_layer_data
from ...core.synthetic import ParameterError, SynthParams, generate, param_fields, write_dataset
from .._forms import ParamsForm, SpinBox
from ..workers import GeneratorTask, LatestOnlyRunner, TaskResult, report_error, shutdown_on_destroy

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

_LAYER_TYPES = {"image": Image, "labels": Labels}

__all__ = ["ParamsForm", "SynthesizeWidget", "PREVIEW_IMAGE", "PREVIEW_LABELS"]

PREVIEW_IMAGE = "synthetic preview"
PREVIEW_LABELS = f"{PREVIEW_IMAGE} labels"
#: larger images are previewed as a window of this many pixels at the same grain size
PREVIEW_MAX_PIXELS = 2048 * 2048
DEBOUNCE_MS = 150
SEED_MAX = 2**31 - 1

#: titles of the parameter sections ("" is the top level of SynthParams); a section without
#: a title here is named after its field's help text
SECTION_TITLES = {"": "Image", "tessellation": "Grains", "sem": "SEM look", "optical": "Optical look"}
#: sections expanded when the dock opens
EXPANDED_SECTIONS = ("", "tessellation")
#: optional fields of which exactly one is used: radio buttons instead of check boxes
EXCLUSIVE_FIELDS = {"tessellation": (("grains", "mean_diameter"),)}
#: when an optional field is switched on, start from the value the current parameters imply
DERIVED_VALUES: dict[str, Callable[[SynthParams], float]] = {
    "tessellation.grains": lambda p: p.n_grains(),
    "tessellation.mean_diameter": lambda p: p.mean_diameter(),
}

ERROR_STYLE = "color: #f0524f;"




# ============================================================================== preview
@dataclass(frozen=True)
class PreviewResult:
    """A preview computed in a worker thread, ready to become layers."""

    layers: list[tuple[np.ndarray, dict[str, Any], str]]
    params: SynthParams
    seed: int
    n_grains: int
    elapsed: float
    note: str = ""


def preview_params(params: SynthParams) -> tuple[SynthParams, str]:
    """The parameters to preview: ``params`` itself, or for images larger than
    :data:`PREVIEW_MAX_PIXELS` a smaller window with the same grain size."""
    h, w = params.shape
    if h * w <= PREVIEW_MAX_PIXELS:
        return params, ""
    f = math.sqrt(PREVIEW_MAX_PIXELS / (h * w))
    ph, pw = max(8, int(h * f)), max(8, int(w * f))
    tess = params.tessellation.replace(grains=None, mean_diameter=params.mean_diameter())
    return params.replace(height=ph, width=pw, tessellation=tess), f"a {ph} × {pw} px window of the {h} × {w} px image"


def make_preview(params: SynthParams, note: str = "", *, seed: int) -> PreviewResult:
    """Generate a preview (runs in a worker thread: no Qt, no viewer)."""
    t0 = time.perf_counter()
    sample = generate(params, seed=seed)
    layers = sample_layer_data(sample, PREVIEW_IMAGE)
    n = len(layers[1][1]["features"]["index"])
    return PreviewResult(layers, params, seed, n, time.perf_counter() - t0, note)


# =============================================================================== widget
def _sections(params: SynthParams) -> list[tuple[str, str]]:
    """(key, title) of the parameter sections: the top level, then each nested dataclass."""
    out = [("", SECTION_TITLES[""])]
    for f in param_fields(params):
        if dataclasses.is_dataclass(getattr(params, f.name)):
            fallback = (f.metadata.get("help") or f.name).capitalize()
            out.append((f.name, SECTION_TITLES.get(f.name, fallback)))
    return out


def _hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class SynthesizeWidget(QWidget):
    """Dock for the synthetic micrograph generator.

    * parameters in collapsible sections, built from the generator's dataclasses;
    * a live preview (debounced, generated off the main thread) in the layers
      ``synthetic preview`` and ``synthetic preview labels``;
    * *Generate dataset…* writes a dataset folder in a worker thread with progress and Cancel;
    * parameters to and from JSON.

    The dialogs are methods (:meth:`ask_directory`, :meth:`ask_overwrite`,
    :meth:`ask_save_path`, :meth:`ask_open_path`) that scripts and tests may replace.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.setMinimumWidth(380)
        self._layer_refs: dict[str, weakref.ref] = {}
        self._valid_params = SynthParams()
        self._task: GeneratorTask | None = None
        self._last_folder: Path | None = None
        self._last_param_file: Path | None = None
        self._dataset_count = 0

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
            section = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
            section.setDuration(120)
            section.addWidget(form)
            if key in EXPANDED_SECTIONS:
                section.expand(animate=False)
            content_layout.addWidget(section)
            self.forms[key] = form
            self.sections[key] = section
        content_layout.addStretch(1)

        # seed: not a generator parameter but part of the image's identity
        self.seed_spin = SpinBox()
        self.seed_spin.setRange(0, SEED_MAX)
        self.seed_spin.setToolTip("<p>random seed: the same parameters and seed give the same image</p>")
        self.seed_spin.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.seed_spin.valueChanged.connect(self._schedule_preview)
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

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        self.scroll_area = scroll

        # preview controls
        self.live_check = QCheckBox("Live preview")
        self.live_check.setChecked(True)
        self.live_check.setToolTip("regenerate the preview layers whenever a parameter changes")
        self.live_check.toggled.connect(self._on_live_toggled)
        self.preview_button = QPushButton("Update preview")
        self.preview_button.clicked.connect(self.refresh_preview)
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.live_check)
        preview_row.addStretch(1)
        preview_row.addWidget(self.preview_button)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # dataset
        self.count_spin = SpinBox()
        self.count_spin.setRange(1, 1_000_000)
        self.count_spin.setValue(10)
        self.count_spin.setToolTip("number of images in the dataset")
        self.generate_button = QPushButton("Generate dataset…")
        self.generate_button.setToolTip(
            "<p>write images/, labels/, boundaries/, tables/ and dataset.json into a folder; "
            "image <i>i</i> uses a seed derived from the seed above</p>"
        )
        self.generate_button.clicked.connect(self._on_generate_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.setTextVisible(True)
        self.dataset_label = QLabel()
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setVisible(False)
        dataset_row = QHBoxLayout()
        count_label = QLabel("Images")
        count_label.setToolTip(self.count_spin.toolTip())
        dataset_row.addWidget(count_label)
        dataset_row.addWidget(self.count_spin, 1)
        dataset_row.addWidget(self.generate_button, 2)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.cancel_button)

        # parameter files
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("save the parameters as JSON")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("load parameters from JSON (also a dataset's dataset.json)")
        self.load_button.clicked.connect(self._on_load_clicked)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("reset every parameter to its default")
        self.reset_button.clicked.connect(self.reset_parameters)
        files_row = QHBoxLayout()
        files_label = QLabel("Parameters")
        files_row.addWidget(files_label)
        files_row.addWidget(self.save_button)
        files_row.addWidget(self.load_button)
        files_row.addWidget(self.reset_button)

        bottom = QVBoxLayout()
        bottom.setSpacing(4)
        bottom.addLayout(preview_row)
        bottom.addWidget(self.status_label)
        bottom.addWidget(_hline())
        bottom.addLayout(dataset_row)
        bottom.addLayout(progress_row)
        bottom.addWidget(self.dataset_label)
        bottom.addWidget(_hline())
        bottom.addLayout(files_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(scroll, 1)
        layout.addWidget(_hline())
        layout.addLayout(bottom)

        # preview machinery
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.refresh_preview)
        self._busy_hint = QTimer(self)
        self._busy_hint.setSingleShot(True)
        self._busy_hint.setInterval(300)
        self._busy_hint.timeout.connect(self._show_busy_hint)
        self._runner = LatestOnlyRunner(self)
        self._runner.result.connect(self._show_preview)
        self._runner.failed.connect(self._preview_failed)
        self._runner.busy_changed.connect(self._on_busy_changed)
        self.destroyed.connect(shutdown_on_destroy(self._runner))

        self._sync_style_sections()
        self._schedule_preview()

    # ---------------------------------------------------------------------- layout
    def _align_labels(self) -> None:
        """One label-column width for all sections, so that the editors line up.  Measured
        with the font of the current napari theme (it is applied only once docked)."""
        for lab in self._form_labels:
            lab.setMinimumWidth(0)
        width = max(lab.sizeHint().width() for lab in self._form_labels)
        for lab in self._form_labels:
            lab.setMinimumWidth(width)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        self._align_labels()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().changeEvent(event)
        if event.type() in (QEvent.Type.StyleChange, QEvent.Type.FontChange) and self.isVisible():
            QTimer.singleShot(0, self._align_labels)

    # ------------------------------------------------------------------ parameters
    def params(self) -> SynthParams:
        """The parameters shown in the dock (raises ParameterError if they are invalid)."""
        kwargs = self.forms[""].values()
        for key, form in self.forms.items():
            if key:
                kwargs[key] = form.params_class(**form.values())
        params = SynthParams(**kwargs)
        params.validate()
        return params

    def set_params(self, params: SynthParams) -> None:
        """Show ``params`` in the dock (one preview update)."""
        for key, form in self.forms.items():
            form.set_values(getattr(params, key) if key else params)
        try:
            params.validate()
            self._valid_params = params
        except ParameterError:
            pass  # shown by the next preview update
        self._sync_style_sections()
        self._schedule_preview()

    @property
    def seed(self) -> int:
        return int(self.seed_spin.value())

    def set_seed(self, seed: int) -> None:
        self.seed_spin.setValue(int(seed))

    def randomize_seed(self) -> None:
        self.seed_spin.setValue(random.SystemRandom().randrange(SEED_MAX))

    def reset_parameters(self) -> None:
        self.set_params(SynthParams())

    def _on_changed(self, path: str) -> None:
        if path == "style":
            self._sync_style_sections()
        self._schedule_preview()

    def _on_toggled(self, path: str, on: bool) -> None:
        derive = DERIVED_VALUES.get(path)
        if on and derive is not None:
            try:
                value = derive(self._valid_params)
            except (ArithmeticError, ParameterError, TypeError, ValueError):
                return
            section, _, name = path.rpartition(".")
            self.forms[section].set_field(name, value)

    def _sync_style_sections(self) -> None:
        """Show only the look section of the chosen style (sections named like a style)."""
        style_editor = self.forms[""].editors["style"]
        styles = style_editor.field.metadata["choices"]
        for key, section in self.sections.items():
            if key in styles:
                section.setVisible(key == style_editor.value())

    # --------------------------------------------------------------------- preview
    def _on_live_toggled(self, on: bool) -> None:
        if on:
            self.refresh_preview()

    def _schedule_preview(self) -> None:
        if self.live_check.isChecked():
            self._debounce.start()

    def refresh_preview(self) -> None:
        """Regenerate the preview now (in a worker; only the newest request is shown)."""
        self._debounce.stop()
        try:
            params = self.params()
        except ParameterError as exc:
            self._runner.discard()
            self._set_status(str(exc), error=True)
            return
        self._valid_params = params
        self._runner.submit(make_preview, *preview_params(params), seed=self.seed)

    @property
    def preview_busy(self) -> bool:
        """A preview is being generated or waits for the debounce timer."""
        return self._runner.is_busy or self._debounce.isActive()

    def _on_busy_changed(self, busy: bool) -> None:
        if busy:
            self._busy_hint.start()
        else:
            self._busy_hint.stop()

    def _show_busy_hint(self) -> None:
        if self._runner.is_busy:
            self._set_status("Updating preview…")

    def _preview_failed(self, error: BaseException) -> None:
        self._set_status(f"Preview failed: {error}", error=True)
        if not isinstance(error, ParameterError):
            report_error(error, "Preview")

    def _show_preview(self, result: PreviewResult) -> None:
        reset_view = False
        for data, kwargs, kind in result.layers:
            layer = self._find_layer(kwargs["name"], kind)
            if layer is None:
                layer = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
                reset_view = reset_view or kind == "image"
            else:
                reset_view = self._update_layer(layer, data, kwargs) or reset_view
            self._layer_refs[kwargs["name"]] = weakref.ref(layer)
        if reset_view:
            self.viewer.reset_view()
        p = result.params
        text = f"Preview {p.height} × {p.width} px, {result.n_grains} grains, {result.elapsed:.2f} s"
        if result.note:
            text += f" ({result.note})"
        self._set_status(text)

    def _find_layer(self, name: str, kind: str) -> Layer | None:
        """Our preview layer: the one we created (even if renamed) or one named ``name``."""
        layers = self.viewer.layers
        ref = self._layer_refs.get(name)
        layer = ref() if ref is not None else None
        if layer is not None and layer in layers:
            return layer
        cls = _LAYER_TYPES[kind]
        for layer in layers:
            if layer.name == name and isinstance(layer, cls):
                return layer
        return None

    @staticmethod
    def _update_layer(layer: Layer, data: np.ndarray, kwargs: dict[str, Any]) -> bool:
        """Update a preview layer in place (keeps the user's display settings).  Returns
        whether its extent changed."""
        old_shape, old_scale = layer.data.shape, tuple(layer.scale)
        old_dtype = layer.data.dtype
        old_pixel_size = layer.metadata.get("grainlab", {}).get("pixel_size_um", "unknown")
        layer.metadata = kwargs["metadata"]
        if "features" in kwargs:
            layer.features = kwargs["features"]
        layer.data = data
        if "contrast_limits" in kwargs and old_dtype != data.dtype:
            layer.contrast_limits_range = kwargs["contrast_limits"]
            layer.contrast_limits = kwargs["contrast_limits"]
        if old_pixel_size != kwargs["metadata"]["grainlab"]["pixel_size_um"]:  # (costly events)
            if "units" in kwargs:
                layer.units = kwargs["units"]
            layer.scale = kwargs["scale"]
        return old_shape != data.shape or old_scale != tuple(layer.scale)

    def _set_status(self, text: str, error: bool = False) -> None:
        self._busy_hint.stop()
        self.status_label.setStyleSheet(ERROR_STYLE if error else "")
        self.status_label.setText(text)

    # --------------------------------------------------------------------- dataset
    def ask_directory(self) -> Path | None:
        """Ask for the dataset folder (None: cancelled)."""
        start = str(self._last_folder.parent if self._last_folder else Path.home())
        path = QFileDialog.getExistingDirectory(self, "Folder for the synthetic dataset", start)
        return Path(path) if path else None

    def ask_overwrite(self, folder: Path) -> bool:
        """Ask whether to replace the dataset files in the non-empty ``folder``."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Folder is not empty")
        box.setText(f"{folder} is not empty.")
        box.setInformativeText(
            "Replace the dataset in it? Files in images/, labels/, boundaries/, tables/ and dataset.json "
            "are deleted first; other files stay."
        )
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec_()
        return box.clickedButton() is replace

    @property
    def dataset_running(self) -> bool:
        return self._task is not None and self._task.is_running

    def _on_generate_clicked(self) -> None:
        self.generate_dataset()

    def generate_dataset(self, folder: str | Path | None = None) -> GeneratorTask | None:
        """Write ``count`` images into ``folder`` (asked for when None) in a worker thread."""
        if self.dataset_running:
            return None
        try:
            params = self.params()
        except ParameterError as exc:
            self._set_status(str(exc), error=True)
            show_error(f"Cannot generate a dataset: {exc}")
            return None
        folder = self.ask_directory() if folder is None else folder
        if not folder:
            return None
        folder = Path(folder)
        overwrite = False
        try:
            non_empty = folder.is_dir() and any(folder.iterdir())
        except OSError as exc:
            show_error(f"Cannot use {folder}: {exc.strerror or exc}")
            return None
        if non_empty:
            if not self.ask_overwrite(folder):
                return None
            overwrite = True
        count = int(self.count_spin.value())
        self._last_folder = folder
        self._dataset_count = count
        task = GeneratorTask(
            write_dataset, folder, params,
            description=f"Writing {count} synthetic images",
            progress_bar=self.progress_bar,
            cancel_button=self.cancel_button,
            total=count,
            parent=self,
            count=count,
            seed=self.seed,
            overwrite=overwrite,
        )
        task.finished.connect(self._dataset_finished)
        self.generate_button.setEnabled(False)
        self.dataset_label.setStyleSheet("")
        self.dataset_label.setText(f"Writing to {folder.name}/ …")
        self.dataset_label.setVisible(True)
        self.dataset_label.setToolTip(str(folder))
        if self._task is not None:
            self._task.deleteLater()
        self._task = task
        task.start()
        return task

    def _dataset_finished(self, result: TaskResult) -> None:
        self.generate_button.setEnabled(True)
        folder = self._last_folder
        total = self._dataset_count
        done = result.progress.done if result.progress else 0
        where = folder.name if folder else "?"
        if result.status == "completed":
            text = f"Wrote {done} images to {where}/ in {result.elapsed:.1f} s"
            show_info(f"Wrote {done} synthetic images to {folder}")
        elif result.status == "cancelled":
            text = f"Cancelled: {done} of {total} images written to {where}/"
            show_info(f"Cancelled: {done} of {total} synthetic images written to {folder}")
        else:
            text = f"Failed after {done} images: {result.error}"
        self.dataset_label.setStyleSheet(ERROR_STYLE if result.status == "failed" else "")
        self.dataset_label.setText(text)
        self.dataset_label.setToolTip(str(folder))

    def cancel_dataset(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ------------------------------------------------------------- parameter files
    def ask_save_path(self) -> Path | None:
        start = str(self._last_param_file or Path.home() / "synth_params.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save generator parameters", start, "JSON (*.json)")
        if not path:
            return None
        path = Path(path)
        return path if path.suffix else path.with_suffix(".json")

    def ask_open_path(self) -> Path | None:
        start = str(self._last_param_file.parent if self._last_param_file else Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Load generator parameters", start, "JSON (*.json);;All files (*)")
        return Path(path) if path else None

    def _on_save_clicked(self) -> None:
        self.save_parameters()

    def _on_load_clicked(self) -> None:
        self.load_parameters()

    def save_parameters(self, path: str | Path | None = None) -> Path | None:
        try:
            params = self.params()
        except ParameterError as exc:
            show_error(f"Cannot save invalid parameters: {exc}")
            return None
        path = self.ask_save_path() if path is None else Path(path)
        if path is None:
            return None
        try:
            params.save(path)
        except OSError as exc:
            show_error(f"Cannot save parameters to {path}: {exc}")
            return None
        self._last_param_file = path
        show_info(f"Saved generator parameters to {path}")
        return path

    def load_parameters(self, path: str | Path | None = None) -> SynthParams | None:
        path = self.ask_open_path() if path is None else Path(path)
        if path is None:
            return None
        try:
            params = SynthParams.load(path)
            params.validate()
            self.set_params(params)
        except (ParameterError, ValueError, TypeError) as exc:
            show_error(f"Cannot load parameters from {path}: {exc}")
            return None
        self._last_param_file = path
        return params
