"""The session adapter's common part: one session's endpoint, timer and effects.

A `Session` owns the I/O of one session (its `IpcEndpoint` and app connections, one
event-loop timer, the verdict future `OpenSession` waits on) and one pure stream core
that makes every decision: `SenderSession` (`sender_session.py`) wraps a
`core.SenderStream`, `ReaderSession` (`reader_session.py`) a `core.ReaderStream`;
`sessions.new_session` picks one by role. Events from the apps, the relay link
(through `SessionManager`) and the file worker go into the core; the effects it
returns are carried out here, in order (`apply`). The timer is armed at the core's
`next_deadline()` and calls `handle_timer(now)`.

Implements `ipc.EndpointOwner` (apps), `filepath.FileSession` (file worker) and
`tracing.TracedSession` (spans).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hotlink.wire import messages as m
from hotlink.wire.frames import Frame

from .budget import ByteBudget
from .config import AgentConfig
from .core.effects import (
    Deliver,
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
from .core.paths import FallbackMode, FallbackPolicy, PathId
from .core.reader import ReaderStream
from .core.sender import SenderStream
from .core.state import Role, SessionState
from .direct.negotiator import Negotiator
from .filepath import FileWorker
from .ipc import AppConnection, EndpointRegistry, IpcEndpoint
from .open_args import DIRECT_AUTO, DIRECT_OFF
from .state import SessionRecord
from .tracing import AgentTracer
from .transport import LinkDown, Transport

log = logging.getLogger("hotlink.agent.sessions")

HOTLINK = PathId.HOTLINK


class SessionHost(Protocol):
    """What a session needs from its manager (`sessions.SessionManager`)."""

    cfg: AgentConfig
    email: str
    link: Transport
    loop: asyncio.AbstractEventLoop
    limits: StreamLimits
    totals: Totals
    reader_budget: ByteBudget
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
        direct: int = 0,
    ) -> None:
        cfg = mgr.cfg
        #: OpenSession's direct override (0: the agent's --direct)
        self.direct = direct
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
            budget=mgr.reader_budget,
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

    #: the session's direct-link negotiation (agent/direct/); None while direct is off
    #: for the session or no direct path runs in this agent
    negotiator: Negotiator | None = None

    def direct_status(self) -> dict[str, str]:
        """Per peer: "up", or why its direct link is not (GetSession's `direct`)."""
        n = self.negotiator
        if n is None:
            return {}
        peers = set(self.readers) if self.is_sender else {self.sender}
        return {p: n.status(p) for p in sorted(peers | set(n.legs)) if p}

    @property
    def direct_mode(self) -> int:
        """`hotlink.v1.DirectMode` in effect: off when the agent runs with --direct off
        (it has no listener), else the session's override, else auto."""
        if self.mgr.cfg.direct == "off":
            return DIRECT_OFF
        return self.direct or DIRECT_AUTO

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
            direct=self.direct,
        )

    # --- carrying out effects ------------------------------------------------------

    def apply(self, effects: list[Effect]) -> None:
        """Carry out the core's effects in order (the manager feeds relay events into
        the core and hands the result here). A `FailApps` is raised at the end."""
        error = None
        for e in effects:
            t = type(e)
            if t is Transmit:
                self._transmit(e.fail_over, e.force, e.path)  # type: ignore[union-attr]
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

    def _transmit(self, fail_over: bool, force: bool = False, path: PathId = HOTLINK) -> None:
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
        self.apply(self.stream.handle_timer(max(self.mgr.loop.time(), when)))

    # --- endpoint owner and events ---------------------------------------------------

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)

    def app_disconnected(self, conn: AppConnection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)

    def app_dropped(self, conn: AppConnection, frames: int, first: int) -> None:
        self.stream.drops += frames
        self.mgr.totals.drops += frames

    def app_dropped_revised(self, conn: AppConnection, was: int, first: int) -> None:
        """Only a reader refetches what a dropped app lost (`ReaderSession`)."""

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
