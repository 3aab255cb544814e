"""The Train dock's live plot of the training loss, the validation loss and the monitored metric."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from .._engine import engine_loaded, when_engine_ready
from .._widgets import single_shot_timer

__all__ = ["METRIC_NAMES", "PLOT_REFRESH_MS", "TrainingPlot"]

METRIC_NAMES = {"boundary_f1": "boundary F1", "macro_f1": "macro F1", "val_loss": "val loss",
                "train_loss": "train loss", "accuracy": "accuracy"}
PLOT_REFRESH_MS = 1500  # at most one plot redraw every 1.5 s (a draw costs tens of ms of the main thread)


class TrainingPlot(QWidget):
    """Live plot: training loss per step (raw and smoothed), validation loss and the monitored
    metric per epoch.  Updates are collected and drawn at most every ``PLOT_REFRESH_MS``.

    matplotlib is imported with the engine, in the background (:mod:`.._engine`): until then a text stands
    where the plot will be (:attr:`built` is False), and what arrives meanwhile is drawn once it is built.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.built = False
        self._theme: Any | None = None
        self._colors = {"train": "#6fa8dc", "val": "#f6b26b", "metric": "#93c47d", "text": "#d0d2d6",
                        "face": "#262930"}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._waiting = QLabel("loss and validation curves\nappear here during training")
        self._waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._waiting.setMinimumHeight(170)
        self._layout.addWidget(self._waiting)
        self._timer = single_shot_timer(self, PLOT_REFRESH_MS, self._redraw)
        self.redraws = 0
        self.clear()
        when_engine_ready(self, self._build)

    def _build(self) -> None:
        """The matplotlib figure, in place of the waiting text (once matplotlib is imported)."""
        if self.built:
            return
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 2.3), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._layout.removeWidget(self._waiting)
        self._waiting.deleteLater()
        self._layout.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        ax, ax2 = self.ax, self.ax2
        (self.raw_line,) = ax.plot([], [], lw=0.7, alpha=0.35)
        (self.train_line,) = ax.plot([], [], lw=1.6, label="train loss")
        (self.val_line,) = ax.plot([], [], "o-", ms=3.5, lw=1.2, label="val loss")
        (self.metric_line,) = ax2.plot([], [], "s-", ms=3.5, lw=1.2, label="boundary F1")
        (self.best_marker,) = ax2.plot([], [], "*", ms=11, label="_best")
        self._placeholder = ax.text(0.5, 0.5, "loss and validation curves\nappear here during training",
                                    ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xlabel("step", fontsize=8, labelpad=1)
        ax.set_ylabel("loss", fontsize=8, labelpad=2)
        ax2.set_ylim(0, 1)
        for a in (ax, ax2):
            a.tick_params(labelsize=7, length=2, pad=1)
            a.margins(x=0.02)
        self._legend = None
        self.built = True
        self._label_metric()
        self.set_theme(self._theme)
        self._fit_margins()

    # ---------------------------------------------------------------------- data
    def clear(self, metric: str = "boundary_f1") -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.smooth: list[float] = []
        self._ema: float | None = None
        self._n_ema = 0
        self.epoch_x: list[int] = []
        self.val_losses: list[float] = []
        self.metrics: list[float] = []
        self.best: tuple[int, float] | None = None
        self.metric = metric
        if self.built:
            self._label_metric()
            self._placeholder.set_visible(True)
        self._schedule()

    def _label_metric(self) -> None:
        name = METRIC_NAMES.get(self.metric, self.metric)
        self.metric_line.set_label(name)
        self.ax2.set_ylabel(name, fontsize=8, labelpad=2)

    def add_step(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self._n_ema += 1
        a = 0.1
        self._ema = loss if self._ema is None else (1 - a) * self._ema + a * loss
        # bias-corrected start: the first points are not pulled towards the first loss
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.smooth.append(self._ema if self._n_ema > 10 else float(np.mean(self.losses[-self._n_ema:])))
        self._schedule()

    def add_epoch(self, x: int, val_loss: float, metric: float | None, improved: bool) -> None:
        self.epoch_x.append(int(x))
        self.val_losses.append(float(val_loss) if val_loss is not None else float("nan"))
        self.metrics.append(float(metric) if metric is not None else float("nan"))
        if improved and metric is not None and math.isfinite(metric):
            self.best = (int(x), float(metric))
        self._schedule()

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Draw pending updates now (e.g. when training ends)."""
        self._timer.stop()
        if not self.built and engine_loaded():
            self._build()
        self._redraw()

    def _redraw(self) -> None:
        if not self.built:
            return  # drawn by _build, once matplotlib is there
        self.raw_line.set_data(self.steps, self.losses)
        self.train_line.set_data(self.steps, self.smooth)
        vx = [x for x, v in zip(self.epoch_x, self.val_losses) if math.isfinite(v)]
        self.val_line.set_data(vx, [v for v in self.val_losses if math.isfinite(v)])
        mx = [x for x, m in zip(self.epoch_x, self.metrics) if math.isfinite(m)]
        my = [m for m in self.metrics if math.isfinite(m)]
        self.metric_line.set_data(mx, my)
        self.best_marker.set_data([self.best[0]] if self.best else [], [self.best[1]] if self.best else [])
        has_data = bool(self.steps or vx)
        self._placeholder.set_visible(not has_data)
        if has_data:
            self.ax.relim()
            self.ax.autoscale_view()
            top = max(my) if my else 1.0
            self.ax2.set_ylim(0, 1.0 if top <= 1.0 else top * 1.05)
            xmax = max(self.steps[-1] if self.steps else 1, self.epoch_x[-1] if self.epoch_x else 1)
            self.ax.set_xlim(0, max(2, xmax) * 1.02)
        self._update_legend()
        self.redraws += 1
        self.canvas.draw_idle()

    def _update_legend(self) -> None:
        handles = [self.train_line]
        if len(self.val_line.get_xdata()):
            handles.append(self.val_line)
        if len(self.metric_line.get_xdata()):
            handles.append(self.metric_line)
        if self._legend is not None and getattr(self, "_legend_n", 0) == len(handles):
            return
        if self._legend is not None:
            self._legend.remove()
        c = self._colors
        self._legend = self.ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0, 1.0, 0.1),
                                      ncol=3, mode="expand", fontsize=7, frameon=False, labelcolor=c["text"],
                                      handlelength=1.4, borderaxespad=0.2, columnspacing=0.8)
        self._legend_n = len(handles)

    # --------------------------------------------------------------------- look
    def set_theme(self, theme: Any | None) -> None:
        """Colours from a napari theme (None: napari's dark theme)."""
        self._theme = theme
        c = self._colors
        if not self.built:
            if theme is not None:
                try:
                    self._waiting.setStyleSheet(f"color: {theme.text.as_hex()};")
                except AttributeError:
                    pass
            return
        if theme is not None:
            try:
                c["face"] = theme.background.as_hex()
                c["text"] = theme.text.as_hex()
            except AttributeError:
                pass
        self.figure.set_facecolor(c["face"])
        for a in (self.ax, self.ax2):
            a.set_facecolor(c["face"])
            a.tick_params(colors=c["text"])
            for spine in a.spines.values():
                spine.set_color(c["text"])
                spine.set_alpha(0.5)
            a.xaxis.label.set_color(c["text"])
            a.yaxis.label.set_color(c["text"])
        self.ax2.patch.set_visible(False)
        self._placeholder.set_color(c["text"])
        self.raw_line.set_color(c["train"])
        self.train_line.set_color(c["train"])
        self.val_line.set_color(c["val"])
        self.metric_line.set_color(c["metric"])
        self.best_marker.set_color(c["metric"])
        self._legend_n = -1
        self._schedule()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.built:
            self._fit_margins()

    def _fit_margins(self) -> None:
        """Margins in pixels, so tick labels are not clipped at narrow dock widths."""
        w, h = max(self.canvas.width(), 100), max(self.canvas.height(), 80)
        self.figure.subplots_adjust(left=min(0.3, 44 / w), right=1 - min(0.3, 40 / w), bottom=min(0.4, 34 / h),
                                    top=1 - min(0.3, 22 / h))
