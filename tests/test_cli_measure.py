"""grainlab measure: E112 methods, their 95 % confidence intervals, the table, the JSON and summary.csv."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_grainlab.cli import main
from napari_grainlab.cli.measure import SUMMARY_COLUMNS
from napari_grainlab.core._schema import cli_flag, option_fields
from napari_grainlab.core.grainsize_options import GrainSizeSettings


def voronoi_labels(seed: int, size: int = 240, grains: int = 120) -> np.ndarray:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (grains, 2))
    rr, cc = np.mgrid[:size, :size]
    _, idx = cKDTree(seeds).query(np.stack([cc.ravel(), rr.ravel()], axis=1))
    return (idx + 1).reshape(size, size).astype(np.uint16)


@pytest.fixture(scope="module")
def label_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    paths = []
    for i in range(3):
        p = root / f"field{i}.tif"
        tifffile.imwrite(p, voronoi_labels(i))
        paths.append(p)
    return paths


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_intercept_json_gives_g_with_a_95_percent_ci(label_files, capsys):
    assert main(["measure", str(label_files[0]), "--method", "intercept", "--pixel-size", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "intercept" and out["settings"]["directions"] == [0.0, 45.0, 90.0, 135.0]
    gs = out["files"][0]["grain_size"]
    assert gs["measurement"] == "line" and gs["n_measurements"] > 10
    low, high = gs["G_ci95"]
    assert low < gs["G"] < high and gs["ci95"] > 0 and 0 < gs["relative_accuracy"] < 50
    assert gs["quantity"] == "P_L" and gs["unit"] == "mm^-1" and gs["intersections"] > 100
    assert gs["line_length_mm"] == pytest.approx(gs["line_length_px"] * 0.5e-3)
    assert gs["G"] == pytest.approx(6.643856 * math.log10(gs["value"]) - 3.288)
    assert out["all"]["G"] == gs["G"]  # one file: all = the file
    # the per-file summary of the grain table is still there
    assert out["files"][0]["grains"] == 120 and out["files"][0]["unit"] == "um"


def test_several_files_are_the_fields_of_the_statistics(label_files, capsys):
    argv = ["measure", *map(str, label_files), "--method", "circles", "--pixel-size", "0.5", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["labels"] for f in out["files"]] == [p.name for p in label_files]
    assert all(f["grain_size"]["measurement"] == "placement" for f in out["files"])
    allf = out["all"]
    assert allf["measurement"] == "field" and allf["n_measurements"] == 3
    values = [f["grain_size"]["value"] for f in out["files"]]
    assert allf["value"] == pytest.approx(np.mean(values))
    from scipy import stats

    ci = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert allf["ci95"] == pytest.approx(ci)


def test_table_has_one_line_per_file_and_one_for_all(label_files, capsys):
    assert main(["measure", *map(str, label_files[:2]), "--pixel-size", "0.5"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0] == "ASTM E112 planimetric"
    rows = {ln.split()[0]: ln for ln in lines[2:]}
    assert set(rows) == {"field0.tif", "field1.tif", "all"}
    assert "±" in rows["all"] and "N_A" in rows["all"] and "mm^-2" in rows["all"]
    assert main(["measure", str(label_files[0])]) == 0  # no pixel size: no G, and it says so
    out = capsys.readouterr().out
    assert "n/a" in out and "no pixel size" in out and "px^-2" in out


def test_out_writes_grain_tables_and_a_summary_with_fixed_columns(label_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["measure", *map(str, label_files[:2]), "--pixel-size", "0.5", "--method", "intercept",
                 "--out", str(out)]) == 0
    assert (out / "field0_grains.csv").exists() and (out / "field1_grains.csv").exists()
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [r["labels"] for r in body] == ["field0.tif", "field1.tif", "all"]
    assert all(r["method"] == "intercept" and r["quantity"] == "P_L" for r in body)
    assert float(body[2]["n_measurements"]) == 2 and body[2]["measurement"] == "field"
    assert float(body[0]["G_ci95_low"]) < float(body[0]["G"]) < float(body[0]["G_ci95_high"])
    # the same columns for another method (those it does not measure are empty)
    assert main(["measure", str(label_files[0]), "--out", str(tmp_path / "p")]) == 0
    with open(tmp_path / "p" / "summary.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == SUMMARY_COLUMNS and len(rows) == 2
    assert dict(zip(rows[0], rows[1]))["intersections"] == ""


def test_settings_flags_come_from_the_settings_dataclass(label_files, capsys):
    help_text = subprocess.run([sys.executable, "-m", "napari_grainlab", "measure", "--help"], capture_output=True,
                               text=True, timeout=120).stdout
    for f in option_fields(GrainSizeSettings):
        flag = cli_flag(f)
        if f.metadata.get("cli") is False:
            assert flag is None
            continue
        assert flag in help_text, flag
    argv = ["measure", str(label_files[0]), "--method", "intercept", "--directions", "0,90", "--line-spacing", "30",
            "--triple-point-radius", "1.5", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["directions"] == [0.0, 90.0] and out["settings"]["line_spacing"] == 30.0
    assert set(out["files"][0]["grain_size"]["directions"]) == {"0", "90"}


@pytest.mark.parametrize("extra, expected", [
    (["--line-spacing", "0"], "--line-spacing: must be at least 1"),
    (["--method", "jeffries"], "--method: invalid choice"),
    (["--method", "circles", "--circle-radius", "500"], "do not fit"),
    (["--directions", "north"], "--directions: expected a number"),
])
def test_bad_settings_are_one_line_and_exit_2(label_files, capsys, extra, expected):
    assert main(["measure", str(label_files[0]), *extra]) == 2
    err = one_line(capsys.readouterr().err)
    assert "Traceback" not in err and expected in err
    if "fit" in expected:
        assert str(label_files[0]) in err  # the file is named


def test_a_file_without_grains_gets_null_and_the_others_are_measured(label_files, tmp_path, capsys):
    zeros = tmp_path / "zeros.tif"
    tifffile.imwrite(zeros, np.zeros((32, 32), np.uint16))
    assert main(["measure", str(zeros), str(label_files[0]), "--pixel-size", "0.5", "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text
    out = json.loads(text)
    assert out["files"][0]["grain_size"]["G"] is None and "no grains" in out["files"][0]["grain_size"]["ci_reason"]
    assert out["files"][1]["grain_size"]["G"] is not None
    assert out["all"]["n_measurements"] == 9  # the one field with grains: its 3 x 3 sub-fields


def test_docs_name_every_flag_and_summary_column():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "measure.md").read_text(encoding="utf-8")
    for f in option_fields(GrainSizeSettings):
        flag = cli_flag(f)
        if flag is not None:
            assert flag in text or flag.replace("--", "--no-") in text, flag
    assert ", ".join(SUMMARY_COLUMNS) in " ".join(text.split())
