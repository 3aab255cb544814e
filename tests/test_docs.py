"""The documentation stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from napari_grainlab.core.synthetic import SynthParams, param_fields

ROOT = Path(__file__).resolve().parents[1]


def test_parameter_reference_lists_every_parameter():
    text = (ROOT / "docs" / "synthetic.md").read_text(encoding="utf-8")
    p = SynthParams()
    missing = []
    for f in param_fields(p):
        value = getattr(p, f.name)
        if hasattr(value, "section"):
            missing += [f"{f.name}.{g.name}" for g in param_fields(value) if f"`{f.name}.{g.name}`" not in text]
        elif f"`{f.name}`" not in text:
            missing.append(f.name)
    assert missing == [], f"docs/synthetic.md lacks {missing}: run docs/scripts/param_table.py"


def _hub_links():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hub_links", ROOT / "docs" / "scripts" / "hub_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_hub_page():
    """The napari hub shows the README away from the repository: every link and picture is absolute, made
    from the one repository address in pyproject.toml, and points to a file the repository has; the pictures
    are small; sections are ## headings (the hub's sidebar)."""
    hub = _hub_links()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    source = hub.source_url()
    assert hub.problems(text, source) == [], "run docs/scripts/hub_links.py"
    pictures = [m[3] for m in hub._LINK.finditer(text) if m[1]]
    assert len(pictures) >= 5
    for target in pictures:
        path = ROOT / hub.repo_path(target, source)
        assert target.startswith(f"{source}/raw/") and 10_000 < path.stat().st_size <= 300_000, target
    headings = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert {"## Install", "## Quick start: two commands", "## In napari", "## License"} <= set(headings)
    # the check finds what it should
    assert hub.problems("![x](docs/images/gallery.jpg) [y](docs/nope.md)", source) == [
        "relative link: docs/images/gallery.jpg", "relative link: docs/nope.md", "missing file: docs/nope.md"]


def test_doc_pictures_are_small():
    for path in (ROOT / "docs" / "images").iterdir():
        assert path.stat().st_size <= 300_000, f"{path.name}: use docs/scripts/web_image.py"


def test_option_references_are_generated_from_the_schemas():
    """docs/training.md's option tables are the TrainConfig / InferenceOptions / RetrainOptions metadata, rendered."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("option_table", ROOT / "docs" / "scripts" / "option_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.DOC.read_text(encoding="utf-8")
    assert module.render(text) == text, "docs/training.md is out of date: run docs/scripts/option_table.py"
    from napari_grainlab.core.inference.options import InferenceOptions
    from napari_grainlab.core.retrain import RetrainOptions
    from napari_grainlab.core.training import TrainConfig

    for cls in (TrainConfig, InferenceOptions, RetrainOptions):
        for f in param_fields(cls):
            assert f"| `{f.name}` |" in text, f"{cls.__name__}.{f.name} missing from docs/training.md"


def test_experiment_report_rebuilds_from_the_committed_results(tmp_path):
    """docs/report.md is what `grainlab experiment ... --report-only` makes of the results committed next to
    it (docs/report/config.json + results.jsonl): every number on the page can be regenerated without
    training, and the page says how the images met the network's grain scale in those runs."""
    import shutil
    import subprocess
    import sys

    out = tmp_path / "report"
    out.mkdir()
    for name in ("config.json", "results.jsonl"):
        shutil.copy(ROOT / "docs" / "report" / name, out / name)
    rebuilt = tmp_path / "report.md"
    r = subprocess.run([sys.executable, "-c", "import sys; from napari_grainlab.cli import main; sys.exit(main())",
                        "experiment", str(ROOT / "experiments" / "transfer.toml"),
                        "--quick", "--out", str(out), "--report-only", "--report", str(rebuilt)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    def comparable(text: str) -> list[str]:  # the date, the command's paths and the figure folder differ
        lines = [ln for ln in text.splitlines() if not ln.startswith(("_Generated", "- **Reproduce:**"))]
        return [ln.replace("](report/", "](FIG/") for ln in lines]

    mine = comparable((ROOT / "docs" / "report.md").read_text(encoding="utf-8"))
    assert mine == comparable(rebuilt.read_text(encoding="utf-8").replace(f"]({rebuilt.stem}/", "](report/"))
    assert any("automatically estimated grain scale" in ln for ln in mine)
