"""Thin asyncio/websockets adapter around `Router`: it only moves bytes.

- `process_request` answers `/healthz`, refuses unknown paths (404), requests
  without a valid, unexpired, unrevoked bearer token (401) and a user's connection
  over `max_conns_per_user` (429) before the WebSocket upgrade. The periodic tick
  closes live connections whose token expired or was revoked (1008).
- TLS: with an `ssl.SSLContext` the same server speaks wss:// (`tls.py`).
- `process_response` adds the negotiated `X-Syft-WS-Encoding` header.
- Data path without tasks or awaits: `RelayConnection` hands every complete message
  to the router from the protocol callback (no receive queue, no task wake-up), and
  each outgoing message is written synchronously (`protocol.send_*` + `send_data`)
  while the client's transport buffer is below its high-water mark.
- Back-pressure: past the mark, a connection's messages wait in its own bounded queue
  (`peer.Peer`).
- A HotlinkData frame in msgpack of a session its connection already sends on goes to
  the session's msgpack readers undecoded (`Router.forward_frame`, `lanes.py`); any
  other is decoded without copying its payload (`decode_data_view`) and, when the
  router forwards the message unchanged (`Router.forward` names the readers), its
  original bytes go on the same way: no re-encode and no `Outgoing` per reader. Other
  messages are encoded once per (message, encoding) per batch: a message fanned out to
  N readers is encoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import http
import itertools
import logging
import os
import ssl
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from hotlink.common import hot_modules
from hotlink.common.fd_limit import FdBudget
from hotlink.telemetry import OFF, Telemetry
from hotlink.wire.envelope import (
    DEFAULT_MAX_MESSAGE,
    EVENTS_PATH,
    HDR_ENCODING,
    HDR_ENCODINGS,
    HDR_USER,
    Envelope,
    decode,
    decode_data_view,
    encode,
    encode_json,
)
from hotlink.wire.errors import ProtocolError
from hotlink.wire.extensions import HDR_EXTENSIONS, for_peer, header_value, parse
from hotlink.wire.messages import REASON_IDLE
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .acl import AclIndex
from .auth import AuthError, TokenClaims, bearer_token, load_or_create_secret, verify_claims
from .peer import CLOSE_POLICY, Peer, RelayConnection, close_connection
from .revocation import Revocations
from .router import Conn, Limits, Outgoing, Router
from .store import Store
from .sync_cursor import CursorSeal
from .tracing import TRACED, RelayTracer
from .writers import WriterLedger

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
ENCODINGS = ("msgpack", "json")
#: Encoding for clients that do not negotiate (legacy clients speak JSON text frames).
DEFAULT_ENCODING = "json"
#: Bad frames logged per connection before the log goes quiet (a flood must not
#: become a log flood).
_LOG_BAD_FRAMES = 5
#: undecodable messages after which a connection is closed (1008): an honest client
#: sends none, and each one costs a decode and an Error reply
DEFAULT_MAX_BAD_MESSAGES = 32
#: Seconds of costly message handling (file writes, catch-up pages, opens: everything
#: but data frames) one connection may take in one event-loop iteration. Past it the
#: connection is not read until the next iteration, so an agent that uploads hundreds
#: of fallback files at once (each one a file created and renamed) shares the loop
#: with the other connections, the health check and the cluster's heartbeats.
SLICE = 0.002
#: Connections one user may hold at once (an agent needs one; a few more cover a
#: reconnect that overlaps the old connection's close, and tools).
DEFAULT_MAX_CONNS_PER_USER = 8


def negotiate(header_values: list[str]) -> str:
    """The first encoding of the client's preference list that we speak."""
    for value in header_values:
        for item in value.split(","):
            name = item.split(";", 1)[0].strip().lower()
            if name in ENCODINGS:
                return name
    return DEFAULT_ENCODING


@dataclass(slots=True)
class _Pending:
    """What `process_request` learned, kept until the handler runs."""

    user: str
    encoding: str
    ext: frozenset[str]
    claims: TokenClaims | None = None


class RelayServer:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8080,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_queue_bytes: int | None = None,
        limits: Limits | None = None,
        tel: Telemetry = OFF,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_conns_per_user: int = DEFAULT_MAX_CONNS_PER_USER,
        max_bad_messages: int = DEFAULT_MAX_BAD_MESSAGES,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.max_message = max_message
        self.max_queue_bytes = max_queue_bytes or max(64 * 1024 * 1024, 4 * max_message)
        self.secret = load_or_create_secret(data_dir)
        self.revocations = Revocations(data_dir)
        self.ssl_context = ssl_context
        #: 0 = unlimited
        self.max_conns_per_user = max_conns_per_user
        #: 0 = never close for bad messages
        self.max_bad_messages = max_bad_messages
        #: live connections per user (handlers running)
        self._user_conns: dict[str, int] = {}
        self.store = Store(data_dir)
        self.acl = AclIndex.load(self.store.root)
        self.limits = limits or Limits()
        self.router = Router(
            self.acl, self.store, limits=self.limits, writers=WriterLedger(data_dir)
        )
        self.router.cursor_seal = CursorSeal.from_secret(self.secret)
        self.tel = tel
        #: spans (relay/tracing.py); None when tracing is off
        self.tracer = RelayTracer(tel, self.router) if tel.enabled else None
        self.peers: dict[int, Peer] = {}
        self._pending: weakref.WeakKeyDictionary[ServerConnection, _Pending] = (
            weakref.WeakKeyDictionary()
        )
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        #: sockets against the descriptor limit (`start`; None: unlimited or unknown)
        self.fds: FdBudget | None = None
        #: the cluster adapter (relay/cluster) when this node runs with --nats; its
        #: hooks are on connect/disconnect, health and non-data messages only
        self.cluster: Any = None

    # ------------------------------------------------------------------ handshake

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        fds = self.fds
        if path == HEALTH_PATH:
            problem = self.cluster.degraded() if self.cluster is not None else ""
            if not problem and fds is not None and not fds.room:
                problem = f"at the file descriptor limit: {fds.describe()}"
            if problem:
                return ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"degraded: {problem}\n")
            return ws.respond(http.HTTPStatus.OK, "ok\n")
        if path != EVENTS_PATH:
            return ws.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        if fds is not None and not fds.room:
            n = fds.refuse(time.monotonic())
            if n:
                log.warning(
                    "refused %d new connection(s) (the latest from %s): %s; raise the "
                    "relay's limit (ulimit -n, systemd LimitNOFILE=)",
                    n,
                    _peer(ws),
                    fds.describe(),
                )
            return ws.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"relay at its connection limit: {fds.describe()}\n",
            )
        auth = request.headers.get_all("Authorization")
        token = bearer_token(auth[0]) if len(auth) == 1 else None
        try:
            if token is None:
                raise AuthError("missing bearer token")
            claims = verify_claims(self.secret, token)
            self.revocations.refresh()
            revoked = self.revocations.reason(claims)
            if revoked is not None:
                raise AuthError(revoked)
        except AuthError as exc:
            log.info("refused connection from %s: %s", _peer(ws), exc)
            resp = ws.respond(http.HTTPStatus.UNAUTHORIZED, f"unauthorized: {exc}\n")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="hotlink"'
            return resp
        user = claims.sub
        cap = self.max_conns_per_user
        if cap:
            n = self._user_conns.get(user, 0)
            n += sum(1 for p in self._pending.values() if p.user == user)
            if n >= cap:
                log.warning("refused connection from %s: %s already holds %d", _peer(ws), user, n)
                return ws.respond(
                    http.HTTPStatus.TOO_MANY_REQUESTS,
                    f"too many connections for {user} (limit {cap})\n",
                )
        enc = negotiate(request.headers.get_all(HDR_ENCODINGS))
        ext = parse(request.headers.get_all(HDR_EXTENSIONS))
        self._pending[ws] = _Pending(user, enc, ext, claims)
        return None

    def _new_connection(self, *args: Any, **kwargs: Any) -> RelayConnection:
        conn = RelayConnection(*args, **kwargs)
        conn.fds = self.fds
        return conn

    def _process_response(
        self, ws: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        pending = self._pending.get(ws)
        if pending is not None and response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            response.headers[HDR_ENCODING] = pending.encoding
            response.headers[HDR_USER] = pending.user
            if pending.ext:
                response.headers[HDR_EXTENSIONS] = header_value(pending.ext)
        return None

    # ----------------------------------------------------------------- connection

    async def _handler(self, ws: ServerConnection) -> None:
        pending = self._pending.pop(ws, None)
        if pending is None or not isinstance(ws, RelayConnection):
            await ws.close(CLOSE_POLICY, "not authenticated")
            return
        cid = next(self._ids)
        peer = Peer(cid, ws, pending.user, pending.encoding, self.max_queue_bytes, ext=pending.ext)
        peer.claims = pending.claims
        self.peers[cid] = peer
        self._user_conns[peer.user] = self._user_conns.get(peer.user, 0) + 1
        log.info(
            "conn %d: %s connected from %s (%s; extensions: %s)",
            cid,
            peer.user,
            _peer(ws),
            peer.encoding,
            header_value(peer.ext) or "none",
        )
        router = self.router
        try:
            ip = _peer_ip(ws)
            self._dispatch(router.connect(cid, peer.user, peer.ext, ip))
            if self.cluster is not None:
                self.cluster.local_up(cid, peer.user, peer.ext, ip)
            ws.on_resume = peer.flush
            ws.set_handler(functools.partial(self._on_message, peer, router.conns[cid]))
            await ws.wait_closed()
        finally:
            ws.set_handler(None)
            ws.on_resume = None
            if peer.timer is not None:
                peer.timer.cancel()
            peer.held = None
            self.peers.pop(cid, None)
            if self.cluster is not None:
                self.cluster.local_down(cid)
            left = self._user_conns.get(peer.user, 1) - 1
            if left > 0:
                self._user_conns[peer.user] = left
            else:
                self._user_conns.pop(peer.user, None)
            try:
                out = router.disconnect(cid)
                if self.tracer is not None and out:
                    out = self.tracer.ended(out, "connection closed")
                self._dispatch(out)
            except Exception:
                log.exception("conn %d: internal error on disconnect", cid)
            frame = ws.protocol.close_sent or ws.protocol.close_rcvd
            code, reason = (frame.code, frame.reason) if frame is not None else (None, "")
            if code == 1009:
                log.warning("conn %d (%s): closed, message too big: %s", cid, peer.user, reason)
            else:
                why = f"{code} {reason}" if reason else f"{code}"
                log.info("conn %d (%s): disconnected (%s)", cid, peer.user, why)

    def _on_message(self, peer: Peer, rconn: Conn, frame: bytes | str) -> None:
        """One complete message, from the protocol callback."""
        held = peer.held
        if held is not None:  # paused by the open-rate limit: keep the order
            held.append(frame)
            return
        self._route(peer, frame)
        if rconn.pause_until:
            self._pause(peer, rconn, deque())
        elif peer.busy > SLICE:
            self._yield(peer, rconn, deque())

    def _route(self, peer: Peer, frame: bytes | str) -> None:
        cid = peer.id
        t0 = time.time_ns() if self.tracer is not None else 0  # tracing on: before decode
        try:
            env: Envelope | None = None
            if type(frame) is bytes:
                if not t0:  # tracing off: a frame of a known lane goes on undecoded
                    readers = self.router.forward_frame(cid, frame)
                    if readers is not None:
                        self._send_frame(frame, None, "", readers)
                        return
                env = decode_data_view(frame, self.max_message)
            if env is not None:  # HotlinkData in msgpack: its bytes can be forwarded
                msg = env.msg
                tp = env.traceparent
                if t0 and tp:  # a sampled message (tracing on): relay.route
                    out = self.router.handle(cid, env)
                    self.tracer.route(peer.user, env, out, t0, self._forward, frame)  # type: ignore[union-attr]
                    return
                readers = self.router.forward(cid, msg)  # type: ignore[arg-type]
                if readers is not None:  # all there is to do: send the frame on
                    self._send_frame(frame, msg, tp, readers)
                else:
                    self._dispatch(self.router.handle(cid, env))
                return
            start = time.perf_counter()
            try:
                self._route_other(peer, frame, t0)
            finally:
                self._charge(peer, time.perf_counter() - start)
        except Exception:
            log.exception("conn %d: internal error handling a message", cid)
            self._dispatch(self.router.bad_frame(cid, ProtocolError("internal error")))

    def _route_other(self, peer: Peer, frame: bytes | str, t0: int) -> None:
        """Any message but a data frame in msgpack: decoded whole, then handled."""
        cid = peer.id
        try:
            env = decode(frame, self.max_message)
        except ProtocolError as exc:
            peer.bad_frames += 1
            if peer.bad_frames <= _LOG_BAD_FRAMES:
                log.warning("conn %d (%s): bad frame: %s", cid, peer.user, exc)
            self._dispatch(self.router.bad_frame(cid, exc))
            if self.max_bad_messages and peer.bad_frames >= self.max_bad_messages:
                log.warning(
                    "conn %d (%s): %d undecodable messages; closing the connection",
                    cid,
                    peer.user,
                    peer.bad_frames,
                )
                peer.ws.transport.abort()
            return
        if self.cluster is not None and self.cluster.intercept(peer, env):
            return
        out = self.router.handle(cid, env)
        if t0 and type(env.msg) in TRACED:  # tracing on: spans (relay/tracing.py)
            self.tracer.after_handle(  # type: ignore[union-attr]
                peer.user, env, out, t0, time.time_ns(), self._dispatch
            )
            return
        self._dispatch(out)

    def _charge(self, peer: Peer, spent: float) -> None:
        """Count costly handling against the connection's turn in this iteration (its
        count restarts at the next one)."""
        if not peer.busy:
            asyncio.get_running_loop().call_soon(_new_turn, peer)
        peer.busy += spent + 1e-9  # never 0 once charged: one restart per iteration

    def _yield(self, peer: Peer, rconn: Conn, held: deque[bytes | str]) -> None:
        """Its turn is used up: hold what else it sent (in order) and stop reading it
        until the next iteration."""
        peer.held = held
        with contextlib.suppress(Exception):
            peer.ws.transport.pause_reading()
        peer.timer = asyncio.get_running_loop().call_soon(self._release, peer, rconn, held)

    def _pause(self, peer: Peer, rconn: Conn, held: deque[bytes | str]) -> bool:
        """Rate limited: stop reading the connection until a token is due. Not reading
        a flooding connection lets its socket buffers fill, so the flooder is slowed by
        TCP instead of costing us a decode and a Reject per frame. Frames already read
        wait in `held`, in order. False if no wait is needed."""
        delay = rconn.pause_until - time.monotonic()
        rconn.pause_until = 0.0
        if delay <= 0:
            return False
        peer.held = held
        with contextlib.suppress(Exception):
            peer.ws.transport.pause_reading()
        peer.timer = asyncio.get_running_loop().call_later(delay, self._release, peer, rconn, held)
        return True

    def _release(self, peer: Peer, rconn: Conn, held: deque[bytes | str]) -> None:
        peer.timer = None
        peer.held = None
        if self.peers.get(peer.id) is not peer:
            return
        while held:
            self._route(peer, held.popleft())
            if rconn.pause_until and self._pause(peer, rconn, held):
                return
            if peer.busy > SLICE:
                self._yield(peer, rconn, held)
                return
        with contextlib.suppress(Exception):
            peer.ws.transport.resume_reading()

    def _forward(self, frame: bytes, msg: object, tp: str, out: list[Outgoing]) -> None:
        """`out` of a HotlinkData `msg` with traceparent `tp` whose bytes are `frame`:
        `frame` itself goes to msgpack readers where the router forwards `msg`
        unchanged; the rest is encoded."""
        for o in out:
            if o.msg is msg and o.traceparent == tp:
                self._send_frame(frame, msg, tp, (o.conn,))
            else:
                self._dispatch([o])

    def _send_frame(
        self, frame: bytes, msg: object | None, tp: str, readers: tuple[int, ...]
    ) -> None:
        """Send data `frame` (the bytes of `msg` with traceparent `tp`) to `readers` as
        it is; a reader that chose JSON gets the message encoded (decoded from `frame`
        here when the caller has not: `msg` None)."""
        peers = self.peers
        for c in readers:
            p = peers.get(c)
            if p is None:
                continue
            if p.encoding == "msgpack":
                p.push(frame)
            else:
                if msg is None:
                    env = decode(frame, self.max_message)
                    msg, tp = env.msg, env.traceparent
                self._dispatch([Outgoing(c, msg, tp)])  # type: ignore[arg-type]

    def _dispatch(self, out: list[Outgoing]) -> None:
        """Encode and queue; one encoding per (message, encoding, extensions) in the
        batch. What a peer did not announce is left out (`extensions.for_peer`)."""
        if not out:
            return
        peers = self.peers
        if len(out) == 1:
            o = out[0]
            p = peers.get(o.conn)
            if p is not None:
                data = _encode(o, p.encoding, p.ext)
                if data is not None:
                    p.push(data)
            return
        memo: dict[tuple[int, str, frozenset[str]], bytes | str | None] = {}
        for o in out:
            p = peers.get(o.conn)
            if p is None:
                continue
            key = (id(o.msg), p.encoding, p.ext)
            if key in memo:
                data = memo[key]
            else:
                data = memo[key] = _encode(o, p.encoding, p.ext)
            if data is not None:
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
            create_connection=self._new_connection,
            ssl=self.ssl_context,
        )
        sock = next(iter(self._server.sockets))
        host, port = sock.getsockname()[:2]
        self._ticker = asyncio.create_task(self._tick(), name="relay-tick")
        if self.cluster is not None:
            await self.cluster.start()
        self.fds = FdBudget.for_process()
        # Startup objects (ACL index, imported modules) never die: keep them out of the
        # collector's generations so a collection on the data path walks less.
        gc.collect()
        gc.freeze()
        hot_modules.log_status(log)
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
                out = self.router.expire(time.monotonic())
                if self.tracer is not None and out:
                    out = self.tracer.ended(out, REASON_IDLE)
                self._dispatch(out)
                self._check_tokens()
            except Exception:
                log.exception("internal error in the periodic tick")

    def _check_tokens(self) -> None:
        """Close connections whose token expired or was revoked since they connected."""
        self.revocations.refresh()
        now = time.time()
        for peer in list(self.peers.values()):
            # cluster RemotePeers (agents on other nodes) carry no token: their own
            # node checks it
            c = getattr(peer, "claims", None)
            if c is None or peer.closer is not None:
                continue
            why = "token expired" if c.exp <= now else self.revocations.reason(c)
            if why is not None:
                log.warning("conn %d (%s): closing: %s", peer.id, peer.user, why)
                peer.closer = peer.ws.loop.create_task(
                    close_connection(peer.ws, CLOSE_POLICY, why[:120])
                )

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.router.writers.close()


def _new_turn(peer: Peer) -> None:
    peer.busy = 0.0


def _encode(o: Outgoing, encoding: str, ext: frozenset[str]) -> bytes | str | None:
    """The message as this peer receives it; None: not for a peer without `ext`."""
    msg = for_peer(o.msg, ext)
    if msg is None:
        return None
    if encoding == "json":
        return encode_json(msg, traceparent=o.traceparent)
    return encode(msg, traceparent=o.traceparent)


def _peer(ws: ServerConnection) -> Any:
    try:
        return ws.remote_address
    except Exception:  # transport already gone
        return "?"


def _peer_ip(ws: ServerConnection) -> str:
    """The IP address of the connection's far end ("" when unknown): the direct path
    offers it as a candidate (the WS source port is of no use, so only the IP)."""
    addr = _peer(ws)
    return addr[0] if isinstance(addr, tuple) and addr and isinstance(addr[0], str) else ""


def format_url(host: str, port: int, tls: bool = False) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{'wss' if tls else 'ws'}://{host}:{port}"
