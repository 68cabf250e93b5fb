"""Data frames forwarded without being decoded: a lane per sending connection.

The relay sends a data frame's own bytes on; it decodes the frame only to learn its
session. That decode builds an envelope, a message, four strings and a view per frame,
and with one message in flight, where each process of the chain wakes with cold
caches, building them costs the relay about as much as everything else it does per
frame beyond the floor's forwarding (docs/performance.md, "This stop (38)").

`Lanes` remembers, per sending connection, the sessions with an ASCII path its last
frames were forwarded on (at most `MAX_LANES`). A frame that `scan_data` takes, whose
sid bytes are one of those sessions', whose path is that session's, a file directly in
it with a printable ASCII name (`00000001.request`) or none, and whose other strings
are ASCII, is matched from its offsets alone: the session's readers are returned and
the frame goes to them as it came. Everything else (a first frame, a path deeper below
the session's, a non-ASCII id, name or etag, a session whose path is not ASCII, an ACL
change, a session that ended or changed connection) gets None and takes the decoding
path, `Router.handle`, which applies every rule; `Router.forward` then opens the lane
for the next frame.
"""

from __future__ import annotations

from hotlink.wire.envelope import scan_data
from hotlink.wire.paths import MAX_PATH

from .session import Session

#: sessions remembered per sending connection (an MPC party sends to a few peers)
MAX_LANES = 8


class Lanes:
    def __init__(self) -> None:
        self.by_conn: dict[int, list[Session]] = {}

    def remember(self, conn_id: int, s: Session) -> None:
        """`s` forwarded a frame of `conn_id` by every rule: match its next ones here.
        Not a session whose path is not ASCII: a lane passes on a frame's path unread
        where it is the session's, so it checks the session's path once, here."""
        if not s.prefix_bytes.isascii():
            return
        lane = self.by_conn.get(conn_id)
        if lane is None:
            self.by_conn[conn_id] = [s]
        elif s not in lane:
            if len(lane) >= MAX_LANES:
                del lane[0]
            lane.append(s)

    def forget(self, s: Session) -> None:
        """`s` ended."""
        lane = self.by_conn.get(s.sender_conn)
        if lane is not None and s in lane:
            lane.remove(s)

    def forget_conn(self, conn_id: int) -> None:
        """The connection is gone."""
        self.by_conn.pop(conn_id, None)

    def match(
        self, conn_id: int, frame: bytes, generation: int, now: float
    ) -> tuple[int, ...] | None:
        """The readers of data `frame` from `conn_id` when its lane holds the frame's
        session (ACL `generation` unchanged since the session's last check), else None.
        Updates the session as `Router.forward` does."""
        lane = self.by_conn.get(conn_id)
        if not lane:
            return None
        m0, m1, t0, t1, s0, s1, seq, h0, h1, e0, e1, _p0, _p1 = scan_data(frame)
        if m0 < 0:
            return None
        s = _session_of(lane, frame, s0, s1)
        if s is None or s.sender_conn != conn_id or s.gen != generation:
            return None
        if h1 != h0 and not _in_session(frame, h0, h1, s):
            return None
        # the id, traceparent and etag go on unread too: ASCII, they are valid UTF-8
        if not (_ascii(frame, m0, m1) and _ascii(frame, t0, t1) and _ascii(frame, e0, e1)):
            return None
        s.last_activity = now
        if seq > s.last_seq:
            s.last_seq = seq
        return s.deliver


def _session_of(lane: list[Session], frame: bytes, start: int, end: int) -> Session | None:
    n = end - start
    for s in lane:
        want = s.sid_bytes
        if len(want) == n and _starts(frame, start, want, n):
            return s
    return None


def _starts(frame: bytes, start: int, want: bytes, n: int) -> bool:
    """Are the `n` bytes of `frame` at `start` the first `n` of `want`? (In place:
    compiled, neither a slice nor a generator is allocated.)"""
    for i in range(n):  # noqa: SIM110 (a loop: no generator)
        if frame[start + i] != want[i]:
            return False
    return True


def _ascii(frame: bytes, start: int, end: int) -> bool:
    """Are the bytes of `frame` in [start, end) all ASCII? (Empty when absent: -1, -1.)"""
    for i in range(start, end):  # noqa: SIM110 (a loop: no generator)
        if frame[i] >= 0x80:
            return False
    return True


def _in_session(frame: bytes, start: int, end: int, s: Session) -> bool:
    """Is the path at `frame[start:end]` session `s`'s own, or one file directly in it
    whose name is printable ASCII (`00000001.request`)? A strict subset of what
    `Router.forward` accepts (`_below`: any valid path under the session): a deeper or
    non-ASCII path is not matched here and takes the decoding path."""
    prefix = s.prefix_bytes
    n = len(prefix) - 1  # the session's path: the prefix without its "/"
    size = end - start
    if size == n:
        return _starts(frame, start, prefix, n)
    name = size - n - 1
    if name < 1 or len(s.prefix) + name > MAX_PATH or not _starts(frame, start, prefix, n + 1):
        return False
    first = start + n + 1
    if frame[first] == 0x2E and (name == 1 or (name == 2 and frame[first + 1] == 0x2E)):
        return False  # "." or ".."
    for i in range(first, end):
        c = frame[i]
        if c < 0x20 or c > 0x7E or c == 0x2F or c == 0x5C:  # control, non-ASCII, / or \
            return False
    return True
