"""A `Stream` that survives agent restarts: it reconnects instead of ending.

An agent restart (upgrade, crash, `devstack stop/start`) closes every app connection;
the restarted agent restores its sessions and serves the same endpoint again, and
delivers what the reader missed from the last delivered seq it kept
(`ROOT/.hotlink/state.json`). An app that reconnects therefore loses nothing, so the
common case should not be every app's own loop: `ReconnectingStream` waits for the
endpoint to come back (as `Stream.connect` does at start) and carries on.

When to stop waiting is the caller's call: `retry_for` seconds per outage (None:
forever), and an optional `still_open()` check, asked before each reconnect attempt
round, so a session that was closed for good ends the stream instead of waiting
forever. `session_still_open(client, path)` is that check through the agent's control
API (`hotlinkctl tail` uses it); without a check, a closed session is waited for like
a restarting agent (for `retry_for`), since an endpoint alone cannot tell the two apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from hotlink.wire.frames import DEFAULT_MAX_PAYLOAD, Frame

from .errors import CtlError, NotFound, StreamClosed, Unavailable
from .stream import Stream

#: how long one reconnect round waits for the endpoint before asking `still_open` again
ROUND = 2.0


class SessionLookup(Protocol):
    """What `session_still_open` needs of an `AgentClient` (no gRPC import here)."""

    async def get_session(self, ref: str) -> Any: ...

    async def health(self, timeout: float = 2.0) -> str: ...


def session_still_open(
    client: SessionLookup, path: str, rpc_timeout: float = 2.0
) -> Callable[[], Awaitable[bool]]:
    """A `still_open` check for session `path` through the agent's control API: keep
    waiting while the agent is away or the session exists; stop once a serving agent
    says it is gone or closed (for good, not just restarted)."""
    from hotlink.v1 import agent_pb2 as pb  # the control API's names, loaded on use

    over = (pb.SESSION_STATE_CLOSED, pb.SESSION_STATE_REJECTED)

    async def still_open() -> bool:
        try:
            try:
                cur = await client.get_session(path)
                if cur.state not in over:
                    return True
            except NotFound:
                pass
            # Gone or closed. A stopping agent closes its sessions after it stops
            # serving health, and a starting one restores them before it serves: only
            # a SERVING agent's answer means closed for good.
            return await client.health(timeout=rpc_timeout) != "SERVING"
        except CtlError:  # agent unreachable (restarting): wait for it
            return True

    return still_open


class ReconnectingStream:
    """`recv()` / `async for` / `send()` over a session endpoint, reconnecting on EOF.

    Frames a sender wrote while its connection was going down may be lost with that
    connection (they never reached the agent); a reader loses nothing (see above).
    """

    def __init__(
        self,
        session_dir: str | os.PathLike[str],
        stream: Stream,
        *,
        retry_for: float | None = None,
        still_open: Callable[[], Awaitable[bool]] | None = None,
        on_reconnect: Callable[[Stream], None] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.session_dir = session_dir
        self.stream = stream
        self.retry_for = retry_for
        self.still_open = still_open
        self.on_reconnect = on_reconnect
        self.max_payload = max_payload
        #: reconnects so far
        self.reconnects = 0
        self._closed = False

    @classmethod
    async def connect(
        cls,
        session_dir: str | os.PathLike[str],
        timeout: float = 10.0,
        *,
        retry_for: float | None = None,
        still_open: Callable[[], Awaitable[bool]] | None = None,
        on_reconnect: Callable[[Stream], None] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> ReconnectingStream:
        """Connect like `Stream.connect` (waiting up to `timeout` for the endpoint)."""
        stream = await Stream.connect(session_dir, timeout, max_payload=max_payload)
        return cls(
            session_dir,
            stream,
            retry_for=retry_for,
            still_open=still_open,
            on_reconnect=on_reconnect,
            max_payload=max_payload,
        )

    @property
    def endpoint(self) -> object:
        return self.stream.endpoint

    async def _reconnect(self) -> None:
        await self.stream.close()
        if self.retry_for == 0:
            raise StreamClosed("the agent closed the stream")
        deadline = None if self.retry_for is None else time.monotonic() + self.retry_for
        while not self._closed:
            if self.still_open is not None and not await self.still_open():
                raise StreamClosed(f"the session in {self.session_dir} was closed")
            left = ROUND if deadline is None else min(ROUND, deadline - time.monotonic())
            if left <= 0:
                raise StreamClosed(
                    f"the agent did not serve {self.session_dir} again within {self.retry_for:g}s"
                )
            try:
                self.stream = await Stream.connect(
                    self.session_dir, left, max_payload=self.max_payload
                )
            except Unavailable:
                continue
            self.reconnects += 1
            if self.on_reconnect is not None:
                self.on_reconnect(self.stream)
            return
        raise StreamClosed("stream closed")

    async def recv(self) -> Frame:
        while True:
            try:
                return await self.stream.recv()
            except StreamClosed:
                if self._closed:
                    raise
            await self._reconnect()

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Frame]:
        while True:
            try:
                yield await self.recv()
            except StreamClosed:
                return

    async def send(
        self, payload: bytes | bytearray | memoryview, path: str | None = "", etag: str = ""
    ) -> None:
        if self.stream.closed and not self._closed:
            await self._reconnect()
        await self.stream.send(payload, path, etag)

    async def close(self) -> None:
        self._closed = True
        await self.stream.close()

    async def __aenter__(self) -> ReconnectingStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
