"""Short garbage collections in a napari that has loaded torch: moving long-lived objects out of the collector's way.

CPython's cyclic garbage collector now and then runs a *full* collection, which visits every object it
tracks while holding the GIL: in a napari window that is ~240,000 objects (~90 ms on a laptop core), and
~1.5 million once torch, timm and pandas are imported (~250 ms). Such a pass stops the event loop
whichever thread triggers it, and importing those libraries in the background triggers several as the
heap grows: they were the longest stalls left when a dock opens
(``benchmarks/bench_gui_responsiveness.py --stalls``).

:func:`freeze_long_lived` moves every object that exists at that moment into the collector's permanent
generation (:func:`gc.freeze`): later collections skip them. The docks call it on the main thread when
their background imports start (napari's own objects) and when they end (the imported modules'); module
objects never become garbage. Objects that *can* become garbage are napari layers (their events hold
reference cycles, so a removed layer's data is freed only by a collection): the layers of the viewer at
each freeze are remembered, and when one of them is removed everything is unfrozen again
(:func:`gc.unfreeze`), so its memory comes back at the next collection as it would without any of this;
closing a dock that froze the heap unfreezes it too (the dock and what it holds may be garbage then).
While the imports run, full collections wait (:func:`suspend_full_collections`): their new objects are
frozen when they end, and a full pass meanwhile would visit them again and again.
``GRAINLAB_GC_FREEZE=0`` turns it off.
"""

from __future__ import annotations

import gc
import logging
import os
import weakref
from typing import Any

__all__ = ["freeze_enabled", "freeze_long_lived", "frozen_layer_count", "removal_mark", "resume_full_collections",
           "suspend_full_collections", "unfreeze"]

log = logging.getLogger(__name__)

#: the layers that were in a viewer when its objects were frozen (by id; weak references: a layer is not
#: kept alive by being here, and napari's layers and viewers need not be hashable)
_FROZEN_LAYERS: dict[int, weakref.ref] = {}
#: the viewers whose layer list is watched (its ``removed`` event connected once)
_WATCHED: dict[int, weakref.ref] = {}
#: layers removed from the watched viewers, and unfreezes, so far
_COUNTS = {"removed": 0, "unfrozen": 0}


#: the collector's thresholds before :func:`suspend_full_collections`, while suspended
_SUSPENDED: dict[str, tuple[int, int, int] | None] = {"thresholds": None}
#: the third threshold while full collections are suspended (full passes wait for this many gen-1 passes)
_SUSPENDED_GEN2 = 1_000_000


def suspend_full_collections() -> bool:
    """No full collection until :func:`resume_full_collections` (young generations are still collected):
    for the time of the background imports, whose new objects a full pass would visit again and again
    before they are frozen. Returns whether it did (not when switched off or already suspended)."""
    if not freeze_enabled() or _SUSPENDED["thresholds"] is not None:
        return False
    t0, t1, t2 = gc.get_threshold()
    _SUSPENDED["thresholds"] = (t0, t1, t2)
    gc.set_threshold(t0, t1, _SUSPENDED_GEN2)
    return True


def resume_full_collections(*_args: Any) -> None:
    """The thresholds of before :func:`suspend_full_collections` (a no-op when not suspended)."""
    saved = _SUSPENDED["thresholds"]
    if saved is None:
        return
    _SUSPENDED["thresholds"] = None
    t0, t1, t2 = gc.get_threshold()
    gc.set_threshold(t0, t1, saved[2])  # the young thresholds as they are now: someone may have changed them


def freeze_enabled() -> bool:
    return os.environ.get("GRAINLAB_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off")


def frozen_layer_count() -> int:
    """How many layers are frozen (alive, and frozen with the rest of the heap)."""
    return sum(1 for ref in _FROZEN_LAYERS.values() if ref() is not None)


def _is_frozen_layer(layer: Any) -> bool:
    ref = _FROZEN_LAYERS.get(id(layer))
    return ref is not None and ref() is layer


def removal_mark() -> tuple[int, int]:
    """A mark to pass to :func:`freeze_long_lived` as ``unless_since``."""
    return _COUNTS["removed"], _COUNTS["unfrozen"]


def unfreeze(*_args: Any) -> None:
    """Make every frozen object collectable again (a removed layer or a closed dock may be garbage now; its
    memory comes back at the next full collection)."""
    if gc.get_freeze_count():
        gc.unfreeze()
        _COUNTS["unfrozen"] += 1
        log.debug("unfrozen: the garbage collector sees every object again")
    _FROZEN_LAYERS.clear()


def _on_removed(event: Any) -> None:
    _COUNTS["removed"] += 1
    layer = getattr(event, "value", None)
    if layer is not None and _is_frozen_layer(layer):
        unfreeze()


def freeze_long_lived(viewer: Any = None, unless_since: tuple[int, int] | None = None) -> bool:
    """Move every object tracked by the garbage collector into its permanent generation (main thread only);
    returns whether it did. The layers of ``viewer`` now are remembered: removing one of them unfreezes all.

    ``unless_since`` (a :func:`removal_mark`): do nothing if a layer was removed from a watched viewer
    since then, or everything unfrozen: a removed layer may still wait for its collection, and freezing
    it would keep its memory for good."""
    if not freeze_enabled():
        return False
    if unless_since is not None and removal_mark() != tuple(unless_since):
        return False
    layers = getattr(viewer, "layers", None)
    if layers is not None:
        for layer in list(layers):
            _FROZEN_LAYERS[id(layer)] = weakref.ref(layer)
        watched = _WATCHED.get(id(viewer))
        if watched is None or watched() is not viewer:
            try:
                layers.events.removed.connect(_on_removed)
            except (AttributeError, TypeError):  # not a napari layer list
                pass
            else:
                _WATCHED[id(viewer)] = weakref.ref(viewer)
    gc.freeze()
    return True
