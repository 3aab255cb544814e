"""core._io: atomic writes."""
from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

from napari_grainlab.core._io import atomic_write_png, atomic_write_text, atomic_write_tiff


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_atomic_writes_give_the_normal_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_tiff(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
        atomic_write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
        for name in ("a.txt", "a.tif", "a.png"):  # mkstemp alone gave 0o600
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o640
        # a replaced file keeps its mode
        os.chmod(tmp_path / "a.txt", 0o600)
        atomic_write_text(tmp_path / "a.txt", "y")
        assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o600
        assert (tmp_path / "a.txt").read_text() == "y"
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
