"""The documentation: a strict site build, a short README, and references that resolve here."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))

from pictures import PICTURES, Picture, render  # noqa: E402

# Markdown's toc slugs (what MkDocs uses): a link's anchor must be one of a page's headings.
_HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.M)
_DOC_REFERENCE = re.compile(r"docs/([a-z-]+\.md)(?:#([a-z0-9-]+))?")


def _slug(title: str) -> str:
    value = re.sub(r"[^\w\s-]", "", title).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    suffixes = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".sh", ".txt", ""}
    return [ROOT / n for n in names if Path(n).suffix in suffixes and (ROOT / n).is_file()]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """A broken link, a missing anchor or a page left out of the nav fails the build."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "daemon" / "index.html").is_file()
    for picture in PICTURES:
        assert (tmp_path / "img" / picture.name).is_file()


def test_the_readme_is_the_map_not_the_manual() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in sorted(p.name for p in DOCS.glob("*.md")):
        if page != "index.md":
            assert f"docs/{page}" in readme, f"the README does not point to docs/{page}"


def test_every_reference_to_the_docs_resolves_inside_the_repository() -> None:
    headings = {
        page.name: {_slug(h) for h in _HEADING.findall(page.read_text())}
        for page in DOCS.glob("*.md")
    }
    outside = ("SPEC §", "SPEC.md", "DESIGN.md", "../shared")
    seen = 0
    for path in _tracked_text_files():
        text = path.read_text(errors="replace")
        for marker in outside:
            assert marker not in text or path.name == "test_docs.py", f"{path}: cites {marker}"
        for page, anchor in _DOC_REFERENCE.findall(text):
            seen += 1
            assert page in headings, f"{path}: docs/{page} does not exist"
            assert not anchor or anchor in headings[page], f"{path}: docs/{page}#{anchor}"
    assert seen > 10  # the code does point to the docs


@pytest.mark.parametrize("picture", PICTURES, ids=lambda p: p.name)
def test_every_picture_is_well_formed_svg(picture: Picture) -> None:
    svg = render(picture)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}rect")) >= 4


def test_the_settings_table_lists_every_variable_the_daemon_reads() -> None:
    from hybrid_gateway.config import documented_settings
    from hybrid_gateway_contract import Env

    documented = {variable for variable, _flags, _meaning in documented_settings()}
    declared = {v for k, v in vars(Env).items() if k.isupper()}
    assert declared == documented
