"""Sessions: path resolution, per-session state, and the manager that ties the relay
link (any `Transport`) to the IPC endpoints.

State machine of a session (`SessionState` values match `hotlink.v1.SessionState`):

    sender:  PENDING --Open sent, relay Ack(oid)--> OPEN --link down--> PENDING (re-opened
             with the same sid on link up)                 \\--Reject--> REJECTED
    reader:  PENDING --relay Open known, Accept sent, Ack--> OPEN
             OPEN --sender disconnected / link down--> PENDING (re-accepts the next Open)
             OPEN --sender closed--> CLOSED (endpoint removed, apps see EOF)
             any --Reject--> REJECTED (endpoint removed; OpenSession again to retry)

Sender data path: the agent assigns seq 1, 2, ... as frames arrive from apps. A frame
goes to the link at once when the session is OPEN, at least one reader has accepted
(frames with no reader would be dropped by the relay), the link's write buffer is
below its high-water mark and nothing older is waiting; otherwise it waits, in order,
in the session's pending queue. That queue is bounded by `send_queue_frames` and
`send_queue_bytes`; at the bound the session stops reading its apps' sockets
(back-pressure; the overshoot is at most one socket read) and resumes below half.
Nothing is dropped silently: frames only leave the queue by being sent, or, when the
session is closed/rejected, counted as drops with a log line. The last
`resend_frames` / `resend_bytes` frames sent are kept; when the link drops they go
back to the front of the queue and are re-sent after the re-open (frames in flight
when a relay dies are not lost; readers drop the copies they already have by seq).

Reader data path: frames are reordered per session (`ReorderBuffer`) and written to
every connected app at once. While no app is connected a backlog of at most
`reader_queue` frames is kept for the first app that connects (overflow drops the
oldest, counted and logged). Apps that connect while others are already reading get
frames from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import FrameTooLarge, ProtocolError
from hotlink.wire.frames import Frame, encode_header
from hotlink.wire.paths import owner_of, validate_email, validate_path, validate_relpath

from .config import AgentConfig
from .ipc import MODE_PIPE, MODE_TCP, MODE_UNIX, AppConnection, EndpointRegistry, IpcEndpoint
from .reorder import ReorderBuffer
from .runtime_dir import InsecureDirectory, is_windows
from .transport import LinkDown, Transport

log = logging.getLogger("hotlink.agent.sessions")

#: bytes of envelope, keys, sid and seq around a HotlinkData payload (generous)
ENVELOPE_SLACK = 256


class Role(enum.IntEnum):
    SENDER = 1
    READER = 2


class SessionState(enum.IntEnum):
    PENDING = 1
    OPEN = 2
    REJECTED = 3
    CLOSED = 4


class EventType(enum.IntEnum):
    OPENED = 1
    ACCEPTED = 2
    REJECTED = 3
    CLOSED = 4
    LINK_UP = 5
    LINK_DOWN = 6


class SessionError(Exception):
    """A control-plane failure; `code` maps to a gRPC status in `control.py`."""

    INVALID = "INVALID_ARGUMENT"
    EXISTS = "ALREADY_EXISTS"
    DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    PRECONDITION = "FAILED_PRECONDITION"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_path(own_email: str, path: str, role: int = 0) -> tuple[str, Role]:
    """`_mpc/0_to_1` -> (`own@x/_mpc/0_to_1`, SENDER); `other@y/_mpc/0_to_1` -> READER.

    The first segment is an owner email if it contains `@`; otherwise the path is
    relative to the agent's own datasite. `role` (1 sender, 2 reader) overrides.
    Raises `ProtocolError` for anything unsafe (absolute, `..`, empty segments...).
    """
    validate_relpath(path)
    first = path.split("/", 1)[0]
    full = path if "@" in first else f"{own_email}/{path}"
    validate_path(full)
    if "/" not in full:
        raise ProtocolError(f"a session path needs a folder inside the datasite: {path!r}")
    if role not in (0, Role.SENDER, Role.READER):
        raise ProtocolError(f"unknown role {role}")
    derived = Role.SENDER if owner_of(full) == own_email else Role.READER
    return full, Role(role) if role else derived


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_frame_name(name: str) -> str:
    """A frame's `path`: the `.request` file name relative to the session dir."""
    return validate_relpath(name)


class Session:
    """One session on one path; implements `ipc.EndpointOwner`."""

    def __init__(
        self,
        mgr: SessionManager,
        path: str,
        role: Role,
        *,
        session_dir: Path,
        ipc_mode: int,
        fallback_mode: int,
        to: str,
        tcp_addr: str,
    ) -> None:
        cfg = mgr.cfg
        self.mgr = mgr
        self.path = path
        self.prefix = path + "/"
        self.role = role
        self.is_sender = role is Role.SENDER
        self.sid = ""
        self.state = SessionState.PENDING
        self.reason = ""
        self.sender = mgr.email if self.is_sender else owner_of(path)
        self.to = to
        self.readers: set[str] = set()
        self.session_dir = session_dir
        self.ipc_mode = ipc_mode
        self.tcp_addr = tcp_addr
        self.endpoint = ""
        self.fallback_mode = fallback_mode
        self.opened_ns = time.time_ns()
        self.last_seq = 0
        self.frames_sent = self.bytes_sent = 0
        self.frames_received = self.bytes_received = 0
        self.drops = 0
        self.conns: list[AppConnection] = []
        self.verdict: asyncio.Future[str | None] | None = None
        self.closed = False
        # sender
        self.seq = 0
        self.pending: deque[m.HotlinkData] = deque()
        self.pending_bytes = 0
        self.reading_paused = False
        self._last_name = ""
        #: frames sent most recently (bounded by resend_frames/resend_bytes), re-sent
        #: after a reconnect; frames up to `replay_until` in `pending` are such replays.
        self.recent: deque[m.HotlinkData] = deque()
        self.recent_bytes = 0
        self.replay_until = 0
        self.resent = 0
        # reader
        self.reorder: ReorderBuffer[m.HotlinkData] = ReorderBuffer(
            cfg.reorder_window, cfg.reorder_timeout
        )
        self._lost_seen = 0
        self.backlog: deque[tuple[bytes, bytes]] = deque()
        self._gap_timer: asyncio.TimerHandle | None = None
        #: payload + name + etag must fit one WS message with the envelope around it, so
        #: an oversized app frame closes that app connection, never the relay link.
        self.wire_room = cfg.max_message - len(self.prefix) - ENVELOPE_SLACK
        self.ipc = IpcEndpoint(
            self,
            session_dir,
            ipc_mode,
            is_sender=self.is_sender,
            runtime_dir=mgr.runtime_dir,
            max_payload=min(cfg.max_payload, cfg.max_message),
            queue_limit=cfg.reader_queue,
            buffer_bytes=cfg.reader_buffer_bytes,
            tcp_addr=tcp_addr,
        )

    # --- endpoint owner -----------------------------------------------------------

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)
        if self.is_sender:
            if self.reading_paused:
                conn.pause_reading()
        elif self.backlog:
            bl = self.backlog
            while bl:
                h, p = bl.popleft()
                conn.write(h, p)
                self.frames_received += 1
                self.bytes_received += len(p)

    def app_disconnected(self, conn: AppConnection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)

    def app_dropped(self, conn: AppConnection, frames: int) -> None:
        self.drops += frames
        self.mgr.drops += frames

    def app_frames(self, conn: AppConnection, frames: list[Frame]) -> None:
        """Sender hot path: assign seqs, send or queue. Raises ProtocolError on a bad
        frame path (after handling the frames before it)."""
        mgr = self.mgr
        link = mgr.link
        pending = self.pending
        direct = (
            self.state is SessionState.OPEN and bool(self.readers) and not pending and link.writable
        )
        prefix = self.prefix
        sid = self.sid
        wire_room = self.wire_room
        for f in frames:
            name = f.path
            if name and name != self._last_name:
                validate_frame_name(name)
                self._last_name = name
            if len(f.payload) + len(name) + len(f.etag) > wire_room:
                raise FrameTooLarge(
                    f"frame of {len(f.payload)} payload bytes does not fit the relay's "
                    f"{mgr.cfg.max_message}-byte message limit"
                )
            self.seq = seq = self.seq + 1
            msg = m.HotlinkData(
                sid, seq, prefix + name if name else f"{prefix}{seq:08d}.request", f.payload, f.etag
            )
            if direct:
                try:
                    link.send(msg)
                except LinkDown:
                    direct = False
                else:
                    self._sent(msg)
                    if not link.writable:
                        direct = False
                    continue
            pending.append(msg)
            self.pending_bytes += len(f.payload)
        if pending and not self.reading_paused:
            cfg = mgr.cfg
            if len(pending) >= cfg.send_queue_frames or self.pending_bytes >= cfg.send_queue_bytes:
                self.reading_paused = True
                for c in self.conns:
                    c.pause_reading()

    # --- sender -----------------------------------------------------------------

    def _sent(self, msg: m.HotlinkData) -> None:
        n = len(msg.payload)
        self.frames_sent += 1
        self.bytes_sent += n
        mgr = self.mgr
        mgr.frames_out += 1
        mgr.bytes_out += n
        self.last_seq = msg.seq
        self._remember(msg)

    def _remember(self, msg: m.HotlinkData) -> None:
        ring = self.recent
        ring.append(msg)
        self.recent_bytes += len(msg.payload)
        cfg = self.mgr.cfg
        while ring and (len(ring) > cfg.resend_frames or self.recent_bytes > cfg.resend_bytes):
            self.recent_bytes -= len(ring.popleft().payload)

    def requeue_recent(self) -> None:
        """The link dropped: frames written shortly before may not have reached the
        relay. Put the recent ones back in front of the queue; they are re-sent after
        the re-open and readers drop the ones they already have (dedupe by seq)."""
        ring = self.recent
        if not ring:
            return
        self.replay_until = max(self.replay_until, ring[-1].seq)
        log.info(
            "session %s: %d recently sent frames (seq %d..%d) will be re-sent after the re-open",
            self.path,
            len(ring),
            ring[0].seq,
            ring[-1].seq,
        )
        self.pending.extendleft(reversed(ring))
        self.pending_bytes += self.recent_bytes
        ring.clear()
        self.recent_bytes = 0

    def flush(self) -> None:
        """Send queued frames while the session can send."""
        pend = self.pending
        if pend and self.state is SessionState.OPEN and self.readers:
            mgr = self.mgr
            link = mgr.link
            while pend and link.writable:
                msg = pend[0]
                try:
                    link.send(msg)
                except LinkDown:
                    break
                pend.popleft()
                self.pending_bytes -= len(msg.payload)
                if msg.seq > self.replay_until:
                    self._sent(msg)
                else:
                    self.resent += 1
                    self._remember(msg)
        if self.reading_paused:
            cfg = self.mgr.cfg
            if (
                len(pend) <= cfg.send_queue_frames // 2
                and self.pending_bytes <= cfg.send_queue_bytes // 2
            ):
                self.reading_paused = False
                for c in self.conns:
                    c.resume_reading()

    # --- reader -----------------------------------------------------------------

    def on_data(self, msg: m.HotlinkData) -> None:
        ro = self.reorder
        for seq, item in ro.push(msg.seq, msg, self.mgr.loop.time()):
            self._deliver(seq, item)
        if ro.lost != self._lost_seen:
            self._report_gaps()
        if len(ro):
            if self._gap_timer is None:
                dl = ro.deadline
                assert dl is not None
                self._gap_timer = self.mgr.loop.call_at(dl, self._on_gap_timer)
        elif self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _on_gap_timer(self) -> None:
        self._gap_timer = None
        ro = self.reorder
        for seq, item in ro.expire(self.mgr.loop.time()):
            self._deliver(seq, item)
        self._report_gaps()
        dl = ro.deadline
        if dl is not None:
            self._gap_timer = self.mgr.loop.call_at(dl, self._on_gap_timer)

    def _report_gaps(self) -> None:
        ro = self.reorder
        n = ro.lost - self._lost_seen
        self._lost_seen = ro.lost
        if n:
            self.drops += n
            self.mgr.drops += n
            for first, last in ro.pop_gaps():
                log.warning(
                    "session %s (%s): seq %d..%d never arrived within %.1fs or the reorder "
                    "window; skipped",
                    self.path,
                    self.sid,
                    first,
                    last,
                    ro.gap_timeout,
                )

    def _deliver(self, seq: int, msg: m.HotlinkData) -> None:
        path = msg.path
        name = path[len(self.prefix) :] if path.startswith(self.prefix) else ""
        if not name:
            name = f"{seq:08d}.request"
        payload = msg.payload
        etag = msg.etag.encode() if msg.etag else b""
        header = encode_header(name.encode(), etag, len(payload), seq)
        self.last_seq = seq
        conns = self.conns
        if conns:
            for c in conns:
                c.write(header, payload)
            self.frames_received += 1
            self.bytes_received += len(payload)
            return
        bl = self.backlog
        if len(bl) >= self.mgr.cfg.reader_queue:
            bl.popleft()
            self.drops += 1
            self.mgr.drops += 1
            if self.drops == 1 or self.drops % 1000 == 0:
                log.warning(
                    "session %s: no reader app connected and %d frames waiting; dropping the "
                    "oldest (%d dropped so far)",
                    self.path,
                    len(bl),
                    self.drops,
                )
        bl.append((header, payload))

    def reset_stream(self) -> None:
        self.reorder.reset()
        self._lost_seen = 0
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    # --- lifecycle --------------------------------------------------------------

    def new_verdict(self) -> asyncio.Future[str | None]:
        if self.verdict is None or self.verdict.done():
            self.verdict = self.mgr.loop.create_future()
        return self.verdict

    def settle(self, rejected_reason: str | None) -> None:
        v = self.verdict
        if v is not None and not v.done():
            v.set_result(rejected_reason)

    def shutdown(self, graceful: bool = True) -> None:
        """Remove the endpoint and close app connections (gracefully: flush first)."""
        self.closed = True
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        files = list(self.ipc.files)
        self.ipc.close()
        for c in list(self.conns):
            if graceful:
                c.close()
            else:
                c.fail("session closed")
        self.conns.clear()
        self.mgr.registry.remove(files)
        if self.pending:
            n = len(self.pending)
            self.drops += n
            self.mgr.drops += n
            log.warning("session %s closed with %d unsent frames (counted as drops)", self.path, n)
            self.pending.clear()
            self.pending_bytes = 0


EmitFn = Callable[[EventType, "Session | None", str, str], None]


class SessionManager:
    """Owns all sessions; the `TransportListener` of the link."""

    def __init__(
        self,
        cfg: AgentConfig,
        link: Transport,
        *,
        runtime_dir: Path,
        registry: EndpointRegistry,
        emit: EmitFn | None = None,
    ) -> None:
        self.cfg = cfg
        self.email = cfg.email
        self.link = link
        self.runtime_dir = runtime_dir
        self.registry = registry
        self.emit: EmitFn = emit or (lambda *a: None)
        self.loop = asyncio.get_running_loop()
        self.by_path: dict[str, Session] = {}
        self.by_sid: dict[str, Session] = {}
        #: Opens the relay sent us for paths we may read, by path (kept until the sender
        #: goes away or our link drops; the relay re-sends live ones on connect).
        self.offers: dict[str, m.HotlinkOpen] = {}
        self._acks: dict[str, Session] = {}
        self._open_locks: dict[str, asyncio.Lock] = {}
        self.ack_hooks: list[Callable[[str, str | None], bool]] = []
        self.link_up_hooks: list[Callable[[], None]] = []
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.drops = 0
        self.unknown_frames = 0
        self._errors = 0
        link.set_listener(self)

    # --- queries ----------------------------------------------------------------

    @property
    def queued(self) -> int:
        return sum(len(s.pending) for s in self.by_path.values())

    def find(self, session_id: str = "", path: str = "") -> Session:
        if session_id:
            s = self.by_sid.get(session_id)
            if s is None:
                s = next((x for x in self.by_path.values() if x.sid == session_id), None)
        else:
            try:
                full, _ = resolve_path(self.email, path)
            except ProtocolError as exc:
                raise SessionError(SessionError.INVALID, str(exc)) from None
            s = self.by_path.get(full)
        if s is None:
            raise SessionError(SessionError.NOT_FOUND, f"no session {session_id or path!r}")
        return s

    # --- control plane ----------------------------------------------------------

    async def open_session(
        self,
        path: str,
        *,
        role: int = 0,
        to: str = "",
        ipc_mode: int = 0,
        fallback_mode: int = 0,
        tcp_addr: str = "",
        require_link: bool = False,
        timeout: float = 0.0,
    ) -> Session:
        try:
            full, r = resolve_path(self.email, path, role)
            if to:
                validate_email(to)
            if tcp_addr:
                host, sep, port = tcp_addr.rpartition(":")
                if not sep or not host or not port.isdigit():
                    raise ProtocolError(f"tcp_addr must be HOST:PORT, got {tcp_addr!r}")
                if not is_loopback(host):
                    raise ProtocolError(f"tcp_addr must be a loopback address, got {host!r}")
        except ProtocolError as exc:
            raise SessionError(SessionError.INVALID, str(exc)) from None
        mode = ipc_mode or (MODE_PIPE if is_windows() else MODE_UNIX)
        if mode not in (MODE_UNIX, MODE_TCP, MODE_PIPE):
            raise SessionError(SessionError.INVALID, f"unknown ipc_mode {ipc_mode}")
        if mode == MODE_PIPE and not is_windows():
            raise SessionError(SessionError.INVALID, "IPC_MODE_PIPE is only available on Windows")
        timeout = timeout if timeout > 0 else self.cfg.open_timeout
        lock = self._open_locks.setdefault(full, asyncio.Lock())
        try:
            async with lock:  # concurrent opens of one path: one creates, others see it
                return await self._open_locked(
                    full, r, mode, to, fallback_mode, tcp_addr, require_link, timeout
                )
        finally:
            if not lock.locked() and self._open_locks.get(full) is lock:
                del self._open_locks[full]

    async def _open_locked(
        self,
        full: str,
        r: Role,
        mode: int,
        to: str,
        fallback_mode: int,
        tcp_addr: str,
        require_link: bool,
        timeout: float,
    ) -> Session:
        s = self.by_path.get(full)
        if s is not None:
            if s.role is not r:
                raise SessionError(
                    SessionError.EXISTS,
                    f"a session on {full} exists with role {s.role.name.lower()}",
                )
            if s.state is SessionState.REJECTED:
                self._forget(s)
                s = None
            elif s.state is SessionState.PENDING and s.verdict and not s.verdict.done():
                await self._wait_verdict(s, timeout)
                return s
            else:
                return s
        if require_link and not self.link.up:
            raise SessionError(
                SessionError.UNAVAILABLE,
                f"relay link is {self.link.state.name.lower()}: {self.link.last_error}",
            )
        owner, _, rest = full.partition("/")
        sdir = self.cfg.root / "datasites" / owner / rest
        s = Session(
            self,
            full,
            r,
            session_dir=sdir,
            ipc_mode=mode,
            fallback_mode=fallback_mode,
            to=to,
            tcp_addr=tcp_addr,
        )
        try:
            s.endpoint = await s.ipc.start()
        except (ProtocolError, NotImplementedError) as exc:
            s.ipc.close()
            raise SessionError(SessionError.UNIMPLEMENTED, str(exc)) from None
        except InsecureDirectory as exc:
            s.ipc.close()
            raise SessionError(SessionError.PRECONDITION, f"unsafe socket dir: {exc}") from None
        except OSError as exc:
            s.ipc.close()
            raise SessionError(
                SessionError.INVALID, f"cannot create the endpoint in {sdir}: {exc}"
            ) from None
        self.registry.add(s.ipc.files)
        self.by_path[full] = s
        log.info("session %s opened locally as %s: %s", full, r.name.lower(), s.endpoint)
        if s.is_sender:
            s.sid = secrets.token_hex(8)
            self.by_sid[s.sid] = s
            if self.link.up:
                self._send_open(s)
                await self._wait_verdict(s, timeout)
        else:
            offer = self.offers.get(full)
            if offer is not None and self.link.up:
                self._accept(s, offer)
                await self._wait_verdict(s, timeout)
        return s

    async def _wait_verdict(self, s: Session, timeout: float) -> None:
        fut = s.verdict
        if fut is None:
            return
        try:
            reason = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise SessionError(
                SessionError.DEADLINE,
                f"no verdict from the relay on {s.path} within {timeout:g}s "
                "(the session stays pending; CloseSession to drop it)",
            ) from None
        if reason is not None:
            raise SessionError(SessionError.DENIED, f"relay rejected {s.path}: {reason}")

    def close_session(self, s: Session, reason: str = "") -> Session:
        if s.sid and self.link.up and (s.is_sender or s.state is SessionState.OPEN):
            # sender: ends the session for everyone; reader: leaves its leg only
            if s.is_sender:
                s.flush()
            with contextlib.suppress(LinkDown):
                self.link.send(m.HotlinkClose(s.sid, reason or "closed"))
        s.state = SessionState.CLOSED
        s.reason = reason or "closed"
        s.settle("session closed")
        s.shutdown()
        self._forget(s)
        self.emit(EventType.CLOSED, s, "", s.reason)
        log.info("session %s closed: %s", s.path, s.reason)
        return s

    def _forget(self, s: Session) -> None:
        if self.by_path.get(s.path) is s:
            del self.by_path[s.path]
        if s.sid and self.by_sid.get(s.sid) is s:
            del self.by_sid[s.sid]
        for oid in [k for k, v in self._acks.items() if v is s]:
            del self._acks[oid]
        if not s.closed:
            s.shutdown()

    def close_all(self) -> None:
        for s in list(self.by_path.values()):
            s.shutdown()
        self.by_path.clear()
        self.by_sid.clear()

    def _send_open(self, s: Session) -> None:
        s.new_verdict()
        try:
            oid = self.link.send(m.HotlinkOpen(s.sid, s.path, "", s.to))
        except LinkDown:
            return
        self._acks[oid] = s

    def _accept(self, s: Session, offer: m.HotlinkOpen) -> None:
        if s.sid != offer.sid:
            if s.sid and self.by_sid.get(s.sid) is s:
                del self.by_sid[s.sid]
            if s.sid:
                s.reset_stream()
            s.sid = offer.sid
            self.by_sid[s.sid] = s
        s.sender = offer.frm or s.sender
        s.new_verdict()
        try:
            oid = self.link.send(m.HotlinkAccept(s.sid))
        except LinkDown:
            return
        self._acks[oid] = s

    def _reject(self, s: Session, reason: str) -> None:
        s.state = SessionState.REJECTED
        s.reason = reason or "rejected"
        s.settle(s.reason)
        s.shutdown(graceful=False)
        if s.sid and self.by_sid.get(s.sid) is s:
            del self.by_sid[s.sid]
        self.emit(EventType.REJECTED, s, "", s.reason)
        log.warning("session %s rejected by the relay: %s", s.path, s.reason)

    # --- TransportListener ------------------------------------------------------

    def on_link_up(self) -> None:
        for hook in self.link_up_hooks:
            try:
                hook()
            except Exception:
                log.exception("link-up hook failed")
        self.emit(EventType.LINK_UP, None, "", "")
        for s in list(self.by_path.values()):
            if s.is_sender and s.state in (SessionState.PENDING, SessionState.OPEN):
                s.state = SessionState.PENDING
                self._send_open(s)

    def on_link_down(self, reason: str) -> None:
        self.offers.clear()
        self._acks.clear()
        for s in self.by_path.values():
            if s.state is SessionState.OPEN:
                s.state = SessionState.PENDING
                s.reason = "link down"
            s.readers.clear()
            if s.is_sender:
                s.requeue_recent()
        self.emit(EventType.LINK_DOWN, None, "", reason)

    def on_writable(self) -> None:
        for s in self.by_path.values():
            if s.pending:
                s.flush()

    def on_message(self, env: Envelope) -> None:
        msg = env.msg
        t = type(msg)
        if t is m.HotlinkData:
            s = self.by_sid.get(msg.sid)  # type: ignore[union-attr]
            if s is None or s.is_sender:
                self.unknown_frames += 1
                return
            self.frames_in += 1
            self.bytes_in += len(msg.payload)  # type: ignore[union-attr]
            s.on_data(msg)  # type: ignore[arg-type]
        elif t is m.Ack:
            self._on_ack(msg.original_id, None)  # type: ignore[union-attr]
        elif t is m.Nack:
            self._on_ack(msg.original_id, msg.error or "nack")  # type: ignore[union-attr]
        elif t is m.HotlinkOpen:
            self._on_open(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkAccept:
            self._on_accept(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkReject:
            self._on_reject(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkClose:
            self._on_close(msg)  # type: ignore[arg-type]
        elif t is m.Error:
            self._errors += 1
            if self._errors <= 20 or self._errors % 1000 == 0:
                log.warning(
                    "relay error #%d: %s %s %s",
                    self._errors,
                    msg.code,  # type: ignore[union-attr]
                    msg.path,  # type: ignore[union-attr]
                    msg.message,  # type: ignore[union-attr]
                )
        else:
            log.debug("ignoring %s from relay", t.__name__)

    def _on_ack(self, oid: str, error: str | None) -> None:
        s = self._acks.pop(oid, None)
        if s is None:
            for hook in self.ack_hooks:
                if hook(oid, error):
                    return
            return
        if error is not None:
            self._reject(s, error)
            return
        if s.state is not SessionState.PENDING or s.closed:
            return
        s.state = SessionState.OPEN
        s.reason = ""
        s.settle(None)
        log.info("session %s (%s) open on the relay as %s", s.path, s.sid, s.role.name.lower())
        if s.is_sender:
            self.emit(EventType.OPENED, s, "", "")
            s.flush()
        else:
            self.emit(EventType.ACCEPTED, s, s.sender, "")

    def _on_open(self, msg: m.HotlinkOpen) -> None:
        try:
            validate_path(msg.path)
        except ProtocolError:
            log.warning("relay sent an open with a bad path %r; ignored", msg.path)
            return
        self.offers[msg.path] = msg
        s = self.by_path.get(msg.path)
        if s is None or s.is_sender or s.closed:
            return
        if s.state is SessionState.PENDING or s.sid != msg.sid:
            s.state = SessionState.PENDING
            self._accept(s, msg)

    def _on_accept(self, msg: m.HotlinkAccept) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None or not s.is_sender:
            return
        peer = msg.frm or "?"
        if peer not in s.readers:
            s.readers.add(peer)
            self.emit(EventType.ACCEPTED, s, peer, "")
        s.flush()

    def _on_reject(self, msg: m.HotlinkReject) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None:
            return
        if msg.frm:  # a reader turned our open down
            s.readers.discard(msg.frm)
            self.emit(EventType.REJECTED, s, msg.frm, msg.reason)
            return
        if msg.reason == m.REASON_UNKNOWN_SESSION:
            # The relay lost the session (sender gone / relay restarted): wait for or
            # re-send the open instead of failing for good.
            if s.is_sender:
                if s.state is SessionState.OPEN:
                    s.state = SessionState.PENDING
                    self._send_open(s)
            else:
                s.state = SessionState.PENDING
                s.reason = msg.reason
                off = self.offers.get(s.path)
                if off is not None and off.sid == msg.sid:
                    del self.offers[s.path]
            return
        self._reject(s, msg.reason)

    def _on_close(self, msg: m.HotlinkClose) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None:
            for p, off in list(self.offers.items()):
                if off.sid == msg.sid:
                    del self.offers[p]
            return
        if s.is_sender:
            if msg.frm:  # one reader's leg ended
                s.readers.discard(msg.frm)
                self.emit(EventType.CLOSED, s, msg.frm, msg.reason)
            else:  # the relay ended our session (e.g. we lost write access)
                self._reject(s, msg.reason or "closed by the relay")
            return
        off = self.offers.get(s.path)
        if off is not None and off.sid == msg.sid:
            del self.offers[s.path]
        if msg.reason == m.REASON_SENDER_GONE:
            s.state = SessionState.PENDING
            s.reason = msg.reason
            self.emit(EventType.CLOSED, s, s.sender, msg.reason)
            return
        self.close_session(s, msg.reason or "closed by the sender")

    def status_counters(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "drops": self.drops,
            "reconnects": self.link.reconnects,
            "queued": self.queued,
        }
