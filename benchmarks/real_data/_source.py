"""Read files of a fetched repository: a checkout (work tree) or a bare git directory (a mirror).

Nothing is downloaded: the repository must already be on disk (``git clone`` or a mirror).
"""

from __future__ import annotations

import subprocess
from pathlib import Path


class Source:
    """Files of ``root`` (a work tree, or a bare ``.git`` directory read with ``git show``)."""

    def __init__(self, root: str | Path, rev: str = "HEAD"):
        self.root = Path(root)
        if not self.root.exists():
            raise SystemExit(f"{self.root}: no such folder (fetch or clone the repository first)")
        self.rev = rev
        self.bare = not any((self.root / p).exists() for p in ("README.md", "README.rst", "LICENSE", "COPYING.txt"))

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", f"--git-dir={self.root}", *args], check=True, capture_output=True).stdout

    def read(self, path: str) -> bytes:
        if not self.bare:
            return (self.root / path).read_bytes()
        return self._git("show", f"{self.rev}:{path}")

    def commit(self) -> str:
        if not self.bare:
            try:
                return subprocess.run(["git", "-C", str(self.root), "rev-parse", self.rev], check=True,
                                      capture_output=True, text=True).stdout.strip()
            except (subprocess.CalledProcessError, FileNotFoundError):
                return "unknown (not a git checkout)"
        return self._git("rev-parse", self.rev).decode().strip()
