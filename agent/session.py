"""The session adapters: one session's endpoint, timer and effects, around its core.

A `Session` owns the I/O of one session (its `IpcEndpoint` and app connections, one
event-loop timer, the verdict future `OpenSession` waits on) and one pure stream core
that makes every decision: `SenderSession` wraps a `core.SenderStream`,
`ReaderSession` a `core.ReaderStream` (`new_session` picks one by role). Events from
the apps, the relay link (through `SessionManager`) and the file worker go into the
core; the effects it returns are carried out here, in order (`_run`). The timer is
armed at the core's `next_deadline()` and calls `handle_timer(now)`.

Implements `ipc.EndpointOwner` (apps), `filepath.FileSession` (file worker) and
`tracing.TracedSession` (spans).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import Frame
from hotlink.wire.paths import owner_of

from .config import AgentConfig
from .core.effects import (
    TEE,
    Deliver,
    DeliverBacklog,
    Effect,
    Emit,
    FailApps,
    NewVerdict,
    PauseApps,
    ResumeApps,
    Send,
    Settle,
    Shutdown,
    SidChanged,
    Transmit,
    WriteFile,
)
from .core.limits import StreamLimits, Totals
from .core.paths import ActivePath, FallbackMode, FallbackPolicy, normalize_mode
from .core.reader import ReaderStream
from .core.sender import SenderStream
from .core.state import Role, SessionState
from .filepath import FileWorker
from .ipc import AppConnection, EndpointRegistry, IpcEndpoint
from .state import SessionRecord
from .tracing import AgentTracer
from .transport import LinkDown, Transport

log = logging.getLogger("hotlink.agent.sessions")

_NO_PENDING: deque[m.HotlinkData] = deque()
_NO_READERS: frozenset[str] = frozenset()


class SessionHost(Protocol):
    """What a session needs from its manager (`sessions.SessionManager`)."""

    cfg: AgentConfig
    email: str
    link: Transport
    loop: asyncio.AbstractEventLoop
    limits: StreamLimits
    totals: Totals
    runtime_dir: Path
    registry: EndpointRegistry
    files: FileWorker
    emit: Callable[..., Any]

    @property
    def tracer(self) -> AgentTracer | None: ...

    def track_ack(self, oid: str, s: Session) -> None: ...

    def reindex(self, s: Session, old: str, new: str) -> None: ...


class Session:
    """What both roles share: endpoint, app connections, timer, verdict, effects."""

    is_sender = False
    role = Role.READER
    stream: SenderStream | ReaderStream

    def __init__(
        self,
        mgr: SessionHost,
        path: str,
        *,
        session_dir: Path,
        ipc_mode: int,
        to: str,
        tcp_addr: str,
    ) -> None:
        cfg = mgr.cfg
        self.mgr = mgr
        self.path = path
        self.prefix = path + "/"
        self.to = to
        self.session_dir = session_dir
        self.ipc_mode = ipc_mode
        self.tcp_addr = tcp_addr
        self.endpoint = ""
        self.opened_ns = time.time_ns()
        self.conns: list[AppConnection] = []
        self.verdict: asyncio.Future[str | None] | None = None
        #: restored after a clean stop: the same stream goes on (see state.py)
        self.resumed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
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
        )

    # --- views of the core (control API, tracing, file worker) -----------------------

    @property
    def sid(self) -> str:
        return self.stream.sid

    @sid.setter
    def sid(self, value: str) -> None:
        self.stream.sid = value

    @property
    def state(self) -> SessionState:
        return self.stream.machine.state

    @property
    def reason(self) -> str:
        return self.stream.machine.reason

    @property
    def closed(self) -> bool:
        return self.stream.closed

    @property
    def policy(self) -> FallbackPolicy:
        return self.stream.policy

    @property
    def fallback_mode(self) -> int:
        return int(self.stream.policy.mode)

    @property
    def last_seq(self) -> int:
        return self.stream.last_seq

    def record(self) -> SessionRecord:
        """What the state file keeps (see `state.py`); called off the data path."""
        return SessionRecord(
            self.path,
            int(self.role),
            self.to,
            self.ipc_mode,
            self.tcp_addr,
            self.fallback_mode,
            self.sid,
        )

    # --- carrying out effects ------------------------------------------------------

    def _run(self, effects: list[Effect]) -> None:
        error = None
        for e in effects:
            t = type(e)
            if t is Transmit:
                self._transmit(e.fail_over, e.force)  # type: ignore[union-attr]
            elif t is WriteFile:
                self._write_file(e)  # type: ignore[arg-type]
            elif t is Deliver:
                for c in self.conns:
                    c.write(e.header, e.payload)  # type: ignore[union-attr]
            elif t is Send:
                self._send(e.msg, e.track)  # type: ignore[union-attr]
            elif t is Emit:
                self.mgr.emit(e.type, self, e.peer, e.reason)  # type: ignore[union-attr]
            elif t is PauseApps:
                for c in self.conns:
                    c.pause_reading()
            elif t is ResumeApps:
                for c in self.conns:
                    c.resume_reading()
            elif t is Settle:
                self.settle(e.rejected)  # type: ignore[union-attr]
            elif t is NewVerdict:
                self.new_verdict()
            elif t is Shutdown:
                self.shutdown(e.graceful)  # type: ignore[union-attr]
            elif t is SidChanged:
                self.mgr.reindex(self, e.old, e.new)  # type: ignore[union-attr]
            elif t is FailApps:
                error = e.error  # type: ignore[union-attr]
            else:  # DeliverBacklog goes to one connection: handled in app_connected
                raise AssertionError(f"{t.__name__} cannot be carried out here")
        self._arm()
        if error is not None:
            raise error

    def _transmit(self, fail_over: bool, force: bool = False) -> None:
        raise AssertionError("only a sender transmits")

    def _write_file(self, w: WriteFile) -> None:
        raise AssertionError("only a sender writes fallback files")

    def _send(self, msg: m.Message, track: bool) -> None:
        try:
            oid = self.mgr.link.send(msg)
        except LinkDown:
            return
        if track:
            self.mgr.track_ack(oid, self)
        self._sent(msg)

    def _sent(self, msg: m.Message) -> None:
        """A message of ours reached the link."""

    def _arm(self) -> None:
        dl = self.stream.next_deadline()
        if dl == self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = dl
        self._timer = None if dl is None else self.mgr.loop.call_at(dl, self._on_timer)

    def _on_timer(self) -> None:
        when = self._timer_when or 0.0
        self._timer = None
        self._timer_when = None
        self._run(self.stream.handle_timer(max(self.mgr.loop.time(), when)))

    # --- endpoint owner and events ---------------------------------------------------

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)

    def app_disconnected(self, conn: AppConnection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)

    def app_dropped(self, conn: AppConnection, frames: int) -> None:
        self.stream.drops += frames
        self.mgr.totals.drops += frames

    def app_frames(self, conn: AppConnection, frames: list[Frame]) -> None:
        raise AssertionError("a reader endpoint takes no frames")  # ipc refuses them first

    def flush(self) -> None:
        """The link is writable again."""

    def reevaluate(self, why: str = "") -> None:
        """Inputs of the path policy changed (only a sender picks a path)."""

    def set_mode(self, mode: FallbackMode) -> None:
        self.stream.policy.mode = mode

    # --- lifecycle -----------------------------------------------------------------

    def new_verdict(self) -> asyncio.Future[str | None]:
        if self.verdict is None or self.verdict.done():
            self.verdict = self.mgr.loop.create_future()
        return self.verdict

    def settle(self, rejected_reason: str | None) -> None:
        v = self.verdict
        if v is not None and not v.done():
            v.set_result(rejected_reason)

    def shutdown(self, graceful: bool = True) -> None:
        """The session ends: the core counts what was never sent; remove the endpoint
        and close app connections (gracefully: flush first)."""
        self.stream.shutdown()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_when = None
        self.mgr.files.forget_session(self)  # type: ignore[arg-type]
        files = list(self.ipc.files)
        self.ipc.close()
        for c in list(self.conns):
            if graceful:
                c.close()
            else:
                c.fail("session closed")
        self.conns.clear()
        self.mgr.registry.remove(files)


class SenderSession(Session):
    """The sender's adapter: app frames in, frames out on the path the core picks."""

    is_sender = True
    role = Role.SENDER

    def __init__(
        self,
        mgr: SessionHost,
        path: str,
        *,
        fallback_mode: int,
        restore: SessionRecord | None = None,
        clean: bool = False,
        **kw: Any,
    ) -> None:
        self.stream = self.tx = SenderStream(
            path,
            sid="",
            to=kw["to"],
            mode=normalize_mode(fallback_mode),
            limits=mgr.limits,
            totals=mgr.totals,
        )
        super().__init__(mgr, path, **kw)
        if restore is not None and clean:
            self.tx.sid = restore.sid
            self.tx.resume(restore.seq, restore.delivered)
            self.resumed = True
        elif restore is not None:
            log.warning(
                "session %s: the agent did not stop cleanly; it goes on as a new stream", path
            )

    @property
    def sender(self) -> str:
        return self.mgr.email

    @property
    def readers(self) -> set[str]:
        return self.tx.readers

    @property
    def active_path(self) -> ActivePath:
        return self.tx.policy.active

    @property
    def seq(self) -> int:
        return self.tx.seq

    @property
    def pending(self) -> deque[m.HotlinkData]:
        return self.tx.pending

    syncing = False

    def counters(self) -> dict[str, int]:
        """GetSession's counters."""
        tx = self.tx
        return {
            "frames_sent": tx.frames_sent,
            "bytes_sent": tx.bytes_sent,
            "drops": tx.drops,
            "queued": len(tx.pending),
            "files_sent": tx.files_sent,
            "files_pending": tx.file_backlog,
            "path_switches": tx.policy.switches,
            "confirmed_seq": tx.confirmed,
        }

    def record(self) -> SessionRecord:
        rec = super().record()
        rec.seq = self.tx.seq
        rec.delivered = self.tx.files_acked_seq
        return rec

    def _transmit(self, fail_over: bool, force: bool = False) -> None:
        """Send queued frames while the session can send and the link takes them."""
        tx = self.tx
        pend = tx.pending
        failed = False
        if pend and (force or tx.can_transmit):
            link = self.mgr.link
            while pend and link.writable:
                try:
                    link.send(pend[0])
                except LinkDown:
                    failed = True
                    break
                tee = tx.frame_sent()
                if tee is not None:
                    self._write_file(tee)
        done = tx.transmit_done(failed, fail_over)
        if done:
            self._run(done)

    def _write_file(self, w: WriteFile) -> None:
        ok = self.mgr.files.write_frame(self, w.seq, w.name, w.etag, w.payload, w.kind)  # type: ignore[arg-type]
        if ok and w.kind == TEE:
            self.tx.tee_queued(w.seq)

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)
        if self.tx.reading_paused:
            conn.pause_reading()

    def app_frames(self, conn: AppConnection, frames: list[Frame]) -> None:
        """The hot path. Raises ProtocolError on a refused frame (after handling the
        frames before it)."""
        tx = self.tx
        tr = self.mgr.tracer  # None: tracing off (agent/tracing.py)
        if tr is None:
            effects = tx.app_frames(frames)
            if len(effects) == 1 and type(effects[0]) is Transmit:  # the common case
                self._transmit(True)
            else:
                self._run(effects)
            return
        t_in = time.time_ns()
        first = tx.seq
        effects = tx.app_frames(frames)
        # the frames of this batch that wait for the hotlink (files are not traced here)
        new = list(itertools.takewhile(lambda x: x.seq > first, reversed(tx.pending)))
        for msg in reversed(new):
            tr.origin(self, msg, t_in)
        self._run(effects)

    def flush(self) -> None:
        self._transmit(False)

    def reevaluate(self, why: str = "") -> None:
        self._run(self.tx.reevaluate(why))

    def set_mode(self, mode: FallbackMode) -> None:
        self._run(self.tx.set_mode(mode))

    # file worker events
    def next_seq(self) -> int:
        return self.tx.next_seq()

    def file_queued(self) -> None:
        self.tx.file_queued()

    def file_written(self, kind: int, size: int, error: str | None) -> None:
        self._run(self.tx.file_written(kind, size, error))

    def file_acked(self, kind: int, seq: int, size: int) -> None:
        self._run(self.tx.file_acked(kind, seq, size))

    def file_failed(self, kind: int) -> None:
        self._run(self.tx.file_failed(kind))


class ReaderSession(Session):
    """The reader's adapter: frames from any path in, writes to every app out."""

    def __init__(
        self,
        mgr: SessionHost,
        path: str,
        *,
        fallback_mode: int,
        restore: SessionRecord | None = None,
        clean: bool = False,
        **kw: Any,
    ) -> None:
        self.stream = self.rx = ReaderStream(
            path,
            sender=owner_of(path),
            mode=normalize_mode(fallback_mode),
            limits=mgr.limits,
            totals=mgr.totals,
            app_flushed=self._app_flushed,
        )
        super().__init__(mgr, path, **kw)
        if restore is not None:
            self.rx.restore(
                restore.sid, restore.delivered, (restore.cursor_mtime, restore.cursor_path)
            )

    @property
    def sender(self) -> str:
        return self.rx.sender

    @property
    def readers(self) -> frozenset[str]:
        return _NO_READERS

    @property
    def active_path(self) -> ActivePath:
        return self.rx.reader_path

    seq = 0

    @property
    def pending(self) -> deque[m.HotlinkData]:
        return _NO_PENDING

    @property
    def syncing(self) -> bool:
        return self.rx.syncing

    @property
    def ingest_pending(self) -> int:
        return self.rx.ingest_pending

    @ingest_pending.setter
    def ingest_pending(self, n: int) -> None:
        self.rx.ingest_pending = n

    def counters(self) -> dict[str, int]:
        """GetSession's counters."""
        rx = self.rx
        return {
            "frames_received": rx.frames_received,
            "bytes_received": rx.bytes_received,
            "drops": rx.drops,
            "files_received": rx.files_received,
            "duplicates": rx.reorder.duplicates,
            "file_duplicates": rx.reorder.file_duplicates,
            "path_switches": rx.policy.switches,
        }

    def record(self) -> SessionRecord:
        rec = super().record()
        rec.delivered = self.rx.delivered()
        rec.cursor_mtime, rec.cursor_path = self.rx.persist_cursor()
        return rec

    def app_delivered(self) -> int:
        return self.rx.delivered()

    def _app_flushed(self, last: int) -> int | None:
        conns = self.conns
        return min(c.flushed_seq(last) for c in conns) if conns else None

    def _sent(self, msg: m.Message) -> None:
        self.rx.sent(msg)

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)
        for e in self.rx.app_connected(self.mgr.loop.time()):
            if type(e) is DeliverBacklog:
                for h, p in e.frames:  # type: ignore[union-attr]
                    conn.write(h, p)
        self._arm()

    def app_disconnected(self, conn: AppConnection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)
            self.rx.app_disconnected()

    def on_data(self, msg: m.HotlinkData) -> None:
        """The hot path: a frame from the hotlink."""
        conns = self.conns
        for e in self.rx.on_data(msg, self.mgr.loop.time()):
            if type(e) is Deliver:
                for c in conns:
                    c.write(e.header, e.payload)  # type: ignore[union-attr]
            else:
                self._run([e])
        self._arm()

    def take_file(self, frame: FallbackFrame) -> bool:
        """Is this fallback file part of our current stream?"""
        effects = self.rx.take_file(frame)
        if effects is None:
            return False
        self._run(effects)
        return True

    def on_file_frame(self, frame: FallbackFrame) -> None:
        self._run(self.rx.on_file_frame(frame, self.mgr.loop.time()))


def new_session(mgr: SessionHost, path: str, role: Role, **kw: Any) -> Session:
    """The adapter for `role` (keyword arguments: see `Session`, plus `fallback_mode`,
    `restore`, `clean`)."""
    cls = SenderSession if role is Role.SENDER else ReaderSession
    return cls(mgr, path, **kw)
