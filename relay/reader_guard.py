"""What one reader may cost a session's sender and its other readers.

A reader that confirms delivery (`HotlinkProgress`, `HotlinkAccept.seq`) holds the
sender's re-send window: the sender keeps every frame until each confirming reader
has it, and stops reading its app when the window is full. Two abuses follow, both
by a reader that is allowed to read:

- **Stalling.** Accept with a seq, then never confirm again: the sender's app is
  back-pressured, and every other reader with it, for as long as the reader stays.
  A reader that is behind the session's last frame and has not advanced its
  confirmed seq for `stall_timeout` seconds is dropped from the session (the sender
  hears `Close(sid, "reader stalled", frm=reader)` and forgets it, the reader hears
  a Close with the same reason) and its later accepts of that session are refused.
- **Amplifying.** Each `Accept(seq=0)` makes the sender re-send everything it holds
  after seq 0 (up to its whole window, e.g. 64 MiB). A resume below what the reader
  already confirmed is honoured once per `RESUME_COOLDOWN` per reader (a restarted
  agent whose state file lags its last report needs one); otherwise the Accept is
  passed on with the confirmed seq instead. Accepts themselves are rate-limited per
  reader and session (`ACCEPT_RATE`, `ACCEPT_BURST`): beyond that, Reject
  "rate limited" (the leg it had stays).

Sans-I/O: time comes in as arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hotlink.wire.messages import REASON_RATE_LIMITED

log = logging.getLogger("hotlink.relay.router")

REASON_STALLED = "reader stalled"
#: accepts of one session by one reader: refill per second and bucket size
ACCEPT_RATE = 2.0
ACCEPT_BURST = 20
#: a resume below the reader's confirmed seq is honoured at most once in this time
RESUME_COOLDOWN = 60.0


@dataclass(slots=True)
class ReaderLeg:
    """One reader user's standing in one session (over all its connections)."""

    tokens: float = float(ACCEPT_BURST)
    refilled: float = 0.0
    #: when the confirmed seq last advanced (or the reader (re-)accepted)
    progress_at: float = 0.0
    #: when a resume below the confirmed seq was last honoured (None: never)
    resumed_at: float | None = None
    #: dropped for stalling: its accepts of this session are refused
    banned: bool = False
    #: highest seq it ever confirmed (a resume below it is a regression)
    high: int = -1


class ReaderGuard:
    """Per-session reader bookkeeping; `Router` holds one per session."""

    __slots__ = ("legs",)

    def __init__(self) -> None:
        self.legs: dict[str, ReaderLeg] = {}

    def accept(self, sid: str, user: str, seq: int | None, now: float) -> tuple[str, int | None]:
        """An Accept by `user`: (refusal reason or "", the seq to pass on)."""
        leg = self.legs.get(user)
        if leg is None:
            leg = self.legs[user] = ReaderLeg(refilled=now)
        if leg.banned:
            return REASON_STALLED, None
        leg.tokens = min(float(ACCEPT_BURST), leg.tokens + (now - leg.refilled) * ACCEPT_RATE)
        leg.refilled = now
        if leg.tokens < 1.0:
            log.info("session %s: accept by %s refused, over %g/s", sid, user, ACCEPT_RATE)
            return REASON_RATE_LIMITED, None
        leg.tokens -= 1.0
        leg.progress_at = now
        confirmed = leg.high
        if seq is not None and seq < confirmed:
            if leg.resumed_at is None or now - leg.resumed_at >= RESUME_COOLDOWN:
                leg.resumed_at = now
                log.info(
                    "session %s: %s resumes at %d below its confirmed %d", sid, user, seq, confirmed
                )
            else:
                log.warning(
                    "session %s: %s asked again within %gs to resume at %d below its confirmed "
                    "%d; passed on as %d",
                    sid,
                    user,
                    RESUME_COOLDOWN,
                    seq,
                    confirmed,
                    confirmed,
                )
                seq = confirmed
        if seq is not None and seq > leg.high:
            leg.high = seq
        return "", seq

    def progressed(self, user: str, seq: int, now: float) -> None:
        leg = self.legs.get(user)
        if leg is not None:
            leg.progress_at = now
            if seq > leg.high:
                leg.high = seq

    def stalled(
        self, readers: set[str], confirmed: dict[str, int], last_seq: int, cutoff: float
    ) -> list[str]:
        """Readers behind `last_seq` whose confirmed seq has not advanced since `cutoff`
        (readers that never confirm, e.g. reference clients, are not judged)."""
        out = []
        for user in readers:
            seq = confirmed.get(user)
            leg = self.legs.get(user)
            if seq is None or leg is None or seq >= last_seq or leg.progress_at > cutoff:
                continue
            leg.banned = True
            out.append(user)
        return out
