"""The Annotate dock (:class:`AnnotateWidget`) and its panels: tools, proposals, classes, saving."""

from __future__ import annotations

from .dock import AnnotateWidget
from .proposals import ClassicalSettings
from .tools import TOOLS

__all__ = ["AnnotateWidget", "ClassicalSettings", "TOOLS"]
