#!/usr/bin/env bash
# Compatibility matrix: the GUI tests on other napari versions and Qt bindings than the main suite's.
#   bash scripts/compat_matrix.sh [pytest options]
# The main suite (scripts/test.sh) runs on the newest napari and PyQt6. Each cell here is a virtual
# environment of its own (.venv-compat/<cell>) that holds only the napari version and Qt binding of the
# cell and takes everything else (PyTorch, the package itself, editable) from .venv, behind them on
# sys.path: a cell is made in seconds, not by installing PyTorch again. The cells:
#   oldest   the lowest napari pyproject.toml allows, with PyQt5
#   pyside6  the newest napari (as in .venv), with PySide6 (below 6.11: see the cell)
#   pyqt5    the newest napari, with PyQt5
# GRAINLAB_COMPAT_CELLS="oldest pyside6" runs a subset. Prints one line per cell and a summary table
# (also written to .venv-compat/matrix.txt); exits 1 when a cell fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$ROOT"

ensure_test_environment

CELLS_DIR="${GRAINLAB_COMPAT_DIR:-$ROOT/.venv-compat}"
mkdir -p "$CELLS_DIR"
BASE_SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
BASE_PY="$("$VPY" -c 'import sys; print(sys._base_executable)')"
OLDEST="$("$VPY" - "$ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
from packaging.requirements import Requirement
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
req = next(Requirement(d) for d in deps if Requirement(d).name == "napari")
print(next(s.version for s in req.specifier if s.operator == ">="))
EOF
)"
NEWEST="$("$VPY" -c 'import importlib.metadata as m; print(m.version("napari"))')"

# cell name -> "napari version|pip requirement of the binding|QT_API"
declare -A CELL=(
    [oldest]="$OLDEST|PyQt5>=5.15|pyqt5"
    # PySide6 6.12.0 aborts the GUI tests ("none_dealloc: deallocating None", a refcount error in a C
    # extension, while the garbage collector runs in napari's canvas clean-up); 6.9 and 6.10 pass
    [pyside6]="$NEWEST|PySide6>6.7,<6.11|pyside6"
    [pyqt5]="$NEWEST|PyQt5>=5.15|pyqt5"
)
selected=(${GRAINLAB_COMPAT_CELLS:-oldest pyside6 pyqt5})

make_cell() {  # name napari binding
    local dir="$CELLS_DIR/$1" stamp key
    key="$1 $2 $3 $BASE_SITE $("$BASE_PY" -VV)"
    stamp="$dir/.grainlab-cell"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" && -x "$dir/bin/python" ]]; then
        return 0
    fi
    say "compat cell $1: napari $2, $3"
    rm -rf "$dir"
    "$BASE_PY" -m venv "$dir"
    local site
    site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # everything not installed in the cell comes from .venv (its .pth files too: the editable package)
    echo "import site; site.addsitedir('$BASE_SITE')" > "$site/zz_grainlab_base.pth"
    "$dir/bin/python" -m pip install -q "napari==$2" "$3"
    echo "$key" > "$stamp"
}

results=()
status=0
for name in "${selected[@]}"; do
    [[ -n "${CELL[$name]:-}" ]] || die "unknown compat cell: $name (known: ${!CELL[*]})"
    IFS='|' read -r napari binding api <<< "${CELL[$name]}"
    make_cell "$name" "$napari" "$binding"
    py="$CELLS_DIR/$name/bin/python"
    found="$(QT_API="$api" "$py" -c 'import napari, qtpy; print(napari.__version__, qtpy.API_NAME, qtpy.QT_VERSION)')"
    say "compat cell $name: $found: pytest tests/gui${*:+ $*}"
    log="$CELLS_DIR/$name.log"
    start=$SECONDS
    cell_status=0
    QT_API="$api" xvfb-run -a -s "-screen 0 1280x1024x24" "$py" -m pytest -p no:cacheprovider -q \
        -n 2 --dist loadfile tests/gui "$@" > "$log" 2>&1 || cell_status=$?
    summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed)|[0-9]+ passed|no tests ran' "$log" | tail -1 | sed 's/=//g; s/^ *//')"
    line="$name: napari $found: ${summary:-see $log} ($(( SECONDS - start )) s)"
    if [[ $cell_status -ne 0 ]]; then
        status=1
        line="$line FAILED (exit $cell_status)"
        tail -40 "$log" >&2
    fi
    say "$line"
    results+=("$line")
done
{
    echo "compatibility matrix ($(date -u +%Y-%m-%d), GUI tests; the main suite: napari $NEWEST, PyQt6)"
    printf '  %s\n' "${results[@]}"
} | tee "$CELLS_DIR/matrix.txt"
exit "$status"
