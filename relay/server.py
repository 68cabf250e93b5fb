"""Thin asyncio/websockets adapter around `Router`: it only moves bytes.

- `process_request` answers `/healthz`, refuses unknown paths (404) and requests
  without a valid bearer token (401) before the WebSocket upgrade.
- `process_response` adds the negotiated `X-Syft-WS-Encoding` header.
- Each connection has its own bounded send queue drained by its own task, so one slow
  client never blocks the event loop or other clients; a client whose queue overflows
  is closed (1008, "send queue overflow") instead of growing memory.
- Outgoing messages are encoded once per (message, encoding) per batch: a data frame
  fanned out to N readers is encoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import logging
import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hotlink.wire.envelope import (
    DEFAULT_MAX_MESSAGE,
    HDR_ENCODING,
    HDR_ENCODINGS,
    decode,
    encode,
    encode_json,
)
from hotlink.wire.errors import ProtocolError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .acl import AclIndex
from .auth import AuthError, bearer_token, load_or_create_secret, verify_token
from .router import Conn, Limits, Outgoing, Router
from .store import Store

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
HEALTH_PATH = "/healthz"
ENCODINGS = ("msgpack", "json")
#: Encoding for clients that do not negotiate (legacy clients speak JSON text frames).
DEFAULT_ENCODING = "json"
#: Bad frames logged per connection before the log goes quiet (a flood must not
#: become a log flood).
_LOG_BAD_FRAMES = 5
#: WS close code for a policy violation (queue overflow).
_CLOSE_POLICY = 1008


def negotiate(header_values: list[str]) -> str:
    """The first encoding of the client's preference list that we speak."""
    for value in header_values:
        for item in value.split(","):
            name = item.split(";", 1)[0].strip().lower()
            if name in ENCODINGS:
                return name
    return DEFAULT_ENCODING


@dataclass(slots=True, eq=False)
class Peer:
    """Per-connection adapter state."""

    id: int
    ws: ServerConnection
    user: str
    encoding: str
    max_queue_bytes: int
    queue: deque[bytes | str] = field(default_factory=deque)
    queued_bytes: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    bad_frames: int = 0

    def push(self, data: bytes | str) -> None:
        if self.overflowed:
            return
        self.queued_bytes += len(data)
        if self.queued_bytes > self.max_queue_bytes:
            self.overflowed = True
            self.queue.clear()
            log.warning("conn %d (%s): send queue overflow, closing", self.id, self.user)
        else:
            self.queue.append(data)
        self.wakeup.set()

    async def writer(self) -> None:
        """Drain the queue into the socket; `ws.send` waits for the kernel buffer, so a
        slow client only ever stalls this task."""
        ws = self.ws
        q = self.queue
        try:
            while True:
                while q:
                    data = q.popleft()
                    self.queued_bytes -= len(data)
                    await ws.send(data)
                if self.overflowed:
                    await ws.close(_CLOSE_POLICY, "send queue overflow")
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
        except ConnectionClosed:
            pass


@dataclass(slots=True)
class _Pending:
    """What `process_request` learned, kept until the handler runs."""

    user: str
    encoding: str


class RelayServer:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8080,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_queue_bytes: int | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.max_message = max_message
        self.max_queue_bytes = max_queue_bytes or max(64 * 1024 * 1024, 4 * max_message)
        self.secret = load_or_create_secret(data_dir)
        self.store = Store(data_dir)
        self.acl = AclIndex.load(self.store.root)
        self.limits = limits or Limits()
        self.router = Router(self.acl, self.store, limits=self.limits)
        self.peers: dict[int, Peer] = {}
        self._pending: weakref.WeakKeyDictionary[ServerConnection, _Pending] = (
            weakref.WeakKeyDictionary()
        )
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ handshake

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            return ws.respond(http.HTTPStatus.OK, "ok\n")
        if path != EVENTS_PATH:
            return ws.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        auth = request.headers.get_all("Authorization")
        token = bearer_token(auth[0]) if len(auth) == 1 else None
        try:
            if token is None:
                raise AuthError("missing bearer token")
            user = verify_token(self.secret, token)
        except AuthError as exc:
            log.info("refused connection from %s: %s", _peer(ws), exc)
            resp = ws.respond(http.HTTPStatus.UNAUTHORIZED, f"unauthorized: {exc}\n")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="hotlink"'
            return resp
        enc = negotiate(request.headers.get_all(HDR_ENCODINGS))
        self._pending[ws] = _Pending(user, enc)
        return None

    def _process_response(
        self, ws: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        pending = self._pending.get(ws)
        if pending is not None and response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            response.headers[HDR_ENCODING] = pending.encoding
        return None

    # ----------------------------------------------------------------- connection

    async def _handler(self, ws: ServerConnection) -> None:
        pending = self._pending.pop(ws, None)
        if pending is None:  # not possible after a successful process_request
            await ws.close(_CLOSE_POLICY, "not authenticated")
            return
        cid = next(self._ids)
        peer = Peer(cid, ws, pending.user, pending.encoding, self.max_queue_bytes)
        self.peers[cid] = peer
        writer = asyncio.create_task(peer.writer(), name=f"relay-writer-{cid}")
        log.info("conn %d: %s connected from %s (%s)", cid, peer.user, _peer(ws), peer.encoding)
        router = self.router
        closed: ConnectionClosed | None = None
        try:
            self._dispatch(router.connect(cid, peer.user))
            rconn = router.conns[cid]
            async for frame in ws:
                try:
                    env = decode(frame, self.max_message)
                except ProtocolError as exc:
                    peer.bad_frames += 1
                    if peer.bad_frames <= _LOG_BAD_FRAMES:
                        log.warning("conn %d (%s): bad frame: %s", cid, peer.user, exc)
                    self._dispatch(router.bad_frame(cid, exc))
                    continue
                try:
                    out = router.handle(cid, env)
                except Exception:
                    log.exception("conn %d: internal error handling typ %d", cid, env.typ)
                    out = router.bad_frame(cid, ProtocolError("internal error"))
                self._dispatch(out)
                if rconn.pause_until:  # rate limited: stop reading until a token is due
                    await self._pause(rconn)
        except ConnectionClosed as exc:
            closed = exc
        finally:
            self.peers.pop(cid, None)
            try:
                self._dispatch(router.disconnect(cid))
            except Exception:
                log.exception("conn %d: internal error on disconnect", cid)
            peer.wakeup.set()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            frame = closed.sent or closed.rcvd if closed is not None else None
            if frame is None:
                frame = ws.protocol.close_sent or ws.protocol.close_rcvd
            code, reason = (frame.code, frame.reason) if frame is not None else (None, "")
            if code == 1009:
                log.warning("conn %d (%s): closed, message too big: %s", cid, peer.user, reason)
            else:
                log.info("conn %d (%s): disconnected (%s %s)", cid, peer.user, code, reason)

    @staticmethod
    async def _pause(rconn: Conn) -> None:
        """Not reading a flooding connection lets its socket buffers fill, so the
        flooder is slowed by TCP instead of costing us a decode and a Reject per
        frame."""
        delay = rconn.pause_until - time.monotonic()
        rconn.pause_until = 0.0
        if delay > 0:
            await asyncio.sleep(delay)

    def _dispatch(self, out: list[Outgoing]) -> None:
        """Encode and queue; one encoding per (message, encoding) in the batch."""
        if not out:
            return
        peers = self.peers
        if len(out) == 1:
            o = out[0]
            p = peers.get(o.conn)
            if p is not None:
                p.push(_encode(o, p.encoding))
            return
        memo: dict[tuple[int, str], bytes | str] = {}
        for o in out:
            p = peers.get(o.conn)
            if p is None:
                continue
            key = (id(o.msg), p.encoding)
            data = memo.get(key)
            if data is None:
                data = memo[key] = _encode(o, p.encoding)
            p.push(data)

    # ---------------------------------------------------------------------- life

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port) (port 0 picks a free one)."""
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            process_response=self._process_response,
            compression=None,  # latency: no per-message deflate
            max_size=self.max_message,
            max_queue=64,
            write_limit=256 * 1024,
        )
        sock = next(iter(self._server.sockets))
        host, port = sock.getsockname()[:2]
        self._ticker = asyncio.create_task(self._tick(), name="relay-tick")
        return host, port

    @property
    def tick_interval(self) -> float:
        """How often `Router.expire` runs: a tenth of the idle timeout, within
        [0.05, 1] s. It is also the resolution of the data path's idle clock."""
        idle = self.limits.idle_timeout
        return 1.0 if idle <= 0 else min(1.0, max(0.05, idle / 10))

    async def _tick(self) -> None:
        """Drive the router's clock and idle expiry (the router never reads time on
        the data path)."""
        interval = self.tick_interval
        while True:
            await asyncio.sleep(interval)
            try:
                self._dispatch(self.router.expire(time.monotonic()))
            except Exception:
                log.exception("internal error in the periodic tick")

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _encode(o: Outgoing, encoding: str) -> bytes | str:
    if encoding == "json":
        return encode_json(o.msg, traceparent=o.traceparent)
    return encode(o.msg, traceparent=o.traceparent)


def _peer(ws: ServerConnection) -> Any:
    try:
        return ws.remote_address
    except Exception:  # transport already gone
        return "?"


def format_url(host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}"
