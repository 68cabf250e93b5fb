"""An agent-wide bound on bytes held in user space for reader apps.

Each reader app connection's queue (`ipc.AppConnection`) and each session's no-app
backlog have their own byte bound (`--reader-queue-bytes`), but with many sessions
those bounds add up: a thousand sessions with slow readers could hold a thousand times
the per-session bound. One `ByteBudget` shared by all of them caps the sum
(`--reader-total-bytes`); past it, the queue that would grow is treated exactly as if
its own bound were reached (slow app disconnected, the frame for an absent app
refused and asked for again later: `core/reader.py`, "Refetch"), so memory stays
bounded however many sessions are open.
"""

from __future__ import annotations

import sys


class ByteBudget:
    """`take(n)` reserves n bytes if the total stays within `limit`; `give(n)` returns
    them. Plain counters: the data path pays two integer operations."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int = sys.maxsize) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n
