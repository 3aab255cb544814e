#!/usr/bin/env bash
# Set up (once) and run the whole test suite:
#   bash scripts/test.sh [pytest options, e.g. -x -k synth]
# Installs the virtual-display system packages (Xvfb, Mesa, Qt's xcb libraries) when missing,
# creates .venv if needed, installs PyTorch and napari-grainlab[testing] into it (skipped when
# already done for the current pyproject.toml), then runs pytest on a virtual display, which
# the napari (GUI) tests need.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$ROOT"

ensure_test_environment

# the suite writes model checkpoints (tens of MB each; a passing test's folders are deleted at once):
# say so up front when the temporary folder is nearly full, rather than failing on ENOSPC halfway
tmp="${TMPDIR:-/tmp}"
free_mb="$(df -Pm "$tmp" 2>/dev/null | awk 'NR==2 {print $4}')"
if [[ -n "$free_mb" && "$free_mb" -lt 3000 ]]; then
    say "warning: only ${free_mb} MB free in $tmp; the tests need about 2 GB there (set TMPDIR to a roomier folder)"
fi
# bytecode for the package once: the suite starts many Python processes (CLI runs, Dask workers),
# and with PYTHONDONTWRITEBYTECODE set each of them would compile the sources again
"$VPY" -m compileall -q -j 0 src >/dev/null 2>&1 || true
# two test processes or more (pytest-xdist; one module per process at a time, so that a module's shared
# fixtures are made once): many tests wait on subprocesses, Dask workers or the GUI rather than compute.
# GRAINLAB_TEST_WORKERS=1 runs the suite in one process.
workers="${GRAINLAB_TEST_WORKERS:-}"
if [[ -z "$workers" ]]; then
    cores="$(nproc 2>/dev/null || echo 2)"
    workers=$(( cores < 2 ? 2 : (cores > 4 ? 4 : cores) ))
fi
parallel=()
if [[ "$workers" -gt 1 ]]; then
    parallel=(-n "$workers" --dist loadfile)
fi
say "pytest${parallel[*]:+ ${parallel[*]}}${*:+ $*}"
status=0
xvfb-run -a -s "-screen 0 1280x1024x24" "$VPY" -m pytest ${parallel[@]+"${parallel[@]}"} "$@" || status=$?
if [[ $status -eq 5 ]]; then
    die "pytest collected no tests"
fi
exit "$status"
