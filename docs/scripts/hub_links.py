"""Make the README's links absolute, as the napari hub (and PyPI) need them.

The hub shows ``README.md`` as the plugin's page, away from the repository, so a relative link such as
``docs/images/train_dock.jpg`` would not resolve there. The repository's address is kept in one place,
``[project.urls] Source`` in ``pyproject.toml`` (a placeholder until the project has its public home);
pictures link to ``SOURCE/raw/BRANCH/PATH`` and other files to ``SOURCE/blob/BRANCH/PATH``.

    python docs/scripts/hub_links.py          rewrite README.md's relative links (and links to another base)
    python docs/scripts/hub_links.py --check  exit 1 when a link is relative or points to a missing file
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
BRANCH = "main"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".svg")
# [text](target) and ![alt](target); the target ends at the first space or ')'
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def source_url(root: Path = ROOT) -> str:
    urls = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    return urls["Source"].rstrip("/")


def repo_path(target: str, source: str) -> str | None:
    """The repository path a link points to (None: outside the repository, or a page anchor)."""
    if target.startswith("#"):
        return None
    for kind in ("raw", "blob", "tree"):
        prefix = f"{source}/{kind}/{BRANCH}/"
        if target.startswith(prefix):
            return target[len(prefix):]
    if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
        return None
    return target.lstrip("./")


def absolute(target: str, source: str, image: bool) -> str:
    path = repo_path(target, source)
    if path is None:
        return target
    bare = path.split("#", 1)[0]
    folder = bare.endswith("/") or (ROOT / bare).is_dir()
    kind = "raw" if image or bare.lower().endswith(IMAGE_SUFFIXES) else ("tree" if folder else "blob")
    return f"{source}/{kind}/{BRANCH}/{path}"


def rewrite(text: str, source: str) -> str:
    return _LINK.sub(lambda m: f"{m[1]}[{m[2]}]({absolute(m[3], source, bool(m[1]))})", text)


def problems(text: str, source: str, root: Path = ROOT) -> list[str]:
    """Links that are relative, or point to a file the repository does not have."""
    out = []
    for m in _LINK.finditer(text):
        target = m[3]
        path = repo_path(target, source)
        if path is None:
            continue
        if not target.startswith(source + "/"):
            out.append(f"relative link: {target}")
        if not (root / path.split("#", 1)[0]).exists():
            out.append(f"missing file: {path}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    source = source_url()
    if a.check:
        bad = problems(text, source)
        for line in bad:
            print(line)
        return 1 if bad else 0
    readme.write_text(rewrite(text, source), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
