"""Progress of `hotlinkctl bench` on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A single updating line on a tty; one line per run otherwise. Always on stderr."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.out = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.out.isatty()
        self.label = ""
        self.total = 0
        self._last = 0.0

    def start(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        if not self.enabled:
            return
        if self.tty:
            self._draw(0)
        else:
            print(f"bench: {label} ({total} messages)", file=self.out, flush=True)

    def update(self, done: int) -> None:
        if self.enabled and self.tty:
            now = time.monotonic()
            if now - self._last > 0.1 or done == self.total:
                self._last = now
                self._draw(done)

    def _draw(self, done: int) -> None:
        pct = 100 * done // self.total if self.total else 100
        print(f"\r\x1b[2K{self.label}: {done}/{self.total} ({pct}%)", end="", file=self.out)
        self.out.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            print(f"\r\x1b[2K{text}", file=self.out, flush=True)
        else:
            print(f"bench: {text}", file=self.out, flush=True)

    def finish(self) -> None:
        if self.enabled and self.tty:
            print("\r\x1b[2K", end="", file=self.out, flush=True)
