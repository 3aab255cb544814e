"""*Generate dataset…* of the Synthesize dock: write a dataset folder
(:func:`~napari_grainlab.core.synthetic.write_dataset`) in a worker thread with a progress bar
and *Cancel*.  The folder dialogs are the dock's methods (scripts and tests may replace them)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...core.synthetic import ParameterError, write_dataset
from .._forms import SpinBox
from .._widgets import progress_bar, show_status
from ..workers import GeneratorTask, TaskResult

if TYPE_CHECKING:
    from .dock import SynthesizeWidget

__all__ = ["DatasetPanel"]


class DatasetPanel(QWidget):
    """The number of images, *Generate dataset…*, its progress bar, *Cancel* and its outcome."""

    def __init__(self, dock: SynthesizeWidget) -> None:
        super().__init__()
        self._dock = dock
        self.task: GeneratorTask | None = None
        self.last_folder: Path | None = None
        self._count = 0

        self.count_spin = SpinBox()
        self.count_spin.setRange(1, 1_000_000)
        self.count_spin.setValue(10)
        self.count_spin.setToolTip("number of images in the dataset")
        self.generate_button = QPushButton("Generate dataset…")
        self.generate_button.setToolTip(
            "<p>write images/, labels/, boundaries/, tables/ and dataset.json into a folder; "
            "image <i>i</i> uses a seed derived from the seed above</p>"
        )
        self.generate_button.clicked.connect(lambda: self.generate())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = progress_bar()
        self.dataset_label = QLabel()
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setVisible(False)
        dataset_row = QHBoxLayout()
        count_label = QLabel("Images")
        count_label.setToolTip(self.count_spin.toolTip())
        dataset_row.addWidget(count_label)
        dataset_row.addWidget(self.count_spin, 1)
        dataset_row.addWidget(self.generate_button, 2)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(dataset_row)
        layout.addLayout(progress_row)
        layout.addWidget(self.dataset_label)

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.is_running

    def generate(self, folder: str | Path | None = None) -> GeneratorTask | None:
        """Write ``count`` images into ``folder`` (asked for when None) in a worker thread."""
        dock = self._dock
        if self.running:
            return None
        try:
            params = dock.params()
        except ParameterError as exc:
            dock.set_status(str(exc), error=True)
            show_error(f"Cannot generate a dataset: {exc}")
            return None
        folder = dock.ask_directory() if folder is None else folder
        if not folder:
            return None
        folder = Path(folder)
        overwrite = False
        try:
            non_empty = folder.is_dir() and any(folder.iterdir())
        except OSError as exc:
            show_error(f"Cannot use {folder}: {exc.strerror or exc}")
            return None
        if non_empty:
            if not dock.ask_overwrite(folder):
                return None
            overwrite = True
        count = int(self.count_spin.value())
        self.last_folder = folder
        self._count = count
        task = GeneratorTask(
            write_dataset, folder, params,
            description=f"Writing {count} synthetic images",
            progress_bar=self.progress_bar,
            cancel_button=self.cancel_button,
            total=count,
            parent=self,
            count=count,
            seed=dock.seed,
            overwrite=overwrite,
        )
        task.finished.connect(self._finished)
        self.generate_button.setEnabled(False)
        show_status(self.dataset_label, f"Writing to {folder.name}/ …")
        self.dataset_label.setVisible(True)
        self.dataset_label.setToolTip(str(folder))
        if self.task is not None:
            self.task.deleteLater()
        self.task = task
        task.start()
        return task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finished(self, result: TaskResult) -> None:
        self.generate_button.setEnabled(True)
        folder = self.last_folder
        total = self._count
        done = result.progress.done if result.progress else 0
        where = folder.name if folder else "?"
        if result.status == "completed":
            text = f"Wrote {done} images to {where}/ in {result.elapsed:.1f} s"
            show_info(f"Wrote {done} synthetic images to {folder}")
        elif result.status == "cancelled":
            text = f"Cancelled: {done} of {total} images written to {where}/"
            show_info(f"Cancelled: {done} of {total} synthetic images written to {folder}")
        else:
            text = f"Failed after {done} images: {result.error}"
        show_status(self.dataset_label, text, error=result.status == "failed")
        self.dataset_label.setToolTip(str(folder))
