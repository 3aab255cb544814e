"""The Train dock's run panel: Start / Stop, progress, device / speed / ETA, the best metric, the
live plot, the status line and the Preview button; it shows the training events as they come."""

from __future__ import annotations

import math
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...core.errors import USER_ERRORS
from ...core.training.events import (
    CrossValidated,
    EarlyStopped,
    Epoch,
    Finished,
    FoldStarted,
    Started,
    Step,
    TrainWarning,
    Unfrozen,
)
from .._widgets import hline, progress_bar, show_status, single_shot_timer, status_label
from ..jobs.train import DataStatus
from ..workers import TaskResult, report_error
from .plot import METRIC_NAMES, TrainingPlot

__all__ = ["EXPECTED_ERRORS", "LABEL_REFRESH_MS", "RunPanel", "fmt_duration", "notify_failure"]

LABEL_REFRESH_MS = 1000  # speed / ETA labels and the progress-bar text
#: errors whose message is enough for the user (no traceback); a diverging training raises
#: FloatingPointError ("lower the learning rate"), which is the user's to fix as well
EXPECTED_ERRORS = (*USER_ERRORS, FloatingPointError)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def notify_failure(error: BaseException, context: str) -> None:
    """A notification for a failed run: the message of an expected error, else the traceback."""
    if isinstance(error, EXPECTED_ERRORS):
        msg = str(error) or type(error).__name__
        if isinstance(error, MemoryError):
            msg = f"out of memory: {msg}"
        show_error(f"{context} failed: {msg}")
    else:
        report_error(error, context)


class RunPanel(QWidget):
    """The lower part of the Train dock.  The dock connects the buttons; :meth:`reset` before a
    run, :meth:`show_event` for each event, :meth:`finish` and :meth:`show_result` at its end."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.started: Started | None = None
        self.monitor = "boundary_f1"
        self.kfold = 0
        self._speed: float | None = None
        self._pending_step: Step | None = None
        self._label_timer = single_shot_timer(self, LABEL_REFRESH_MS, self._show_step)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip("train with the settings above (in the background)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("<p>stop after the current step: the run writes last/ and keeps the best "
                                    "checkpoint in best/</p>")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.stop_button, 1)
        self.progress_bar = progress_bar()
        self.device_label = QLabel()
        self.eta_label = QLabel()
        self.eta_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        info = QHBoxLayout()
        info.addWidget(self.device_label, 1)
        info.addWidget(self.eta_label)
        self.best_label = status_label()
        self.status_label = status_label("Ready.")
        self.plot = TrainingPlot()
        self.preview_button = QPushButton("Preview")
        self.preview_button.setEnabled(False)
        self.preview_button.setToolTip("<p>segment the current image with the best model of the last run and add "
                                       "its grains and boundary map as layers</p>")
        lay.addWidget(hline())
        lay.addLayout(buttons)
        lay.addWidget(self.progress_bar)
        lay.addLayout(info)
        lay.addWidget(self.best_label)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.status_label)
        lay.addWidget(self.preview_button)

    # ====================================================================== status
    def set_status(self, text: str, error: bool = False) -> None:
        show_status(self.status_label, text, error)

    def show_preview_target(self, name: str | None, enabled: bool) -> None:
        """Name the image *Preview* would segment (None: there is none)."""
        if name:
            shown = self.preview_button.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, 220)
            self.preview_button.setText(f"Preview on “{shown}”")
        else:
            self.preview_button.setText("Preview (no image layer)")
        self.preview_button.setEnabled(bool(enabled and name))

    # ====================================================================== a run
    def reset(self, monitor: str, kfold: int, out: Any) -> None:
        """Clear the display before a run that monitors ``monitor`` and writes to ``out``."""
        self.started = None
        self._speed = None
        self.monitor = monitor
        self.kfold = kfold
        self.plot.clear(monitor)
        self.device_label.setText("")
        self.eta_label.setText("")
        self.best_label.setText("")
        self.set_status(f"Preparing… (output: {out})")

    def _fold_prefix(self, ev: Any) -> str:
        fold = getattr(ev, "fold", None)
        return f"fold {fold + 1}/{self.kfold}: " if fold is not None and self.kfold else ""

    def show_event(self, ev: Any) -> None:
        """Show one event of the training job."""
        if isinstance(ev, Step):
            self.plot.add_step(ev.step, ev.loss)
            a = 0.2
            self._speed = ev.images_per_s if self._speed is None else (1 - a) * self._speed + a * ev.images_per_s
            self._pending_step = ev
            if not self._label_timer.isActive():
                self._label_timer.start()
        elif isinstance(ev, DataStatus):
            self.set_status(ev.message)
        elif isinstance(ev, Started):
            self.started = ev
            amp = {"off": "fp32"}.get(ev.amp, ev.amp)
            self.device_label.setText(f"{ev.device} · {amp}")
            self.device_label.setToolTip(str(ev))
            self.set_status(f"{self._fold_prefix(ev)}{ev.n_train} train / {ev.n_val} validation image(s), "
                            f"{ev.epochs} epochs × {ev.steps_per_epoch} steps; {ev.trainable_params:,} of "
                            f"{ev.total_params:,} parameters train; weights: {ev.weights}")
        elif isinstance(ev, Epoch):
            spe = self.started.steps_per_epoch if self.started else 1
            value = ev.metrics.get(self.monitor)
            self.plot.add_epoch(ev.epoch * spe, ev.val_loss, value, ev.improved)
            self.eta_label.setText(f"{ev.images_per_s:.1f} img/s · ETA {fmt_duration(ev.eta_s)}")
            if ev.improved:
                name = METRIC_NAMES.get(self.monitor, self.monitor)
                shown = value if value is not None else ev.train_loss
                self.best_label.setText(f"{self._fold_prefix(ev)}best {name} {shown:.3f} (epoch {ev.epoch})")
            self.set_status(f"{self._fold_prefix(ev)}epoch {ev.epoch}/{ev.epochs}: train loss {ev.train_loss:.3f}, "
                            f"val loss {ev.val_loss:.3f} ({fmt_duration(ev.seconds)})")
        elif isinstance(ev, (Unfrozen, EarlyStopped)):
            self.set_status(f"{self._fold_prefix(ev)}{ev}")
        elif isinstance(ev, TrainWarning):
            show_warning(f"Training: {ev.message}")
        elif isinstance(ev, FoldStarted):
            self.plot.clear(self.monitor)
            self.best_label.setText("")
            self.set_status(str(ev))
        elif isinstance(ev, CrossValidated):
            name = METRIC_NAMES.get(self.monitor, self.monitor)
            m, sd = ev.mean.get(self.monitor), ev.sd.get(self.monitor)
            text = f"{ev.k}-fold cross-validation: {name} {m:.3f} ± {sd:.3f}" if m is not None else str(ev)
            self.best_label.setText(text)
            show_info(text)

    def _show_step(self) -> None:
        """Speed, ETA and epoch of the latest step (throttled by ``_label_timer``)."""
        ev, self._pending_step = self._pending_step, None
        if ev is None:
            return
        self.eta_label.setText(f"{self._speed:.1f} img/s · ETA {fmt_duration(ev.eta_s)}")
        epochs = self.started.epochs if self.started else "?"
        fmt = f"{self._fold_prefix(ev)}epoch {ev.epoch}/{epochs} · " + ("%p %" if self.kfold else "step %v / %m")
        if self.progress_bar.format() != fmt:
            self.progress_bar.setFormat(fmt)

    def finish(self) -> None:
        """Show what is pending (the last step, the plot) when a run ends."""
        self._label_timer.stop()
        self._show_step()
        self.plot.flush()

    def show_result(self, result: TaskResult, fin: Finished | None, where: str | None) -> None:
        """The status line and notification of a finished run (``where``: its model)."""
        if result.status == "failed":
            self.set_status(f"Training failed: {result.error}", error=True)
            notify_failure(result.error, "Training")
        elif fin is not None:
            name = METRIC_NAMES.get(self.monitor, self.monitor)
            best = f"best {name} {fin.best_metric:.3f} at epoch {fin.best_epoch}" if fin.best_metric is not None \
                else "no epoch completed"
            verb = {"completed": "Finished", "early_stopped": "Stopped early", "stopped": "Stopped"}.get(
                fin.reason, "Finished")
            text = f"{verb} after {fin.epochs_run} epoch(s) in {fmt_duration(fin.seconds)}: {best}."
            if where:
                text += f" Model: {where}"
            self.set_status(text)
            show_info(f"Training {verb.lower()}: {best}" + (f"; model in {where}" if where else ""))
        else:
            self.set_status("Stopped before training began." if result.status == "cancelled" else "Done.")
        self.eta_label.setText(f"took {fmt_duration(result.elapsed)}")
