"""The size histogram of the Measure dock (matplotlib, in the colours of napari's theme)."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from .._widgets import fmt_number, napari_theme

__all__ = ["MAX_BINS", "SizeHistogram"]

MAX_BINS = 60


class SizeHistogram(QWidget):
    """Matplotlib histogram of equivalent diameters, in the colours of napari's theme."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 2.0), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(150)
        self.axes = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.colors = {"bg": "#262930", "fg": "#f0f1f2", "bar": "#6c9bd2", "mean": "#f0a63c"}
        self.n_bars = 0

    def set_theme(self, theme_name: str) -> None:
        """Take the background and text colours of napari's theme ``theme_name`` (unknown: keep the colours)."""
        theme = napari_theme(theme_name)
        if theme is not None:
            self.colors.update(bg=theme.background.as_hex(), fg=theme.text.as_hex())

    def plot(self, diameters: np.ndarray | None, unit: str = "px") -> None:
        ax, c = self.axes, self.colors
        ax.clear()
        self.figure.set_facecolor(c["bg"])
        ax.set_facecolor(c["bg"])
        for spine in ax.spines.values():
            spine.set_color(c["fg"])
        ax.tick_params(colors=c["fg"], labelsize=8)
        ax.set_xlabel(f"equivalent diameter ({unit})", color=c["fg"], fontsize=9)
        ax.set_ylabel("grains", color=c["fg"], fontsize=9)
        self.n_bars = 0
        d = np.asarray(diameters if diameters is not None else [], dtype=float)
        d = d[np.isfinite(d)]
        if d.size:
            edges = np.histogram_bin_edges(d, bins="auto")
            if len(edges) - 1 > MAX_BINS:
                edges = np.linspace(d.min(), d.max(), MAX_BINS + 1)
            if len(edges) < 2 or edges[-1] <= edges[0]:
                edges = np.array([d.min() - 0.5, d.max() + 0.5])
            counts, _, patches = ax.hist(d, bins=edges, color=c["bar"], edgecolor=c["bg"], linewidth=0.5)
            self.n_bars = len(patches)
            mean = float(d.mean())
            ax.axvline(mean, color=c["mean"], linewidth=1.5)
            ax.text(mean, max(counts) * 0.97, f" mean {fmt_number(mean)}", color=c["mean"], fontsize=8, va="top")
        else:
            ax.text(0.5, 0.5, "no grains", transform=ax.transAxes, ha="center", va="center", color=c["fg"])
        self.canvas.draw_idle()
