"""App streams: HLNK frames on a session's endpoint (`stream.sock` / `stream.tcp`).

This is the library apps import on the data path, so it imports no gRPC and no
OpenTelemetry (`tests/test_ctl_stream.py` checks): an MPC party that only streams
frames pays for neither at import. The agent's control API is in `agent_client`.

`Stream` is built on an asyncio `Protocol` rather than StreamReader/StreamWriter: bytes
go straight from `data_received` into the shared `FrameDecoder` and a receiver waiting
in `recv()` is woken directly, which saves a buffer copy and a task hop per frame.
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

from hotlink.common.hostport import split_hostport
from hotlink.wire.cookie import COOKIE_NAME, parse_cookie_text, preamble
from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import DEFAULT_MAX_PAYLOAD, Frame, FrameDecoder, encode_header

from .errors import (
    EndpointNotFound,
    StreamClosed,
    Unavailable,
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
    """`host:port` or `[v6]:port` → (host, port) (`common.hostport` rules; the
    surrounding whitespace of a `stream.tcp` line is ignored)."""
    return split_hostport(text.strip())


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
    return Endpoint("tcp", host=host, port=port, cookie=_read_cookie(d / COOKIE_NAME))


def _read_cookie(path: Path) -> bytes:
    """The session cookie beside `stream.tcp`, or b"" when there is none (an older
    agent) or we may not read it (then only the agent's own uid is served)."""
    try:
        return parse_cookie_text(path.read_text()) or b""
    except OSError:
        return b""


# --------------------------------------------------------------------------- streams


#: how long `Stream.close()` waits for buffered frames to reach the agent
CLOSE_FLUSH_TIMEOUT = 30.0


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
        #: set once the transport is gone (its buffered bytes were written or lost)
        self.lost: asyncio.Future[None] | None = None

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
        lost = self.lost
        if lost is not None and not lost.done():
            lost.set_result(None)
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
        """Write one frame. `path`: the file's datasite path or its name in the session
        folder; empty lets the agent name it `<seq>.request`. Frames read carry the full
        datasite path."""
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
        proto = self._proto
        if proto.transport is not None and not proto.eof:
            proto.lost = asyncio.get_running_loop().create_future()
        self._transport.close()
        # transport.close() writes what is still buffered in user space before the
        # socket goes: wait for that (connection_lost), or the bytes die with the loop
        # when the app exits right after close().
        if proto.lost is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.lost), CLOSE_FLUSH_TIMEOUT)
        else:
            await asyncio.sleep(0)
        proto._wake()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- control API
