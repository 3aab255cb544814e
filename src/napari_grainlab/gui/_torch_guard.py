"""Keep PyTorch's optional Triton import from crashing napari on software OpenGL.

Triton ships its own statically linked LLVM.  When Mesa's software renderer (llvmpipe, the usual
OpenGL of virtual machines, remote desktops and Xvfb) has already loaded ``libLLVM`` into the
process, importing Triton afterwards crashes the interpreter with a segmentation fault.  napari
creates its OpenGL canvas before a dock is opened, and ``timm`` / ``torchvision`` import
``torch._dynamo``, which imports Triton when it is installed, so opening a dock that trains or
predicts would kill the viewer.

:func:`avoid_triton_llvm_clash` marks Triton as unavailable (``sys.modules["triton"] = None``)
in exactly that situation, before torch is used.  GrainLab never compiles models with
``torch.compile``, the only user of Triton, so nothing is lost.  Set ``GRAINLAB_ALLOW_TRITON=1``
to skip the guard.
"""

from __future__ import annotations

import os
import sys

__all__ = ["avoid_triton_llvm_clash"]


def _llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:
        return False


def avoid_triton_llvm_clash() -> bool:
    """Block the Triton import when Mesa's ``libLLVM`` is loaded and Triton is not; returns whether it did."""
    if not sys.platform.startswith("linux") or os.environ.get("GRAINLAB_ALLOW_TRITON", "") not in ("", "0"):
        return False
    if "triton" in sys.modules:
        return False
    if _llvm_loaded():
        sys.modules["triton"] = None  # type: ignore[assignment]  # ``import triton`` now raises ImportError
        return True
    return False
