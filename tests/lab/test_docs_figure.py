"""The failover timeline in the docs: a real drill's picture (`report.timeline_png`), committed
under docs/img/, shown on the lab page with the command that draws it again named beside it.
The drill itself runs only when someone runs that command, never here."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICTURE = "img/failover-timeline.png"


def test_the_docs_show_the_committed_failover_timeline_and_name_its_make_target() -> None:
    data = (ROOT / "docs" / PICTURE).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert (width, height) == (1320, 660)  # timeline_png: 2 panels, 12 x 6 in, 110 dpi
    subprocess.run(
        ["git", "ls-files", "--error-unmatch", f"docs/{PICTURE}"], cwd=ROOT, check=True,
        capture_output=True,
    )  # fmt: skip
    page = (ROOT / "docs" / "lab.md").read_text()
    shown = page.index(f"]({PICTURE})")
    assert "`make docs-figures`" in page[shown : shown + 800]
    dry_run = subprocess.run(
        ["make", "-n", "docs-figures"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "-m hybrid_gateway_testkit.lab --drill kill-leader" in dry_run.stdout
    assert f"timeline.png docs/{PICTURE}" in dry_run.stdout
