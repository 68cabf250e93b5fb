"""The agent core stays sans-I/O and the agent's modules form no import circle.

- Importing `hotlink.agent.core` (every module in it) in a fresh interpreter must not
  load asyncio, websockets, grpc or opentelemetry (checked in `sys.modules`).
- No import circle among `hotlink.agent` modules, counting every import statement
  (also those under `if TYPE_CHECKING:` and inside functions): read from the source.
- No agent module over ~600 lines.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "agent"
FORBIDDEN = ("asyncio", "websockets", "grpc", "opentelemetry")


def test_core_imports_no_io_library() -> None:
    mods = sorted(p.stem for p in (AGENT / "core").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, json, sys\n"
        f"for m in {mods!r}: importlib.import_module('hotlink.agent.core.' + m)\n"
        f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == []
    assert "sender" in mods and "reader" in mods and "state" in mods


def _module_name(path: Path) -> str:
    rel = path.relative_to(AGENT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["hotlink", "agent", *parts])


def _imports(path: Path, name: str) -> set[str]:
    """Agent modules `path` imports (absolute and relative, anywhere in the file)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from . import x`
    return {m for m in found if m.startswith("hotlink.agent")}


def test_no_import_circle_among_agent_modules() -> None:
    files = {_module_name(p): p for p in AGENT.rglob("*.py")}
    graph = {
        name: {m for m in _imports(p, name) if m in files and m != name}
        for name, p in files.items()
    }
    # a package's __init__ is imported with any of its modules; it must import none
    # of them back (ours are docstrings only)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d) :], d]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert "hotlink.agent.sessions" in graph and "hotlink.agent.core.sender" in graph


def test_agent_modules_stay_small() -> None:
    sizes = {
        str(p.relative_to(AGENT)): len(p.read_text().splitlines()) for p in AGENT.rglob("*.py")
    }
    assert max(sizes.values()) <= 620, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
