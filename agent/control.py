"""gRPC control API (`hotlink.v1.HotlinkAgent`) on grpc.aio, plus health and reflection
(v1 and v1alpha, see reflection.py).

grpc.aio runs on the agent's uvloop loop (checked with grpcio 1.85 / uvloop 0.23).
Served on `ROOT/.hotlink/agent.sock` (directory 0700, socket 0600; the agent refuses
to start if it cannot make them owner-only) and optionally on a loopback TCP address,
where every call must come from the agent's own uid or carry the bearer secret of
`control_auth` (that port is reachable by every local user).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hotlink.common.version import VERSION
from hotlink.v1 import agent_pb2 as pb
from hotlink.v1 import agent_pb2_grpc as pb_grpc

from .control_auth import SECRET_NAME, ControlAuth, load_or_create_secret
from .core.paths import normalize_mode
from .pending import pending_reason
from .reflection import enable_reflection
from .runtime_dir import InsecureDirectory, ensure_private_dir
from .sessions import EventType, Session, SessionError, SessionManager, SessionState

log = logging.getLogger("hotlink.agent.control")

#: trailing metadata on every error the servicer itself returns
ORIGIN_MD = (("hotlink-origin", "agent"),)
_CODES = {
    SessionError.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    SessionError.EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    SessionError.DENIED: grpc.StatusCode.PERMISSION_DENIED,
    SessionError.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    SessionError.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
    SessionError.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    SessionError.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    SessionError.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    SessionError.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def session_reason(s: Session) -> str:
    """`s.reason`, or for a PENDING session what it waits for (see agent/pending.py)."""
    if s.state is not SessionState.PENDING:
        return s.reason
    link = s.mgr.link
    return pending_reason(s, link.up, link.state.name, link.last_error, s.mgr.email)


def session_to_proto(s: Session) -> pb.Session:
    return pb.Session(
        session_id=s.sid,
        path=s.path,
        role=int(s.role),
        state=int(s.state),
        reason=session_reason(s),
        sender=s.sender,
        to=s.to,
        readers=sorted(s.readers),
        session_dir=str(s.session_dir),
        ipc_mode=s.ipc_mode,
        endpoint=s.endpoint,
        fallback_mode=s.fallback_mode or pb.FALLBACK_MODE_ON_FAILURE,
        active_path=int(s.active_path),
        last_seq=s.seq if s.is_sender else s.last_seq,
        ipc_clients=len(s.conns),
        counters=pb.SessionCounters(**s.counters()),
        opened_unix_nano=s.opened_ns,
        direct_mode=s.direct_mode,
        direct=[pb.DirectPeer(peer=p, status=st) for p, st in sorted(s.direct_status().items())],
    )


class EventBus:
    """Fan-out of events to WatchEvents streams; a watcher that falls 1024 events behind
    is ended with RESOURCE_EXHAUSTED instead of growing memory."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self.queues: set[asyncio.Queue[pb.Event | None]] = set()

    def emit(self, etype: EventType, s: Session | None, peer: str, reason: str) -> None:
        if not self.queues:
            return
        ev = pb.Event(type=int(etype), time_unix_nano=time.time_ns(), peer=peer, reason=reason)
        if s is not None:
            ev.session_id = s.sid
            ev.path = s.path
            ev.session.CopyFrom(session_to_proto(s))
        for q in list(self.queues):
            if q.qsize() >= self.limit:
                self.queues.discard(q)
                q.put_nowait(None)
            else:
                q.put_nowait(ev)

    def subscribe(self) -> asyncio.Queue[pb.Event | None]:
        q: asyncio.Queue[pb.Event | None] = asyncio.Queue()
        self.queues.add(q)
        return q


class ControlServicer(pb_grpc.HotlinkAgentServicer):
    def __init__(self, mgr: SessionManager, bus: EventBus, server_url: str) -> None:
        self.mgr = mgr
        self.bus = bus
        self.server_url = server_url

    async def _abort(self, context: grpc.aio.ServicerContext, exc: SessionError) -> None:
        # The metadata marks an answer of the agent itself: a client must not read an
        # UNAVAILABLE about the relay link as "the agent is unreachable".
        await context.abort(
            _CODES.get(exc.code, grpc.StatusCode.INTERNAL), str(exc), trailing_metadata=ORIGIN_MD
        )

    def _find(self, ref: pb.SessionRef) -> Session:
        which = ref.WhichOneof("target")
        if which == "session_id":
            return self.mgr.find(session_id=ref.session_id)
        if which == "path":
            return self.mgr.find(path=ref.path)
        raise SessionError(SessionError.INVALID, "session reference needs session_id or path")

    async def OpenSession(self, request: pb.OpenSessionRequest, context: Any) -> Any:
        try:
            s = await self.mgr.open_session(
                request.path,
                role=request.role,
                to=request.to,
                ipc_mode=request.ipc_mode,
                fallback_mode=request.fallback_mode,
                tcp_addr=request.tcp_addr,
                require_link=request.require_link,
                timeout=request.timeout_seconds,
                direct=request.direct,
            )
        except SessionError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from None
        if s.state is SessionState.PENDING:
            log.info("session %s is pending: %s", s.path, session_reason(s))
        return pb.OpenSessionResponse(session=session_to_proto(s))

    async def CloseSession(self, request: pb.CloseSessionRequest, context: Any) -> Any:
        try:
            s = self._find(request.session)
        except SessionError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from None
        self.mgr.close_session(s, request.reason)
        return pb.CloseSessionResponse(session=session_to_proto(s))

    async def ListSessions(self, request: pb.ListSessionsRequest, context: Any) -> Any:
        return pb.ListSessionsResponse(
            sessions=[session_to_proto(s) for s in self.mgr.by_path.values()]
        )

    async def GetSession(self, request: pb.GetSessionRequest, context: Any) -> Any:
        try:
            return session_to_proto(self._find(request.session))
        except SessionError as exc:
            await self._abort(context, exc)

    async def SetFallbackMode(self, request: pb.SetFallbackModeRequest, context: Any) -> Any:
        try:
            s = self._find(request.session)
            if request.mode not in pb.FallbackMode.values():
                raise SessionError(SessionError.INVALID, f"unknown fallback mode {request.mode}")
        except SessionError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable") from None
        s.set_mode(normalize_mode(request.mode))
        return session_to_proto(s)

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Any
    ) -> AsyncIterator[pb.Event]:
        q = self.bus.subscribe()
        try:
            while True:
                ev = await q.get()
                if ev is None:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "event stream fell too far behind"
                    )
                yield ev
        finally:
            self.bus.queues.discard(q)

    async def GetStatus(self, request: pb.GetStatusRequest, context: Any) -> Any:
        link = self.mgr.link
        return pb.GetStatusResponse(
            version=VERSION,
            email=self.mgr.email,
            server_url=self.server_url,
            relay_url=link.url,
            link_state=int(link.state),
            link_since_unix_nano=link.since_ns,
            last_error=link.last_error,
            root=str(self.mgr.cfg.root),
            counters=pb.Counters(**self.mgr.status_counters()),
            sessions=[session_to_proto(s) for s in self.mgr.by_path.values()],
        )


def prepare_control_socket(path: Path) -> None:
    """Make the socket's directory private (0700) and remove a stale socket.

    Raises `InsecureDirectory` if the directory cannot be made owner-only, and
    `RuntimeError` if another agent is serving on the socket.
    """
    # Only the agent's own ROOT/.hotlink is ours to chmod. A --control elsewhere
    # (/tmp, $HOME, the cwd) must not have its directory's mode changed under other
    # users: a missing one is created 0700, an existing one is checked, never fixed.
    ensure_private_dir(path.parent, fix_mode=path.parent.name == ".hotlink")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InsecureDirectory(f"{path} exists and is not a socket")
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        os.unlink(path)  # stale: nobody listening
    else:
        raise RuntimeError(f"another agent is serving on {path}")
    finally:
        probe.close()


async def start_control_server(
    servicer: ControlServicer, socket_path: Path, tcp_addr: str = ""
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    auth = ControlAuth()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=[auth])
    pb_grpc.add_HotlinkAgentServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(
        server,
        (
            pb.DESCRIPTOR.services_by_name["HotlinkAgent"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        ),
    )
    prepare_control_socket(socket_path)
    old = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix://{socket_path}")
        if tcp_addr:
            host = tcp_addr.rpartition(":")[0].strip("[]")
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise ValueError(f"--control-tcp must be a loopback address, got {tcp_addr}")
            auth.secret = load_or_create_secret(socket_path.parent / SECRET_NAME)
            port = server.add_insecure_port(tcp_addr)
            if port == 0:
                raise OSError(f"cannot listen on {tcp_addr}")
            auth.ports.add(port)
        await server.start()
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    st = os.lstat(socket_path)
    if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.getuid():
        with contextlib.suppress(Exception):
            await server.stop(None)
        raise InsecureDirectory(f"cannot make {socket_path} owner-only")
    return server, health_servicer
