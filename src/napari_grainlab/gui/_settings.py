"""Small per-user settings of the docks (recent model checkpoints, the dataset folders each image's
annotation was saved in), as JSON in the user's config folder.

The folder is ``$GRAINLAB_CONFIG_DIR`` when set (tests, portable installs), else the platform's
user config folder for ``napari-grainlab``. Reading never fails (a missing or corrupt file gives
the defaults); writing is atomic and its errors are logged, not raised.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..core._io import atomic_write_text

__all__ = ["MAX_DATASET_FOLDERS", "MAX_IMAGES", "MAX_RECENT", "config_dir", "dataset_folders", "load_settings",
           "recent_checkpoints", "remember_checkpoint", "remember_dataset_folder", "save_settings"]

log = logging.getLogger(__name__)

ENV = "GRAINLAB_CONFIG_DIR"
FILE = "settings.json"
MAX_RECENT = 10
#: dataset folders remembered per image, and images remembered (the least recently saved go first)
MAX_DATASET_FOLDERS = 5
MAX_IMAGES = 500
_DATASETS = "dataset_folders"


def config_dir() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-grainlab", appauthor=False))


def load_settings() -> dict[str, Any]:
    try:
        data = json.loads((config_dir() / FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(settings: dict[str, Any]) -> bool:
    try:
        atomic_write_text(config_dir() / FILE, json.dumps(settings, indent=2))
    except OSError as exc:
        log.warning("cannot save the GrainLab settings: %s", exc)
        return False
    return True


def recent_checkpoints() -> list[str]:
    """Model checkpoints used recently, newest first (entries that no longer exist are kept: a
    network drive may be offline)."""
    items = load_settings().get("recent_checkpoints")
    return [str(p) for p in items if isinstance(p, str) and p][:MAX_RECENT] if isinstance(items, list) else []


def remember_checkpoint(path: str | Path) -> list[str]:
    """Put ``path`` first in the recent list (saved); returns the new list.  A built-in model's name
    (a ``str`` such as ``"generalist"``) is remembered as that name."""
    from ..core.models.registry import is_registry_name

    path = path if isinstance(path, str) and is_registry_name(path) else str(Path(path).expanduser().resolve())
    settings = load_settings()
    recent = [path] + [p for p in recent_checkpoints() if p != path]
    settings["recent_checkpoints"] = recent[:MAX_RECENT]
    save_settings(settings)
    return settings["recent_checkpoints"]


def _dataset_table(settings: dict[str, Any]) -> dict[str, list[str]]:
    table = settings.get(_DATASETS)
    if not isinstance(table, dict):
        return {}
    return {k: [str(p) for p in v if isinstance(p, str) and p][:MAX_DATASET_FOLDERS]
            for k, v in table.items() if isinstance(k, str) and isinstance(v, list)}


def dataset_folders(fingerprint: str) -> list[str]:
    """The dataset folders the annotation of the image with this fingerprint (see
    :func:`~napari_grainlab.core.annotate.image_fingerprint`) was saved in, newest first."""
    return _dataset_table(load_settings()).get(fingerprint, []) if fingerprint else []


def remember_dataset_folder(fingerprint: str, folder: str | Path) -> bool:
    """Put ``folder`` first among the image's dataset folders; the settings file is written (atomically)
    only when that changes anything.  Returns whether it did."""
    if not fingerprint:
        return False
    folder = str(Path(folder).expanduser().resolve())
    settings = load_settings()
    table = _dataset_table(settings)
    known = table.get(fingerprint, [])
    if known[:1] == [folder]:
        return False
    table.pop(fingerprint, None)
    table[fingerprint] = [folder] + [p for p in known if p != folder][: MAX_DATASET_FOLDERS - 1]  # newest last
    settings[_DATASETS] = dict(list(table.items())[-MAX_IMAGES:])
    return save_settings(settings)
