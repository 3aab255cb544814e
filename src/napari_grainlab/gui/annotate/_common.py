"""Small pieces the Annotate dock's panels share: the error guard of slots, weak layer references,
the file name of a layer."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from pathlib import Path

from napari.utils.notifications import show_error

from ...core.errors import USER_ERRORS
from ..workers import report_error


def guarded(context: str) -> Callable:
    """Slot decorator: a user's error (:data:`~napari_grainlab.core.errors.USER_ERRORS`) becomes a
    one-line notification ``context: message``, a bug one with its traceback; nothing escapes to Qt
    (the slot then returns None)."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def inner(self, *args, **kwargs):
            try:
                return func(self, *args, **kwargs)
            except USER_ERRORS as exc:
                show_error(f"{context}: {exc}")
            except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into Qt
                report_error(exc, context)
            return None

        return inner

    return wrap


def live(viewer, ref: weakref.ref | None):
    """The layer behind ``ref`` while it is in ``viewer`` (else None)."""
    layer = ref() if ref is not None else None
    return layer if layer is not None and layer in viewer.layers else None


def source_stem(layer) -> str | None:
    """The file name the layer was opened from (None for a layer made in the session)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return Path(str(path)).name if path else None
