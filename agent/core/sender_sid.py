"""A sender whose session id was taken: it goes on under a new one.

A relay that refuses our (re-)open with "session id in use" has another user's
session under our sid (e.g. a reader opened one while our agent was away and the
relay no longer reserved the sid for us: after a relay restart, or past its
`--sid-grace`). Staying REJECTED would end the stream for good, so the stream takes
a new sid from the adapter's `new_sid` (randomness stays out of the core),
re-labels the frames it still holds (seqs unchanged) and opens again; readers see a
new stream and follow it. At most `MAX_SID_CHANGES` in a row without the relay
accepting one, then the reject is final. A mixin of `sender.SenderStream`.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import replace

from hotlink.wire import messages as m

from .effects import Effect, Emit, EventType, SidChanged
from .sender_fields import SenderFields
from .state import Trigger

log = logging.getLogger("hotlink.agent.sessions")

#: new sids tried in a row after "session id in use" before giving up
MAX_SID_CHANGES = 3


class SidRecovery(SenderFields):
    """Session-id change of a sender stream (see the module docstring)."""

    def _open(self, out: list[Effect]) -> None:  # provided by SenderStream
        raise NotImplementedError

    def reevaluate(self, why: str = "") -> list[Effect]:  # provided by SenderStream
        raise NotImplementedError

    def _change_sid(self) -> list[Effect]:
        """Our sid is another user's session on the relay: go on under a new one."""
        assert self.new_sid is not None
        old, new = self.sid, self.new_sid()
        self.sid_changes += 1
        self.sid = new
        self.pending = deque(replace(d, sid=new) for d in self.pending)
        self.recent = deque(replace(d, sid=new) for d in self.recent)
        self.machine.fire(Trigger.REOPEN, f"session id {old} in use; re-opened as {new}")
        self.readers = frozenset()
        self.reader_acks.clear()
        log.warning(
            "session %s: the relay says session id %s is in use by someone else; "
            "going on as %s (seq %d onwards)",
            self.path,
            old,
            new,
            self.seq + 1,
        )
        out: list[Effect] = [
            SidChanged(old, new),
            Emit(EventType.REJECTED, "", m.REASON_SESSION_IN_USE),
        ]
        if self.link_up:
            self._open(out)
        out += self.reevaluate(m.REASON_SESSION_IN_USE)
        return out
