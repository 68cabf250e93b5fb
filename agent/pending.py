"""Why a session is PENDING, in words a user can act on.

A pending session is waiting for something it cannot see: a reader's agent is not
told about a session until the sender has opened it *and* the relay finds the reader
in the sender's ACL (telling it earlier would leak who shares what), and a sender
waits for the relay's verdict or for the link. The session manager records the reason
it knows (`Session.reason`: link down, a transient reject, an idle close); this module
fills in the rest at the moment a client asks, so the answer is current (a reason
recorded while the link was down is not shown once it is back up).
"""

from __future__ import annotations

import shlex
from typing import Protocol

from hotlink.wire.paths import split_owner

#: what `SessionManager.on_link_down` records; stale once the link is back
LINK_DOWN = "link down"


class _Session(Protocol):
    path: str
    reason: str

    @property
    def is_sender(self) -> bool: ...


def pending_reason(
    s: _Session, link_up: bool, link_state: str, last_error: str, me: str = ""
) -> str:
    """The reason to show for a PENDING session of this agent's user `me` (named in
    the grant it suggests; "YOUR@EMAIL" when not given)."""
    if not link_up:
        why = f"relay link is {link_state.lower()}"
        if last_error:
            why += f" ({last_error})"
        return why + "; the session goes live when the link is back"
    if s.reason and s.reason != LINK_DOWN:
        return s.reason
    owner, rest = split_owner(s.path)
    if s.is_sender:
        return "waiting for the relay's verdict on the open"
    return (
        f"waiting for {owner}'s open: the relay offers {s.path} once {owner} has opened it "
        f"(not --to another reader) and granted you read access (on {owner}'s agent: "
        f"hotlinkctl acl grant {shlex.quote(rest)} {me or 'YOUR@EMAIL'} --read)"
    )
