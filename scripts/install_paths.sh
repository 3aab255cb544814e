#!/usr/bin/env bash
# Try the ways a new user installs napari-grainlab, each in a fresh virtual environment:
#   bash scripts/install_paths.sh [existing-napari] [bare-qt]
#   existing-napari  napari (with PyQt6) installed first, then the built wheel with pip; napari's
#                    Plugins menu must list the five GrainLab docks, and each must open
#   bare-qt          a bare Python, then `pip install "napari-grainlab[qt]"` (the built wheel with its
#                    qt extra): the console script, the built-in model and the docks must work
# The wheel is built from this tree first (python -m build). PyTorch comes from the index (the CUDA
# build, as README's set-up installs it). Prints one line per path; exits 1 when one fails. The
# environments are made under $GRAINLAB_INSTALL_DIR (default: a temporary folder, removed afterwards).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$ROOT"

ensure_test_environment "the checks open napari: they need a virtual display"

paths=("$@")
[[ ${#paths[@]} -gt 0 ]] || paths=(existing-napari bare-qt)
work="${GRAINLAB_INSTALL_DIR:-$(mktemp -d)}"
[[ -n "${GRAINLAB_INSTALL_DIR:-}" ]] || trap 'rm -rf "$work"' EXIT
base_py="$("$VPY" -c 'import sys; print(sys._base_executable)')"

say "building the wheel"
"$VPY" -m build --no-isolation --wheel --outdir "$work/dist" . >/dev/null
wheel="$(ls "$work"/dist/napari_grainlab-*.whl)"

# what a user does after installing: napari's Plugins menu, each dock opened, the built-in model found
read -r -d '' CHECK <<'EOF' || true
import sys, napari
from qtpy.QtWidgets import QApplication, QMenu
viewer = napari.Viewer(show=True)
def texts(menu):
    out = []
    for action in menu.actions():
        out.append(action.text().replace("&", ""))
        if action.menu() is not None:
            out += texts(action.menu())
    return out
found = texts(viewer.window.plugins_menu)
docks = ["Annotate", "Synthesize", "Train", "Predict", "Measure"]
missing = [d for d in docks if not any(d in t for t in found)]
assert not missing, f"the Plugins menu lacks {missing}: {found}"
for d in docks:
    viewer.window.add_plugin_dock_widget("napari-grainlab", d)
    QApplication.processEvents()
from napari_grainlab.core.models.registry import resolve_model
print("plugins menu:", ", ".join(t for t in found if any(d in t for d in docks)), "| model:", resolve_model("generalist").name)
viewer.close()
EOF

status=0
for path in "${paths[@]}"; do
    venv="$work/$path"
    say "install path $path: fresh venv $venv"
    "$base_py" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q)
    start=$SECONDS
    case "$path" in
        existing-napari)
            "${pip[@]}" "napari[pyqt6]"
            "${pip[@]}" "${TORCH_REQ[@]}"
            "${pip[@]}" "$wheel"
            ;;
        bare-qt)
            "${pip[@]}" "${TORCH_REQ[@]}"
            "${pip[@]}" "$wheel[qt]"
            ;;
        *) die "unknown install path: $path" ;;
    esac
    ok=0
    out="$(cd "$work" && "$venv/bin/grainlab" --version && "$venv/bin/python" -m pip check \
        && xvfb-run -a -s "-screen 0 1280x1024x24" "$venv/bin/python" -c "$CHECK" 2>&1)" || ok=$?
    line="$path: $(echo "$out" | tail -1) ($(( SECONDS - start )) s)"
    if [[ $ok -ne 0 ]]; then
        status=1
        line="$line FAILED"
        echo "$out" | tail -30 >&2
    fi
    say "$line"
done
exit "$status"
