"""`hotlink.wire` is the pure codec: importing every module of it pulls in no network,
event-loop, RPC or tracing library (those belong to the adapters)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("websockets", "asyncio", "grpc", "opentelemetry", "socket", "watchfiles")

CHECK = f"""
import importlib, pkgutil, sys
import hotlink.wire as w
mods = [m.name for m in pkgutil.iter_modules(w.__path__)]
assert "frames" in mods and "envelope" in mods, mods
for m in mods:
    importlib.import_module("hotlink.wire." + m)
bad = sorted(k for k in sys.modules if k.split(".")[0] in {FORBIDDEN!r})
print(" ".join(bad))
"""


def test_wire_imports_no_io_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == []
