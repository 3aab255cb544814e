"""Small file helpers: every write goes to a temporary file in the same folder, then is renamed."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_tiff", "atomic_write_png", "atomic_writer",
           "write_tiff"]


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The mode ``path`` would get from a plain ``open(path, "w")``: the replaced file's mode, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The temporary file is flushed to disk before the rename, and the result gets the mode of the
    file it replaces (a new file: ``0o666 & ~umask``, as ``open()`` would give it; ``mkstemp``
    alone would leave it readable by its owner only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        with contextlib.suppress(OSError):  # e.g. file systems without permissions
            os.chmod(tmp_path, _new_file_mode(path))
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)  # atomic_writer syncs it to disk before the rename


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_tiff(path: Path, array: np.ndarray, pixel_size_um: float | None = None, description: str | None = None,
               compression: str | None = None) -> None:
    """Write a 2-D array as TIFF; a known pixel size goes into the resolution tags (µm)."""
    import tifffile

    kwargs = {}
    if pixel_size_um:
        ppcm = 1e4 / float(pixel_size_um)  # pixels per centimetre
        kwargs["resolution"] = (ppcm, ppcm)
        kwargs["resolutionunit"] = "CENTIMETER"
    if description is not None:
        kwargs["description"] = description
    tifffile.imwrite(path, array, photometric="minisblack", compression=compression, metadata=None, **kwargs)


def atomic_write_tiff(path: Path, array: np.ndarray, pixel_size_um: float | None = None,
                      description: str | None = None, compression: str | None = None) -> None:
    with atomic_writer(path) as tmp:
        write_tiff(tmp, array, pixel_size_um, description, compression)


def atomic_write_png(path: Path, array: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_writer(path) as tmp:
        iio.imwrite(tmp, array, extension=".png")
