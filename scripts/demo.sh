#!/usr/bin/env bash
# Set up (once) and run the GrainLab demo on built-in data:
#   bash scripts/demo.sh [grainlab demo options, e.g. --out DIR --quick]
# Installs the virtual-display system packages when missing (as scripts/test.sh does), creates
# .venv if needed, installs PyTorch and napari-grainlab into it (skipped when already done for
# the current pyproject.toml), then runs `grainlab demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$ROOT"

# the demo itself is headless; the virtual display is set up too (when missing and possible) so
# that the same machine can open the napari docks and run the GUI tests afterwards
ensure_display_packages || say "warning: no virtual display set up; the demo does not need one"
ensure_venv
ensure_python_packages ""

say "grainlab demo${*:+ $*}"
exec "$VENV/bin/grainlab" demo "$@"
