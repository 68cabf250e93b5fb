"""The per-message modules that installs compile with mypyc, and whether they are.

`setup.py` compiles these modules (C extensions next to the .py files) when mypyc and a
C compiler work; the .py source stays the reference and the fallback. Every frame
crosses them in each of the three processes, where the interpreter's per-operation
cost is most of what separates the relay path from the floor (docs/performance.md).

A compiled module carries the digest of the source it was built from, so a source
edited after an editable install is reported as stale instead of the old compiled
code running silently. This module has no imports of the package: setup.py loads it
from its file before anything is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

#: compiled when the install can; each must type-check under mypy (`setup.py` runs it)
HOT_MODULES = (
    "hotlink.wire.envelope",
    "hotlink.wire.frames",
    "hotlink.agent.reorder",
    "hotlink.agent.core.reader_state",
    "hotlink.agent.core.reader",
    "hotlink.relay.session",
    "hotlink.relay.lanes",
    "hotlink.relay.router",
)
#: module attribute holding the digest of the source a compiled module was built from
DIGEST_ATTR = "__hotlink_source_digest__"
#: name of the shared library holding the compiled code (mypyc "group")
GROUP = "hotlink.common.hot"


def source_digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class HotStatus:
    compiled: tuple[str, ...]
    pure: tuple[str, ...]
    #: compiled from a source that has changed since (an editable install, edited)
    stale: tuple[str, ...]

    def summary(self) -> str:
        total = len(self.compiled) + len(self.pure)
        if self.stale:
            return (
                f"STALE compiled modules ({', '.join(self.stale)}): their .py changed "
                "after the install; run `pip install -e .` again (HOTLINK_COMPILE=0: plain Python)"
            )
        if not self.compiled:
            return "pure Python (no compiled hot modules)"
        if self.pure:
            pure = ", ".join(self.pure)
            return f"compiled {len(self.compiled)} of {total} hot modules (pure: {pure})"
        return f"compiled (mypyc): {total} hot modules"


def status(loaded_only: bool = False) -> HotStatus:
    """Which hot modules run compiled, which as Python, which are stale (with
    `loaded_only`, among those this process has imported: a process reports on its
    own hot path without importing the others')."""
    compiled: list[str] = []
    pure: list[str] = []
    stale: list[str] = []
    for name in HOT_MODULES:
        mod = sys.modules.get(name) if loaded_only else importlib.import_module(name)
        if mod is None:
            continue
        path = Path(getattr(mod, "__file__", "") or "")
        if not any(path.name.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES):
            pure.append(name)
            continue
        compiled.append(name)
        source = path.with_name(name.rsplit(".", 1)[1] + ".py")
        if source.is_file() and source_digest(source.read_bytes()) != getattr(mod, DIGEST_ATTR, ""):
            stale.append(name)
    return HotStatus(tuple(compiled), tuple(pure), tuple(stale))


def log_status(log: logging.Logger) -> None:
    """One start-up line: figures from a process are read knowing which code ran."""
    st = status(loaded_only=True)
    if st.stale:
        log.warning("hot path: %s", st.summary())
    else:
        log.info("hot path: %s", st.summary())
