"""grainlab measure --report / --rois / --twins / --images / --from-summary: files written, exit codes and
one-line errors."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import tifffile

from napari_grainlab.cli import main


def voronoi_labels(seed: int, size: int = 120, grains: int = 40) -> np.ndarray:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (grains, 2))
    rr, cc = np.mgrid[:size, :size]
    _, idx = cKDTree(seeds).query(np.stack([cc.ravel(), rr.ravel()], axis=1))
    return (idx + 1).reshape(size, size).astype(np.uint16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fields")
    out = {"labels": [], "images": [], "twins": []}
    for i in range(2):
        lab = voronoi_labels(i)
        tifffile.imwrite(root / f"f{i}.tif", lab)
        tifffile.imwrite(root / f"img{i}.tif", (np.random.default_rng(i).random(lab.shape) * 255).astype(np.uint8))
        prob = np.zeros(lab.shape, np.float32)
        prob[:, 60] = 0.9  # a straight twin boundary through the middle
        tifffile.imwrite(root / f"tw{i}.tif", prob)
        out["labels"].append(str(root / f"f{i}.tif"))
        out["images"].append(str(root / f"img{i}.tif"))
        out["twins"].append(str(root / f"tw{i}.tif"))
    return out


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("grainlab: error: ") and "Traceback" not in err
    return lines[0]


def g_cells(text: str, table: str = "methods") -> dict[str, float]:
    block = text[text.index(f'<table class="{table}">'):]
    block = block[:block.index("</table>")]
    return {m: float(g) for m, g in re.findall(r'<tr data-method="(\w+)"><td>[^<]*</td><td class="num g" '
                                               r'data-g="([^"]+)"', block)}


def test_one_report_for_all_files_with_the_g_of_the_measurement(files, tmp_path, capsys):
    report = tmp_path / "rep" / "all.html"
    argv = ["measure", *files["labels"], "--pixel-size", "0.5", "--method", "intercept", "--json",
            "--images", *files["images"], "--report", str(report), "--report-title", "Steel <A&B>"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # stdout stays JSON: the report's line goes to stderr
    assert f"wrote {report}" in captured.err
    text = report.read_text(encoding="utf-8")
    assert g_cells(text)["intercept"] == out["all"]["G"]
    assert "<h1>Steel &lt;A&amp;B&gt;</h1>" in text
    assert text.count('alt="micrograph"') == 2 and "data:image/png;base64," in text
    assert sorted(p.name for p in report.parent.iterdir()) == ["all.html"]  # no temporary file left


def test_report_folder_has_one_report_per_file_and_an_index(files, tmp_path, capsys):
    folder = tmp_path / "reports"
    assert main(["measure", *files["labels"], "--pixel-size", "0.5", "--report", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["f0_report.html", "f1_report.html", "index.html"]
    index = (folder / "index.html").read_text()
    assert 'href="f0_report.html"' in index and 'href="f1_report.html"' in index
    text = (folder / "f1_report.html").read_text()
    assert "no micrograph was given (--images)" in text  # no --images: a note, not an error
    from napari_grainlab.core.grainsize import grain_size

    assert g_cells(text)["circles"] == grain_size(voronoi_labels(1), 0.5, "circles").G


def test_pdf_report(files, tmp_path, capsys):
    pdf = tmp_path / "one.pdf"
    assert main(["measure", files["labels"][0], "--pixel-size", "0.5", "--report", str(pdf)]) == 0
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page[^s]", data)) == 3


def test_rois_zip_reads_back_with_roifile(files, tmp_path, capsys):
    import roifile

    assert main(["measure", *files["labels"], "--pixel-size", "0.5", "--rois", str(tmp_path / "rois")]) == 0
    assert sorted(p.name for p in (tmp_path / "rois").iterdir()) == ["f0_rois.zip", "f1_rois.zip"]
    rois = roifile.roiread(tmp_path / "rois" / "f0_rois.zip")
    lab = voronoi_labels(0)
    assert len(rois) == len(np.unique(lab)) == 40
    assert sorted(int(r.name) for r in rois) == list(range(1, 41))
    # the polygon of grain 1 covers its pixels (area within a pixel per boundary pixel edge)
    xy = rois[0].coordinates()
    area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], -1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], -1)))
    assert area == pytest.approx(np.count_nonzero(lab == int(rois[0].name)), rel=0.15)


def test_twins_give_g_with_twins_excluded_and_counted(files, tmp_path, capsys):
    argv = ["measure", *files["labels"], "--pixel-size", "0.5", "--twins", *files["twins"], "--json",
            "--report", str(tmp_path / "t.html")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    twins = out["all"]["twins"]
    assert twins["G_twins_excluded"] == out["all"]["G"]
    # the labels are parent grains: the twin line cuts the grains it crosses into twins
    assert twins["grains_twins_excluded"] <= 80 < twins["grains_twins_counted"]
    assert twins["G_twins_counted"] > twins["G_twins_excluded"]
    assert out["files"][0]["grain_size"]["G_twins_counted"] is not None
    text = (tmp_path / "t.html").read_text()
    assert '<table class="twins">' in text and "tw0.tif" in text


@pytest.mark.parametrize("extra, expected", [
    (["--twins", "TW0", "--report", "x.html"], "--twins: 1 file for 2 labels files"),
    (["--images", "IMG0", "--report", "x.html"], "--images: 1 file for 2 labels files"),
    (["--report", "r.txt"], "--report: r.txt: give a .html or .pdf file, or a folder"),
])
def test_count_mismatches_and_bad_report_names_are_one_line(files, tmp_path, capsys, monkeypatch, extra, expected):
    monkeypatch.chdir(tmp_path)
    extra = [{"TW0": files["twins"][0], "IMG0": files["images"][0]}.get(a, a) for a in extra]
    assert main(["measure", *files["labels"], "--pixel-size", "0.5", *extra]) == 2
    assert expected in one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bad_labels_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a TIFF")
    assert main(["measure", str(bad), "--report", str(tmp_path / "r.html")]) == 2
    assert str(bad) in one_line(capsys.readouterr().err)
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_report_path_is_one_line(files, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    assert main(["measure", files["labels"][0], "--report", str(blocker / "r.html")]) == 2
    assert "file.txt" in one_line(capsys.readouterr().err)
    assert blocker.read_text() == "a file, not a folder"


def test_a_twin_mask_of_another_shape_is_one_line(files, tmp_path, capsys):
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((10, 10), np.uint8))
    assert main(["measure", files["labels"][0], "--twins", str(small)]) == 2
    assert "small.tif is 10 x 10 px, the labels 120 x 120 px" in one_line(capsys.readouterr().err)


def make_batch(folder, n=2):
    folder.mkdir()
    rows = []
    for i in range(n):
        tifffile.imwrite(folder / f"s{i}_labels.tif", voronoi_labels(10 + i))
        rows.append({"image": f"s{i}.tif", "output": f"s{i}", "pixel_size_um": "0.2", "status": "ok", "error": "",
                     "path": str(folder / f"s{i}.tif")})
    with open(folder / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "summary.csv"


def test_from_summary_measures_and_reports_a_batch_folder(tmp_path, capsys):
    summary = make_batch(tmp_path / "out")
    report = tmp_path / "batch.html"
    assert main(["measure", "--from-summary", str(summary), "--method", "circles", "--json",
                 "--report", str(report), "--model", "no-such-model"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["labels"] for f in out["files"]] == ["s0_labels.tif", "s1_labels.tif"]
    assert all(f["pixel_size_um"] == 0.2 for f in out["files"])
    text = report.read_text()
    assert g_cells(text)["circles"] == out["all"]["G"]
    assert "the micrograph" in text and "is not there" in text and "no-such-model" in text


def test_from_summary_errors(tmp_path, capsys, files):
    summary = make_batch(tmp_path / "out", 1)
    assert main(["measure", files["labels"][0], "--from-summary", str(summary)]) == 2
    assert "not both" in one_line(capsys.readouterr().err)
    assert main(["measure", "--from-summary", str(tmp_path / "none.csv")]) == 2
    assert "no such summary file" in one_line(capsys.readouterr().err)
    assert main(["measure"]) == 2
    assert "--from-summary" in one_line(capsys.readouterr().err)


def test_a_file_without_grains_is_a_note_in_the_report(files, tmp_path, capsys):
    zeros = tmp_path / "zeros.tif"
    tifffile.imwrite(zeros, np.zeros((32, 32), np.uint16))
    report = tmp_path / "r.html"
    assert main(["measure", str(zeros), files["labels"][0], "--pixel-size", "0.5", "--report", str(report)]) == 0
    text = report.read_text()
    assert "zeros.tif: no grains: every pixel is 0, not in the report" in text
    assert text.count('<section class="field"') == 1
    capsys.readouterr()
    assert main(["measure", str(zeros), "--report", str(tmp_path / "z.html")]) == 2
    assert "no file with grains" in one_line(capsys.readouterr().err)
