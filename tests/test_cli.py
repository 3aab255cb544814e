"""The ``grainlab`` command line: synth, params, demo, errors, Ctrl-C and start-up cost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_grainlab
from napari_grainlab.cli import _synthetic, main
from napari_grainlab.core.synthetic import SynthParams, param_fields

SMALL = ["--size", "64x96", "--grains", "12"]
HEAVY = ("torch", "torchvision", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "timm",
         "albumentations", "vispy")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter (exactly as the console script does)."""
    return subprocess.run([sys.executable, "-m", "napari_grainlab", *args], capture_output=True, text=True,
                          timeout=timeout)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dataset_meta(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text())


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("grainlab: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


# --------------------------------------------------------------------------- synth


def test_synth_writes_dataset_folder(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["synth", str(out), "--count", "3", "--seed", "5", *SMALL]) == 0
    stdout = capsys.readouterr().out
    assert "wrote 3 SEM images of 64x96 px" in stdout and str(out) in stdout

    names = [f"synth_{i:04d}" for i in range(3)]
    assert sorted(p.stem for p in (out / "images").iterdir()) == names
    assert sorted(p.stem for p in (out / "labels").iterdir()) == names
    image = tifffile.imread(out / "images" / "synth_0000.tif")
    labels = tifffile.imread(out / "labels" / "synth_0000.tif")
    assert image.shape == labels.shape == (64, 96)
    assert image.dtype == np.uint8
    assert 5 <= len(np.unique(labels[labels > 0])) <= 30  # about 12 grains

    meta = dataset_meta(out)
    assert meta["seed"] == 5 and meta["count"] == 3 and meta["complete"] is True
    assert [it["name"] for it in meta["items"]] == names
    p = SynthParams.from_dict(meta["params"])
    assert (p.height, p.width, p.tessellation.grains, p.style) == (64, 96, 12, "sem")


def test_synth_same_seed_same_files_other_seed_other_images(tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["synth", str(tmp_path / name), "--count", "2", "--seed", seed, *SMALL]) == 0
    a, b, c = (files_of(tmp_path / n / "images") for n in "abc")
    assert a == b
    assert a["synth_0000.tif"] != c["synth_0000.tif"]


def test_synth_refuses_non_empty_out_then_overwrite_replaces_it(tmp_path):
    out = tmp_path / "data"
    r = run_cli("synth", str(out), "--count", "3", *SMALL)
    assert r.returncode == 0, r.stderr
    before = files_of(out)

    r = run_cli("synth", str(out), "--count", "2", *SMALL)
    assert r.returncode == 2
    assert "--overwrite" in one_error_line(r.stderr)
    assert files_of(out) == before  # nothing touched

    (out / "notes.txt").write_text("mine")
    r = run_cli("synth", str(out), "--count", "2", "--seed", "9", "--overwrite", *SMALL)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == ["synth_0000.tif", "synth_0001.tif"]
    assert dataset_meta(out)["seed"] == 9 and dataset_meta(out)["count"] == 2
    assert (out / "notes.txt").read_text() == "mine"  # only the dataset is replaced


def test_synth_refuses_a_file_as_out(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["synth", str(f), "--count", "1", *SMALL]) == 2
    one_error_line(capsys.readouterr().err)
    assert f.read_text() == "x"


def test_workers_do_not_change_the_files(tmp_path):
    for w in ("1", "2"):
        assert main(["synth", str(tmp_path / w), "--count", "4", "--seed", "3", "--workers", w, *SMALL]) == 0
    one, two = files_of(tmp_path / "1"), files_of(tmp_path / "2")
    assert one.keys() == two.keys()
    for name in one:
        if name != "dataset.json":
            assert one[name] == two[name], name
    m1, m2 = dataset_meta(tmp_path / "1"), dataset_meta(tmp_path / "2")
    m1.pop("created"), m2.pop("created")
    assert m1 == m2


def test_workers_zero_means_all_cores(tmp_path):
    assert main(["synth", str(tmp_path / "d"), "--count", "2", "--workers", "0", *SMALL]) == 0
    assert len(list((tmp_path / "d" / "images").iterdir())) == 2


# ----------------------------------------------------------------- parameter options


def test_params_file_named_options_and_set_override_in_order(tmp_path):
    base = SynthParams(height=48, width=48, style="optical")
    base.tessellation.grains = 20
    base.sem.dose = 10.0
    base.optical.noise = 0.2
    pfile = tmp_path / "p.json"
    base.save(pfile)

    out = tmp_path / "d"
    rc = main(["synth", str(out), "--count", "1", "--params", str(pfile), "--grains", "15",
               "--set", "optical.noise=0", "--set", "tessellation.periodic=true", "--set", "sem.edge_mode=groove",
               "--bit-depth", "16"])
    assert rc == 0
    p = SynthParams.from_dict(dataset_meta(out)["params"])
    assert p.style == "optical" and (p.height, p.width) == (48, 48)  # from the file
    assert p.sem.dose == 10.0  # from the file, untouched
    assert p.tessellation.grains == 15  # option over file
    assert p.optical.noise == 0.0 and isinstance(p.optical.noise, float)  # --set
    assert p.tessellation.periodic is True and p.sem.edge_mode == "groove"
    assert tifffile.imread(out / "images" / "synth_0000.tif").dtype == np.uint16


def test_set_wins_over_named_options(tmp_path, capsys):
    assert main(["params", "--grains", "10", "--set", "tessellation.grains=11", "--size", "100"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tessellation"]["grains"] == 11 and d["height"] == d["width"] == 100


def test_params_from_a_dataset_folder_reproduce_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["synth", str(a), "--count", "2", "--seed", "4", "--preset", "sem-twins", *SMALL]) == 0
    assert main(["synth", str(b), "--count", "2", "--seed", "4", "--params", str(a)]) == 0
    assert files_of(a / "images") == files_of(b / "images")
    assert dataset_meta(a)["params"] == dataset_meta(b)["params"]


def test_mean_diameter_replaces_the_grain_count(capsys):
    assert main(["params", "--mean-diameter", "30"]) == 0
    t = json.loads(capsys.readouterr().out)["tessellation"]
    assert t["grains"] is None and t["mean_diameter"] == 30.0
    assert main(["params", "--set", "tessellation.mean_diameter=25", "--grains", "50"]) == 0
    t = json.loads(capsys.readouterr().out)["tessellation"]
    assert t["grains"] == 50 and t["mean_diameter"] == 25.0  # both given: the count wins, as in the generator


def test_params_json_round_trips_through_a_file(tmp_path, capsys):
    f = tmp_path / "twins.json"
    assert main(["params", "--preset", "sem-twins", "--out", str(f)]) == 0
    assert str(f) in capsys.readouterr().out
    assert SynthParams.load(f) == SynthParams.preset("sem-twins")


def _all_param_names(cls=SynthParams, prefix=""):
    import dataclasses

    names = []
    obj = cls()
    for f in param_fields(cls):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            names += _all_param_names(type(v), f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


def test_params_list_names_every_parameter_with_its_help(capsys):
    assert main(["params", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [ln.split()[0] for ln in lines[1:]]
    assert listed == _all_param_names()
    dose = next(ln for ln in lines if ln.startswith("sem.dose "))
    assert "shot noise" in dose and "0 .. 1e+06" in dose


def _other_value(field, value):
    """A valid value of ``field`` (a parameter dataclass field) that is not its default ``value``."""
    meta = field.metadata
    if meta.get("choices"):
        return next(c for c in meta["choices"] if c != value)
    if isinstance(value, bool):
        return not value
    lo, hi = meta.get("min"), meta.get("max")
    integer = isinstance(value, int) or (value is None and "int" in str(field.type) and "float" not in str(field.type))
    if value is None:
        value = lo if lo is not None else 1
    if lo is not None and hi is not None:
        new = lo + 0.37 * (min(hi, lo + 100) - lo)
    else:
        new = value * 1.5 + 1.0 if (hi is None or value * 1.5 + 1.0 <= hi) else value * 0.5
    if integer:
        new = int(round(new))
        step = meta.get("multiple_of") or 1
        new -= new % step
        if new == value:
            new += step
    return new


def test_every_listed_parameter_can_be_set(capsys):
    """--set gives each parameter a value of its type other than its default, and that value is what the
    parameters then hold."""
    p = SynthParams()
    for name in _all_param_names():
        section, _, field_name = name.rpartition(".")
        owner = getattr(p, section) if section else p
        field = next(f for f in param_fields(type(owner)) if f.name == field_name)
        value = _other_value(field, getattr(owner, field_name))
        assert value != getattr(owner, field_name), name
        text = json.dumps(value).strip('"')
        assert main(["params", "--set", f"{name}={text}"]) == 0, name
        shown = json.loads(capsys.readouterr().out)
        for part in name.split("."):
            shown = shown[part]
        assert shown == pytest.approx(value) if isinstance(value, float) else shown == value, name


def test_help_lists_the_choices_the_generator_accepts():
    meta = {f.name: f.metadata for f in param_fields(SynthParams)}
    tmeta = {f.name: f.metadata for f in param_fields(type(SynthParams().tessellation))}
    assert _synthetic.STYLES == tuple(meta["style"]["choices"])
    assert _synthetic.BIT_DEPTHS == tuple(meta["bit_depth"]["choices"])
    assert _synthetic.METHODS == tuple(tmeta["method"]["choices"])
    for name in _synthetic.PRESETS:
        SynthParams.preset(name).validate()


# ------------------------------------------------------------------------- errors

BAD_ARGS = {
    "out of range": ["--set", "sem.dose=-1"],
    "unknown parameter": ["--set", "sem.dos=1"],
    "unknown section": ["--set", "nosuch.field=1"],
    "section as value": ["--set", "tessellation=3"],
    "field as section": ["--set", "style.x=3"],
    "not a bool": ["--set", "tessellation.periodic=maybe"],
    "null for a required field": ["--set", "style=null"],
    "neither grains nor diameter": ["--set", "tessellation.grains=null"],
    "fractional integer": ["--set", "tessellation.lloyd_steps=1.5"],
    "not a number": ["--set", "sem.blur=soft"],
    "no equals sign": ["--set", "sem.blur"],
    "size zero": ["--size", "0"],
    "size junk": ["--size", "12x"],
    "grains zero": ["--grains", "0"],
    "too many grains": ["--grains", "100000", "--size", "64"],
    "unknown preset": ["--preset", "nope"],
    "unknown style": ["--style", "foo"],
    "unknown method": ["--method", "delaunay"],
    "bad bit depth": ["--bit-depth", "12"],
    "count zero": ["--count", "0"],
    "negative seed": ["--seed", "-1"],
    "missing params file": ["--params", "/nonexistent/p.json"],
    "preset and params": ["--preset", "sem", "--params", "x.json"],
    "unknown option": ["--colour", "red"],
}


@pytest.mark.parametrize("args", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args):
    out = tmp_path / "out"
    assert main(["synth", str(out), "--count", "1", *args]) == 2
    captured = capsys.readouterr()
    one_error_line(captured.err)
    assert captured.out == ""
    assert not out.exists()


BAD_FILES = {
    "syntax": ("{bad json", "p.json"),
    "list": ("[1, 2]", "p.json"),
    "unknown": ('{"colour": 1}', "colour"),
    "binary": ("\udcff", "p.json"),
    "type": ('{"tessellation": {"grains": "many"}}', "tessellation.grains"),
    "float-as-text": ('{"sem": {"dose": "30"}}', "sem.dose"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize(("content", "named"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_params_files_are_user_errors(tmp_path, capsys, content, named):
    f = tmp_path / "p.json"
    f.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert main(["synth", str(tmp_path / "out"), "--params", str(f)]) == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_unwritable_out_is_a_user_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = run_cli("synth", str(blocker / "sub"), "--count", "1", *SMALL)
    assert r.returncode == 2
    assert "a-file" in one_error_line(r.stderr)
    for argv in (["params", "--out", str(blocker / "p.json")], ["demo", "--quick", "--out", str(blocker / "d")]):
        assert main(argv) == 2
        assert "a-file" in one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == ""


def test_no_command_shows_help_and_exit_2(capsys):
    assert main([]) == 2
    assert "synth" in capsys.readouterr().err


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"grainlab {napari_grainlab.__version__}"


# ------------------------------------------------------------------------- Ctrl-C


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_exits_130_and_leaves_only_complete_items(tmp_path, workers):
    out = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "napari_grainlab", "synth", str(out), "--count", "500",
                             "--size", "256", "--grains", "80", "--workers", workers],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(out.glob("images/*.tif"))) < 2:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("grainlab: interrupted")

    meta = dataset_meta(out)
    assert meta["complete"] is False
    names = {it["name"] for it in meta["items"]}
    assert 2 <= len(names) < 500
    expected = {"dataset.json"} | {f"{sub}/{n}.{ext}" for n in names for sub, ext in
                                   (("images", "tif"), ("labels", "tif"), ("boundaries", "tif"), ("tables", "csv"))}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == expected  # every listed item complete, nothing half-written, no temporaries
    for n in names:
        tifffile.imread(out / "labels" / f"{n}.tif")


# -------------------------------------------------------------------------- demo


# the quick demo's own run (datasets, preview, scores, re-run) is tested once in tests/test_cli_demo.py


def test_demo_refuses_a_foreign_non_empty_folder(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("precious")
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 2
    assert "--overwrite" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


# --------------------------------------------------------------------- start-up cost

MODULES_AFTER = """
import json, sys
from napari_grainlab.cli import main
try:
    rc = main({argv!r})
except SystemExit as exc:
    rc = exc.code
print(json.dumps({{"rc": rc, "modules": sorted(m.split(".")[0] for m in sys.modules)}}))
"""


def modules_after(*argv: str) -> tuple[int, set[str]]:
    code = MODULES_AFTER.format(argv=list(argv))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return res["rc"], set(res["modules"])


def test_help_imports_only_the_standard_library():
    for argv in (["--help"], ["synth", "--help"], ["demo", "--help"]):
        rc, mods = modules_after(*argv)
        assert rc == 0
        assert not mods & {*HEAVY, "numpy", "scipy", "skimage", "tqdm", "tifffile"}, argv


def test_synth_does_not_import_gui_or_deep_learning(tmp_path):
    rc, mods = modules_after("synth", str(tmp_path / "d"), "--count", "1", *SMALL)
    assert rc == 0
    assert not mods & set(HEAVY)
    assert "numpy" in mods  # sanity: the generator did run in that process
