"""The Tools panel of the Annotate dock: napari's paint / fill / erase / pick modes and the dock's
own Merge, Split and Delete tools, the model-backed Grain (click), Box (drag) and Stroke tools, the
brush, a new grain id, Fill holes, Undo / Redo.

Every edit is one :class:`~napari_grainlab.core.annotate.LabelEdit` applied by the dock as one
step of napari's Labels history.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Shapes
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ...core import annotate as core
from .._forms import SpinBox
from .._layers import ROLES, role_metadata, spatial_of
from ._common import guarded, live

if TYPE_CHECKING:
    from .dock import AnnotateWidget

__all__ = ["CUSTOM_TOOLS", "TOOLS", "ToolsPanel"]

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
    "grain": ("Grain", None, "Click a grain: the model's grain there is added (a click on a grain replaces it "
                             "by the model's; shift-click removes it)."),
    "box": ("Box", None, "Drag a box: the model's grains inside it go into the unannotated pixels."),
    "stroke": ("Stroke", None, "Draw along a missed boundary to split a grain; draw across grains to merge them."),
}
CUSTOM_TOOLS = tuple(k for k, (_, mode, _) in TOOLS.items() if mode is None)
#: the tools that draw while the mouse is dragged (the canvas does not pan meanwhile)
DRAG_TOOLS = ("split", "box", "stroke")
#: the tools answered from the model's maps (Click grains panel)
MODEL_TOOLS = ("grain", "box")
MERGE_BRIDGE_PX = 2


class ToolsPanel(QWidget):
    """The tool buttons and the edits they make on the dock's annotation layer."""

    def __init__(self, dock: AnnotateWidget) -> None:
        super().__init__()
        self._dock = dock
        self._tool = "pan"
        self._merge_first: int | None = None
        self._line_ref: weakref.ref | None = None
        self._syncing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        grid = QGridLayout()
        grid.setSpacing(3)
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, (key, (text, _mode, help_text)) in enumerate(TOOLS.items()):
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
        layout.addLayout(grid)
        self.tool_help = QLabel()
        self.tool_help.setWordWrap(True)
        self.tool_help.setStyleSheet("color: palette(mid);")
        layout.addWidget(self.tool_help)
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
        layout.addLayout(brush_row)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("undo the last edit (Ctrl+Z in the canvas)")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("redo (Ctrl+Shift+Z in the canvas)")
        self.redo_button.clicked.connect(self.redo)
        undo_row = QHBoxLayout()
        undo_row.addWidget(self.undo_button)
        undo_row.addWidget(self.redo_button)
        layout.addLayout(undo_row)
        self.update_help()

    # ------------------------------------------------------------------ the annotation layer
    def connect_layer(self, labels: Labels) -> None:
        """Follow napari's mode changes of ``labels`` and handle the dock's tools on it."""
        labels.events.mode.connect(self._on_layer_mode)
        if self.on_mouse not in labels.mouse_drag_callbacks:
            labels.mouse_drag_callbacks.append(self.on_mouse)
        labels.brush_size = self.brush_spin.value()

    def disconnect_layer(self, labels: Labels) -> None:
        labels.events.mode.disconnect(self._on_layer_mode)
        if self.on_mouse in labels.mouse_drag_callbacks:
            labels.mouse_drag_callbacks.remove(self.on_mouse)
        labels.mouse_pan = True

    def reset(self) -> None:
        """The dock leaves its image: forget the merge click, remove the split line."""
        self._remove_line()
        self._merge_first = None

    def forget_line(self, layer) -> None:
        """``layer`` was removed from the viewer: when it was the split line, draw a new one next time."""
        if self._line_ref is not None and layer is self._line_ref() and self._tool in DRAG_TOOLS:
            self._line_ref = None

    # ------------------------------------------------------------------ tools
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
        viewer = self._dock.viewer
        labels = self._dock.labels_layer
        if labels is not None:
            mode = TOOLS[key][1]
            self._syncing = True
            try:
                labels.mode = mode or "pan_zoom"
            finally:
                self._syncing = False
            labels.mouse_pan = mode is not None or key not in DRAG_TOOLS
            if viewer.layers.selection.active is not labels and key != "pan":
                viewer.layers.selection.active = labels
        if key in DRAG_TOOLS:
            self._line_layer()
        else:
            self._remove_line()
        self.update_help()
        if key in MODEL_TOOLS and labels is not None:
            self._dock.prompts.require()  # start predicting the maps now, so that the first click answers

    def _on_layer_mode(self, event) -> None:
        if self._syncing:
            return
        mode = str(event.mode)
        for key, (_, m, _) in TOOLS.items():
            if m == mode and not (mode == "pan_zoom" and self._tool in CUSTOM_TOOLS):
                if key != self._tool:
                    self.set_tool(key)
                return

    def update_help(self, extra: str = "") -> None:
        self.tool_help.setText(extra or TOOLS[self._tool][2])

    def _on_brush(self, value: int) -> None:
        labels = self._dock.labels_layer
        if labels is not None:
            labels.brush_size = int(value)

    @guarded("New id")
    def select_new_id(self, *_: Any) -> int:
        labels = self._dock._require()
        new = int(np.max(labels.data)) + 1
        labels.selected_label = new
        if self._tool not in ("paint", "fill"):
            self.set_tool("paint")
        return new

    def _line_layer(self) -> Shapes | None:
        viewer = self._dock.viewer
        line = live(viewer, self._line_ref)
        labels = self._dock.labels_layer
        if line is None and labels is not None:
            line = viewer.add_shapes(name=ROLES["split_line"], edge_color="yellow", edge_width=1.5,
                                     face_color="transparent", opacity=0.9,
                                     metadata=role_metadata("split_line", source=self._dock._base_name),
                                     **spatial_of(labels))
            self._line_ref = weakref.ref(line)
            viewer.layers.selection.active = labels
        return line

    def _remove_line(self) -> None:
        line = live(self._dock.viewer, self._line_ref)
        if line is not None:
            self._dock.viewer.layers.remove(line)
        self._line_ref = None

    def on_mouse(self, layer: Labels, event):
        """Mouse callback of the annotation layer for the dock's own tools."""
        tool = self._tool
        if tool not in CUSTOM_TOOLS or event.button != 1 or layer.mode != "pan_zoom":
            return
        pos = np.asarray(layer.world_to_data(event.position))[-2:]
        if tool in DRAG_TOOLS:
            points = [pos]
            line = self._line_layer()
            yield
            while event.type == "mouse_move":
                points.append(np.asarray(layer.world_to_data(event.position))[-2:])
                if line is not None and len(points) >= 2:
                    if tool == "box":
                        (y0, x0), (y1, x1) = points[0], points[-1]
                        line.data = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])]
                        line.shape_type = ["rectangle"]
                    else:
                        line.data = [np.array(points)]
                        line.shape_type = ["path"]
                yield
            if line is not None:
                line.data = []
            if len(points) >= 2:
                {"split": self.split, "stroke": self.stroke, "box": self.box}[tool](np.array(points))
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
        elif tool == "grain":
            if "Shift" in {str(getattr(m, "name", m)) for m in (event.modifiers or ())}:
                self.remove_grain(r, c)
            else:
                self.click_grain(r, c)

    def _merge_click(self, gid: int) -> None:
        if gid == 0:
            self._merge_first = None
            self.update_help("Not a grain. Click a grain, then a second one to merge them.")
            return
        if self._merge_first is None or self._merge_first == gid:
            self._merge_first = gid
            self.update_help(f"Grain {gid} chosen: click the grain to merge into it.")
            return
        first, self._merge_first = self._merge_first, None
        self.merge([first, gid])
        self.update_help(f"Merged grain {gid} into {first}. Click the next pair.")

    # ------------------------------------------------------------------ edits
    @guarded("Merge")
    def merge(self, ids) -> bool:
        """Merge the grains ``ids`` into the first (closing a drawn gap between them)."""
        labels = self._dock._require()
        return self._dock._apply_edit(core.merge_grains(labels.data, ids, bridge=MERGE_BRIDGE_PX))

    @guarded("Split")
    def split(self, points: np.ndarray) -> bool:
        """Cut the grains the polyline ``points`` (data coordinates, row / column) crosses."""
        labels = self._dock._require()
        edit = core.split_grain(labels.data, np.asarray(points, dtype=float), width=1)
        if not edit:
            self.update_help("The line must cross a grain from side to side.")
            return False
        self.update_help(f"Split: new grain(s) {', '.join(map(str, edit.new_ids))}. Ctrl+Z undoes it.")
        return self._dock._apply_edit(edit)

    @guarded("Stroke")
    def stroke(self, points: np.ndarray) -> bool:
        """A stroke (data coordinates): split the grain it lies in along it, or merge the grains it crosses."""
        from ...core.interactive import scribble

        labels = self._dock._require()
        edit = scribble(labels.data, np.asarray(points, dtype=float))
        if not edit:
            self.update_help("Stroke: draw along a boundary inside one grain, or from one grain into another.")
            return False
        what = f"split, new grain(s) {', '.join(map(str, edit.new_ids))}" if edit.new_ids else \
            f"merged {', '.join(map(str, edit.removed_ids))}"
        self.update_help(f"Stroke: {what}. Ctrl+Z undoes it.")
        return self._dock._apply_edit(edit)

    def _maps_or_wait(self):
        seg = self._dock.prompts.require()
        if seg is None:
            self.update_help("Predicting the model's maps for this image… click again when they are ready "
                             "(Click grains below).")
        return seg

    @guarded("Grain")
    def click_grain(self, row: float, col: float) -> bool:
        """Add the model's grain at the pixel (row, col): into unannotated pixels, replacing a grain clicked on."""
        from ...core.interactive import add_grain

        labels = self._dock._require()
        seg = self._maps_or_wait()
        if seg is None:
            return False
        mask = seg.grain_at(row, col)
        edit = add_grain(labels.data, mask, at=(row, col))
        if not edit:
            self.update_help("Grain: nothing to add there (those pixels belong to other grains).")
            return False
        gid = edit.new_ids[0] if edit.new_ids else int(labels.data[int(round(row)), int(round(col))])
        self.update_help(f"Grain {gid}: {int(mask.sum())} px. Ctrl+Z undoes it; shift-click removes a grain.")
        return self._dock._apply_edit(edit)

    @guarded("Grain")
    def remove_grain(self, row: float, col: float) -> bool:
        from ...core.interactive import remove_grain_at

        labels = self._dock._require()
        return self._dock._apply_edit(remove_grain_at(labels.data, row, col))

    @guarded("Box")
    def box(self, points: np.ndarray) -> bool:
        """Add the model's grains inside the box spanned by the first and last of ``points`` (data coordinates)."""
        from ...core.interactive import add_grains

        labels = self._dock._require()
        seg = self._maps_or_wait()
        if seg is None:
            return False
        (y0, x0), (y1, x1) = np.asarray(points, dtype=float)[[0, -1]]
        edit = add_grains(labels.data, seg.grains_in_box(y0, x0, y1, x1))
        self.update_help(f"Box: {len(edit.new_ids)} grain(s) added. Ctrl+Z undoes it." if edit else
                         "Box: no unannotated grain lies mostly inside the box.")
        return self._dock._apply_edit(edit)

    @guarded("Delete")
    def delete(self, ids) -> bool:
        labels = self._dock._require()
        return self._dock._apply_edit(core.delete_grains(labels.data, ids))

    @guarded("Fill holes")
    def fill_holes(self, *_: Any) -> bool:
        labels = self._dock._require()
        edit = core.fill_holes(labels.data)
        if not edit:
            show_info("Fill holes: no unannotated hole enclosed by one grain")
        return self._dock._apply_edit(edit)

    def undo(self) -> None:
        labels = self._dock.labels_layer
        if labels is not None:
            labels.undo()
            self._dock._mark_changed()

    def redo(self) -> None:
        labels = self._dock.labels_layer
        if labels is not None:
            labels.redo()
            self._dock._mark_changed()
