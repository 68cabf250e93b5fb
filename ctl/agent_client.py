"""Client of the agent's gRPC control API (`hotlinkctl` and apps that open sessions).

`AgentClient` wraps the generated grpc.aio stub and turns gRPC status codes into
`CtlError`s with hints, so apps and the CLI report the same actionable messages.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hotlink.v1 import agent_pb2 as pb
from hotlink.v1 import agent_pb2_grpc as pb_grpc

from .control_secret import bearer_interceptors
from .errors import (
    AgentUnreachable,
    Conflict,
    CtlError,
    ExitCode,
    NotFound,
    PermissionDenied,
    Unavailable,
    UsageError,
)
from .stream import parse_hostport


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


#: INVALID_ARGUMENT details about a field other than the path (agent/open_args.py)
_SELF_EXPLAINED = ("to: ", "tcp_addr", "unknown ", "IPC_MODE_")


def translate_rpc_error(
    exc: grpc.aio.AioRpcError | grpc.RpcError, addr: str, what: str
) -> CtlError:
    """Map a gRPC failure to a `CtlError` whose hint says what to do."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    msg = f"{what}: {details}" if details else what
    sc = grpc.StatusCode
    tunnel = "tunnel" in what.split()[:2]  # `tunnel PATH`, `close tunnel PATH`, ...
    if code == sc.UNAVAILABLE and not _from_agent(exc) and _is_connect_failure(details, addr):
        return unreachable(addr, details)
    if code == sc.NOT_FOUND:
        if tunnel:
            return NotFound(msg, "list tunnels with: hotlinkctl tunnel ls")
        return NotFound(msg, "list sessions with: hotlinkctl ls")
    if code == sc.PERMISSION_DENIED:
        return PermissionDenied(
            msg,
            "the relay refused: the owner must grant access in syft.pub.yaml "
            "(rules: pattern/access read|write) of the datasite folder",
        )
    if code == sc.RESOURCE_EXHAUSTED:
        return Unavailable(
            msg,
            "the relay limits the sessions one user holds open and how fast they are "
            "opened (hotlink-relay --max-sessions-per-user, --open-rate); close the "
            "sessions you no longer use (hotlinkctl ls, hotlinkctl close) or try again later",
        )
    if code == sc.INVALID_ARGUMENT:
        if tunnel:
            return UsageError(msg, "see: hotlinkctl tunnel expose --help / forward --help")
        if details.startswith(_SELF_EXPLAINED):  # the agent's message says what it wants
            return UsageError(msg, f"see: hotlinkctl {what.split(' ', 1)[0]} --help")
        return UsageError(msg, "paths look like _mpc/0_to_1 (own datasite) or owner@x/_mpc/0_to_1")
    if code == sc.ALREADY_EXISTS:
        if tunnel:
            return Conflict(
                msg,
                "a tunnel or session holds that path: hotlinkctl tunnel close PATH "
                "(a tunnel) or hotlinkctl close PATH (a plain session)",
            )
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


def _from_agent(exc: grpc.aio.AioRpcError | grpc.RpcError) -> bool:
    """Did the agent's servicer answer (it marks its errors), as opposed to gRPC failing
    to reach it? Its own UNAVAILABLE (relay link down) may quote "connection refused"."""
    md = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return any(k == "hotlink-origin" and v == "agent" for k, v in (md or ()))


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


#: Options of every control channel. No HTTP proxy: the agent is this machine's (or
#: one the user names). Reconnect attempts 20 ms apart at first, at most 250 ms apart:
#: gRPC's default backoff (1 s, growing to 2 min) would leave a client that asked
#: before the agent was serving (`wait_ready` after a start, `tail` across a restart)
#: waiting up to a second or more for nothing. Only the pause between attempts is
#: shortened; a connect attempt still has gRPC's own deadline (20 s).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.enable_http_proxy", 0),
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 250),
)


class AgentClient:
    """Async client of one agent's control API (`HotlinkAgent` gRPC service)."""

    def __init__(self, addr: str, *, timeout: float = 10.0) -> None:
        self.addr = addr
        self.target = control_target(addr)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            self.target,
            options=CHANNEL_OPTIONS,
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
        direct: int = pb.DIRECT_MODE_UNSPECIFIED,
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
            direct=direct,
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
