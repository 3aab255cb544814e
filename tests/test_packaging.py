"""Packaging: the npe2 manifest, the wheel, and what importing the package pulls in."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import napari_grainlab

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(napari_grainlab.__file__).resolve().parent
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")


def imported_after(code: str) -> set[str]:
    """Top-level module names in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def core_module_names() -> list[str]:
    import napari_grainlab.core as core

    return sorted(m.name for m in pkgutil.walk_packages(core.__path__, prefix="napari_grainlab.core."))


# ----------------------------------------------------------------- import hygiene


def test_core_never_imports_qt_napari_or_magicgui():
    names = core_module_names()
    assert "napari_grainlab.core.synthetic.params" in names
    code = "import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names)
    leaked = imported_after(code) & set(GUI_MODULES)
    assert not leaked, f"napari_grainlab.core pulls in {sorted(leaked)}"


def test_console_script_help_does_not_import_heavy_modules():
    exe = shutil.which("grainlab", path=str(Path(sys.executable).parent)) or shutil.which("grainlab")
    if exe is None:
        pytest.skip("the grainlab console script is not installed")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "synth" in r.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "napari_grainlab" in imported  # the profile did capture our imports
    heavy = {"torch", "torchvision", "timm", "albumentations", "numpy", *GUI_MODULES}
    assert not imported & heavy


# -------------------------------------------------------------------- npe2 manifest


def _manifest():
    npe2 = pytest.importorskip("npe2")
    return npe2.PluginManifest.from_distribution("napari-grainlab")


def test_manifest_is_valid_and_is_the_top_level_file():
    from npe2 import PluginManifest

    pm = _manifest()
    assert pm.name == "napari-grainlab"
    assert pm.display_name == "GrainLab"
    assert pm.contributions.commands and pm.contributions.widgets and pm.contributions.sample_data
    top = PluginManifest.from_file(ROOT / "napari.yaml")
    assert top.model_dump(exclude={"package_metadata"}) == pm.model_dump(exclude={"package_metadata"})


def test_npe2_validate_command_is_clean():
    pytest.importorskip("npe2")
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-grainlab"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in r.stdout


def test_manifest_contributions_refer_to_declared_commands():
    pm = _manifest()
    ids = {c.id for c in pm.contributions.commands}
    used = {w.command for w in pm.contributions.widgets}
    used |= {s.command for s in pm.contributions.sample_data if hasattr(s, "command")}
    assert used <= ids
    assert all(i.startswith("napari-grainlab.") for i in ids)


def _qt_binding_available() -> bool:
    try:
        import qtpy  # noqa: F401
    except Exception:  # noqa: BLE001 - qtpy raises its own error type when no binding is installed
        return False
    return True


def test_manifest_commands_resolve_to_callables():
    pm = _manifest()
    gui_ok = _qt_binding_available()
    checked = 0
    for cmd in pm.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        if module.startswith("napari_grainlab.gui") and not gui_ok:
            continue
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        assert callable(obj), cmd.python_name
        checked += 1
    assert checked >= 2  # the sample-data commands never need Qt to import


# ------------------------------------------------------------------------- the wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """sdist and wheel built offline from a copy of the source tree (wheel built from the sdist)."""
    if importlib.util.find_spec("build") is None or importlib.util.find_spec("hatchling") is None:
        pytest.skip("needs the 'build' and 'hatchling' packages (pip install -e '.[testing]')")
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src-tree"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                                    ".pytest_cache", "grainlab-demo", "out")
    shutil.copytree(ROOT, src, symlinks=True, ignore=ignore)
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return wheel, sdist


def test_wheel_ships_the_manifest_with_real_content(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = z.getinfo("napari_grainlab/napari.yaml")
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        assert not is_link
        assert z.read("napari_grainlab/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
        ep = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "napari-grainlab = napari_grainlab:napari.yaml" in ep
    assert "grainlab = napari_grainlab.cli:main" in ep
    assert {"napari_grainlab/__init__.py", "napari_grainlab/cli/__init__.py", "napari_grainlab/__main__.py",
            "napari_grainlab/core/synthetic/params.py", "napari_grainlab/core/visualize.py"} <= names
    assert not any(n.startswith(("tests/", "scripts/", ".venv/")) for n in names)


def test_sdist_has_the_manifest_and_the_scripts(built):
    _, sdist = built
    with tarfile.open(sdist) as t:
        members = {m.name.split("/", 1)[1]: m for m in t.getmembers() if "/" in m.name}
    assert "napari.yaml" in members and "pyproject.toml" in members and "README.md" in members
    assert "scripts/test.sh" in members and "scripts/demo.sh" in members
    link = members["src/napari_grainlab/napari.yaml"]
    assert link.issym() and link.linkname == "../../napari.yaml" or link.isfile()


def test_installed_metadata_matches_the_package():
    meta = importlib.metadata.metadata("napari-grainlab")
    assert meta["Version"] == napari_grainlab.__version__
    eps = importlib.metadata.entry_points(group="napari.manifest")
    assert any(ep.name == "napari-grainlab" and ep.value == "napari_grainlab:napari.yaml" for ep in eps)


def test_release_artifacts_pass_twine_check_and_carry_the_metadata(built):
    """What a release uploads: both files pass `twine check` (metadata and the README's rendering), the
    wheel's metadata has the SPDX licence, the project URLs and the one version; the sdist has the changelog
    and the licence but not the documentation pictures (the README links to them by absolute URL)."""
    if importlib.util.find_spec("twine") is None:
        pytest.skip("needs twine (pip install -e '.[testing]')")
    wheel, sdist = built
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in meta
    assert f"Version: {napari_grainlab.__version__}" in meta
    urls = {line.split(": ", 1)[1].split(",", 1)[0] for line in meta.splitlines() if line.startswith("Project-URL:")}
    assert {"Source", "Documentation", "Bug Tracker", "User Support"} <= urls
    with tarfile.open(sdist) as t:
        names = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    assert {"CHANGELOG.md", "LICENSE", "pyproject.toml"} <= names
    assert not any(n.startswith("docs/images/") for n in names)
    assert sdist.stat().st_size < 25_000_000  # the built-in model's weights are the bulk


#: PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch", "opencv-python-headless": "opencv", "matplotlib": "matplotlib-base",
               "dask": "dask-core", "partsegcore-compiled-backend": "partsegcore-compiled-backend"}


def test_conda_recipe_matches_the_package():
    """recipe/meta.yaml (a conda-forge draft built from the sdist) needs what the package needs, with the
    same lower bounds, the same version and the same console script."""
    import re

    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    recipe = (ROOT / "recipe" / "meta.yaml").read_text(encoding="utf-8")
    assert f'{{% set version = "{napari_grainlab.__version__}" %}}' in recipe
    run = recipe.split("  run:\n", 1)[1].split("\n\n", 1)[0]
    listed = {}
    for line in run.splitlines():
        m = re.match(r"\s*- ([A-Za-z0-9_.-]+)\s*([^#]*)", line)
        if m:
            listed[m[1]] = m[2].strip()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = CONDA_NAMES.get(req.name.lower(), req.name.lower())
        assert name in listed, f"recipe/meta.yaml lacks {name} ({spec})"
        lower = next((s.version for s in req.specifier if s.operator == ">="), None)
        if lower:
            assert listed[name] == f">={lower}", f"{name}: recipe {listed[name]!r}, pyproject >={lower}"
    assert f"python {project['requires-python']}" in recipe
    assert "grainlab = napari_grainlab.cli:main" in recipe
