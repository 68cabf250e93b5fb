"""A loopback TCP forwarder that can cut its connections on demand (chaos tests).

Agents point `--server` at the proxy instead of the relay, so their WebSocket links can
be broken at any moment without touching agent code:

- `drop()` resets every current connection on both sides (SO_LINGER 0 then close: the
  peers get a TCP RST, as when a NAT box or a network path dies noisily);
- `drop(refuse_for=s)` also resets every new connection for `s` seconds (the agent's
  reconnect attempts fail until then);
- `drop(stall=s)` freezes the connections first (nothing forwarded, bytes pile up in
  the kernel buffers and the senders believe them delivered), then resets them after
  `s` seconds: a path that stalls, then dies;
- `drop(half_open=s)` resets only the agents' side and keeps the relay's side open but
  silent for `s` seconds before resetting it too: the relay learns about the drop late,
  as with a silently lost path (the agent reconnects before the relay notices).
- `emails=` restricts a drop to the connections of some agents (the proxy reads the
  user from the bearer token of the WebSocket upgrade request it forwards).

`ChaosProxy` is asyncio; `ThreadedChaosProxy` runs one in a background thread with its
own event loop and offers the same operations as blocking calls, for synchronous
tests that drive real processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable
from typing import Any

_LINGER0 = struct.pack("ii", 1, 0)
_AUTH = re.compile(rb"\r\nauthorization:\s*bearer\s+([A-Za-z0-9_\-]+)\.", re.IGNORECASE)
_HIGH_WATER = 1 << 20


def _rst(transport: asyncio.BaseTransport | None) -> None:
    """Close `transport` with a TCP RST (SO_LINGER 0), dropping unsent data."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
    transport.abort()


def _user_of(head: bytes) -> str:
    """The `sub` of the bearer token in an HTTP request head, or ''."""
    mt = _AUTH.search(head)
    if mt is None:
        return ""
    raw = mt.group(1)
    try:
        claims = json.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
    except ValueError:
        return ""
    return str(claims.get("sub", "")) if isinstance(claims, dict) else ""


class _Side(asyncio.Protocol):
    """One socket of a proxied pair; forwards what it reads to `peer`."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []  # client bytes that arrived before upstream is up
        self.paused_peer = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=_HIGH_WATER)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        pair = self.pair
        if pair.frozen:
            return  # half-open: the relay side is kept but nothing flows any more
        if self is pair.client and not pair.user:
            pair.head += data
            if len(pair.head) < 8192:
                pair.user = _user_of(pair.head)
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
            return
        peer.transport.write(data)
        pair.proxy.bytes_forwarded += len(data)

    def eof_received(self) -> bool | None:
        # A half-close on one side ends the pair: the proxy is not a faithful TCP
        # half-close relay, and the WS protocol never needs one.
        self.pair.close(rst=False)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        pair = self.pair
        if not pair.frozen:
            pair.close(rst=exc is not None)

    # the peer's write buffer is full: stop reading here until it drains
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Pair:
    def __init__(self, proxy: ChaosProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self)
        self.upstream: _Side | None = None
        self.closed = False
        self.frozen = False  # half-open: client side gone, upstream silent
        self.head = b""
        self.user = ""

    async def connect_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        up = _Side(self)
        try:
            await loop.create_connection(lambda: up, self.proxy.up_host, self.proxy.up_port)
        except OSError:
            self.proxy.upstream_failures += 1
            self.close(rst=True)
            return
        if self.closed:
            _rst(up.transport)
            return
        self.upstream = up
        up.peer, self.client.peer = self.client, up
        assert up.transport is not None
        for chunk in self.client.early:
            up.transport.write(chunk)
        self.client.early.clear()
        if self.client.transport is not None:
            self.client.transport.resume_reading()

    def close(self, rst: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.pairs.discard(self)
        for side in (self.client, self.upstream):
            if side is None or side.transport is None:
                continue
            if rst:
                _rst(side.transport)
            else:
                side.transport.close()

    def stall_then_reset(self, stall: float) -> None:
        """Stop forwarding in both directions (bytes pile up in the kernel buffers, the
        senders believe them delivered), then reset both sides after `stall` s."""
        if self.closed:
            return
        self.frozen = True
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None:
                side.transport.pause_reading()
        asyncio.get_running_loop().call_later(stall, self.close, True)

    def half_open(self, hold: float) -> None:
        """RST the client side now; keep the upstream side open and silent for `hold` s."""
        if self.closed:
            return
        self.frozen = True
        _rst(self.client.transport)
        loop = asyncio.get_running_loop()
        loop.call_later(hold, self.close, True)


class ChaosProxy:
    """asyncio TCP forwarder from `host:port` to `up_host:up_port` with fault injection."""

    def __init__(self, up_host: str, up_port: int, host: str = "127.0.0.1", port: int = 0):
        self.up_host, self.up_port = up_host, up_port
        self.host, self.port = host, port
        self.pairs: set[_Pair] = set()
        self.refuse_until = 0.0
        self.server: asyncio.AbstractServer | None = None
        # counters
        self.accepted = self.refused = self.dropped = self.upstream_failures = 0
        self.bytes_forwarded = 0

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> ChaosProxy:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, self.host, self.port, backlog=256)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _accept(self) -> asyncio.Protocol:
        pair = _Pair(self)
        proto = pair.client
        orig_made = proto.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            orig_made(transport)
            if time.monotonic() < self.refuse_until:
                self.refused += 1
                pair.closed = True
                _rst(transport)
                return
            self.accepted += 1
            self.pairs.add(pair)
            transport.pause_reading()  # type: ignore[attr-defined]
            asyncio.get_running_loop().create_task(pair.connect_upstream())

        proto.connection_made = made  # type: ignore[method-assign]
        return proto

    def drop(
        self,
        *,
        refuse_for: float = 0.0,
        half_open: float = 0.0,
        stall: float = 0.0,
        emails: Iterable[str] | None = None,
    ) -> int:
        """Reset current connections (of `emails`, or all); returns how many.

        `stall`: first freeze them for `stall` seconds (see `_Pair.stall_then_reset`);
        `half_open`: reset the agents' side now and the relay's side `half_open` s later.
        """
        if refuse_for > 0:
            self.refuse_until = max(self.refuse_until, time.monotonic() + refuse_for)
        want = set(emails) if emails is not None else None
        n = 0
        for pair in list(self.pairs):
            if pair.frozen or (want is not None and pair.user not in want):
                continue
            n += 1
            if half_open > 0:
                pair.half_open(half_open)
            elif stall > 0:
                pair.stall_then_reset(stall)
            else:
                pair.close(rst=True)
        self.dropped += n
        return n

    def live(self, email: str | None = None) -> int:
        return sum(1 for p in self.pairs if not p.frozen and (email is None or p.user == email))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for pair in list(self.pairs):
            pair.close(rst=True)


class ThreadedChaosProxy:
    """A `ChaosProxy` on its own event loop in a daemon thread; blocking API."""

    def __init__(self, up_host: str, up_port: int, host: str = "127.0.0.1", port: int = 0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.proxy = ChaosProxy(up_host, up_port, host, port)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            r = fn(*args, **kwargs)
            return await r if asyncio.iscoroutine(r) else r

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def start(self) -> ThreadedChaosProxy:
        self._thread.start()
        self._call(self.proxy.start)
        return self

    @property
    def url(self) -> str:
        return self.proxy.url

    def drop(
        self,
        *,
        refuse_for: float = 0.0,
        half_open: float = 0.0,
        stall: float = 0.0,
        emails: Iterable[str] | None = None,
    ) -> int:
        return self._call(
            self.proxy.drop,
            refuse_for=refuse_for,
            half_open=half_open,
            stall=stall,
            emails=emails,
        )

    def live(self, email: str | None = None) -> int:
        return self._call(self.proxy.live, email)

    def stats(self) -> dict[str, int]:
        p = self.proxy
        return {
            "accepted": p.accepted,
            "refused": p.refused,
            "dropped": p.dropped,
            "upstream_failures": p.upstream_failures,
        }

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self.proxy.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> ThreadedChaosProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
