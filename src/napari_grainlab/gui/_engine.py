"""Loading the learning engine (torch, timm) inside a running napari.

Two traps, both avoided by :func:`preload_engine`:

* the first import of torch / timm must happen on the main thread, not in a worker;
* on Linux, Mesa's OpenGL drivers (llvmpipe under Xvfb or in VMs, radeonsi on AMD GPUs) load
  the system's ``libLLVM`` into napari's process. torchvision imports ``torch._dynamo``, which
  imports triton, whose own bundled LLVM then crashes the process (segmentation fault). When
  ``libLLVM`` is already mapped and triton is not yet imported, triton is marked as unavailable
  (``sys.modules["triton"] = None``): torch then treats it as not installed, which costs nothing
  here (triton only serves ``torch.compile`` GPU kernels, which GrainLab does not use).
  ``GRAINLAB_ALLOW_TRITON=1`` turns this guard off.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

__all__ = ["avoid_triton_llvm_clash", "engine_loaded", "ensure_engine", "preload_engine"]

log = logging.getLogger(__name__)

#: what :func:`preload_engine` imports, in this order
_MODULES = ("torch", "timm", "napari_grainlab.core.inference.pipeline", "napari_grainlab.core.models.networks",
            "napari_grainlab.core.training")


def _system_llvm_loaded() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:
        return False


def avoid_triton_llvm_clash() -> bool:
    """Block the triton import when Mesa's ``libLLVM`` is loaded and triton is not; returns whether it did."""
    if os.environ.get("GRAINLAB_ALLOW_TRITON", "") not in ("", "0") or "triton" in sys.modules:
        return False
    if _system_llvm_loaded():
        log.info("the OpenGL driver loaded libLLVM: triton is disabled to keep it from crashing napari")
        sys.modules["triton"] = None  # type: ignore[assignment]  # ``import triton`` now raises ImportError
        return True
    return False


def engine_loaded() -> bool:
    return all(name in sys.modules for name in _MODULES)


def preload_engine() -> None:
    """Import torch, timm and the engine (call on the main thread; a few seconds the first time)."""
    if engine_loaded():
        return
    avoid_triton_llvm_clash()
    for name in _MODULES:
        importlib.import_module(name)


def ensure_engine(status=None) -> bool:
    """Load the engine on the main thread with a wait cursor; False (and a notification) if it fails.

    ``status(text, error=False)`` is told what happens (e.g. a dock's status line).
    """
    if engine_loaded():
        return True
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from .workers import report_error

    if status is not None:
        status("Loading PyTorch…")
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        QApplication.processEvents()
        preload_engine()
    except Exception as exc:  # noqa: BLE001 - a broken torch install: tell, do not crash
        if status is not None:
            status(f"Cannot load PyTorch: {exc}", error=True)
        report_error(exc, "Loading PyTorch")
        return False
    finally:
        QApplication.restoreOverrideCursor()
    if status is not None:
        status("")
    return True
