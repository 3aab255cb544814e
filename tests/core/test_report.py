"""Measurement reports (core.report): the HTML parses and holds what grain_size gives, pictures are embedded
and reduced, user text is escaped, the PDF is one, writes are atomic, batch reports from a summary.csv."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import tifffile

from napari_grainlab.core import report as R
from napari_grainlab.core.errors import DataError
from napari_grainlab.core.grainsize import grain_size
from napari_grainlab.core.grainsize_options import METHODS
from napari_grainlab.core.report import ReportInput, ReportOptions, build_report, report_html, write_report


def voronoi_labels(seed: int, size: int = 160, grains: int = 60) -> np.ndarray:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (grains, 2))
    rr, cc = np.mgrid[:size, :size]
    _, idx = cKDTree(seeds).query(np.stack([cc.ravel(), rr.ravel()], axis=1))
    return (idx + 1).reshape(size, size).astype(np.uint16)


class Page(HTMLParser):
    """What the tests read from a report: the G cells by table and method, the images, the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[str] = []
        self.rows: list[str | None] = []
        self.g: dict[tuple[str, str], list[float]] = {}
        self.images: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self.tables.append(a.get("class", ""))
        elif tag == "tr":
            self.rows.append(a.get("data-method"))
        elif tag == "td" and "data-g" in a:
            method = a.get("data-method") or self.rows[-1]
            self.g.setdefault((self.tables[-1], method), []).append(float(a["data-g"]))
        elif tag == "img":
            self.images.append((a.get("alt", ""), a.get("src", "")))

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def png_size(src: str) -> tuple[int, int]:
    from PIL import Image

    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        return im.size


@pytest.fixture(scope="module")
def labels():
    return voronoi_labels(0)


@pytest.fixture(scope="module")
def image(labels):
    rng = np.random.default_rng(3)
    return (rng.random(labels.shape) * 4000).astype(np.uint16)


def test_html_holds_the_g_of_every_method_and_embeds_its_pictures(labels, image, tmp_path):
    path = write_report(tmp_path / "a.html", [ReportInput(labels, "field a", 0.5, "test", image)])
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    for method in METHODS:
        expected = grain_size(labels, 0.5, method)
        assert page.g[("methods", method)] == [expected.G]
        assert f"{expected.G:.2f}" in page.plain
    alts = [alt for alt, _ in page.images]
    assert alts == ["micrograph", "grain overlay", "grain area histogram", "intercept length histogram"]
    assert all(png_size(src) == (160, 160) for _, src in page.images[:2])
    assert "<link" not in text and "<script" not in text and "http" not in re.sub(r'src="data:[^"]+"', "", text)
    plain = page.plain
    assert "napari-grainlab" in plain and "0.5 µm (from test)" in plain
    assert "ALA (E930)" in plain and "duplex" in plain and "bimodality coefficient" in plain
    assert "60 (" in plain  # the grain count
    assert "gap_width" in plain and "bins_per_decade" in plain  # the settings


def test_user_strings_are_escaped(labels, tmp_path):
    evil = '<script>alert("x")</script> & co'
    inp = ReportInput(labels, evil, 0.5, "<b>tag</b>", model="m<1>", model_sha256="ab&cd", labels_path=evil)
    text = write_report(tmp_path / "e.html", [inp], options=ReportOptions(title=f"T {evil}")).read_text()
    page = Page(text)
    assert "script" not in page.tags and "b" not in page.tags
    assert "<script>" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in text
    assert f"T {evil}" in page.plain and "m<1>" in page.plain and "ab&cd" in page.plain


def test_a_missing_image_is_a_note_not_an_error(labels, tmp_path):
    page = Page(write_report(tmp_path / "n.html", [ReportInput(labels, "x", 0.5)]).read_text())
    assert [alt for alt, _ in page.images] == ["grain overlay", "grain area histogram", "intercept length histogram"]
    assert "no micrograph was given" in page.plain
    # an image of another shape: a note too
    odd = ReportInput(labels, "x", 0.5, image=np.zeros((10, 12)))
    page = Page(report_html(build_report([odd])))
    assert "the image is 10 x 12 px and the labels 160 x 160 px" in page.plain


def test_without_pixel_size_g_is_na(labels):
    page = Page(report_html(build_report([ReportInput(labels, "x")])))
    assert all(math.isnan(page.g[("methods", m)][0]) for m in METHODS)
    assert "unknown: values are per px" in page.plain


def test_a_method_that_cannot_measure_shows_why(labels):
    page = Page(report_html(build_report([ReportInput(labels, "x", 0.5)], {"circle_radius": 500})))
    assert ("methods", "circles") not in page.g and "do not fit" in page.plain
    assert page.g[("methods", "planimetric")] == [grain_size(labels, 0.5, "planimetric").G]


def test_twins_counted_and_excluded(tmp_path):
    # square grains of 20 px, each cut in two by a horizontal twin boundary (a probability image)
    lab = np.zeros((120, 120), np.int32)
    prob = np.zeros(lab.shape, np.float32)
    k = 0
    for i in range(6):
        for j in range(6):
            k += 1
            lab[i * 20:i * 20 + 10, j * 20:(j + 1) * 20] = 2 * k - 1
            lab[i * 20 + 10:(i + 1) * 20, j * 20:(j + 1) * 20] = 2 * k
            prob[i * 20 + 9:i * 20 + 11, j * 20:(j + 1) * 20] = 0.8
    page = Page(report_html(build_report([ReportInput(lab, "twinned", 1.0, twins=prob)])))
    mask = prob > 0.5
    for m in METHODS:
        t = grain_size(lab, 1.0, m, twin_boundaries=mask).twins
        assert page.g[("twins", m)] == [t["G_twins_counted"], t["G_twins_excluded"]]
        assert t["G_twins_counted"] > t["G_twins_excluded"]
    assert "72 → 36" in page.plain
    # the same as parent grains (a prediction: a twin is part of its parent): the same twin numbers
    parents = (lab + 1) // 2
    page = Page(report_html(build_report([ReportInput(parents, "parents", 1.0, twins=prob)])))
    for m in METHODS:
        t = grain_size(lab, 1.0, m, twin_boundaries=mask).twins
        assert page.g[("twins", m)] == pytest.approx([t["G_twins_counted"], t["G_twins_excluded"]], abs=1e-9)
    assert "72 → 36" in page.plain
    # a threshold above the probability: no twin boundaries
    page = Page(report_html(build_report([ReportInput(lab, "t", 1.0, twins=prob)],
                                         options=ReportOptions(twin_threshold=0.9))))
    assert page.g[("twins", "planimetric")][0] == page.g[("twins", "planimetric")][1]


def test_twin_mask_reads_probabilities_masks_and_labels():
    prob = np.array([[0.2, 0.6], [0.5, 0.9]], np.float32)
    assert R.twin_mask(prob).tolist() == [[False, True], [False, True]]
    assert R.twin_mask(prob, threshold=0.1).all()
    assert R.twin_mask(np.array([[0, 3], [1, 0]], np.uint8)).tolist() == [[False, True], [True, False]]
    with pytest.raises(DataError, match="2 x 2 px, the labels 3 x 3"):
        R.twin_mask(prob, (3, 3))
    with pytest.raises(DataError, match="NaN"):
        R.twin_mask(np.full((2, 2), np.nan))


def test_big_images_are_reduced(tmp_path):
    lab = np.kron(voronoi_labels(1, 100, 30), np.ones((5, 7), np.uint16))  # 500 x 700 px
    img = np.random.default_rng(0).random(lab.shape).astype(np.float32)
    page = Page(report_html(build_report([ReportInput(lab, "big", 0.5, image=img)], options=ReportOptions(max_side=200))))
    sizes = [png_size(src) for alt, src in page.images if alt in ("micrograph", "grain overlay")]
    assert sizes == [(175, 125), (175, 125)]  # reduced 4 x: (700 / 4, 500 / 4)
    assert "reduced 4x" in page.plain


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", data))


def test_pdf_is_a_pdf_with_the_expected_pages(labels, image, tmp_path, monkeypatch):
    path = write_report(tmp_path / "a.pdf", [ReportInput(labels, "a", 0.5, image=image)])
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert pdf_pages(data) == 3  # text, pictures, distributions
    monkeypatch.setattr(R, "PDF_ROWS_PER_PAGE", 2)
    fields = [ReportInput(voronoi_labels(i, 96, 25), f"f{i}", 0.5) for i in range(3)]
    data = write_report(tmp_path / "b.pdf", fields).read_bytes()
    assert pdf_pages(data) == 1 + 2 + 1  # all fields, 2 pages of 2 rows, distributions


def test_writes_are_atomic_and_leave_no_temporary_files(labels, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("the old report")
    report = build_report([ReportInput(labels, "a", 0.5)])

    def broken(_):
        raise MemoryError("out of memory")

    monkeypatch.setattr(R, "report_html", broken)
    with pytest.raises(MemoryError):
        write_report(target, report)
    assert target.read_text() == "the old report" and sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    monkeypatch.undo()
    write_report(target, report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"] and target.read_text().startswith("<!DOCTYPE")
    with pytest.raises(DataError, match=r"\.html or \.pdf"):
        write_report(tmp_path / "r.docx", report)


def test_several_fields_give_one_report_with_all_fields(tmp_path):
    labs = [voronoi_labels(i, 120, 40) for i in range(3)]
    page = Page(write_report(tmp_path / "all.html", [ReportInput(lab, f"f{i}", 0.5) for i, lab in enumerate(labs)])
                .read_text())
    for m in METHODS:
        assert page.g[("methods", m)][0] == grain_size(labs, 0.5, m).G  # all fields first
        assert page.g[("fields", m)] == [grain_size(lab, 0.5, m).G for lab in labs]
    assert sum(1 for alt, _ in page.images if alt.startswith("overlay of")) == 3
    assert "Grain size report" in page.plain and "All fields" in page.plain


def write_batch(folder, labs, *, with_image=True):
    """A folder as 'grainlab predict' leaves it: NAME_labels.tif, records and summary.csv."""
    folder.mkdir()
    weights = folder / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights of a test model")
    rows = []
    for i, lab in enumerate(labs):
        stem = f"s{i}"
        tifffile.imwrite(folder / f"{stem}_labels.tif", lab)
        img = folder / f"{stem}.tif"
        if with_image and i == 0:
            tifffile.imwrite(img, (np.random.default_rng(i).random(lab.shape) * 255).astype(np.uint8))
        (folder / f".{stem}.grainlab.json").write_text(json.dumps({"model": {"weights": str(weights)}}))
        rows.append({"image": f"{stem}.tif", "output": stem, "pixel_size_um": "0.25", "grains": "1",
                     "status": "ok", "error": "", "path": str(img)})
    rows.append({"image": "broken.tif", "output": "broken", "pixel_size_um": "", "grains": "", "status": "error",
                 "error": "not a TIFF file", "path": str(folder / "broken.tif")})
    with open(folder / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "summary.csv", hashlib.sha256(weights.read_bytes()).hexdigest()


def test_batch_report_from_a_summary(tmp_path):
    labs = [voronoi_labels(i, 120, 40) for i in range(2)]
    summary, sha = write_batch(tmp_path / "out", labs)
    inputs, notes = R.inputs_from_summary(summary)
    assert [i.name for i in inputs] == ["s0", "s1"] and [i.pixel_size for i in inputs] == [0.25, 0.25]
    assert inputs[0].image == summary.parent / "s0.tif" and inputs[1].image is None
    assert "is not there" in inputs[1].image_note
    assert inputs[0].model == "model" and inputs[0].model_sha256 == sha
    assert notes == ["broken.tif: not in the report (not a TIFF file)"]
    page = Page(write_report(tmp_path / "batch.html", inputs, notes=notes).read_text())
    for m in METHODS:
        assert page.g[("methods", m)][0] == grain_size(labs, 0.25, m).G
        assert page.g[("fields", m)] == [grain_size(lab, 0.25, m).G for lab in labs]
    assert sha in page.plain and "broken.tif: not in the report" in page.plain
    assert sum(alt == "micrograph" for alt, _ in page.images) == 1  # s0's image, read from its file
    assert "summary.csv" in page.plain  # where the pixel size came from
    # the folder itself names its summary; a model with a twin class left NAME_twin_boundary.tif
    prob = np.zeros(labs[1].shape, np.float32)
    prob[:, 60] = 0.9
    tifffile.imwrite(summary.parent / "s1_twin_boundary.tif", prob)
    inputs, _ = R.inputs_from_summary(summary.parent, with_images=False)
    assert inputs[0].twins is None and inputs[1].twins_source == "s1_twin_boundary.tif"
    assert np.array_equal(inputs[1].twins, prob)


def test_bad_summaries_are_data_errors(tmp_path):
    bad = tmp_path / "summary.csv"
    bad.write_text("labels,G\na.tif,9\n")
    with pytest.raises(DataError, match="not the summary of a batch prediction"):
        R.inputs_from_summary(bad)
    summary, _ = write_batch(tmp_path / "out", [voronoi_labels(0, 64, 10)])
    (summary.parent / "s0_labels.tif").unlink()
    with pytest.raises(DataError, match="s0_labels.tif .* is missing"):
        R.inputs_from_summary(summary)
    with pytest.raises(DataError, match="no such summary"):
        R.inputs_from_summary(tmp_path / "nothing.csv")


def test_model_info_of_folders_files_and_registry_names(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    assert R.model_info(folder) == ("my-model", sha)
    assert R.model_info(folder / "model.json") == ("my-model", sha)
    assert R.model_info("no-such-model") == ("no-such-model", None)
    assert R.model_info(None) == (None, None)
    from napari_grainlab.core.models.registry import list_models

    entry = list_models()[0]
    assert R.model_info(entry.name) == (entry.name, entry.sha256)


def test_progress_and_stop(labels, tmp_path):
    events = []
    build_report([ReportInput(labels, "a", 0.5)], progress=events.append)
    assert [e.done for e in events] == [0, 1, 2, 3] and all(e.total == 4 for e in events)
    gen = R.iter_write_report(tmp_path / "s.html", [ReportInput(labels, "a", 0.5)], stop=lambda: True)
    with pytest.raises(StopIteration) as done:
        next(gen)
    assert done.value.value is None and not (tmp_path / "s.html").exists()
