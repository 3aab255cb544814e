"""Small pieces the Annotate dock's panels share: the error guard of slots, section widgets,
weak layer references."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFrame, QWidget
from superqt import QCollapsible

from ...core.errors import USER_ERRORS
from ..workers import report_error

#: the errors a slot shows as a one-line message (anything else is a bug and keeps its traceback)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = USER_ERRORS
ERROR_STYLE = "color: #f0524f;"


def guarded(context: str) -> Callable:
    """Slot decorator: expected errors become a notification, nothing escapes to Qt."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def inner(self, *args, **kwargs):
            try:
                return func(self, *args, **kwargs)
            except EXPECTED_ERRORS as exc:
                show_error(f"{context}: {exc}")
            except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into Qt
                report_error(exc, context)
            return None

        return inner

    return wrap


def hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def section(title: str, widget: QWidget, expanded: bool) -> QCollapsible:
    box = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
    box.setDuration(120)
    box.addWidget(widget)
    if expanded:
        box.expand(animate=False)
    return box


def live(viewer, ref: weakref.ref | None):
    """The layer behind ``ref`` while it is in ``viewer`` (else None)."""
    layer = ref() if ref is not None else None
    return layer if layer is not None and layer in viewer.layers else None


def source_stem(layer) -> str | None:
    """The file name the layer was opened from (None for a layer made in the session)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return Path(str(path)).name if path else None
