"""The relay's signal route: `HotlinkSignal` (type 14) between a session's members.

A mixin of `Router`. The direct path between two agents is negotiated over the relay
(docs/design.md "Direct path signalling"): the relay's authenticated channel is what
binds the key material the agents exchange to the session and to both identities.
So the relay passes a signal only

- for a live session,
- from its sender connection to a connection that *accepted* it as a reader (named
  by `to`, the reader's email), or from such a reader to the sender connection,
- with `frm` set to the authenticated user of the signalling connection and `obs`
  to the IP address the relay saw it connect from (whatever the client wrote there
  is replaced: the relay trusts nothing a client says about who it is),
- and our own kinds (`hotlink.direct.*`) only to a connection that announced the
  `direct` extension (`extensions.for_peer` strips the rest for the others).

Every refusal is an `Error` to the signaller, so its agent stops negotiating and the
session stays on the relay instead of waiting for an answer that will not come.
Like the router this is sans-I/O: messages in, `Outgoing` out.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from hotlink.wire.extensions import DIRECT, DIRECT_KIND_PREFIX
from hotlink.wire.messages import Error, HotlinkSignal

from .connection import Conn, Outgoing

if TYPE_CHECKING:
    from .acl import AclIndex
    from .session import Session

log = logging.getLogger("hotlink.relay.router")

BAD_REQUEST = 400
FORBIDDEN = 403
NOT_FOUND = 404

#: bounds of what one signal may carry (an offer holds a key and a few candidates)
MAX_KIND = 64
MAX_ADDRS = 16
MAX_ADDR = 256
MAX_TOKEN = 1024
MAX_ERROR = 512


class SignalRoutes:
    """HotlinkSignal handling for `Router` (which provides the attributes)."""

    acl: AclIndex
    conns: dict[int, Conn]
    sessions: dict[str, Session]
    now: float

    def _recheck(self, s: Session) -> list[Outgoing]:  # provided by Router
        raise NotImplementedError

    def _signal(self, conn: Conn, m: HotlinkSignal) -> list[Outgoing]:
        bad = _bad_signal(m)
        if bad:
            return [Outgoing(conn.id, Error(BAD_REQUEST, "", f"bad signal: {bad}"))]
        s = self.sessions.get(m.sid)
        if s is None:
            return [Outgoing(conn.id, Error(NOT_FOUND, "", f"signal: unknown session {m.sid!r}"))]
        out: list[Outgoing] = []
        if s.gen != self.acl.generation:  # an ACL change may have dropped a member
            out = self._recheck(s)
            if self.sessions.get(s.sid) is not s:
                return out
        if conn.id == s.sender_conn:
            target = next((c for c, u in s.readers.items() if u == m.to), None)
            if target is None:
                return [
                    *out,
                    Outgoing(
                        conn.id,
                        Error(NOT_FOUND, s.path, f"signal: {m.to!r} is no reader of {s.sid!r}"),
                    ),
                ]
            to = m.to
        elif conn.id in s.readers:
            target, to = s.sender_conn, s.sender
        else:
            log.info("conn %d (%s): signal for session %s it is not in", conn.id, conn.user, s.sid)
            return [
                *out,
                Outgoing(conn.id, Error(FORBIDDEN, s.path, f"signal: not in session {s.sid!r}")),
            ]
        peer = self.conns.get(target)
        if peer is None:  # the sender's connection went; its sessions end with it
            return [*out, Outgoing(conn.id, Error(NOT_FOUND, s.path, "signal: peer not connected"))]
        if m.kind.startswith(DIRECT_KIND_PREFIX) and DIRECT not in peer.ext:
            return [
                *out,
                Outgoing(
                    conn.id,
                    Error(NOT_FOUND, s.path, f"signal: {to} does not speak {DIRECT!r}"),
                ),
            ]
        s.last_activity = self.now
        fwd = replace(m, frm=conn.user, to=to, obs=conn.addr)
        return [*out, Outgoing(target, fwd)]


def _bad_signal(m: HotlinkSignal) -> str:
    """Why a signal is malformed ("" when it is fine): bounded sizes only, the
    contents are for the agents to judge."""
    if not m.sid:
        return "no session id"
    if not m.kind or len(m.kind) > MAX_KIND:
        return "bad kind"
    addrs = m.addrs or ()
    if len(addrs) > MAX_ADDRS or any(len(a) > MAX_ADDR for a in addrs):
        return f"at most {MAX_ADDRS} addresses of at most {MAX_ADDR} characters"
    if len(m.token) > MAX_TOKEN or len(m.error) > MAX_ERROR:
        return "token or error too long"
    return ""
