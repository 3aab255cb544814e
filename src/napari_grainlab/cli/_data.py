"""Reading dataset folders for ``train`` and ``eval``: data warnings become ``grainlab: warning:`` lines."""

from __future__ import annotations

import sys


def load_training_data(paths: list[str], task: str | None):
    """Samples (and class names) from dataset folders; the task is detected when not given."""
    import warnings

    from ..core.data.datasets import DataWarning, load_dataset_folders

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        task, samples, classes = load_dataset_folders(paths, task)
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"grainlab: warning: {' '.join(str(w.message).split())}", file=sys.stderr, flush=True)
    return task, samples, classes
