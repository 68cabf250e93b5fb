"""Who may use the control API over `--control-tcp`.

The UNIX control socket is 0600 in a 0700 directory: the kernel already limits it to
the agent's user. A loopback TCP port does not: every local user (and every container
sharing the host's network) can connect, and the control API opens and closes sessions
as the agent's user. So each call that arrives over TCP must either come from a
socket owned by the agent's uid (`/proc/net/tcp{,6}`, fail closed) or carry
`authorization: Bearer <secret>` with the secret from `ROOT/.hotlink/control-tcp.secret`
(created 0600 on first use; a client that can read it acts for the agent's user).
Refused calls get PERMISSION_DENIED and a log line naming the peer.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from .peercred import grpc_peer_address, tcp_peer_uid_to_port

log = logging.getLogger("hotlink.agent.control")

SECRET_NAME = "control-tcp.secret"


def load_or_create_secret(path: Path) -> str:
    """The bearer secret in `path` (hex), created 0600 if missing; a file others may
    read is refused (anyone who reads it can drive the agent)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a regular file owned by this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{path} is accessible by group/others; chmod 600 it")
    text = path.read_text().strip()
    if len(text) < 32:
        raise PermissionError(f"{path} holds a secret shorter than 32 characters")
    return text


class ControlAuth(grpc.aio.ServerInterceptor):
    """Server interceptor enforcing the rule of the module docstring on TCP peers."""

    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        #: our TCP listening ports (filled once bound); calls on the UNIX socket pass
        self.ports: set[int] = set()
        self.refused = 0

    def allowed(self, peer: str, metadata: Any) -> str | None:
        """None if the call may proceed, else why not."""
        addr = grpc_peer_address(peer)
        if addr is None:
            return None  # the UNIX socket: owner-only by its mode
        uid = tcp_peer_uid_to_port(addr, self.ports)
        if uid == os.getuid():
            return None
        token = ""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer":
                    token = ""
        if token and self.secret and hmac.compare_digest(token.strip(), self.secret):
            return None
        who = "an unknown user" if uid is None else f"uid {uid}"
        return f"control API over TCP: caller {peer} is {who} and presented no valid secret"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not self.ports:
            return handler
        return _guarded(handler, self, details.invocation_metadata)  # type: ignore[attr-defined]

    async def check(self, context: Any, metadata: Any) -> None:
        why = self.allowed(context.peer(), metadata)
        if why is not None:
            self.refused += 1
            log.warning("refused: %s", why)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "not the agent's user: connect on the UNIX control socket, or send "
                f"'authorization: Bearer <secret from ROOT/.hotlink/{SECRET_NAME}>'",
            )


def _guarded(h: grpc.RpcMethodHandler, auth: ControlAuth, md: Any) -> grpc.RpcMethodHandler:
    """The same handler with `auth.check` run first, for each of the four shapes."""
    ser = {
        "request_deserializer": h.request_deserializer,
        "response_serializer": h.response_serializer,
    }
    if h.unary_unary is not None:
        inner_uu = h.unary_unary

        async def uu(request: Any, context: Any) -> Any:
            await auth.check(context, md)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(uu, **ser)
    if h.stream_unary is not None:
        inner_su = h.stream_unary

        async def su(requests: Any, context: Any) -> Any:
            await auth.check(context, md)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(su, **ser)
    if h.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_streaming(h.unary_stream, auth, md), **ser)
    return grpc.stream_stream_rpc_method_handler(_streaming(h.stream_stream, auth, md), **ser)


def _streaming(inner: Any, auth: ControlAuth, md: Any) -> Any:
    """A streaming behaviour is an async generator, or a coroutine that writes with
    `context.write` (grpc_health's Watch); the guard keeps the same shape."""
    if inspect.isasyncgenfunction(inner):

        async def gen(request: Any, context: Any) -> AsyncIterator[Any]:
            await auth.check(context, md)
            async for item in inner(request, context):
                yield item

        return gen

    async def coro(request: Any, context: Any) -> Any:
        await auth.check(context, md)
        return await inner(request, context)

    return coro
