"""The relay's periodic upkeep: sessions idle too long, readers that stalled.

A mixin of `Router`. The adapter calls `expire(now)` from its tick (never per frame);
it is also where the router's coarse clock `now` is refreshed for the data path.
Like the router this is sans-I/O: a clock value in, `Outgoing` out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hotlink.wire.messages import REASON_IDLE, HotlinkClose

from .connection import Conn, Outgoing
from .reader_guard import REASON_STALLED

if TYPE_CHECKING:
    from .router import Limits
    from .session import Session
    from .sid_guard import SidRegistry

log = logging.getLogger("hotlink.relay.router")


class UpkeepRoutes:
    """`expire` for `Router` (which provides the attributes)."""

    conns: dict[int, Conn]
    sessions: dict[str, Session]
    limits: Limits
    sids: SidRegistry
    now: float

    def _end(self, s: Session, reason: str, *, notify_sender: bool) -> list[Outgoing]:
        raise NotImplementedError  # provided by Router

    def expire(self, now: float) -> list[Outgoing]:
        """Periodic tick: refresh the coarse clock and close sessions idle for longer
        than `idle_timeout` (Close "idle timeout" to the sender and every reader)."""
        self.now = now
        self.sids.expire(now)
        out = self._drop_stalled(now)
        idle = self.limits.idle_timeout
        if idle <= 0:
            return out
        cutoff = now - idle
        for s in [s for s in self.sessions.values() if s.last_activity < cutoff]:
            log.info("session %s of %s closed: idle for %.0f s", s.sid, s.sender, idle)
            out += self._end(s, REASON_IDLE, notify_sender=True)
        return out

    def _drop_stalled(self, now: float) -> list[Outgoing]:
        """Drop readers that hold the sender's window without confirming anything
        (reader_guard.py): both sides hear "reader stalled"."""
        timeout = self.limits.reader_stall_timeout
        out: list[Outgoing] = []
        if timeout <= 0:
            return out
        cutoff = now - timeout
        for s in self.sessions.values():
            if not s.acked or not s.readers:
                continue
            users = set(s.readers.values())
            for user in s.guard.stalled(users, s.acked, s.last_seq, cutoff):
                log.warning(
                    "session %s: reader %s confirmed nothing past seq %d for %gs while the "
                    "sender is at %d; dropped",
                    s.sid,
                    user,
                    s.acked[user],
                    timeout,
                    s.last_seq,
                )
                why = f"{REASON_STALLED}: no progress for {timeout:g}s"
                for cid in [c for c, u in s.readers.items() if u == user]:
                    del s.readers[cid]
                    c = self.conns.get(cid)
                    if c is not None:
                        c.reading.discard(s.sid)
                    out.append(Outgoing(cid, HotlinkClose(s.sid, why)))
                s.acked.pop(user, None)
                s.set_readers()
                out.append(Outgoing(s.sender_conn, HotlinkClose(s.sid, REASON_STALLED, user)))
        return out
