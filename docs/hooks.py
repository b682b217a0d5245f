"""MkDocs hooks: pages that are generated from the code, so they cannot drift from it.

- `<!-- settings-table -->` in a page becomes the daemon's settings table, read from
  `hybrid_gateway.config.documented_settings()` (the same rows `hybrid-gateway run --help` shows).
- The pictures of `docs/pictures.py` are drawn as SVG into the site under `img/`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

sys.path.insert(0, str(Path(__file__).parent))

from pictures import PICTURES, render

SETTINGS_MARKER = "<!-- settings-table -->"


def settings_table() -> str:
    from hybrid_gateway.config import documented_settings

    rows = ["| env | flag | meaning |", "|---|---|---|"]
    for variable, flags, meaning in documented_settings():
        flag_text = ", ".join(f"`{flag}`" for flag in flags) or "none"
        cell = meaning.replace("|", "\\|")
        rows.append(f"| `{variable}` | {flag_text} | {cell} |")
    return "\n".join(rows)


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for picture in PICTURES:
        files.append(File.generated(config, f"img/{picture.name}", content=render(picture)))
    return files


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    return markdown
