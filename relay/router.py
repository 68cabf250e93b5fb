"""The relay's sans-I/O brain: connections, sessions, ACL checks and file writes.

`Router` takes events (a connection came, went, or sent a decoded message) and returns
the messages to send as `Outgoing(conn, msg, traceparent)`. It never touches sockets,
so every protocol rule is unit-testable; the asyncio adapter (`server.py`) only moves
bytes.

Hot path (`HotlinkData`, `forward`): one dict lookup, an identity check of the sender
connection, one integer compare of the ACL generation, the path check, one attribute
store of the coarse clock (idle tracking); it returns the accepted readers'
connections, to which the adapter sends the frame's own bytes. ACL files are evaluated
only when the generation changed.

Limits (`Limits`, docs/reliability.md): live sessions per user, an open-rate token
bucket per connection, and an idle timeout applied by `expire(now)` (`upkeep_routes`),
which the adapter calls periodically. Time enters only through `clock` (non-hot paths)
and `expire(now)`; the data path reads `self.now`, a clock value refreshed by those
calls.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hotlink.common.version import VERSION as HOTLINK_VERSION
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import FrameTooLarge, ProtocolError
from hotlink.wire.extensions import ACKS, ALL, STARTS
from hotlink.wire.messages import (
    REASON_PERMISSION_DENIED,
    REASON_RATE_LIMITED,
    REASON_READER_GONE,
    REASON_SENDER_GONE,
    REASON_SESSION_IN_USE,
    REASON_TOO_MANY_SESSIONS,
    REASON_UNKNOWN_SESSION,
    Ack,
    Error,
    FileDelete,
    FileSync,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
    HotlinkSignal,
    Nack,
    System,
)
from hotlink.wire.paths import (
    MAX_PATH,
    session_path,
    validate_email,
    validate_path,
    validate_session_path,
)

from .acl import Access, AclIndex
from .connection import Conn, Outgoing
from .file_routes import BAD_REQUEST, FileRoutes
from .lanes import Lanes
from .session import Session
from .sid_guard import DEFAULT_GRACE, SidRegistry
from .signal_routes import SignalRoutes
from .store import Store
from .upkeep_routes import UpkeepRoutes
from .writers import WriterLedger

log = logging.getLogger(__name__)

VERSION = f"hotlink-relay/{HOTLINK_VERSION}"
MAX_SID = 128

# Error codes (design.md "Errors to a client").
FORBIDDEN = 403
NOT_FOUND = 404
TOO_LARGE = 413

#: A valid path below a session's (already validated) path, matched from just after
#: its `prefix`: what `validate_path` accepts there, as one compiled match (it runs on
#: every data frame): non-empty segments, none `.` or `..`, no `/` at either end, no
#: backslash, NUL or control character. The length limit is checked apart.
_SEGMENT = r"(?!\.\.?(?:/|\Z))[^/\\\x00-\x1f\x7f]+"
_TAIL = re.compile(f"{_SEGMENT}(?:/{_SEGMENT})*")


def _below(s: Session, pth: str) -> bool:
    """Is `pth` a valid path below session `s`'s own?"""
    return (
        pth.startswith(s.prefix)
        and len(pth) <= MAX_PATH
        and bool(_TAIL.fullmatch(pth, len(s.prefix)))
    )


#: Message types a client may send that need no answer.
_IGNORED = frozenset({System.TYP, Ack.TYP, Nack.TYP, Error.TYP})


@dataclass(slots=True, frozen=True)
class Limits:
    """Per-user and per-connection limits; 0 disables a limit."""

    #: live sessions one user may send at once (over it: Reject "too many sessions")
    max_sessions_per_user: int = 256
    #: token bucket of opens per connection: refill rate (per second) and burst size
    open_rate: float = 100.0
    open_burst: int = 200
    #: seconds without data or control on a session before `expire` closes it
    idle_timeout: float = 600.0
    #: a confirming reader behind the last frame whose confirmed seq did not advance
    #: for this long is dropped from the session (reader_guard.py)
    reader_stall_timeout: float = 30.0
    #: seconds an ended session's id stays reserved for its sender (sid_guard.py)
    sid_grace: float = DEFAULT_GRACE


class Router(FileRoutes, SignalRoutes, UpkeepRoutes):
    """All relay state and rules; see design.md "Relay protocol decisions"."""

    def __init__(
        self,
        acl: AclIndex,
        store: Store,
        version: str = VERSION,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        writers: WriterLedger | None = None,
    ) -> None:
        self.acl = acl
        self.store = store
        self.version = version
        self.limits = limits or Limits()
        self.clock = clock
        #: coarse clock for idle tracking; refreshed by non-hot paths and `expire`
        self.now = clock()
        self.conns: dict[int, Conn] = {}
        self.by_user: dict[str, set[int]] = {}
        self.sessions: dict[str, Session] = {}
        #: live sessions per sending user (for `max_sessions_per_user`)
        self.sending_count: dict[str, int] = {}
        #: live sessions' folders and ended sessions' reserved ids
        self.sids = SidRegistry(self.limits.sid_grace)
        #: who wrote each stored fallback file (stamped on the copies passed on)
        self.writers = writers if writers is not None else WriterLedger()
        #: per sending connection, the sessions its frames can be matched to undecoded
        self.lanes = Lanes()

    # ----------------------------------------------------------------- connections

    def connect(
        self, conn_id: int, user: str, ext: frozenset[str] = ALL, addr: str = ""
    ) -> list[Outgoing]:
        """A connection authenticated as `user` (announcing the extensions `ext`, seen
        from IP `addr`): greet it and offer every live session it may read."""
        if conn_id in self.conns:
            raise ValueError(f"connection {conn_id} already registered")
        self.now = self.clock()
        conn = Conn(
            conn_id, user, tokens=float(self.limits.open_burst), refilled=self.now, ext=ext,
            addr=addr,
        )  # fmt: skip
        self.conns[conn_id] = conn
        self.by_user.setdefault(user, set()).add(conn_id)
        out = [Outgoing(conn_id, System(self.version, "ok"))]
        for s in self.sessions.values():
            if self._may_offer(s, user):
                out.append(self._offer(s, conn))
        return out

    def disconnect(self, conn_id: int) -> list[Outgoing]:
        """A connection is gone: end the sessions it sent, drop its reader legs."""
        conn = self.conns.pop(conn_id, None)
        if conn is None:
            return []
        self.lanes.forget_conn(conn_id)
        users = self.by_user.get(conn.user)
        if users is not None:
            users.discard(conn_id)
            if not users:
                del self.by_user[conn.user]
        out: list[Outgoing] = []
        for sid in list(conn.sending):
            s = self.sessions.get(sid)
            if s is not None and s.sender_conn == conn_id:
                out += self._end(s, REASON_SENDER_GONE, notify_sender=False)
        for sid in conn.reading:
            s = self.sessions.get(sid)
            if s is not None and s.readers.pop(conn_id, None) is not None:
                s.set_readers()
                if conn.user not in s.readers.values():  # no other leg of that user
                    out.append(
                        Outgoing(s.sender_conn, HotlinkClose(sid, REASON_READER_GONE, conn.user))
                    )
        for sid in conn.offered:
            s = self.sessions.get(sid)
            if s is not None:
                s.offered.discard(conn_id)
        return out

    def bad_frame(self, conn_id: int, exc: ProtocolError) -> list[Outgoing]:
        """A frame that did not decode: tell the client why, keep the connection."""
        code = TOO_LARGE if isinstance(exc, FrameTooLarge) else BAD_REQUEST
        return [Outgoing(conn_id, Error(code, "", f"bad message: {exc}"))]

    # -------------------------------------------------------------------- messages

    def handle(self, conn_id: int, env: Envelope) -> list[Outgoing]:
        """One decoded message from a connection. Never raises for client input."""
        msg = env.msg
        typ = type(msg)
        if typ is HotlinkData:  # hot path first
            return self._data(conn_id, msg, env.traceparent)  # type: ignore[arg-type]
        conn = self.conns.get(conn_id)
        if conn is None:
            return []
        try:
            if typ is HotlinkOpen:
                return self._open(conn, env.id, msg)  # type: ignore[arg-type]
            if typ is HotlinkAccept:
                return self._accept(conn, env.id, msg)  # type: ignore[arg-type]
            if typ is HotlinkClose:
                return self._close(conn, msg)  # type: ignore[arg-type]
            if typ is HotlinkReject:
                return self._reject(conn, msg)  # type: ignore[arg-type]
            if typ is FileWrite:
                return self._file_write(conn, env.id, msg)  # type: ignore[arg-type]
            if typ is HotlinkProgress:
                return self._progress(conn, msg)  # type: ignore[arg-type]
            if typ is FileSync:
                return self._file_sync(conn, msg)  # type: ignore[arg-type]
            if typ is FileDelete:
                return self._file_delete(conn, env.id, msg)  # type: ignore[arg-type]
            if typ is HotlinkSignal:
                return self._signal(conn, msg)  # type: ignore[arg-type]
        except ProtocolError as exc:
            log.info("conn %d (%s): bad %s: %s", conn_id, conn.user, typ.__name__, exc)
            return [Outgoing(conn_id, Error(BAD_REQUEST, "", f"bad message: {exc}"))]
        if msg.TYP in _IGNORED:
            return []
        return [Outgoing(conn_id, Error(BAD_REQUEST, "", f"unsupported message type {msg.TYP}"))]

    # ---------------------------------------------------------------- hotlink data

    def forward(self, conn_id: int, msg: HotlinkData) -> tuple[int, ...] | None:
        """The data path's shortcut: the reader connections that get `msg` as it came
        (so the adapter can send the frame's own bytes), when that is all `handle`
        would do with it; None when `handle` has more to say (an unknown session, not
        its sender, a path outside the session, an ACL change to apply)."""
        s = self.sessions.get(msg.sid)
        if s is None or s.sender_conn != conn_id or s.gen != self.acl.generation:
            return None
        pth = msg.path
        if pth and pth != s.path and not _below(s, pth):
            return None
        s.last_activity = self.now
        if msg.seq > s.last_seq:
            s.last_seq = msg.seq
        self.lanes.remember(conn_id, s)
        return s.deliver

    def forward_frame(self, conn_id: int, frame: bytes) -> tuple[int, ...] | None:
        """`forward` for a frame not decoded yet (`lanes.py`): the readers that get
        `frame` as it is, when a previous frame of its session from `conn_id` was
        forwarded and nothing changed since; None means: decode it, then `handle`."""
        return self.lanes.match(conn_id, frame, self.acl.generation, self.now)

    def _data(self, conn_id: int, msg: HotlinkData, tp: str) -> list[Outgoing]:
        readers = self.forward(conn_id, msg)
        if readers is not None:
            return [Outgoing(c, msg, tp) for c in readers]
        s = self.sessions.get(msg.sid)
        if s is None:
            return [Outgoing(conn_id, HotlinkReject(msg.sid, REASON_UNKNOWN_SESSION))]
        if s.sender_conn != conn_id:
            log.info("conn %d: data for session %s it does not send, dropped", conn_id, s.sid)
            why = f"not the sender of session {msg.sid!r}"
            return [Outgoing(conn_id, Error(FORBIDDEN, msg.path, why))]
        pth = msg.path
        if pth and pth != s.path and not _below(s, pth):
            log.info("data for %s with path %r outside the session, dropped", s.sid, pth)
            why = f"data path outside session path {s.path!r}"
            return [Outgoing(conn_id, Error(BAD_REQUEST, pth, why))]
        out = self._recheck(s)  # the ACL changed since the session was last checked
        if self.sessions.get(s.sid) is not s:
            return out
        readers = self.forward(conn_id, msg)
        return out + [Outgoing(c, msg, tp) for c in readers or ()]

    # ------------------------------------------------------------- hotlink control

    def _open(self, conn: Conn, mid: str, m: HotlinkOpen) -> list[Outgoing]:
        user = conn.user
        self.now = now = self.clock()
        if not self._take_token(conn, now):
            return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_RATE_LIMITED))]
        if not m.sid or len(m.sid) > MAX_SID:
            return [Outgoing(conn.id, Error(BAD_REQUEST, m.path, "bad session id"))]
        try:
            validate_path(m.path)
            if m.to:
                validate_email(m.to)
            if session_path(m.path) != m.path:  # a reference sender names its first file
                m = HotlinkOpen(m.sid, session_path(m.path), m.frm, m.to)
            validate_session_path(m.path)
        except ProtocolError as exc:
            return [Outgoing(conn.id, HotlinkReject(m.sid, f"bad request: {exc}"))]
        if not self.acl.can(user, m.path, Access.WRITE):
            return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_PERMISSION_DENIED))]
        if m.to and m.to != user and not self.acl.can(m.to, m.path, Access.READ):
            return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_PERMISSION_DENIED))]
        s = self.sessions.get(m.sid)
        out: list[Outgoing] = []
        resume: list[Outgoing] = []
        if s is not None:
            if s.sender != user:
                log.warning("user %s tried to re-open session %s of %s", user, m.sid, s.sender)
                return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_SESSION_IN_USE))]
            if s.path != m.path or s.to != m.to:
                # a different session under the same id: end the old one first
                out += self._end(s, "session re-opened", notify_sender=False)
                s = None
            else:  # reconnect: re-bind to this connection
                old = self.conns.get(s.sender_conn)
                if old is not None:
                    old.sending.discard(s.sid)
                s.sender_conn = conn.id
                s.last_activity = now
                conn.sending.add(s.sid)
                # the sender's agent forgot its readers with its old link: tell it who
                # still reads and where they are, after the Ack, so it re-sends from
                # each reader's confirmed seq
                resume = [
                    Outgoing(conn.id, HotlinkAccept(s.sid, u, s.acked.get(u)))
                    for u in dict.fromkeys(s.readers.values())
                ]
        if s is None:
            owner = self.sids.reserved_for(m.sid, now)
            if owner and owner != user:
                log.warning("user %s tried to open sid %s reserved for %s", user, m.sid, owner)
                return [*out, Outgoing(conn.id, HotlinkReject(m.sid, REASON_SESSION_IN_USE))]
            cap = self.limits.max_sessions_per_user
            if cap and self.sending_count.get(user, 0) >= cap:
                log.info("user %s: open of %s refused, %d live sessions", user, m.sid, cap)
                return [*out, Outgoing(conn.id, HotlinkReject(m.sid, REASON_TOO_MANY_SESSIONS))]
            s = Session(m.sid, m.path, user, conn.id, m.to, gen=self.acl.generation)
            s.prefix = m.path + "/"
            s.sid_bytes = m.sid.encode()
            s.prefix_bytes = s.prefix.encode()
            s.last_activity = now
            self.sessions[m.sid] = s
            self.sids.opened(m.sid, m.path, user)
            self.sending_count[user] = self.sending_count.get(user, 0) + 1
            conn.sending.add(m.sid)
        if ACKS in conn.ext:
            out.append(Outgoing(conn.id, Ack(mid)))
        out += resume
        targets: Iterable[str] = (m.to,) if m.to else list(self.by_user)
        for u in targets:
            if u == user or not self.acl.can(u, s.path, Access.READ):
                continue
            for cid in self.by_user.get(u, ()):
                if cid not in s.readers:
                    out.append(self._offer(s, self.conns[cid]))
        return out

    def _accept(self, conn: Conn, mid: str, m: HotlinkAccept) -> list[Outgoing]:
        s = self.sessions.get(m.sid)
        if s is None:
            return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_UNKNOWN_SESSION))]
        user = conn.user
        if user == s.sender:
            return []
        if (s.to and user != s.to) or not self.acl.can(user, s.path, Access.READ):
            return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_PERMISSION_DENIED))]
        s.last_activity = self.now = now = self.clock()
        ack = [Outgoing(conn.id, Ack(mid))] if ACKS in conn.ext else []
        # Again on its open leg: idempotent, unless it asks for a re-send (a seq)
        again = conn.id in s.readers
        if again and m.seq is None:
            return ack
        refused, seq = s.guard.accept(s.sid, user, m.seq, now)
        if refused:  # an open leg stays; its reader asks again later
            return ack if again else [Outgoing(conn.id, HotlinkReject(m.sid, refused))]
        if not again:
            self._add_leg(s, conn, user)
        if seq is not None:
            s.acked[user] = seq
        return [*ack, Outgoing(s.sender_conn, HotlinkAccept(s.sid, user, seq))]

    def _add_leg(self, s: Session, conn: Conn, user: str) -> None:
        # A new connection of a reader who still has a leg: that user reconnected
        # before we noticed the old connection go (a silently lost path). The new leg
        # replaces the old one, so frames stop going to the dead one and its later
        # close announces nothing.
        for cid in [c for c, u in s.readers.items() if u == user]:
            del s.readers[cid]
            old = self.conns.get(cid)
            if old is not None:
                old.reading.discard(s.sid)
            log.info(
                "session %s: %s re-accepted on conn %d, leg %d replaced", s.sid, user, conn.id, cid
            )
        s.readers[conn.id] = user
        s.set_readers()
        s.offered.add(conn.id)
        conn.reading.add(s.sid)
        conn.offered.add(s.sid)

    def _reject(self, conn: Conn, m: HotlinkReject) -> list[Outgoing]:
        """A reader declines (or leaves) a session: passed on to the sender."""
        s = self.sessions.get(m.sid)
        if s is None or conn.user == s.sender:
            return []
        if not self.acl.can(conn.user, s.path, Access.READ):
            return []
        if s.readers.pop(conn.id, None) is not None:
            s.set_readers()
            conn.reading.discard(s.sid)
        if conn.user in s.readers.values():  # another leg of that user still reads
            return []
        return [Outgoing(s.sender_conn, HotlinkReject(s.sid, m.reason, conn.user))]

    def _close(self, conn: Conn, m: HotlinkClose) -> list[Outgoing]:
        s = self.sessions.get(m.sid)
        if s is None:
            return [Outgoing(conn.id, HotlinkReject(m.sid, REASON_UNKNOWN_SESSION))]
        if conn.user == s.sender:
            return self._end(s, m.reason, notify_sender=False)
        if s.readers.pop(conn.id, None) is not None:  # a reader leaves its leg
            s.last_activity = self.now = self.clock()
            s.set_readers()
            conn.reading.discard(s.sid)
            if conn.user in s.readers.values():  # another leg of that user still reads
                return []
            return [Outgoing(s.sender_conn, HotlinkClose(s.sid, m.reason, conn.user))]
        return [Outgoing(conn.id, Error(FORBIDDEN, s.path, f"not in session {m.sid!r}"))]

    # ------------------------------------------------------------- session helpers

    def sender_of(self, sid: str) -> str:
        """The sender of a live session ("" if none)."""
        s = self.sessions.get(sid)
        return s.sender if s is not None else ""

    def _may_offer(self, s: Session, user: str) -> bool:
        if user == s.sender or (s.to and user != s.to):
            return False
        return self.acl.can(user, s.path, Access.READ)

    def _offer(self, s: Session, conn: Conn) -> Outgoing:
        s.offered.add(conn.id)
        conn.offered.add(s.sid)
        sender = self.conns.get(s.sender_conn)
        answers = sender is not None and STARTS in sender.ext  # it says where a joiner starts
        return Outgoing(conn.id, HotlinkOpen(s.sid, s.path, s.sender, s.to, answers))

    def _end(self, s: Session, reason: str, *, notify_sender: bool) -> list[Outgoing]:
        """Remove a session; everyone who was offered it (readers included) is told."""
        del self.sessions[s.sid]
        self.lanes.forget(s)
        self.sids.ended(s.sid, s.path, s.sender, self.now)
        n = self.sending_count.get(s.sender, 0) - 1
        if n > 0:
            self.sending_count[s.sender] = n
        else:
            self.sending_count.pop(s.sender, None)
        out: list[Outgoing] = []
        for cid in s.offered | s.readers.keys():
            c = self.conns.get(cid)
            if c is None:
                continue
            c.reading.discard(s.sid)
            c.offered.discard(s.sid)
            out.append(Outgoing(cid, HotlinkClose(s.sid, reason)))
        sender = self.conns.get(s.sender_conn)
        if sender is not None:
            sender.sending.discard(s.sid)
            if notify_sender:
                out.append(Outgoing(sender.id, HotlinkClose(s.sid, reason)))
        return out

    def _recheck(self, s: Session) -> list[Outgoing]:
        """Re-validate a session after an ACL change: a sender without write access
        ends it; readers without read access are dropped and told; users who gained
        read access are offered it."""
        s.gen = self.acl.generation
        if not self.acl.can(s.sender, s.path, Access.WRITE):
            log.info("session %s closed: sender %s lost write access", s.sid, s.sender)
            return self._end(s, REASON_PERMISSION_DENIED, notify_sender=True)
        out: list[Outgoing] = []
        for cid in list(s.offered):
            c = self.conns.get(cid)
            if c is None or self.acl.can(c.user, s.path, Access.READ):
                continue
            s.offered.discard(cid)
            c.offered.discard(s.sid)
            out.append(Outgoing(cid, HotlinkClose(s.sid, REASON_PERMISSION_DENIED)))
            if s.readers.pop(cid, None) is not None:
                c.reading.discard(s.sid)
                out.append(
                    Outgoing(s.sender_conn, HotlinkClose(s.sid, REASON_PERMISSION_DENIED, c.user))
                )
        s.set_readers()
        for cid, c in self.conns.items():
            if cid not in s.offered and self._may_offer(s, c.user):
                out.append(self._offer(s, c))
        return out

    def _take_token(self, conn: Conn, now: float) -> bool:
        """Open-rate token bucket of one connection."""
        rate, burst = self.limits.open_rate, max(1, self.limits.open_burst)
        if rate <= 0:
            return True
        conn.tokens = min(float(burst), conn.tokens + (now - conn.refilled) * rate)
        conn.refilled = now
        if conn.tokens < 1.0:
            conn.pause_until = now + (1.0 - conn.tokens) / rate
            return False
        conn.tokens -= 1.0
        return True

    def recheck_all(self) -> list[Outgoing]:
        """Apply the current ACLs to every live session (called after an ACL write)."""
        out: list[Outgoing] = []
        for s in list(self.sessions.values()):
            if s.gen != self.acl.generation and self.sessions.get(s.sid) is s:
                out += self._recheck(s)
        return out

    def _progress(self, conn: Conn, m: HotlinkProgress) -> list[Outgoing]:
        """A reader's delivered-seq report, passed to the sender (never from others)."""
        s = self.sessions.get(m.sid)
        if s is None or conn.id not in s.readers:
            return []
        if m.seq > s.acked.get(conn.user, -1):
            s.acked[conn.user] = m.seq
            s.guard.progressed(conn.user, m.seq, self.now)
            # a session carried by direct links sends no data through the relay; its
            # readers' advancing reports show it is in use
            s.last_activity = self.now
        return [Outgoing(s.sender_conn, HotlinkProgress(m.sid, m.seq, conn.user))]
