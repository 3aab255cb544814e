"""The Train dock's data panel: the annotated layers, dataset folders and the synthetic source.

Layers pair by their roles first (``layer.metadata["grainlab"]``, see :mod:`.._layers`): a
Labels layer napari-grainlab made (an annotation, synthetic labels, a prediction) belongs to the
image layer its metadata names as ``source``.  Layers the user made, or whose source image was
renamed, pair by name (``<image> annotation``, the name the Annotate dock gives, or
``<image> grains`` / ``<image> labels`` / ...) and then by shape.
Unapplied proposals and class paintings are not grain labels and are not listed; predictions are listed
unchecked.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QWidget,
)

from ...core.errors import DataError
from .._forms import ComboBox, make_compact, sentence
from .._layers import ROLES, grainlab_metadata, is_prediction, layer_pixel_size, role_name, role_of
from .._widgets import HINT_STYLE, make_form
from ..jobs.train import TrainJob

if TYPE_CHECKING:
    import napari

    from ...core.training import TrainConfig

__all__ = ["NOT_TRAINING_ROLES", "DataPanel", "LayerPair", "annotation_name", "find_pairs", "form_layout", "row",
           "spatial_shape"]

#: roles of Labels layers that are not training data (left out of the list)
NOT_TRAINING_ROLES = frozenset({"proposal", "classes", "split_line"})
#: name suffixes of a Labels layer that annotates the image named by the rest of its name (first: the
#: name the Annotate dock gives its annotation layer)
ANNOTATION_SUFFIXES = tuple(dict.fromkeys((f" {ROLES['annotation']}", " grains", " labels", " annotations")))


def annotation_name(image: str = "<image>") -> str:
    """The name of the Labels layer the Annotate dock makes for the image layer ``image``."""
    return role_name(image, "annotation")


def spatial_shape(layer) -> tuple[int, ...]:
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


def _image_of(lab, shape: tuple[int, ...], images: list, by_name: dict) -> Any | None:
    """The image ``lab`` annotates: its role's ``source``, else by name, else the topmost of its shape."""
    candidates = []
    source = grainlab_metadata(lab).get("source") if role_of(lab) else None
    if isinstance(source, str):
        candidates.append(source)
    base = lab.name.removesuffix(" (prediction)")
    candidates += [base[: -len(suffix)] for suffix in ANNOTATION_SUFFIXES if base.endswith(suffix)]
    for name in candidates:
        cand = by_name.get(name)
        if cand is not None and spatial_shape(cand) == shape:
            return cand
    same = [im for im in images if spatial_shape(im) == shape]
    return same[-1] if same else None  # the topmost in the layer list


def find_pairs(layers) -> list[LayerPair]:
    """Pair every Labels layer that may be training data with the Image layer it annotates.

    Preference: the image its role names as ``source``, then the image named like the labels
    without an ``" annotation"`` / ``" grains"`` / ``" labels"`` suffix, else the only (or the
    topmost) 2-D image of the same shape.  Labels with a role in :data:`NOT_TRAINING_ROLES` are left out.
    """
    images = [ly for ly in layers if isinstance(ly, Image) and not is_prediction(ly)]
    by_name = {ly.name: ly for ly in images}
    pairs = []
    for lab in layers:
        if not isinstance(lab, Labels) or role_of(lab) in NOT_TRAINING_ROLES:
            continue
        pred = is_prediction(lab)
        shape = spatial_shape(lab)
        if len(shape) != 2:
            pairs.append(LayerPair(lab, None, f"{len(shape)}-D labels (only 2-D images can be used)", pred))
            continue
        match = _image_of(lab, shape, images, by_name)
        if match is None:
            h, w = shape
            problem = "no image layer" if not images else f"no image of its shape ({h} × {w} px)"
            pairs.append(LayerPair(lab, None, problem, pred))
        else:
            pairs.append(LayerPair(lab, match, "", pred))
    return pairs


def form_layout(widget: QWidget | None = None) -> tuple[QWidget, QFormLayout]:
    """A form layout on ``widget`` (default: a new widget) with the docks' margins and policies."""
    w = QWidget() if widget is None else widget
    form = make_form(w)
    form.setContentsMargins(4, 2, 4, 2)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return w, form


def row(*widgets: QWidget, stretch: int | None = 0) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(4)
    for i, x in enumerate(widgets):
        lay.addWidget(x, 1 if i == stretch else 0)
    return w


class DataPanel(QWidget):
    """The *Data* section: checkable layer pairs, dataset folders, synthetic source and mix.

    ``synthetic`` is the :class:`TrainConfig` field of the synthetic source (its ``suggest`` and
    ``descriptions`` fill the combo box); ``ask_folder()`` asks for a dataset folder.
    ``pairs_changed`` is emitted after the list was rebuilt, ``changed`` when a choice that
    decides which options apply changes.
    """

    pairs_changed = Signal()
    changed = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, synthetic: dataclasses.Field,
                 ask_folder: Callable[[], Path | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._ask_folder = ask_folder
        self._pairs: list[LayerPair] = []
        self._unchecked: set[str] = set()
        self._checked: set[str] = set()  # predictions the user checked explicitly
        self._folders: list[str] = []
        self._connected_layers: list[Any] = []
        self._default_source = synthetic.default
        self._build(synthetic)
        layers = viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layers_changed)
        layers.events.reordered.connect(self._on_layers_changed)

    def _build(self, synthetic: dataclasses.Field) -> None:
        _w, form = form_layout(self)
        self.pair_list = QListWidget()
        self.pair_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.pair_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.pair_list.setMaximumHeight(84)
        self.pair_list.setToolTip("<p>Image layers and the Labels layers that annotate them (0 = not annotated). "
                                  "A labels layer made by the Annotate dock (<i>"
                                  f"{html.escape(annotation_name())}</i>), or named like it, belongs to that "
                                  "image; otherwise to an image of the same shape. Uncheck pairs to leave them "
                                  "out.</p>")
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
        form.addRow(row(QLabel("Dataset folders"), QWidget(), self.add_folder_button, self.remove_folder_button,
                        stretch=1))
        form.addRow(self.folder_list)

        self.synthetic_combo = ComboBox()
        descriptions = synthetic.metadata.get("descriptions") or {}
        for i, key in enumerate(synthetic.metadata.get("suggest") or ()):
            self.synthetic_combo.addItem(key, key)
            if descriptions.get(key):
                self.synthetic_combo.setItemData(i, sentence(descriptions[key]), Qt.ItemDataRole.ToolTipRole)
        self.synthetic_combo.setCurrentIndex(max(0, self.synthetic_combo.findData(self._default_source)))
        self.synthetic_combo.setToolTip("<p>Synthetic micrographs with exact grain labels, drawn on the fly: domain "
                                        "randomisation varies the look widely (SEM and optical, faint boundaries, "
                                        "artefacts), a preset keeps one look.</p>")
        self.synthetic_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.ratio_slider = QSlider(Qt.Orientation.Horizontal)
        self.ratio_slider.setRange(0, 100)
        self.ratio_slider.setSingleStep(5)
        self.ratio_slider.setPageStep(10)
        self.ratio_slider.setValue(0)
        self.ratio_label = QLabel("0 %")
        self.ratio_label.setMinimumWidth(self.ratio_label.fontMetrics().horizontalAdvance("100 %") + 4)
        self.ratio_slider.valueChanged.connect(lambda v: self.ratio_label.setText(f"{v} %"))
        self.ratio_slider.setToolTip("<p>fraction of the training patches drawn from the synthetic source</p>")
        self.synthetic_only_check = QCheckBox("Synthetic only (pre-training)")
        self.synthetic_only_check.setToolTip("<p>Train on synthetic micrographs alone, validated on synthetic images; "
                                             "layers and folders are ignored. Use the result as the weights "
                                             "(GrainLab model folder) of a later run on real data.</p>")
        self.synthetic_only_check.toggled.connect(self._on_synthetic_only)
        make_compact(self.synthetic_combo)
        self.ratio_slider.setMinimumWidth(40)
        form.addRow("Synthetic", self.synthetic_combo)
        form.addRow("Mix", row(self.ratio_slider, self.ratio_label))
        form.addRow(self.synthetic_only_check)

    # ======================================================================= layers
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
        """The Labels / Image pairs listed (as of the last refresh)."""
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
                    h, w = spatial_shape(pair.labels)
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
            self.pairs_hint.setText(f"No Labels layer: annotate grains in the Annotate dock (it makes "
                                    f"'{annotation_name()}') or add a dataset folder.")
        else:
            self._show_count()
        self.pairs_changed.emit()

    def _show_count(self) -> None:
        n = sum(1 for p in self._pairs if p.usable and self._is_checked(p))
        self.pairs_hint.setText(f"{n} of {len(self._pairs)} labels layer(s) selected")

    def _is_checked(self, pair: LayerPair) -> bool:
        if pair.prediction:
            return pair.key in self._checked
        return pair.key not in self._unchecked

    def _on_pair_item_changed(self, item: QListWidgetItem) -> None:
        key = item.data(Qt.ItemDataRole.UserRole)
        on = item.checkState() == Qt.CheckState.Checked
        (self._unchecked.discard if on else self._unchecked.add)(key)
        (self._checked.add if on else self._checked.discard)(key)
        self._show_count()

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

    # ====================================================================== folders
    def add_dataset_folder(self, path: str | Path | None = None) -> bool:
        """Add a dataset folder (asked for when None); checks its layout, not its files."""
        from ...core.data import detect_task

        path = self._ask_folder() if path is None else Path(path)
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
        index = self.folder_list.currentRow()
        if index < 0 and self.folder_list.count():
            index = self.folder_list.count() - 1
        if index >= 0:
            self.folder_list.takeItem(index)
            del self._folders[index]

    def clear_dataset_folders(self) -> None:
        self.folder_list.clear()
        self._folders.clear()

    # ==================================================================== synthetic
    @property
    def synthetic_only(self) -> bool:
        return self.synthetic_only_check.isChecked()

    def _on_synthetic_only(self, on: bool) -> None:
        if on and self.synthetic_combo.currentData() == "none":
            self.synthetic_combo.setCurrentIndex(self.synthetic_combo.findData(self._default_source))
        self.changed.emit()

    def sync_enabled(self, segment: bool) -> None:
        """Enable what applies to the task (synthetic data and layers: segmentation only)."""
        synth_only = segment and self.synthetic_only
        self.synthetic_only_check.setEnabled(segment)
        self.synthetic_combo.setEnabled(segment)
        self.ratio_slider.setEnabled(segment and not synth_only and self.synthetic_combo.currentData() != "none")
        self.ratio_label.setEnabled(self.ratio_slider.isEnabled())
        self.pair_list.setEnabled(segment and not synth_only)
        self.folder_list.setEnabled(not synth_only)
        self.add_folder_button.setEnabled(not synth_only)
        self.remove_folder_button.setEnabled(not synth_only)

    def synthetic_values(self, segment: bool) -> dict[str, Any]:
        """``synthetic`` and ``synthetic_ratio`` of the configuration (synthetic only: ratio 1)."""
        synth = self.synthetic_combo.currentData() if segment else "none"
        if segment and self.synthetic_only:
            return {"synthetic": synth, "synthetic_ratio": 1.0}
        return {"synthetic": synth, "synthetic_ratio": self.ratio_slider.value() / 100 if synth != "none" else 0.0}

    def show_synthetic(self, cfg: TrainConfig, synthetic_only: bool | None = None) -> None:
        """Show the synthetic source and mix of ``cfg`` (an unknown source: the default one)."""
        index = self.synthetic_combo.findData(cfg.synthetic)
        if index < 0:
            index = self.synthetic_combo.findData(self._default_source)
        self.synthetic_combo.setCurrentIndex(index)
        if cfg.synthetic_ratio < 1.0:
            self.ratio_slider.setValue(int(round(cfg.synthetic_ratio * 100)))
        if synthetic_only is not None:
            self.synthetic_only_check.setChecked(bool(synthetic_only))

    # ========================================================================= data
    def collect(self, cfg: TrainConfig) -> tuple[TrainJob, list[str]] | str:
        """A job with copies of the selected layers' data (main thread) and the dataset folders, plus
        notes for the user; or the reason why there is nothing to train on."""
        job = TrainJob(config=cfg, folders=[] if self.synthetic_only else list(self._folders))
        notes: list[str] = []
        if cfg.task != "segment" or self.synthetic_only:
            return job, notes
        self.refresh_pairs()
        empty = []
        for pair in self.selected_pairs():
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
            if image.rgb and str(getattr(cfg, "channels", "1")) == "1":
                notes.append(f"'{image.name}' is an RGB image: a grey model (input channels 1) trains on its "
                             "luminance")
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
        labels = list(self._pairs)
        images = [ly for ly in self.viewer.layers if isinstance(ly, Image)]
        if not labels and not images:
            return ("there is no image layer and no labels layer: open a micrograph, annotate grains (Annotate dock) "
                    "or add a dataset folder, or choose synthetic-only pre-training")
        if not labels:
            image = images[0].name if len(images) == 1 else "<image>"
            return (f"no labels layer: annotate grains in the Annotate dock (it makes the Labels layer "
                    f"'{annotation_name(image)}'), or add a dataset folder")
        if not images:
            return f"no image layer for the labels '{labels[0].labels.name}': open the micrograph it annotates"
        bad = [p for p in labels if not p.usable]
        if bad and len(bad) == len(labels):
            p = bad[0]
            shapes = ", ".join(f"'{im.name}' {' × '.join(map(str, spatial_shape(im)))}" for im in images[:3])
            return f"labels '{p.labels.name}': {p.problem} (images: {shapes})"
        return "no labels layer is selected: check one in the Data section, or add a dataset folder"
