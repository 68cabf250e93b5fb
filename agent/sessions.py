"""Sessions: path resolution and the manager that ties the relay link (any
`Transport`) to the sessions.

`SessionManager` is an adapter: it routes each relay message to its session by sid
or path (`Session`, `agent/session.py`, which feeds the session's pure stream core,
`agent/core/`; the routing is its `RelayMessages` half, `relay_messages.py`), keeps the
Opens the relay offered us and the message ids waiting for an Ack, and runs the async
control plane (`open_session` waits for the relay's verdict). The state machine of a
session is the table in `core/state.py`; the data paths are described in
`core/sender.py` and `core/reader.py`, loss-free resume in docs/design.md "Loss-free
resume".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import ProtocolError

from .budget import ByteBudget
from .config import AgentConfig
from .core.effects import EventType
from .core.limits import StreamLimits, Totals
from .core.names import validate_frame_name
from .core.state import Role, SessionState
from .filepath import FileWorker
from .ipc import EndpointRegistry
from .mirror_policy import MirrorPolicy
from .open_args import OpenArgs, SessionError, check_open_args, is_loopback, resolve_path
from .reader_session import ReaderSession
from .relay_messages import RelayMessages
from .runtime_dir import InsecureDirectory
from .sender_session import SenderSession, new_sid
from .session import Session
from .state import AgentState, SessionRecord
from .tracing import AgentTracer
from .transport import Transport

log = logging.getLogger("hotlink.agent.sessions")

__all__ = [
    "EventType",
    "Role",
    "Session",
    "SessionError",
    "SessionManager",
    "SessionState",
    "is_loopback",
    "resolve_path",
    "validate_frame_name",
]


EmitFn = Callable[[EventType, "Session | None", str, str], None]


class SessionManager(RelayMessages):
    """Owns all sessions; the `TransportListener` of the link (relay messages:
    `RelayMessages`)."""

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
        #: relay messages the sessions do not handle (signals, errors): True = taken
        self.message_hooks: list[Callable[[Envelope], bool]] = []
        self.frames_in = self.bytes_in = 0
        #: bytes queued for reader apps across all sessions (`--reader-total-bytes`)
        self.reader_budget = ByteBudget(cfg.reader_total_bytes)
        self.unknown_frames = 0
        self._errors = 0
        self.limits = StreamLimits(
            max_message=cfg.max_message,
            send_queue_frames=cfg.send_queue_frames,
            send_queue_bytes=cfg.send_queue_bytes,
            resend_frames=cfg.resend_frames,
            resend_bytes=cfg.resend_bytes,
            reorder_window=cfg.reorder_window,
            reorder_timeout=cfg.reorder_timeout,
            reader_queue=cfg.reader_queue,
            reader_queue_bytes=cfg.reader_queue_bytes,
        )
        #: frames_out / bytes_out / drops of every stream, closed ones included
        self.totals = Totals()
        self._tracer: AgentTracer | None = None
        self.files = FileWorker(
            link,
            root=cfg.root,
            email=cfg.email,
            find_reader=self.reader_session_for,
            keep_files=cfg.keep_files,
            max_file_bytes=min(cfg.max_payload, cfg.max_message - 4096),
            memory_budget=cfg.send_queue_bytes,
            tee_queue=cfg.send_queue_frames,
            mirror=MirrorPolicy(
                cfg.email, cfg.subscribe, cfg.mirror_datasite_bytes, cfg.mirror_total_bytes
            ),
        )
        self.ack_hooks.append(self.files.on_ack)
        link.set_listener(self)

    # --- queries ----------------------------------------------------------------

    @property
    def tracer(self) -> AgentTracer | None:
        """Spans (agent/tracing.py), set by the app when tracing is on."""
        return self._tracer

    @tracer.setter
    def tracer(self, tr: AgentTracer | None) -> None:
        self._tracer = self.files.tracer = tr

    @property
    def frames_out(self) -> int:
        return self.totals.frames_out

    @property
    def bytes_out(self) -> int:
        return self.totals.bytes_out

    @property
    def drops(self) -> int:
        return self.totals.drops

    @property
    def queued(self) -> int:
        return sum(len(s.pending) for s in self.by_path.values())

    def find(self, session_id: str = "", path: str = "") -> Session:
        if session_id:
            s = self.by_sid.get(session_id)
            if s is None:
                s = next((x for x in self.by_path.values() if x.sid == session_id), None)
            if s is None:
                # `hotlinkctl close demo` sends a one-segment path as a session id (a
                # path without '/'): a session opened as `demo` is found by that name too
                with contextlib.suppress(ProtocolError):
                    s = self.by_path.get(resolve_path(self.email, session_id)[0])
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
        direct: int = 0,
    ) -> Session:
        a = check_open_args(self.email, path, role, to, ipc_mode, fallback_mode, tcp_addr, direct)
        timeout = timeout if timeout > 0 else self.cfg.open_timeout
        lock = self._open_locks.setdefault(a.path, asyncio.Lock())
        try:
            async with lock:  # concurrent opens of one path: one creates, others see it
                return await self._open_locked(a, require_link, timeout, restore, clean)
        finally:
            if not lock.locked() and self._open_locks.get(a.path) is lock:
                del self._open_locks[a.path]

    async def _open_locked(
        self,
        a: OpenArgs,
        require_link: bool,
        timeout: float,
        restore: SessionRecord | None,
        clean: bool,
    ) -> Session:
        full, r = a.path, a.role
        s = self.by_path.get(full)
        if s is not None:
            if s.role is not r:
                raise SessionError(
                    SessionError.EXISTS,
                    f"a session on {full} exists with role {s.role.name.lower()}",
                )
            if a.to and a.to != s.to and s.state is not SessionState.REJECTED:
                raise SessionError(
                    SessionError.EXISTS,
                    f"a session on {full} exists for {s.to or 'any reader'}, not {a.to}",
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
        s = new_session(
            self,
            full,
            r,
            session_dir=sdir,
            ipc_mode=a.ipc_mode,
            fallback_mode=a.fallback_mode,
            to=a.to,
            tcp_addr=a.tcp_addr,
            restore=restore,
            clean=clean,
            direct=a.direct,
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
        files = list(s.ipc.files)
        try:
            await self.registry.add(files)
        except BaseException:  # cancelled (shutdown): the endpoint must not outlive it
            s.ipc.close()
            self.registry.remove(files)
            raise
        self.by_path[full] = s
        log.info("session %s opened locally as %s: %s", full, r.name.lower(), s.endpoint)
        s.stream.link_up = self.link.up  # the endpoint start awaited: look again
        if s.is_sender:
            if not s.sid:
                s.sid = new_sid()
            self.by_sid[s.sid] = s
            if s.resumed:
                self.files.restore_uploads(s, s.tx.files_acked_seq)
            s.apply(s.tx.start())
            if self.link.up and restore is None:
                await self._wait_verdict(s, timeout)
        else:
            if s.sid:
                self.by_sid[s.sid] = s
            offer = self.offers.get(full)
            s.apply(s.rx.start(offer, self.loop.time()))
            if offer is not None and self.link.up and restore is None:
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
            # A limit is not an ACL verdict: the caller should close sessions or wait,
            # not ask the owner for access.
            code = SessionError.EXHAUSTED if reason in m.TRANSIENT_REJECTS else SessionError.DENIED
            raise SessionError(code, f"relay rejected {s.path}: {reason}")

    def close_session(self, s: Session, reason: str = "") -> Session:
        """Sender: ends the session for everyone; reader: leaves its leg only."""
        s.stream.link_up = self.link.up
        s.apply(s.stream.close(reason))
        self._forget(s)
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

    def track_ack(self, oid: str, s: Session) -> None:
        """`s` waits for the relay's Ack of message `oid` (its Open or Accept)."""
        self._acks[oid] = s

    def reindex(self, s: Session, old: str, new: str) -> None:
        """`s` follows a new sid."""
        if old and self.by_sid.get(old) is s:
            del self.by_sid[old]
        if new:
            self.by_sid[new] = s

    # --- file path: offers, restore, watcher ------------------------------------

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

    def _on_file_sync(self, msg: m.FileSync) -> None:
        s = self.by_path.get(msg.path)
        if s is None or s.is_sender:
            return
        s.apply(s.rx.on_file_sync(msg, self.loop.time()))

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
                    direct=rec.direct,
                )
                n += 1
            except SessionError as exc:
                log.warning("cannot restore session %s: %s", rec.path, exc)
        return n

    def spill_all(self) -> None:
        """Shutdown: frames still waiting for the hotlink become fallback files."""
        for s in list(self.by_path.values()):
            if s.is_sender:
                s.apply(s.tx.spill())

    def _reject(self, s: Session, reason: str) -> None:
        s.apply(s.stream.reject(reason))
        if s.sid and self.by_sid.get(s.sid) is s:
            del self.by_sid[s.sid]

    # --- TransportListener ------------------------------------------------------

    def on_link_up(self) -> None:
        for hook in self.link_up_hooks:
            try:
                hook()
            except Exception:
                log.exception("link-up hook failed")
        self.emit(EventType.LINK_UP, None, "", "")
        self.files.pump()
        now = self.loop.time()
        for s in list(self.by_path.values()):
            s.apply(s.tx.on_link_up() if s.is_sender else s.rx.on_link_up(now))

    def on_link_down(self, reason: str) -> None:
        self.offers.clear()
        self._acks.clear()
        self.files.on_link_down()
        for s in self.by_path.values():
            s.stream.on_link_down()
        self.emit(EventType.LINK_DOWN, None, "", reason)
        for s in list(self.by_path.values()):
            s.reevaluate(f"relay link down: {reason}")

    def on_writable(self) -> None:
        for s in self.by_path.values():
            if s.pending:
                s.flush()
        if self.files.uploads:
            self.files.pump()

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


def new_session(mgr: SessionManager, path: str, role: Role, **kw: Any) -> Session:
    """The adapter for `role` (keyword arguments: see `Session`, plus `fallback_mode`,
    `restore`, `clean`)."""
    cls = SenderSession if role is Role.SENDER else ReaderSession
    return cls(mgr, path, **kw)
