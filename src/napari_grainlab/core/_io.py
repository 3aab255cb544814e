"""Small file helpers: every write goes to a temporary file in the same folder, then is renamed.

A folder that must change as one unit (a checkpoint: weights, description, optimizer state) is written
as a new sibling folder and swapped in (:func:`atomic_write_folder`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_folder", "atomic_write_text", "atomic_write_tiff", "atomic_write_png",
           "atomic_writer", "recover_folder", "remove_part_files", "write_tiff"]


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


def _is_rgb(array: np.ndarray, rgb: bool | None) -> bool:
    """Whether ``array`` is written as an RGB TIFF (see :func:`write_tiff`)."""
    shaped = array.ndim == 3 and array.shape[-1] == 3
    if rgb is None:
        return shaped
    if rgb and not shaped:
        raise ValueError(f"an RGB TIFF needs an (H, W, 3) array, got shape {array.shape}")
    return bool(rgb)


def write_tiff(path: Path, array: np.ndarray, pixel_size_um: float | None = None, description: str | None = None,
               compression: str | None = None, *, compression_level: int | None = None,
               rgb: bool | None = None) -> None:
    """Write a 2-D grey array, or an ``(H, W, 3)`` colour one, as TIFF; a known pixel size goes into the
    resolution tags (µm).

    ``rgb``: write an ``(H, W, 3)`` array as an RGB image (photometric RGB, channels interleaved), which
    every reader shows in colour; None (default): RGB exactly for ``(H, W, 3)`` arrays; False: grey planes
    (minisblack) whatever the shape.  ``compression_level`` (e.g. 1-9 for zlib) trades file size for
    speed; None: the codec's default.
    """
    import tifffile

    array = np.asarray(array)
    kwargs = {}
    if _is_rgb(array, rgb):
        kwargs.update(photometric="rgb", planarconfig="contig")
    else:
        kwargs["photometric"] = "minisblack"
    if compression is not None and compression_level is not None:
        kwargs["compressionargs"] = {"level": int(compression_level)}
    if pixel_size_um:
        ppcm = 1e4 / float(pixel_size_um)  # pixels per centimetre
        kwargs["resolution"] = (ppcm, ppcm)
        kwargs["resolutionunit"] = "CENTIMETER"
    if description is not None:
        kwargs["description"] = description
    tifffile.imwrite(path, array, compression=compression, metadata=None, **kwargs)


def atomic_write_tiff(path: Path, array: np.ndarray, pixel_size_um: float | None = None,
                      description: str | None = None, compression: str | None = None, *,
                      rgb: bool | None = None) -> None:
    """:func:`write_tiff` to a temporary file next to ``path``, renamed over it."""
    with atomic_writer(path) as tmp:
        write_tiff(tmp, array, pixel_size_um, description, compression, rgb=rgb)


def atomic_write_png(path: Path, array: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_writer(path) as tmp:
        iio.imwrite(tmp, array, extension=".png")


# ------------------------------------------------------------------------------------------ folders
#: the siblings :func:`atomic_write_folder` makes: ``.NAME.tmp-PID`` (the new folder being written) and
#: ``.NAME.old-PID`` (the replaced folder, moved away for a moment where no atomic exchange exists)
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


def _fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (new names, renames) durable; a no-op where folders cannot be synced."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. some network file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            full = Path(folder, name)
            if not full.is_symlink():
                _fsync_file(full)
        _fsync_dir(Path(folder))


@functools.lru_cache(maxsize=1)
def _renameat2():
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc < 2.28, musl)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the system or the file system cannot; the caller then renames twice.
    """
    if not sys.platform.startswith("linux"):
        return False
    fn = _renameat2()
    if fn is None:
        return False
    import ctypes

    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _pid_running(pid: int) -> bool:
    """True when another process with this id runs on this machine (its write may be under way)."""
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def recover_folder(path: str | os.PathLike) -> None:
    """Clean up after an :func:`atomic_write_folder` of ``path`` that was killed.

    A folder moved away just before the new one was renamed into place (only where no atomic exchange
    exists) is the previous complete version: it is put back when ``path`` is missing. Half-written new
    folders are removed. The siblings of a writer that is still running (its process id is alive) are left.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    olds, tmps = [], []
    for entry in parent.iterdir():
        m = _SIBLING.match(entry.name)
        if m is None or m["name"] != path.name or _pid_running(int(m["pid"])):
            continue
        (olds if m["kind"] == "old" else tmps).append(entry)
    if olds and not os.path.lexists(path):
        olds.sort(key=lambda p: p.stat().st_mtime_ns)
        os.rename(olds.pop(), path)
        _fsync_dir(parent)
    for entry in olds + tmps:
        _remove(entry)


def remove_part_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (``.NAME.XXXX.part``) that :func:`atomic_writer` leaves when its process is
    killed; call it only on a folder no other process writes to at the same time. Returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".part") and entry.is_file():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_write_folder(path: str | os.PathLike):
    """Yield a new empty folder next to ``path``; on success it replaces ``path`` as a whole.

    Whatever happens (an error, a kill, a power cut), ``path`` is afterwards either the old folder or the
    new one, complete, never a mix: every file of the new folder is synced to disk, then the two folders
    are exchanged in one atomic step (Linux), or, where that is not possible, the old one is renamed
    away and the new one into place. Leftovers of a killed write (a half-written new folder; an old
    folder moved away, which is put back) are cleaned up by :func:`recover_folder`, which runs first.
    The new folder gets the mode of the folder it replaces (a new one: ``0o777 & ~umask``).
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
    recover_folder(path)
    pid = os.getpid()
    tmp, old = parent / f".{path.name}.tmp-{pid}", parent / f".{path.name}.old-{pid}"
    _remove(tmp)
    os.mkdir(tmp)
    committed = False
    try:
        yield tmp
        _fsync_tree(tmp)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o777 & ~_umask()
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        if not path.is_dir():
            os.rename(tmp, path)
            committed = True
        elif _exchange(tmp, path):
            committed = True
            _remove(tmp)  # now the old folder
        else:
            os.rename(path, old)
            os.rename(tmp, path)
            committed = True
            _remove(old)
        _fsync_dir(parent)
    except BaseException:
        if not committed:
            with contextlib.suppress(OSError):
                if old.is_dir() and not os.path.lexists(path):
                    os.rename(old, path)
            _remove(tmp)
        raise
