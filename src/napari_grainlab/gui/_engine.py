"""Loading the learning engine (torch, timm) inside a running napari.

Two traps, both avoided by :func:`preload_engine`:

* the first import of torch / timm must happen on the main thread, not in a worker;
* on Linux, Mesa's OpenGL drivers (llvmpipe under Xvfb or in VMs, radeonsi on AMD GPUs) load
  the system's ``libLLVM`` into napari's process. torchvision imports ``torch._dynamo``, which
  imports triton, whose own bundled LLVM then crashes the process (segmentation fault). When
  ``libLLVM`` is already mapped and triton is not yet imported, triton is marked as unavailable
  (``sys.modules["triton"] = None``): torch then treats it as not installed, which costs nothing
  here (triton only serves ``torch.compile`` GPU kernels, which GrainLab does not use).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["engine_loaded", "preload_engine"]

log = logging.getLogger(__name__)

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


def engine_loaded() -> bool:
    return all(name in sys.modules for name in _MODULES)


def preload_engine() -> None:
    """Import torch, timm and the engine (call on the main thread; a few seconds the first time)."""
    if engine_loaded():
        return
    if "triton" not in sys.modules and _system_llvm_loaded():
        log.info("the OpenGL driver loaded libLLVM: triton is disabled to keep it from crashing napari")
        sys.modules["triton"] = None  # type: ignore[assignment]
    import timm  # noqa: F401
    import torch  # noqa: F401

    from ..core.inference import pipeline  # noqa: F401
    from ..core.models import networks  # noqa: F401
    from ..core import training  # noqa: F401
