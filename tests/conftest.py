"""Suite-wide fixtures: keep the tests' disk use small and away from the user's own folders.

Training and checkpoint tests write model folders of tens of MB. pytest already deletes a passing
test's ``tmp_path`` (``tmp_path_retention_policy = "failed"`` in pyproject.toml); the folders that
module-scoped fixtures make with ``tmp_path_factory`` are deleted here when their module ends, unless a
test of that module failed (then they stay for a look, like the failing tests' own folders).
"""

from __future__ import annotations

import os
import shutil

import pytest

# Several test processes (pytest-xdist, as scripts/test.sh runs the suite): one compute thread each, and
# for the CLI runs and Dask workers they start, so that N processes share the cores instead of each
# starting a thread per core. Set before any test module imports PyTorch.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1) > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")


@pytest.fixture(scope="session", autouse=True)
def _grainlab_cache(tmp_path_factory):
    """Exported ONNX sessions and downloaded models go to a temporary cache, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAINLAB_CACHE", str(tmp_path_factory.mktemp("grainlab-cache-session")))
        yield


@pytest.fixture(scope="module", autouse=True)
def _free_module_folders(request, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        return
    for path in set(base.iterdir()) - before:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
