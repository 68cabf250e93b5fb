"""A reader's skipped seqs: which were owed (drops), and a few log lines, sans-I/O.

Why: the reorder buffer skips seqs in small steps (a frame too far ahead moves its
window by one seq; a gap timeout skips to the next held frame), and a log line per
step was a line per frame: thousands of WARNINGs in a second for one hole. Here the
skipped ranges are merged while they touch and logged at most once per `INTERVAL`
per session, with the counts; the ones that wait are logged by the timer (`due`).

Not every skipped seq was owed: a reader that joined a running stream and took stored
history as its start (`join.py`) may find a hole between that history and the live
stream. Seqs skipped below the first live frame (or before it came) are history the
store did not hold: one INFO line, not drops. Only the reader's slow path (a gap) and
its timer come here, never the in-order fast path.
"""

from __future__ import annotations

import logging
from typing import Any

from ..reorder import ReorderBuffer

log = logging.getLogger("hotlink.agent.sessions")

#: at most one line of each kind per session in this time
INTERVAL = 1.0
#: ranges named in one line (the rest are counted)
SHOWN = 4


class Ranges:
    """Skipped seq ranges waiting for their log line, merged while they touch."""

    __slots__ = ("due", "frames", "last", "ranges")

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.frames = 0
        self.last = -INTERVAL
        #: when the waiting ranges are to be logged (None: nothing waits)
        self.due: float | None = None

    def add(self, first: int, last: int) -> None:
        self.frames += last - first + 1
        ranges = self.ranges
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))

    def ready(self, now: float) -> bool:
        """True if a line is due now (`line`), else `due` says when."""
        if not self.ranges:
            self.due = None
            return False
        if now >= self.last + INTERVAL:
            return True
        self.due = self.last + INTERVAL
        return False

    def line(self, now: float) -> str:
        """What waits, as `seq a..b, ... (n frames)` (and forget it)."""
        ranges, n = self.ranges, self.frames
        self.ranges, self.frames, self.last, self.due = [], 0, now, None
        shown = ", ".join(f"{a}..{b}" for a, b in ranges[:SHOWN])
        if len(ranges) > SHOWN:
            shown += f" and {len(ranges) - SHOWN} more ranges"
        return f"seq {shown} ({n} frame{'s' if n != 1 else ''})"


class GapReport:
    __slots__ = ("history", "lost", "seen", "timeout")

    def __init__(self, timeout: float) -> None:
        #: the reorder timeout (named in the line)
        self.timeout = timeout
        #: the reorder buffer's `lost` already taken (it is not reset with a new stream)
        self.seen = 0
        #: owed seqs that never came (drops, WARNING)
        self.lost = Ranges()
        #: stored history that was not there (not owed, INFO)
        self.history = Ranges()

    @property
    def due(self) -> float | None:
        d = [x for x in (self.lost.due, self.history.due) if x is not None]
        return min(d, default=None)

    def take(self, ro: ReorderBuffer[Any], owed_from: int, who: str, now: float) -> int:
        """The seqs `ro` skipped since the last call; returns how many of them were
        owed (from seq `owed_from` on: the reader counts them as drops). Logged now or
        when `due` (`who` names the session)."""
        if ro.lost == self.seen:
            return 0
        self.seen = ro.lost
        owed = 0
        for first, last in ro.pop_gaps():
            if first < owed_from:
                self.history.add(first, min(last, owed_from - 1))
                first = owed_from
            if first <= last:
                self.lost.add(first, last)
                owed += last - first + 1
        self.flush(who, now)
        return owed

    def flush(self, who: str, now: float) -> None:
        """Log what is due (all that waits at `now` = inf, e.g. at shutdown)."""
        if self.lost.ready(now):
            log.warning(
                "%s: %s never arrived within %.1fs or the reorder window; skipped",
                who,
                self.lost.line(now),
                self.timeout,
            )
        if self.history.ready(now):
            log.info(
                "%s: %s before the live stream are not in the relay's store (TEE copies "
                "skipped, or sent by hotlink only); this reader, new to the stream, goes "
                "on without them",
                who,
                self.history.line(now),
            )
