"""Every module is listed in its package's index (`__init__` docstring) and in the
package table of docs/design.md, so neither index silently leaves one out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wire", "common", "relay", "agent", "ctl", "telemetry")


def _modules(folder: Path) -> list[str]:
    names = [p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
    names += [p.parent.name for p in folder.glob("*/__init__.py")]
    return sorted(n for n in names if not n.startswith("_"))


def _design_row(folder: str) -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    m = re.search(rf"^\| `{folder}/` \|.*$", text, re.MULTILINE)
    assert m, f"docs/design.md has no package table row for {folder}/"
    return m.group(0)


@pytest.mark.parametrize("folder", PACKAGES)
def test_init_docstring_lists_every_module(folder: str) -> None:
    init = ROOT / folder / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    missing = [n for n in _modules(ROOT / folder) if f"`{n}`" not in doc]
    assert not missing, f"{init.relative_to(ROOT)} does not list {missing}"


@pytest.mark.parametrize("folder", PACKAGES)
def test_design_table_lists_every_module(folder: str) -> None:
    row = _design_row(folder)
    missing = [n for n in _modules(ROOT / folder) if f"`{n}`" not in row]
    assert not missing, f"docs/design.md's {folder}/ row does not list {missing}"
