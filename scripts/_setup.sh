# Shared set-up for scripts/demo.sh and scripts/test.sh (sourced, not run).
#
# Everything here is idempotent: a second run checks, finds everything in place and moves on
# in about a second. Settings (environment variables):
#   PYTHON          interpreter used to create .venv (default: python3, needs >= 3.10)
#   GRAINLAB_VENV   virtual environment folder (default: .venv in the repository)
#   GRAINLAB_FORCE_INSTALL=1   reinstall the Python packages even if nothing changed

TORCH_REQ=(torch==2.14.1 torchvision==0.29.1)

# System packages for a virtual display (Xvfb) that napari's OpenGL canvas and Qt can use.
DISPLAY_PACKAGES=(
    xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
    libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="${GRAINLAB_VENV:-$ROOT/.venv}"
VPY="$VENV/bin/python"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DEBIAN_FRONTEND=noninteractive

if [[ -t 2 ]]; then
    say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    say() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install the virtual-display packages with apt-get when some are missing.
# Returns 1 (after saying why and what to run) when they are missing and cannot be installed.
ensure_display_packages() {
    local missing=() pkg
    if ! command -v dpkg-query >/dev/null 2>&1; then
        if command -v xvfb-run >/dev/null 2>&1; then
            return 0
        fi
        say "xvfb-run not found and this is not a Debian/Ubuntu system: install Xvfb (xvfb-run), Mesa's OpenGL and the Qt xcb libraries with your package manager"
        return 1
    fi
    for pkg in "${DISPLAY_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo)
        else
            say "missing system packages: ${missing[*]}"
            say "run as root (or with password-less sudo), or install them first:"
            say "  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
            return 1
        fi
    fi
    say "installing system packages: ${missing[*]}"
    ${sudo[@]+"${sudo[@]}"} apt-get update -qq || die "apt-get update failed"
    ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# Create the virtual environment when it is missing, broken, or was made at another path
# (a moved or copied venv keeps the old path in its scripts and cannot be used).
ensure_venv() {
    local shebang=""
    [[ -f "$VENV/bin/pip" ]] && IFS= read -r shebang < "$VENV/bin/pip"
    if [[ -x "$VPY" && "$shebang" == "#!$VENV/bin/python"* ]] && "$VPY" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    local py="${PYTHON:-python3}"
    command -v "$py" >/dev/null 2>&1 || die "$py not found: install Python >= 3.10 (or set PYTHON=/path/to/python3)"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$py is Python $("$py" -c 'import platform; print(platform.python_version())'); napari-grainlab needs >= 3.10"
    say "creating virtual environment $VENV"
    rm -rf "$VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
        die "'$py -m venv' failed; on Debian/Ubuntu install the venv module: apt-get install python3-venv"
    fi
    "$VPY" -m pip install -q --upgrade pip || say "warning: could not upgrade pip; going on with $("$VPY" -m pip --version)"
}

# pip-install the project (editable) with the given extras, e.g. "" or "[testing]".
# Skipped when a stamp shows the same pyproject.toml, extras and interpreter were installed
# and the packages are still importable from this tree.
ensure_python_packages() {
    local extras="$1"
    local name="${extras:-base}"
    name="${name//[^a-z]/}"
    local stamp="$VENV/.grainlab-installed-$name"
    local key
    key="$( (cat "$ROOT/pyproject.toml"; echo "$extras"; echo "${TORCH_REQ[*]}"; "$VPY" -VV) | sha256sum | cut -d' ' -f1)"
    if [[ -z "${GRAINLAB_FORCE_INSTALL:-}" && -f "$stamp" && "$(cat "$stamp")" == "$key" ]] \
        && "$VPY" - "$ROOT" <<'EOF' >/dev/null 2>&1
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("napari_grainlab")
ok = spec is not None and pathlib.Path(spec.origin).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve())
ok = ok and all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision", "numpy"))
sys.exit(0 if ok else 1)
EOF
    then
        return 0
    fi
    say "installing ${TORCH_REQ[*]}"
    "$VPY" -m pip install -q "${TORCH_REQ[@]}"
    say "installing napari-grainlab${extras} (editable)"
    "$VPY" -m pip install -q -e "$ROOT$extras"
    echo "$key" > "$stamp"
}

# What the test-like scripts (test.sh, compat_matrix.sh, install_paths.sh) need first: the virtual
# display, .venv, and the project with its testing extra. $1: why the display is needed (for the error).
ensure_test_environment() {
    ensure_display_packages || die "${1:-the GUI tests need a virtual display}; see the message above"
    ensure_venv
    ensure_python_packages "[testing]"
}
