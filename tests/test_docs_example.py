"""docs/design.md's example app runs as written against two real agents."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
A, B = "alice@example.org", "bob@example.org"


def example_source() -> str:
    text = (REPO / "docs" / "design.md").read_text()
    section = text[text.index("### Example app") :]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "no python block under '### Example app'"
    return m.group(1)


def test_design_md_has_the_frame_layout_and_api_sections() -> None:
    text = (REPO / "docs" / "design.md").read_text()
    assert "## HLNK frame layout" in text and '0       4     magic "HLNK"' in text
    for name in ("`Stream`", "`Frame(", "`AgentClient(", "ReconnectingStream"):
        assert name in text, name


def test_example_app(agent_factory, tmp_path: Path) -> None:
    alice = agent_factory(A, acl_read=[B])
    bob = agent_factory(B)
    app = tmp_path / "example.py"
    app.write_text(example_source())
    res = subprocess.run(
        [sys.executable, str(app), str(alice.root), str(bob.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    want = [f"{i} {A}/_mpc/example/{i:08d}.request share {i - 1}" for i in (1, 2, 3)]
    assert res.stdout.splitlines() == want, res.stdout
