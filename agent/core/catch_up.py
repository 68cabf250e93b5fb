"""A reader stream's catch-up through the relay's store, sans-I/O.

Before a reader accepts a (new) sid, on every link up, and when it asks again for
frames it refused, it pages through the relay's store (`FileSync`) from its cursor:
the fallback files of the stream come first, so hotlink frames never overtake the
files they follow. A page that gets no answer within `SYNC_TIMEOUT` is asked again
(`SYNC_RETRIES` times, the wait doubling each time) before the stream goes on without
it: a busy relay answers late, and going on early would skip the files the page would
have brought.

The cursor to persist (`safe_cursor`) only advances while the reader holds nothing
unconfirmed: after a restart it pages again from there, and the copies of frames
already delivered are dropped by seq.
"""

from __future__ import annotations

import logging

from hotlink.wire import messages as m

log = logging.getLogger("hotlink.agent.sessions")

#: a catch-up page that gets no answer in this time is asked again, the wait doubled,
#: `SYNC_RETRIES` times (5 + 10 + 20 s), then given up
SYNC_TIMEOUT = 5.0
SYNC_RETRIES = 2


class CatchUp:
    __slots__ = (
        "cursor",
        "due",
        "limit",
        "path",
        "retries",
        "running",
        "safe_cursor",
        "wait",
    )

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        #: page size: a larger file would not fit one WS message to us (path, keys)
        self.limit = limit
        #: position in the relay's store, and the last one safe to persist
        self.cursor: tuple[int, str] = (0, "")
        self.safe_cursor: tuple[int, str] = (0, "")
        self.running = False
        self.due: float | None = None
        #: the current page's wait and re-asks left
        self.wait = SYNC_TIMEOUT
        self.retries = SYNC_RETRIES

    def forget(self) -> None:
        """A new stream: from the start of the store."""
        self.cursor = self.safe_cursor = (0, "")
        self.running = False

    def begin(self, sid: str, now: float) -> m.FileSync:
        self.wait = SYNC_TIMEOUT
        self.retries = SYNC_RETRIES
        return self.ask(sid, now)

    def ask(self, sid: str, now: float) -> m.FileSync:
        """The page after the cursor (again, after a timeout: a late answer to the
        first ask is taken as well; its files are dropped by seq)."""
        self.running = True
        self.due = now + self.wait
        return m.FileSync(self.path, self.cursor[0], self.cursor[1], sid=sid, limit=self.limit)

    def timed_out(self) -> bool:
        """The page's answer is late: True to ask again (the wait doubled), False to
        go on without it."""
        self.due = None
        if self.retries <= 0:
            return False
        self.retries -= 1
        self.wait *= 2
        return True

    def late(self, link_up: bool, closed: bool) -> bool | None:
        """`due` passed: True to ask for the page again, False to go on without it
        (both logged), None when no catch-up runs any more."""
        if not self.running or closed:
            self.due = None
            return None
        if self.timed_out() and link_up:
            log.info(
                "session %s: no catch-up answer from the relay yet; asking again (%gs)",
                self.path,
                self.wait,
            )
            return True
        log.warning("session %s: no catch-up answer from the relay; going on without", self.path)
        return False

    def page_ended(self, msg: m.FileSync) -> bool:
        """A page's files came; True if there are more pages."""
        self.cursor = (msg.since, msg.after)
        return msg.more

    def finish(self) -> None:
        self.running = False
        self.due = None

    def persist(self, idle: bool) -> tuple[int, str]:
        """The cursor to record; `idle`: nothing is held unconfirmed, so it may advance."""
        if idle:
            self.safe_cursor = self.cursor
        return self.safe_cursor
