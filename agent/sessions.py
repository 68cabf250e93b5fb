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
session is closed/rejected, counted as drops with a log line. Sent frames not yet
confirmed by every reader (`HotlinkProgress`) are kept, at most `resend_frames` /
`resend_bytes` (full: back-pressure on the apps when every reader confirms); when the
link drops they go back to the front of the queue and are re-sent after the re-open,
and a reader's Accept with `seq` (re-accept, restart) re-queues those after it (frames
in flight when a relay or a link dies are not lost; readers drop copies by seq).
See docs/design.md "Loss-free resume" (issue 7).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import FrameTooLarge, ProtocolError
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import Frame, encode_header
from hotlink.wire.paths import owner_of, validate_email, validate_path, validate_relpath

from .acks import plan_resend
from .budget import ByteBudget
from .config import AgentConfig
from .fallback import ActivePath, FallbackMode, FallbackPolicy, Switch, normalize_mode
from .filepath import APP, FALLBACK, RESERVED_NAMES, TEE, FileWorker, Upload
from .ipc import MODE_PIPE, MODE_TCP, MODE_UNIX, AppConnection, EndpointRegistry, IpcEndpoint
from .reorder import StreamMerge
from .runtime_dir import InsecureDirectory, is_windows
from .state import AgentState, SessionRecord
from .tracing import AgentTracer
from .transport import LinkDown, Transport

log = logging.getLogger("hotlink.agent.sessions")

#: bytes of envelope, keys, sid and seq around a HotlinkData payload (generous)
ENVELOPE_SLACK = 256
#: how long a reader waits before reporting its delivered seq to the sender
PROGRESS_DELAY = 0.01
#: a catch-up page that gets no answer in this time is given up (old relay?)
SYNC_TIMEOUT = 5.0
#: relay reasons after which a sender keeps its session and retries the open later
TRANSIENT_REJECTS = frozenset({"too many sessions", "rate limited"})
REASON_IDLE = "idle timeout"
RETRY_OPEN_INITIAL = 0.25
RETRY_OPEN_MAX = 5.0


@dataclass(slots=True)
class FileData(m.HotlinkData):
    """A frame replayed from a fallback file (same fields; the type tells the source)."""


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
    PATH_SWITCHED = 7


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
    """A frame's `path`: the `.request` file name relative to the session dir. It may
    become a file there, so endpoint names and hidden temp names are refused."""
    validate_relpath(name)
    last = name.rsplit("/", 1)[-1]
    if last in RESERVED_NAMES or last.startswith(".hotlink"):
        raise ProtocolError(f"frame path {name!r} is reserved")
    return name


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
        restore: SessionRecord | None = None,
        clean: bool = False,
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
        self.policy = FallbackPolicy(normalize_mode(fallback_mode))
        self.tee = self.policy.tee
        self.opened_ns = time.time_ns()
        self.last_seq = 0
        self.frames_sent = self.bytes_sent = 0
        self.frames_received = self.bytes_received = 0
        self.drops = 0
        self.files_sent = self.files_received = 0
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
        #: file path (sender): frames handed to files and not yet acked by the relay,
        #: fallback frames waiting for the disk thread, highest seq handed to files
        self.file_backlog = 0
        self.disk_frames = self.disk_bytes = 0
        self.file_seq_high = 0
        self.files_acked_seq = 0
        #: highest seq each reader reported delivered (HotlinkProgress)
        self.reader_acks: dict[str, int] = {}
        self.confirmed = 0
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_delay = RETRY_OPEN_INITIAL
        # reader
        self.reorder: StreamMerge[m.HotlinkData] = StreamMerge(
            cfg.reorder_window, cfg.reorder_timeout
        )
        #: which path the frames delivered last came by
        self.reader_path = ActivePath.HOTLINK
        #: catch-up cursor in the relay's store, and the last one safe to persist
        self.cursor: tuple[int, str] = (0, "")
        self.safe_cursor: tuple[int, str] = (0, "")
        self.syncing = False
        self.synced_sid = ""
        self.deferred_offer: m.HotlinkOpen | None = None
        self._sync_timer: asyncio.TimerHandle | None = None
        self.ingest_pending = 0
        self._progress_timer: asyncio.TimerHandle | None = None
        self.progress_sent = 0
        self._lost_seen = 0
        self.backlog: deque[tuple[bytes, bytes]] = deque()
        self.backlog_bytes = 0
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
            queue_bytes=cfg.reader_queue_bytes,
            tcp_addr=tcp_addr,
            budget=mgr.reader_budget,
        )
        #: restored after a clean stop: the same stream goes on (see state.py)
        self.resumed = False
        #: reader: the sid whose seqs `app_delivered()` counts; our Accept of that sid
        #: tells the sender where we are (`seq`, issue 7) so it re-sends the rest
        self.resume_sid = ""
        #: sender: seqs a reader resumed after that we no longer held (issue 7)
        self.resend_gaps = 0
        if restore is not None:
            if self.is_sender and clean:
                self.sid = restore.sid
                self.seq = self.last_seq = restore.seq
                self.file_seq_high = self.seq
                self.files_acked_seq = min(restore.delivered, self.seq)
                self.resumed = True
            elif self.is_sender:
                log.warning(
                    "session %s: the agent did not stop cleanly; it goes on as a new stream",
                    path,
                )
            else:
                self.sid = restore.sid
                self.resume_sid = restore.sid
                self.last_seq = restore.delivered
                if restore.delivered:
                    self.reorder.reset(restore.delivered + 1)
                self.cursor = self.safe_cursor = (restore.cursor_mtime, restore.cursor_path)
        if self.is_sender and self.policy.files_allowed:
            self.policy.active = ActivePath.FILES  # nothing accepted yet

    @property
    def fallback_mode(self) -> int:
        return int(self.policy.mode)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # --- endpoint owner -----------------------------------------------------------

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)
        if self.is_sender:
            if self.reading_paused:
                conn.pause_reading()
        elif self.backlog:
            bl = self.backlog
            self.mgr.reader_budget.give(self.backlog_bytes)
            self.backlog_bytes = 0
            while bl:
                h, p = bl.popleft()
                conn.write(h, p)
                self.frames_received += 1
                self.bytes_received += len(p)
            if self._progress_timer is None:
                self._progress_timer = self.mgr.loop.call_later(PROGRESS_DELAY, self._send_progress)

    def app_disconnected(self, conn: AppConnection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)

    def app_dropped(self, conn: AppConnection, frames: int) -> None:
        self.drops += frames
        self.mgr.drops += frames

    def app_frames(self, conn: AppConnection, frames: list[Frame]) -> None:
        """Sender hot path: assign seqs, send or queue. Raises ProtocolError on a bad
        frame path (after handling the frames before it)."""
        if self.policy.active is ActivePath.FILES:
            self._frames_to_files(frames)
            return
        mgr = self.mgr
        tr = mgr.tracer  # None: tracing off (agent/tracing.py)
        t_in = time.time_ns() if tr is not None else 0
        link = mgr.link
        pending = self.pending
        failed = False
        direct = (
            self.state is SessionState.OPEN and bool(self.readers) and not pending and link.writable
        )
        prefix = self.prefix
        sid = self.sid
        for f in frames:
            seq = self._admit(f)
            name = f.path
            msg = m.HotlinkData(
                sid, seq, prefix + name if name else f"{prefix}{seq:08d}.request", f.payload, f.etag
            )
            if tr is not None:
                tr.origin(self, msg, t_in)
            if direct:
                try:
                    link.send(msg)
                except LinkDown:
                    direct = False
                    failed = True
                else:
                    self._sent(msg)
                    if not link.writable:
                        direct = False
                    continue
            pending.append(msg)
            self.pending_bytes += len(f.payload)
        if failed:
            sw = self.policy.send_failed("send to the relay failed (link closing)")
            if sw is not None:
                self._switched(sw)
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
        if self.tee and msg.seq > self.file_seq_high:
            self._tee(msg)

    def _remember(self, msg: m.HotlinkData) -> None:
        ring = self.recent
        ring.append(msg)
        self.recent_bytes += len(msg.payload)
        cfg = self.mgr.cfg
        while ring and (len(ring) > cfg.resend_frames or self.recent_bytes > cfg.resend_bytes):
            if ring[0].seq > self.confirmed and self._acking():
                # issue 7: never forget a frame a reader has not confirmed; stop
                # reading the apps instead until the readers catch up (on_progress)
                if not self.reading_paused:
                    self.reading_paused = True
                    for c in self.conns:
                        c.pause_reading()
                break
            self.recent_bytes -= len(ring.popleft().payload)

    def _acking(self) -> bool:
        """Every reader reports its progress (so a full window frees up again), and
        the window is not disabled (`--resend-frames 0` / `--resend-bytes 0`)."""
        cfg = self.mgr.cfg
        acks = self.reader_acks
        return (
            cfg.resend_frames > 0
            and cfg.resend_bytes > 0
            and bool(self.readers)
            and all(r in acks for r in self.readers)
        )

    def _window_full(self) -> bool:
        cfg = self.mgr.cfg
        return (
            len(self.recent) > cfg.resend_frames or self.recent_bytes > cfg.resend_bytes
        ) and self._acking()

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
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        cfg = self.mgr.cfg
        if (
            len(self.pending) + self.disk_frames <= cfg.send_queue_frames // 2
            and self.pending_bytes + self.disk_bytes <= cfg.send_queue_bytes // 2
            and not self._window_full()
        ):
            self.reading_paused = False
            for c in self.conns:
                c.resume_reading()

    # --- sender: file path -------------------------------------------------------

    def hotlink_ready(self) -> bool:
        return self.state is SessionState.OPEN and bool(self.readers) and self.mgr.link.up

    def reevaluate(self, why: str = "") -> None:
        """Inputs of the fallback policy changed: maybe switch paths."""
        if not self.is_sender or self.closed:
            return
        sw = self.policy.update(self.hotlink_ready(), self.file_backlog, why)
        if sw is not None:
            self._switched(sw)

    def set_mode(self, mode: FallbackMode) -> None:
        if not self.is_sender:  # a reader takes whatever path the sender uses
            self.policy.mode = mode
            return
        sw = self.policy.set_mode(mode, self.hotlink_ready(), self.file_backlog)
        self.tee = self.policy.tee
        if sw is not None:
            self._switched(sw)

    def _switched(self, sw: Switch) -> None:
        log.info(
            "session %s: now on the %s path (%s)",
            self.path,
            "file" if sw.to is ActivePath.FILES else "hotlink",
            sw.reason,
        )
        if sw.to is ActivePath.FILES:
            self._spill()
        self.mgr.emit(EventType.PATH_SWITCHED, self, "", sw.reason)
        if sw.to is ActivePath.HOTLINK:
            self.flush()

    def _spill(self) -> None:
        """Entering the file path: frames waiting for the hotlink (and sent frames no
        reader confirmed) become fallback files, in seq order."""
        ring = [x for x in self.recent if x.seq > self.confirmed]
        self.recent.clear()
        self.recent_bytes = 0
        frames = sorted(
            (x for x in (*ring, *self.pending) if x.seq > self.file_seq_high),
            key=lambda x: x.seq,
        )
        self.pending.clear()
        self.pending_bytes = 0
        self.replay_until = 0
        files = self.mgr.files
        plen = len(self.prefix)
        last = 0
        for x in frames:
            if x.seq == last:
                continue
            last = x.seq
            files.write_frame(self, x.seq, x.path[plen:], x.etag, x.payload, FALLBACK)
        if frames:
            self.file_seq_high = max(self.file_seq_high, frames[-1].seq)
            log.info(
                "session %s: %d queued/unconfirmed frames (seq %d..%d) go by files",
                self.path,
                len(frames),
                frames[0].seq,
                frames[-1].seq,
            )
        self._check_pause()

    def _admit(self, f: Frame) -> int:
        """Check an app frame whichever path it takes (a safe `.request` name; it fits
        one relay message, so it can go by hotlink later) and give it the next seq."""
        name = f.path
        if name and name != self._last_name:
            validate_frame_name(name)
            self._last_name = name
        if len(f.payload) + len(name) + len(f.etag) > self.wire_room:
            raise FrameTooLarge(
                f"frame of {len(f.payload)} payload bytes does not fit the relay's "
                f"{self.mgr.cfg.max_message}-byte message limit"
            )
        self.seq += 1
        return self.seq

    def _frames_to_files(self, frames: list[Frame]) -> None:
        files = self.mgr.files
        for f in frames:
            seq = self._admit(f)
            name = f.path
            files.write_frame(self, seq, name or f"{seq:08d}.request", f.etag, f.payload, FALLBACK)
            self.file_seq_high = seq
        self._check_pause()

    def _tee(self, msg: m.HotlinkData) -> None:
        name = msg.path[len(self.prefix) :]
        if self.mgr.files.write_frame(self, msg.seq, name, msg.etag, msg.payload, TEE):
            self.file_seq_high = msg.seq

    def _check_pause(self) -> None:
        if self.reading_paused:
            return
        cfg = self.mgr.cfg
        if (
            len(self.pending) + self.disk_frames >= cfg.send_queue_frames
            or self.pending_bytes + self.disk_bytes >= cfg.send_queue_bytes
        ):
            self.reading_paused = True
            for c in self.conns:
                c.pause_reading()

    def disk_progress(self) -> None:
        """The disk thread wrote some of our files: maybe resume the apps."""
        if self.reading_paused:
            self._maybe_resume()

    def file_acked(self, u: Upload) -> None:
        self.file_backlog -= 1
        self.files_sent += 1
        if u.kind != TEE:
            n = u.size
            self.frames_sent += 1
            self.bytes_sent += n
        if u.kind == FALLBACK and u.seq > self.files_acked_seq:
            self.files_acked_seq = u.seq
        if self.file_backlog == 0 and self.policy.files:
            self.reevaluate("hotlink available, file backlog sent")

    def file_failed(self, u: Upload, why: str) -> None:
        self.file_backlog -= 1
        if u.kind in (FALLBACK, APP):
            self.drops += 1
            self.mgr.drops += 1
        if self.file_backlog == 0 and self.policy.files:
            self.reevaluate()

    def on_progress(self, reader: str, seq: int) -> None:
        """A reader confirmed seqs up to `seq`: they need no re-send any more."""
        if reader not in self.readers:
            return
        acks = self.reader_acks
        if seq <= acks.get(reader, 0):
            return
        acks[reader] = seq
        low = min(acks.get(r, 0) for r in self.readers)
        if low <= self.confirmed:
            return
        self.confirmed = low
        ring = self.recent
        while ring and ring[0].seq <= low:
            self.recent_bytes -= len(ring.popleft().payload)
        if self.reading_paused:
            self._maybe_resume()

    def resume_reader(self, reader: str, ack: int) -> None:
        """`reader` (re-)accepted having delivered up to `ack` (issue 7): the frames we
        still hold after it go to the front of the queue again (readers drop copies by
        seq). Seqs after it we no longer hold are a gap: logged and counted here; the
        ones that went by fallback files reach the reader by its catch-up."""
        self.reader_acks[reader] = ack
        pend = self.pending
        plan = plan_resend(self.recent, ack, pend[0].seq - 1 if pend else self.seq, lambda x: x.seq)
        if plan.frames:
            n = sum(len(x.payload) for x in plan.frames)
            self.recent_bytes -= n
            self.pending_bytes += n
            pend.extendleft(reversed(plan.frames))
            self.replay_until = max(self.replay_until, plan.frames[-1].seq)
            log.info(
                "session %s: %s resumes after seq %d: re-sending seq %d..%d",
                self.path,
                reader,
                ack,
                plan.frames[0].seq,
                plan.frames[-1].seq,
            )
        if plan.gap is not None:
            first, last = plan.gap
            if last <= self.file_seq_high:  # the reader's catch-up brings them
                log.info(
                    "session %s: %s resumes after seq %d; seq %d..%d went by fallback files",
                    self.path,
                    reader,
                    ack,
                    first,
                    last,
                )
                return
            self.resend_gaps += last - first + 1
            log.warning(
                "session %s: %s resumes after seq %d but seq %d..%d are no longer held for "
                "a re-send (lost for that reader unless they went by fallback files)",
                self.path,
                reader,
                ack,
                first,
                last,
            )

    # --- reader -----------------------------------------------------------------

    def on_data(self, msg: m.HotlinkData) -> None:
        ro = self.reorder
        for seq, item in ro.push(msg.seq, msg, self.mgr.loop.time()):
            self._deliver(seq, item)
        if self._progress_timer is None:
            self._progress_timer = self.mgr.loop.call_later(PROGRESS_DELAY, self._send_progress)
        self._after_push()

    def take_file(self, frame: FallbackFrame) -> bool:
        """Is this fallback file part of our current stream?"""
        if frame.sid == self.sid:
            return True
        if not self.sid and not self.closed:  # no offer seen yet: the file tells the sid
            self.sid = frame.sid
            self.mgr.by_sid[self.sid] = self
            return True
        return False

    def on_file_frame(self, frame: FallbackFrame) -> None:
        """A fallback file of this stream: merged with hotlink frames by seq."""
        if self.closed or frame.sid != self.sid:
            return
        item = FileData(self.sid, frame.seq, self.prefix + frame.name, frame.payload, frame.etag)
        for seq, it in self.reorder.push_file(frame.seq, item, self.mgr.loop.time()):
            self._deliver(seq, it)
        self._after_push()

    def _send_progress(self) -> None:
        """Confirm what reached an app (frames still in the no-app backlog are not
        confirmed: the sender keeps them for a re-send or a fallback file)."""
        self._progress_timer = None
        seq = self.app_delivered()
        if seq < self.last_seq and self.conns and not self.closed:
            # a slow app: frames still in our socket buffers are confirmed once the
            # kernel has them (issue 7), so look again even if no new frame comes
            self._progress_timer = self.mgr.loop.call_later(PROGRESS_DELAY * 5, self._send_progress)
        if seq <= self.progress_sent or self.closed or not self.sid:
            return
        if self.state is SessionState.OPEN and self.mgr.link.up:
            with contextlib.suppress(LinkDown):
                self.mgr.link.send(m.HotlinkProgress(self.sid, seq))
                self.progress_sent = seq

    def _after_push(self) -> None:
        ro = self.reorder
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
        if self.syncing:  # the missing seqs are most likely in the catch-up still coming
            self._gap_timer = self.mgr.loop.call_later(ro.gap_timeout, self._on_gap_timer)
            return
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
        if type(msg) is FileData:
            self.files_received += 1
            if self.reader_path is not ActivePath.FILES:
                self._reader_switch(ActivePath.FILES)
        elif self.reader_path is not ActivePath.HOTLINK:
            self._reader_switch(ActivePath.HOTLINK)
        conns = self.conns
        if conns:
            for c in conns:
                c.write(header, payload)
            self.frames_received += 1
            self.bytes_received += len(payload)
            return
        bl = self.backlog
        cfg = self.mgr.cfg
        size = len(header) + len(payload)
        budget = self.mgr.reader_budget
        while bl and (
            len(bl) >= cfg.reader_queue
            or self.backlog_bytes + size > cfg.reader_queue_bytes
            or budget.used + size > budget.limit
        ):
            h, p = bl.popleft()
            self.backlog_bytes -= len(h) + len(p)
            budget.give(len(h) + len(p))
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
        if not budget.take(size):  # the agent-wide bound, with nothing of ours to drop
            self.drops += 1
            self.mgr.drops += 1
            if self.drops == 1 or self.drops % 1000 == 0:
                log.warning(
                    "session %s: no reader app connected and the agent-wide reader bound "
                    "(%d bytes) is reached; frame %d dropped (%d so far)",
                    self.path,
                    budget.limit,
                    seq,
                    self.drops,
                )
            return
        bl.append((header, payload))
        self.backlog_bytes += size

    def _reader_switch(self, to: ActivePath) -> None:
        self.reader_path = to
        self.policy.switches += 1
        why = "frames arrive by fallback files" if to is ActivePath.FILES else "frames by hotlink"
        log.info("session %s: %s", self.path, why)
        self.mgr.emit(EventType.PATH_SWITCHED, self, self.sender, why)

    def app_delivered(self) -> int:
        """Last seq handed to an app (frames still in the no-app backlog, or in an
        app connection's user-space buffers, which die with the agent, are not)."""
        if self.backlog:
            h = self.backlog[0][0]
            return int.from_bytes(h[13:21], "big") - 1
        if self.conns:
            last = self.last_seq
            return min(c.flushed_seq(last) for c in self.conns)
        return self.last_seq

    @property
    def active_path(self) -> ActivePath:
        return self.policy.active if self.is_sender else self.reader_path

    def record(self) -> SessionRecord:
        """What the state file keeps (see `state.py`); called off the data path."""
        rec = SessionRecord(
            self.path,
            int(self.role),
            self.to,
            self.ipc_mode,
            self.tcp_addr,
            int(self.policy.mode),
            self.sid,
        )
        if self.is_sender:
            rec.seq = self.seq
            rec.delivered = self.files_acked_seq
        else:
            rec.delivered = self.app_delivered()
            if not len(self.reorder) and not self.backlog and not self.ingest_pending:
                self.safe_cursor = self.cursor
            rec.cursor_mtime, rec.cursor_path = self.safe_cursor
        return rec

    def reset_stream(self) -> None:
        self.reorder.reset()
        self.progress_sent = 0
        self.resume_sid = ""
        self.last_seq = 0
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
        for t in (self._gap_timer, self._progress_timer, self._retry_timer, self._sync_timer):
            if t is not None:
                t.cancel()
        self._gap_timer = self._progress_timer = self._retry_timer = self._sync_timer = None
        self.mgr.files.forget_session(self)
        files = list(self.ipc.files)
        self.ipc.close()
        for c in list(self.conns):
            if graceful:
                c.close()
            else:
                c.fail("session closed")
        self.conns.clear()
        self.mgr.reader_budget.give(self.backlog_bytes)
        self.backlog.clear()
        self.backlog_bytes = 0
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

    #: spans (agent/tracing.py), set by the app when tracing is on
    tracer: AgentTracer | None = None

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
        #: bytes queued for reader apps across all sessions (`--reader-total-bytes`)
        self.reader_budget = ByteBudget(cfg.reader_total_bytes)
        self.unknown_frames = 0
        self._errors = 0
        self.files = FileWorker(
            self,
            link,
            keep_files=cfg.keep_files,
            max_file_bytes=min(cfg.max_payload, cfg.max_message - 4096),
            memory_budget=cfg.send_queue_bytes,
            tee_queue=cfg.send_queue_frames,
        )
        self.ack_hooks.append(self.files.on_ack)
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
        restore: SessionRecord | None = None,
        clean: bool = False,
    ) -> Session:
        try:
            full, r = resolve_path(self.email, path, role)
            try:
                normalize_mode(fallback_mode)
            except ValueError:
                raise ProtocolError(f"unknown fallback_mode {fallback_mode}") from None
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
                    full,
                    r,
                    mode,
                    to,
                    fallback_mode,
                    tcp_addr,
                    require_link,
                    timeout,
                    restore,
                    clean,
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
        restore: SessionRecord | None = None,
        clean: bool = False,
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
            restore=restore,
            clean=clean,
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
            if not s.sid:
                s.sid = secrets.token_hex(8)
            self.by_sid[s.sid] = s
            if s.resumed:
                self.files.restore_uploads(s, s.files_acked_seq)
            if self.link.up:
                self._send_open(s)
                if restore is None:
                    await self._wait_verdict(s, timeout)
        else:
            if s.sid:
                self.by_sid[s.sid] = s
            offer = self.offers.get(full)
            if offer is not None and self.link.up:
                self._reader_offer(s, offer)
                if restore is None:
                    await self._wait_verdict(s, timeout)
            elif s.sid and self.link.up:
                self._start_sync(s)
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
        # where we are in this stream, if we were in it before (re-accept, restart)
        seq = s.app_delivered() if s.resume_sid == s.sid else None
        try:
            oid = self.link.send(m.HotlinkAccept(s.sid, seq=seq))
        except LinkDown:
            return
        s.resume_sid = s.sid
        self._acks[oid] = s

    # --- file path: catch-up, offers, restore, watcher ---------------------------

    def reader_session_for(self, path: str) -> Session | None:
        """The open reader session whose folder holds `path`, if any."""
        p = path
        by_path = self.by_path
        while "/" in p:
            p = p.rsplit("/", 1)[0]
            s = by_path.get(p)
            if s is not None:
                return None if s.is_sender or s.closed else s
        return None

    def _reader_offer(self, s: Session, offer: m.HotlinkOpen) -> None:
        """The sender's open is known: catch up on stored fallback files of this
        stream first (once per link connection), then accept. Accepting only after
        the catch-up keeps hotlink frames behind the files they follow."""
        if s.sid != offer.sid:
            if s.sid and self.by_sid.get(s.sid) is s:
                del self.by_sid[s.sid]
            if s.sid:
                log.info("session %s: new stream %s (was %s)", s.path, offer.sid, s.sid)
                s.reset_stream()
            s.sid = offer.sid
            self.by_sid[s.sid] = s
            s.cursor = s.safe_cursor = (0, "")
            s.synced_sid = ""
            s.syncing = False
        s.sender = offer.frm or s.sender
        if s.synced_sid != s.sid:
            s.deferred_offer = offer
            s.new_verdict()
            if not s.syncing:
                self._start_sync(s)
            return
        self._accept(s, offer)

    def _start_sync(self, s: Session) -> None:
        if not self.link.up or not s.sid or s.closed:
            return
        try:
            self.link.send(
                m.FileSync(
                    s.path,
                    s.cursor[0],
                    s.cursor[1],
                    sid=s.sid,
                    # a larger file would not fit one WS message to us (path, keys)
                    limit=max(1, self.cfg.max_message - 4096),
                )
            )
        except LinkDown:
            return
        s.syncing = True
        if s._sync_timer is not None:
            s._sync_timer.cancel()
        s._sync_timer = self.loop.call_later(SYNC_TIMEOUT, self._sync_timeout, s)

    def _sync_timeout(self, s: Session) -> None:
        s._sync_timer = None
        if s.syncing and not s.closed:
            log.warning(
                "session %s: no catch-up answer from the relay in %gs; going on without",
                s.path,
                SYNC_TIMEOUT,
            )
            self._sync_done(s)

    def _on_file_sync(self, msg: m.FileSync) -> None:
        s = self.by_path.get(msg.path)
        if s is None or s.is_sender or s.closed or not s.syncing or msg.sid != s.sid:
            return
        s.cursor = (msg.since, msg.after)
        if msg.more:
            self._start_sync(s)
            return
        self._sync_done(s)

    def _sync_done(self, s: Session) -> None:
        s.syncing = False
        if s._sync_timer is not None:
            s._sync_timer.cancel()
            s._sync_timer = None
        s.synced_sid = s.sid
        offer, s.deferred_offer = s.deferred_offer, None
        if offer is not None and offer.sid == s.sid and self.link.up:
            self._accept(s, offer)

    def _schedule_reopen(self, s: Session) -> None:
        if s._retry_timer is not None or s.closed:
            return
        delay = s._retry_delay
        s._retry_delay = min(RETRY_OPEN_MAX, delay * 2)

        def retry() -> None:
            s._retry_timer = None
            if not s.closed and s.state is SessionState.PENDING and self.link.up:
                self._send_open(s)

        s._retry_timer = self.loop.call_later(delay, retry)

    def on_watched(self, paths: list[Path]) -> None:
        """New/changed `*.request` files in our datasite (from the watcher)."""
        own = self.files.own_paths
        senders = [(str(s.session_dir) + "/", s) for s in self.by_path.values() if s.is_sender]
        for p in paths:
            sp = str(p)
            if sp in own:
                del own[sp]
                continue
            for prefix, s in senders:
                if sp.startswith(prefix) and not s.closed:
                    name = sp[len(prefix) :]
                    try:
                        validate_frame_name(name)
                    except ProtocolError as exc:
                        log.warning("refused %s: %s", sp, exc)
                        break
                    self.files.upload_app_file(s, p, name)
                    break

    def snapshot_state(self) -> AgentState:
        return AgentState(
            sessions=[
                s.record()
                for s in self.by_path.values()
                if not s.closed and s.state in (SessionState.PENDING, SessionState.OPEN)
            ]
        )

    async def restore(self, state: AgentState) -> int:
        """Re-open the sessions of a previous run (before the link starts)."""
        n = 0
        for rec in state.sessions:
            try:
                await self.open_session(
                    rec.path,
                    role=rec.role,
                    to=rec.to,
                    ipc_mode=rec.ipc_mode,
                    fallback_mode=rec.fallback_mode,
                    tcp_addr=rec.tcp_addr,
                    restore=rec,
                    clean=state.clean,
                )
                n += 1
            except SessionError as exc:
                log.warning("cannot restore session %s: %s", rec.path, exc)
        return n

    def spill_all(self) -> None:
        """Shutdown: frames still waiting for the hotlink become fallback files."""
        for s in self.by_path.values():
            if s.is_sender and not s.closed and s.policy.files_allowed and s.pending:
                s._spill()

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
        self.files.pump()
        for s in list(self.by_path.values()):
            if s.is_sender and s.state in (SessionState.PENDING, SessionState.OPEN):
                s.state = SessionState.PENDING
                self._send_open(s)
            elif not s.is_sender and s.sid and not s.closed:
                self._start_sync(s)

    def on_link_down(self, reason: str) -> None:
        self.offers.clear()
        self._acks.clear()
        self.files.on_link_down()
        for s in self.by_path.values():
            if s.state is SessionState.OPEN:
                s.state = SessionState.PENDING
                s.reason = "link down"
            s.readers.clear()
            s.reader_acks.clear()
            if s.is_sender:
                s.requeue_recent()
            else:
                s.syncing = False
                s.synced_sid = ""
                s.deferred_offer = None
        self.emit(EventType.LINK_DOWN, None, "", reason)
        for s in list(self.by_path.values()):
            s.reevaluate(f"relay link down: {reason}")

    def on_writable(self) -> None:
        for s in self.by_path.values():
            if s.pending:
                s.flush()
        if self.files.uploads:
            self.files.pump()

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
        elif t is m.HotlinkProgress:
            s = self.by_sid.get(msg.sid)  # type: ignore[union-attr]
            if s is not None and s.is_sender:
                s.on_progress(msg.frm, msg.seq)  # type: ignore[union-attr]
        elif t is m.FileWrite:
            self.files.ingest(msg)  # type: ignore[arg-type]
        elif t is m.FileSync:
            self._on_file_sync(msg)  # type: ignore[arg-type]
        elif t is m.Error:
            s = self.by_path.get(msg.path)  # type: ignore[union-attr]
            if s is not None and s.syncing:  # the relay could not answer our catch-up
                log.warning("session %s: catch-up failed: %s", s.path, msg.message)  # type: ignore[union-attr]
                self._sync_done(s)
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
            s._retry_delay = RETRY_OPEN_INITIAL
            self.emit(EventType.OPENED, s, "", "")
            s.flush()
            s.reevaluate("session open on the relay")
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
            self._reader_offer(s, msg)

    def _on_accept(self, msg: m.HotlinkAccept) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None or not s.is_sender:
            return
        peer = msg.frm or "?"
        if peer not in s.readers:
            s.readers.add(peer)
            self.emit(EventType.ACCEPTED, s, peer, "")
        if msg.seq is not None:  # the reader says where it is: re-send after it
            s.resume_reader(peer, msg.seq)
        s.flush()
        s.reevaluate(f"{peer} accepted")

    def _on_reject(self, msg: m.HotlinkReject) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None:
            return
        if msg.frm:  # a reader turned our open down
            s.readers.discard(msg.frm)
            s.reader_acks.pop(msg.frm, None)
            self.emit(EventType.REJECTED, s, msg.frm, msg.reason)
            s.reevaluate(f"{msg.frm} rejected: {msg.reason}")
            return
        if msg.reason == m.REASON_UNKNOWN_SESSION:
            # The relay lost the session (sender gone / relay restarted): wait for or
            # re-send the open instead of failing for good.
            if s.is_sender:
                if s.state is SessionState.OPEN:
                    s.state = SessionState.PENDING
                    s.readers.clear()
                    self._send_open(s)
                    s.reevaluate("relay lost the session")
            else:
                s.state = SessionState.PENDING
                s.reason = msg.reason
                off = self.offers.get(s.path)
                if off is not None and off.sid == msg.sid:
                    del self.offers[s.path]
            return
        if s.is_sender and msg.reason in TRANSIENT_REJECTS and s.policy.files_allowed:
            # Not accepted for now: frames travel by files; the open is retried.
            s.state = SessionState.PENDING
            s.reason = msg.reason
            s.readers.clear()
            s.settle(None)
            for oid in [k for k, v in self._acks.items() if v is s]:
                del self._acks[oid]
            log.warning("session %s not accepted by the relay (%s); retrying", s.path, msg.reason)
            self.emit(EventType.REJECTED, s, "", msg.reason)
            s.reevaluate(f"relay did not accept the session: {msg.reason}")
            self._schedule_reopen(s)
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
                s.reader_acks.pop(msg.frm, None)
                self.emit(EventType.CLOSED, s, msg.frm, msg.reason)
                s.reevaluate(f"{msg.frm}: {msg.reason}")
            elif msg.reason == REASON_IDLE:
                # Like a disconnect, not a verdict: open again (same sid, same seqs).
                s.state = SessionState.PENDING
                s.reason = msg.reason
                s.readers.clear()
                s.reader_acks.clear()
                self.emit(EventType.CLOSED, s, "", msg.reason)
                s.reevaluate("relay closed the idle session")
                if self.link.up:
                    self._send_open(s)
            else:  # the relay ended our session (e.g. we lost write access)
                self._reject(s, msg.reason or "closed by the relay")
            return
        off = self.offers.get(s.path)
        if off is not None and off.sid == msg.sid:
            del self.offers[s.path]
        if msg.reason in (m.REASON_SENDER_GONE, REASON_IDLE):
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
