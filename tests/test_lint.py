"""The architecture's import contracts (import-linter) and the ruff configuration hold for the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed (it is part of the 'testing' extra)")
    return exe


def test_import_contracts_hold():
    """core never imports gui or cli (nor Qt / napari); cli never imports gui; commands and docks
    are independent of each other (pyproject.toml, [tool.importlinter])."""
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and "KEPT" in r.stdout


def test_ruff_passes():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "src", "tests", "benchmarks", "docs/scripts"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
