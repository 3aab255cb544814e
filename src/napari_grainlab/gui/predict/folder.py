"""*Predict folder…* of the Predict dock: the model on every image of a folder, results written
into an output folder (``NAME_labels.tif``, ``NAME_boundary.tif``, ``NAME_grains.csv``,
``summary.csv``) by the same batch as ``grainlab predict``
(:func:`~napari_grainlab.core.batch.run_batch`), on local Dask workers or a Dask scheduler, in
a worker thread.  Images already done are skipped, so running it again continues a cancelled
batch.  No layers are added.  The folder dialogs are the dock's methods."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QLineEdit

from ..jobs.predict import FOLDER_WORKERS, predict_folder_events
from ..workers import GeneratorTask, TaskResult, report_error

if TYPE_CHECKING:
    from .dock import PredictWidget

__all__ = ["FOLDER_FAILURES_SHOWN", "FolderPrediction"]

#: failures shown one by one as notifications; the rest are counted in the final message
FOLDER_FAILURES_SHOWN = 3


class FolderPrediction:
    """The folder batch of one dock: its Dask scheduler line, the run and its outcome."""

    def __init__(self, dock: PredictWidget) -> None:
        self._dock = dock
        self.input: Path | None = None
        self.output: Path | None = None
        self._failures: list[Any] = []
        #: the end of the last folder prediction (a ``core.batch.BatchFinished``), or None
        self.last_batch: Any = None
        self.scheduler_edit = QLineEdit()
        self.scheduler_edit.setPlaceholderText(f"local ({FOLDER_WORKERS} workers)")
        self.scheduler_edit.setToolTip("<p><i>Predict folder…</i> runs on local Dask workers, or on the Dask "
                                       "cluster whose scheduler address is given here "
                                       "(<tt>tcp://host:8786</tt>). Its workers must reach the model, the "
                                       "images and the output folder under the same paths.</p>")

    def start(self, input_folder: str | Path | None = None,
              output_folder: str | Path | None = None) -> GeneratorTask | None:
        """Predict every image of ``input_folder`` into ``output_folder`` (asked for when None) in a
        worker thread; None when nothing started (the reason is a notification)."""
        dock = self._dock
        if dock.is_running or not dock.model_panel.ready():
            return None
        source = Path(input_folder) if input_folder is not None else dock.ask_input_folder()
        if source is None:
            return None
        if not source.is_dir():
            show_error(f"Not a folder: {source}")
            return None
        out = Path(output_folder) if output_folder is not None else dock.ask_output_folder(source)
        if out is None:
            return None
        if out.exists() and not out.is_dir():
            show_error(f"The output {out} exists and is not a folder")
            return None
        options = dock.run_options()
        if options is None:
            return None
        self.input, self.output = source, out
        self._failures = []
        self.last_batch = None
        scheduler = self.scheduler_edit.text().strip() or None
        task = GeneratorTask(predict_folder_events, dock.checkpoint, [source], out, options,
                             pixel_size=dock.image_panel.typed_pixel_size, scheduler=scheduler,
                             description="Predicting a folder", progress_bar=dock.progress_bar,
                             cancel_button=dock.cancel_button, notify_errors=False, parent=dock)
        task.yielded.connect(self._on_event)
        task.finished.connect(self._on_finished)
        where = scheduler or "local Dask workers"
        dock.start_task(task, f"Predicting the images of {source} into {out} ({where}): starting…")
        return task

    def _on_event(self, event: Any) -> None:
        from ...core.batch import BatchFinished, BatchImageDone, BatchImageFailed, BatchStarted

        if isinstance(event, BatchStarted):
            self._dock.set_status(str(event))
        elif isinstance(event, BatchImageDone):
            self._dock.set_status(f"{Path(event.path).name} done ({event.done} of {event.total})")
        elif isinstance(event, BatchImageFailed):
            self._failures.append(event)
            if len(self._failures) <= FOLDER_FAILURES_SHOWN:
                show_error(f"Cannot predict {event.path}: {event.error}")
        elif isinstance(event, BatchFinished):
            self.last_batch = event

    def _on_finished(self, result: TaskResult) -> None:
        dock = self._dock
        dock.set_busy(False)
        end = self.last_batch
        out = self.output
        if result.status == "failed" or end is None:
            error = result.error
            if error is None:  # cancelled before the batch started
                dock.set_status("Cancelled before any image was predicted")
                return
            dock.set_status(f"Folder prediction failed: {error}", error=True)
            report_error(error, "Folder prediction")
            return
        text = f"{end.ok} of {end.total} images done"
        extra = [f"{end.skipped} already done"] if end.skipped else []
        if end.failed:
            extra.append(f"{end.failed} failed")
        text += (f" ({', '.join(extra)})" if extra else "") + f". Results and summary.csv in {out}"
        more = len(self._failures) - FOLDER_FAILURES_SHOWN
        if more > 0:
            text += f"; {more} more failures are listed in summary.csv"
        if end.cancelled:
            dock.set_status(f"Cancelled: {text}. Predict the folder again to continue.")
            show_info(f"Folder prediction cancelled: {end.ok} of {end.total} images done")
        else:
            dock.set_status(text, error=end.ok == 0 and end.failed > 0)
            show_info(f"Folder prediction: {end.ok} of {end.total} images done"
                      + (f", {end.failed} failed" if end.failed else "") + f" ({out})")
