"""A reader stream's refused frames, and asking the sender for them again.

Why (design.md, "Refetch"): a frame no app can take is *refused*, not dropped: it is
not confirmed, so the sender keeps it, and once an app connects the stream asks for it
again (a catch-up, then a re-Accept with the delivered seq on the open leg, on which
the sender re-sends what it holds after it). This class holds that state and its
timing decisions; `ReaderStream` does the rest (the reorder, the catch-up, sending).

- re-Accepts go at most every `REFETCH_INTERVAL` (the relay rate-limits accepts);
- from the refetch's start until the re-send comes, hotlink frames ahead of the next
  expected seq were in flight before the re-send, which brings them again: they are
  dropped, not buffered (thousands would overflow the reorder window, which would skip
  the very seqs being re-sent). Frames at the next seq are delivered; one that a
  stalled path brings before the re-Accept went does not end the wait;
- a re-send that has not begun within `RESEND_WAIT` is asked for again, and frames
  ahead are reordered as usual from then on (what the sender no longer holds is a gap).
"""

from __future__ import annotations

import logging

log = logging.getLogger("hotlink.agent.sessions")

#: refetches ask the sender at most this often (the relay rate-limits accepts)
REFETCH_INTERVAL = 1.0
#: a refetch's re-send that has not begun in this time is asked for again
RESEND_WAIT = 2.0


class Refetch:
    __slots__ = ("asked_at", "awaiting_from", "due", "from_seq", "pending", "refused")

    def __init__(self) -> None:
        #: first seq refused because no app could take it (0: none refused)
        self.from_seq = 0
        #: frames refused so far (asked for again, not lost)
        self.refused = 0
        #: a re-Accept is due (after the refetch's catch-up)
        self.pending = False
        self.asked_at = -REFETCH_INTERVAL
        #: when to ask (a re-Accept too soon after the last) or to give up waiting
        self.due: float | None = None
        #: the seq the re-send starts at, while it has not come (0: none)
        self.awaiting_from = 0

    def refuse(self, seq: int, path: str, why: str) -> None:
        """Refuse `seq` and everything after it, until an app connects."""
        self.from_seq = seq
        self.refused += 1
        self.due = None
        log.warning(
            "session %s: %s; seq %d and later are left with the sender and asked for "
            "again when an app connects",
            path,
            why,
            seq,
        )

    def revise(self, was: int, first: int) -> bool:
        """The refusal started at `was`, but the lost app had every seq before `first`
        (its transport went on writing after the abort). True if that moved it (not
        once an app connected and the refetch started)."""
        if self.from_seq != was or first <= was:
            return False
        self.from_seq = first
        self.refused -= first - was
        return True

    def start(self, resume_at: int) -> None:
        """An app connected: the re-send will start at `resume_at`; a re-Accept is
        due once the catch-up ends."""
        self.from_seq = 0
        self.pending = True
        self.awaiting_from = resume_at

    def may_ask(self, now: float, expected: int | None = None) -> bool:
        """True: send the re-Accept now. False: too soon after the last one (`due`
        says when to ask). `expected`: the stream's next seq; frames delivered while
        the re-Accept waited moved it, and the re-send is awaited from there."""
        due = self.asked_at + REFETCH_INTERVAL
        if now < due:  # (not `now - asked_at`: rounded, a timer at `due` would re-arm)
            self.due = due
            return False
        self.pending = False
        self.asked_at = now
        if self.awaiting_from:
            self.due = now + RESEND_WAIT
            if expected is not None:
                self.awaiting_from = max(self.awaiting_from, expected)
        return True

    def in_flight_copy(self, seq: int, expected: int | None) -> bool:
        """While the re-send has not come: is this hotlink frame a copy it brings
        again (drop it)? The re-send has come once the stream is past its first seq
        after the re-Accept went: before it, a frame at the next seq is one a stalled
        path still carried, and frames ahead of it are still copies."""
        if expected is None or (expected > self.awaiting_from and not self.pending):
            self.awaiting_from = 0  # the re-send has come
            return False
        if seq > expected:
            self.refused += 1
            return True
        return False

    def overdue(self, expected: int | None) -> bool:
        """`RESEND_WAIT` passed: stop waiting; True if the re-send never began (ask
        again)."""
        waited, self.awaiting_from = self.awaiting_from, 0
        return expected is not None and expected <= waited
