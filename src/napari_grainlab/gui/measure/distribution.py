"""The distribution plot of the Measure dock: the grain-area histogram on a log axis with its log-normal fit
and, for the intercept method, the intercept-length histogram (matplotlib's Qt canvas, in the colours of
napari's theme). The drawing is :func:`napari_grainlab.core.report.draw_distribution`, as in the reports."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from .._widgets import napari_theme

__all__ = ["DistributionPlot"]


class DistributionPlot(QWidget):
    """Log-binned histograms of a ``grain_size`` result's distributions (``to_dict`` form)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 3.0), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.colors = {"bg": "#262930", "fg": "#f0f1f2", "bar": "#6c9bd2", "fit": "#f0a63c"}
        #: the histograms drawn last ("grain area", "intercept length") and their number of bars
        self.drawn: dict[str, int] = {}
        self._last: tuple[Any, str] = (None, "planimetric")

    def set_theme(self, theme_name: str) -> None:
        """Take the background and text colours of napari's theme ``theme_name`` and draw again."""
        theme = napari_theme(theme_name)
        if theme is not None:
            self.colors.update(bg=theme.background.as_hex(), fg=theme.text.as_hex())
        self.plot(*self._last)

    def plot(self, distributions: dict[str, Any] | None, method: str = "planimetric") -> None:
        """Draw the grain-area histogram of ``distributions`` and, for ``method`` intercept, the
        intercept-length one beside it; None: say there is nothing to show."""
        from ...core.report import draw_distribution

        self._last = (distributions, method)
        fig, c = self.figure, self.colors
        fig.clear()
        fig.set_facecolor(c["bg"])
        dist = distributions or {}
        panels = [("grain_area", "grain area")]
        if method == "intercept" and dist.get("intercept_length"):
            panels.append(("intercept_length", "intercept length"))
        self.drawn = {}
        for i, (key, quantity) in enumerate(panels):
            ax = fig.add_subplot(len(panels), 1, i + 1)
            ax.set_facecolor(c["bg"])
            d = dist.get(key) or {}
            self.drawn[quantity] = draw_distribution(ax, d, quantity, d.get("unit", "px"), color=c["bar"],
                                                     fit_color=c["fit"], text_color=c["fg"], legend=False)
            if self.drawn[quantity]:
                ax.text(0.02, 0.96, _fit_text(d), transform=ax.transAxes, ha="left", va="top", fontsize=6.5,
                        color=c["fit"])
            for spine in ax.spines.values():
                spine.set_color(c["fg"])
            ax.tick_params(colors=c["fg"], labelsize=7, which="both")
            ax.xaxis.label.set_fontsize(8)
            ax.yaxis.label.set_fontsize(8)
        self.canvas.draw_idle()


def _fit_text(d: dict[str, Any]) -> str:
    """One line about the log-normal fit of a distribution: its median and the spread of ln."""
    import math

    mu, sigma = d.get("lognormal_mu"), d.get("lognormal_sigma")
    n = d.get("n") or 0
    if mu is None or sigma is None:
        return f"n = {n}"
    return f"n = {n} · log-normal fit: median {math.exp(mu):.3g}, σ(ln) {sigma:.2f}"
