"""Small per-user settings of the docks (recent model checkpoints), as JSON in the user's config folder.

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

__all__ = ["MAX_RECENT", "config_dir", "load_settings", "recent_checkpoints", "remember_checkpoint", "save_settings"]

log = logging.getLogger(__name__)

ENV = "GRAINLAB_CONFIG_DIR"
FILE = "settings.json"
MAX_RECENT = 10


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
    """Put ``path`` first in the recent list (saved); returns the new list."""
    path = str(Path(path).expanduser().resolve())
    settings = load_settings()
    recent = [path] + [p for p in recent_checkpoints() if p != path]
    settings["recent_checkpoints"] = recent[:MAX_RECENT]
    save_settings(settings)
    return settings["recent_checkpoints"]
