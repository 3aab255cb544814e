#!/usr/bin/env bash
# Set up (once) and run the GrainLab demo on built-in data:
#   bash scripts/demo.sh [grainlab demo options, e.g. --out DIR --quick]
# Creates .venv if needed, installs PyTorch and napari-grainlab into it (skipped when already
# done for the current pyproject.toml), then runs `grainlab demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$ROOT"

ensure_venv
ensure_python_packages ""

say "grainlab demo${*:+ $*}"
exec "$VENV/bin/grainlab" demo "$@"
