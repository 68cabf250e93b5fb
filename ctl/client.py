"""App client library: HLNK streams on a session endpoint, and the agent's control API.

`Stream` is built on an asyncio `Protocol` rather than StreamReader/StreamWriter: bytes
go straight from `data_received` into the shared `FrameDecoder` and a receiver waiting
in `recv()` is woken directly, which saves a buffer copy and a task hop per frame.

`AgentClient` wraps the generated grpc.aio stub and turns gRPC status codes into
`CtlError`s with hints, so apps and the CLI report the same actionable messages.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hotlink.v1 import agent_pb2 as pb
from hotlink.v1 import agent_pb2_grpc as pb_grpc
from hotlink.wire.cookie import COOKIE_NAME, preamble, read_cookie_file
from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import DEFAULT_MAX_PAYLOAD, Frame, FrameDecoder, encode_header

from .control_secret import bearer_interceptors
from .errors import (
    AgentUnreachable,
    Conflict,
    CtlError,
    EndpointNotFound,
    ExitCode,
    NotFound,
    PermissionDenied,
    StreamClosed,
    Unavailable,
    UsageError,
)

SOCK_NAME = "stream.sock"
TCP_NAME = "stream.tcp"
PIPE_NAME = "stream.pipe"
#: Below this size header and payload are joined into one write (one syscall); above
#: it, two writes avoid copying a large payload.
_JOIN_LIMIT = 64 * 1024
#: Pause reading from the agent when this many decoded frames wait for the app.
_RECV_HIGH_WATER = 4096


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an app connects: a UNIX socket path, or a TCP host and port."""

    kind: str  # "unix" | "tcp" | "pipe" (Windows named pipe; path holds its name)
    path: str = ""
    host: str = ""
    port: int = 0
    #: TCP: the session cookie sent first (`hotlink.wire.cookie`), if we could read it
    cookie: bytes = field(default=b"", repr=False)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" if self.kind == "tcp" else self.path


def parse_hostport(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not host:port: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def resolve_endpoint(session_dir: str | os.PathLike[str]) -> Endpoint:
    """Find the app endpoint of a session directory.

    `stream.sock` is either the socket itself or a regular file holding the real
    socket's path (used when the path would exceed the ~108-byte sun_path limit);
    `stream.tcp` holds `host:port`; `stream.pipe` (Windows) the named pipe's name. A path
    that is itself a socket is accepted too.
    Raises `EndpointNotFound` when neither exists yet.
    """
    d = Path(session_dir)
    try:
        if stat.S_ISSOCK(d.stat().st_mode):
            return Endpoint("unix", path=str(d))
    except FileNotFoundError:
        raise EndpointNotFound(
            f"session directory {d} does not exist",
            "open the session first: hotlinkctl open PATH",
        ) from None
    sock = d / SOCK_NAME
    try:
        mode = sock.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if stat.S_ISSOCK(mode):
            return Endpoint("unix", path=str(sock))
        if stat.S_ISREG(mode):
            target = sock.read_text().strip()
            if not target:
                raise EndpointNotFound(f"{sock} is empty (agent still writing it?)")
            return Endpoint("unix", path=target)
        if stat.S_ISLNK(mode):
            return Endpoint("unix", path=str(sock.resolve()))
    pipe = d / PIPE_NAME
    if pipe.is_file():
        name = pipe.read_text().strip()
        if not name:
            raise EndpointNotFound(f"{pipe} is empty (agent still writing it?)")
        return Endpoint("pipe", path=name)
    tcp = d / TCP_NAME
    try:
        text = tcp.read_text()
    except FileNotFoundError:
        raise EndpointNotFound(
            f"no {SOCK_NAME} or {TCP_NAME} in {d}",
            "is the session open on this agent? check with: hotlinkctl ls",
        ) from None
    try:
        host, port = parse_hostport(text)
    except ValueError:
        raise EndpointNotFound(f"{tcp} does not hold host:port yet ({text!r})") from None
    return Endpoint("tcp", host=host, port=port, cookie=read_cookie_file(d / COOKIE_NAME) or b"")


# --------------------------------------------------------------------------- streams


class _FrameProtocol(asyncio.Protocol):
    """Decodes HLNK frames as bytes arrive and hands them to at most one waiter."""

    def __init__(self, max_payload: int) -> None:
        self.decoder = FrameDecoder(max_payload)
        self.frames: collections.deque[Frame] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.paused_writing = False
        self.paused_reading = False
        self.eof = False
        self.error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.error = exc
            if self.transport is not None:
                self.transport.close()
            self._wake()
            return
        if frames:
            self.frames.extend(frames)
            if len(self.frames) > _RECV_HIGH_WATER and self.transport and not self.paused_reading:
                self.paused_reading = True
                self.transport.pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def maybe_resume(self) -> None:
        if self.paused_reading and len(self.frames) < _RECV_HIGH_WATER // 2 and self.transport:
            self.paused_reading = False
            self.transport.resume_reading()


class Stream:
    """One app connection to a session endpoint, speaking HLNK frames.

    On a sender session, `send()` frames go to the peers; on a reader session `recv()`
    (or `async for frame in stream`) yields the frames the sender wrote, in seq order.
    """

    def __init__(
        self, transport: asyncio.Transport, protocol: _FrameProtocol, endpoint: Endpoint
    ) -> None:
        self._transport = transport
        self._proto = protocol
        self.endpoint = endpoint
        self._closed = False

    @classmethod
    async def connect(
        cls,
        session_dir: str | os.PathLike[str],
        timeout: float = 10.0,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> Stream:
        """Connect, waiting up to `timeout` seconds for the endpoint to appear and accept.

        The agent creates the endpoint when the session opens, so an app started at the
        same time as `hotlinkctl open` simply waits here instead of racing it.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        last: BaseException | None = None
        while True:
            try:
                ep = resolve_endpoint(session_dir)
                return await cls.connect_endpoint(ep, max_payload=max_payload)
            except (EndpointNotFound, FileNotFoundError, ConnectionRefusedError) as exc:
                last = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
        raise Unavailable(
            f"no endpoint accepting connections in {session_dir} after {timeout:g}s ({last})",
            "open the session first (hotlinkctl open PATH) and check the agent is running "
            "(hotlinkctl status)",
        )

    @classmethod
    async def connect_endpoint(
        cls, endpoint: Endpoint, *, max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> Stream:
        loop = asyncio.get_running_loop()
        proto = _FrameProtocol(max_payload)
        if endpoint.kind == "unix":
            transport, _ = await loop.create_unix_connection(lambda: proto, endpoint.path)
        elif endpoint.kind == "pipe":  # Windows, Proactor loop; UNTESTED (no Windows CI)
            connect_pipe = getattr(loop, "create_pipe_connection", None)
            if connect_pipe is None:
                raise EndpointNotFound(
                    f"{endpoint.path} is a Windows named pipe; this event loop cannot open it"
                )
            transport, _ = await connect_pipe(lambda: proto, endpoint.path)
        else:
            transport, _ = await loop.create_connection(lambda: proto, endpoint.host, endpoint.port)
            if endpoint.cookie:  # proves we act for the agent's user (container apps)
                transport.write(preamble(endpoint.cookie))
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(transport, proto, endpoint)  # type: ignore[arg-type]

    async def send(
        self, payload: bytes | bytearray | memoryview, path: str | None = "", etag: str = ""
    ) -> None:
        """Write one frame. An empty `path` lets the agent name it `<seq>.request`."""
        self.write(payload, path, etag)
        if self._proto.paused_writing:
            await self.drain()

    def write(
        self, payload: bytes | bytearray | memoryview, path: str | None = "", etag: str = ""
    ) -> None:
        """Queue one frame without waiting for the transport to drain (call `drain()`)."""
        if self._closed or self._proto.eof:
            raise StreamClosed(f"stream to {self.endpoint} is closed")
        header = encode_header((path or "").encode(), etag.encode(), len(payload), 0)
        if len(payload) <= _JOIN_LIMIT:
            self._transport.write(header + bytes(payload))
        else:
            self._transport.write(header)
            self._transport.write(payload)

    async def drain(self) -> None:
        proto = self._proto
        while proto.paused_writing and not proto.eof:
            loop = asyncio.get_running_loop()
            proto.drain_waiter = loop.create_future()
            await proto.drain_waiter
        if proto.eof and proto.error is not None:
            raise StreamClosed(f"stream to {self.endpoint} failed: {proto.error}")

    async def recv(self) -> Frame:
        """Next frame; raises `StreamClosed` at EOF (the agent closed or went away)."""
        proto = self._proto
        while not proto.frames:
            if proto.error is not None and not isinstance(proto.error, ConnectionError):
                raise StreamClosed(f"stream from {self.endpoint} failed: {proto.error}")
            if proto.eof or self._closed:
                raise StreamClosed(f"stream from {self.endpoint} closed by the agent")
            proto.waiter = asyncio.get_running_loop().create_future()
            try:
                await proto.waiter
            finally:
                proto.waiter = None
        frame = proto.frames.popleft()
        if proto.paused_reading:
            proto.maybe_resume()
        return frame

    def recv_nowait(self) -> Frame | None:
        """A frame already decoded, or None: lets a consumer drain a burst without awaiting."""
        proto = self._proto
        if proto.frames:
            frame = proto.frames.popleft()
            if proto.paused_reading:
                proto.maybe_resume()
            return frame
        return None

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Frame]:
        while True:
            try:
                yield await self.recv()
            except StreamClosed:
                if self._proto.error is not None and not isinstance(
                    self._proto.error, ConnectionError
                ):
                    raise
                return

    @property
    def closed(self) -> bool:
        return self._closed or self._proto.eof

    async def close(self) -> None:
        """Flush what was written and close the connection."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.drain()
        self._transport.close()
        # Let connection_lost run so the socket is really gone when we return.
        await asyncio.sleep(0)
        self._proto._wake()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- control API


def default_control_socket(root: str | os.PathLike[str]) -> str:
    return str(Path(root) / ".hotlink" / "agent.sock")


def control_target(addr: str) -> str:
    """gRPC target for a control address: `unix:PATH`, a socket path, or `host:port`."""
    if addr.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return addr
    if "/" in addr or addr.endswith(".sock") or not _looks_hostport(addr):
        return "unix:" + os.path.abspath(addr)
    return addr


def _looks_hostport(addr: str) -> bool:
    try:
        parse_hostport(addr)
    except ValueError:
        return False
    return True


_START_HINT = (
    "is hotlink-agent running? start it with: hotlink-agent --server ws://HOST:PORT "
    "--email YOU@EXAMPLE --token-file TOKEN --root ROOT (or run: hotlinkctl devstack up "
    "--dir DIR)"
)


def translate_rpc_error(
    exc: grpc.aio.AioRpcError | grpc.RpcError, addr: str, what: str
) -> CtlError:
    """Map a gRPC failure to a `CtlError` whose hint says what to do."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    msg = f"{what}: {details}" if details else what
    sc = grpc.StatusCode
    if code == sc.UNAVAILABLE and _is_connect_failure(details, addr):
        return unreachable(addr, details)
    if code == sc.NOT_FOUND:
        return NotFound(msg, "list sessions with: hotlinkctl ls")
    if code == sc.PERMISSION_DENIED:
        return PermissionDenied(
            msg,
            "the relay refused: the owner must grant access in syft.pub.yaml "
            "(rules: pattern/access read|write) of the datasite folder",
        )
    if code == sc.INVALID_ARGUMENT:
        return UsageError(msg, "paths look like _mpc/0_to_1 (own datasite) or owner@x/_mpc/0_to_1")
    if code == sc.ALREADY_EXISTS:
        return Conflict(msg, "close it first (hotlinkctl close PATH) or open it with the same role")
    if code == sc.DEADLINE_EXCEEDED:
        return Unavailable(
            msg or f"{what}: timed out",
            "the relay gave no verdict in time; check the link with: hotlinkctl status",
        )
    if code == sc.UNAVAILABLE:
        return Unavailable(msg, "the agent's link to the relay is down; check: hotlinkctl status")
    if code == sc.UNIMPLEMENTED:
        return CtlError(msg, "the agent is older than this hotlinkctl; upgrade it")
    return CtlError(f"{msg} ({code.name if code else 'unknown'})", exit_code=ExitCode.ERROR)


def unreachable(target: str, details: str) -> AgentUnreachable:
    """The agent does not answer: say where we looked and how to start one."""
    if target.startswith("unix:"):
        path = target[5:]
        if not os.path.exists(path):
            return AgentUnreachable(
                f"cannot reach the agent at {path}: no control socket there", _START_HINT
            )
        return AgentUnreachable(f"cannot reach the agent at {path} ({details})", _START_HINT)
    return AgentUnreachable(f"cannot reach the agent at {target} ({details})", _START_HINT)


def _is_connect_failure(details: str, addr: str) -> bool:
    d = details.lower()
    if any(
        s in d
        for s in ("failed to connect", "connection refused", "no such file", "connect failed")
    ):
        return True
    if addr.startswith("unix:"):
        return not os.path.exists(addr[5:])
    return False


class AgentClient:
    """Async client of one agent's control API (`HotlinkAgent` gRPC service)."""

    def __init__(self, addr: str, *, timeout: float = 10.0) -> None:
        self.addr = addr
        self.target = control_target(addr)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            self.target,
            options=[("grpc.enable_http_proxy", 0)],
            interceptors=bearer_interceptors(self.target),
        )
        self.stub = pb_grpc.HotlinkAgentStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def display_addr(self) -> str:
        return self.target[5:] if self.target.startswith("unix:") else self.target

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except grpc.aio.AioRpcError as exc:
            raise translate_rpc_error(exc, self.target, what) from None

    async def health(self, timeout: float = 2.0) -> str:
        """Health status name (`SERVING`, ...); raises `AgentUnreachable` when no answer."""
        try:
            resp = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unreachable(self.target, exc.details() or "") from None
            raise translate_rpc_error(exc, self.target, "health check") from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    async def wait_ready(
        self, timeout: float = 15.0, *, link_up: bool = False
    ) -> pb.GetStatusResponse | None:
        """Wait until health says SERVING (and, with `link_up`, the relay link is UP)."""
        deadline = time.monotonic() + timeout
        last: CtlError | None = None
        while time.monotonic() < deadline:
            try:
                if await self.health(timeout=1.0) == "SERVING":
                    if not link_up:
                        return None
                    st = await self.get_status()
                    if st.link_state == pb.LINK_STATE_UP:
                        return st
                    last = Unavailable(
                        f"agent link is {pb.LinkState.Name(st.link_state)}"
                        + (f": {st.last_error}" if st.last_error else "")
                    )
            except CtlError as exc:
                last = exc
            await asyncio.sleep(0.05)
        raise Unavailable(
            f"agent at {self.display_addr} not ready after {timeout:g}s"
            + (f" ({last.message})" if last else ""),
            last.hint if last and last.hint else _START_HINT,
        )

    async def open_session(
        self,
        path: str,
        *,
        to: str = "",
        ipc_mode: int = pb.IPC_MODE_UNSPECIFIED,
        fallback_mode: int = pb.FALLBACK_MODE_UNSPECIFIED,
        tcp_addr: str = "",
        role: int = pb.ROLE_UNSPECIFIED,
        require_link: bool = False,
        timeout_seconds: float = 0.0,
    ) -> pb.Session:
        req = pb.OpenSessionRequest(
            path=path,
            to=to,
            ipc_mode=ipc_mode,
            fallback_mode=fallback_mode,
            tcp_addr=tcp_addr,
            role=role,
            require_link=require_link,
            timeout_seconds=timeout_seconds,
        )
        rpc_timeout = max(self.timeout, timeout_seconds + 5.0)
        resp = await self._call(f"open {path}", self.stub.OpenSession(req, timeout=rpc_timeout))
        return resp.session

    async def close_session(self, ref: str, reason: str = "") -> pb.Session:
        resp = await self._call(
            f"close {ref}",
            self.stub.CloseSession(
                pb.CloseSessionRequest(session=session_ref(ref), reason=reason),
                timeout=self.timeout,
            ),
        )
        return resp.session

    async def list_sessions(self) -> list[pb.Session]:
        resp = await self._call(
            "list sessions", self.stub.ListSessions(pb.ListSessionsRequest(), timeout=self.timeout)
        )
        return list(resp.sessions)

    async def get_session(self, ref: str) -> pb.Session:
        return await self._call(
            f"session {ref}",
            self.stub.GetSession(
                pb.GetSessionRequest(session=session_ref(ref)), timeout=self.timeout
            ),
        )

    async def set_fallback_mode(self, ref: str, mode: int) -> pb.Session:
        return await self._call(
            f"set fallback of {ref}",
            self.stub.SetFallbackMode(
                pb.SetFallbackModeRequest(session=session_ref(ref), mode=mode), timeout=self.timeout
            ),
        )

    async def get_status(self) -> pb.GetStatusResponse:
        return await self._call(
            "status", self.stub.GetStatus(pb.GetStatusRequest(), timeout=self.timeout)
        )

    async def watch_events(self) -> AsyncIterator[pb.Event]:
        """Lifecycle and link events from now on, until the agent goes away."""
        call = self.stub.WatchEvents(pb.WatchEventsRequest())
        try:
            async for ev in call:
                yield ev
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise translate_rpc_error(exc, self.target, "watch events") from None
        finally:
            call.cancel()

    async def wait_session(
        self,
        ref: str,
        predicate: Any,
        timeout: float = 10.0,
        what: str = "session state",
    ) -> pb.Session:
        """Poll GetSession until `predicate(session)` holds (simple, no event race)."""
        deadline = time.monotonic() + timeout
        s: pb.Session | None = None
        while True:
            s = await self.get_session(ref)
            if predicate(s):
                return s
            if s.state in (pb.SESSION_STATE_REJECTED, pb.SESSION_STATE_CLOSED):
                raise Unavailable(
                    f"session {ref} is {pb.SessionState.Name(s.state)}: {s.reason}",
                    "check ACLs and the peer; see hotlinkctl watch",
                )
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"timed out after {timeout:g}s waiting for {what} of {ref} "
                    f"(state {pb.SessionState.Name(s.state)}, readers {list(s.readers)}, "
                    f"ipc_clients {s.ipc_clients})",
                    "check both agents with: hotlinkctl status",
                )
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def session_ref(ref: str) -> pb.SessionRef:
    """A path (contains '/') or a session id."""
    if "/" in ref:
        return pb.SessionRef(path=ref)
    return pb.SessionRef(session_id=ref)
