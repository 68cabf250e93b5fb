"""The WebSocket relay link: one connection to the relay, reconnected with backoff.

Built on `websockets.asyncio.client.connect` (websockets 17) with a connection
subclass that hands every complete message to the listener synchronously from the
protocol callback (`process_event`) instead of going through `recv()`: no task
switch, no per-message await on the receive path. Sends are synchronous too
(`protocol.send_binary` + `send_data`), with the write buffer's pause/resume
callbacks exposed as `writable` / `on_writable` for back-pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from hotlink.common.websocket import DirectMessages
from hotlink.common.ws_masked import MaskKeys, send_binary
from hotlink.wire.envelope import (
    EVENTS_PATH,
    HDR_ENCODING,
    HDR_ENCODINGS,
    HDR_USER,
    decode,
    encode,
)
from hotlink.wire.errors import ProtocolError
from hotlink.wire.extensions import ACKS, ALL, HDR_EXTENSIONS, NONE, header_value, parse
from hotlink.wire.messages import Message
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from .tracing import CONTROL, AgentTracer
from .transport import LinkDown, LinkState, Transport, TransportListener

log = logging.getLogger("hotlink.agent.link")

#: a link up at least this long resets the reconnect backoff: a link that drops right
#: after each connect keeps backing off instead of hammering the relay
STABLE_AFTER = 5.0
#: seconds between attempts after the relay refused our token (HTTP 401/403): a bad
#: token does not fix itself, so no fast retries hammering the relay and the log
AUTH_RETRY = 60.0
#: least seconds between attempts after the relay said it is at capacity (HTTP 429:
#: this user's connections, 503: its descriptors), jittered over [1/2, 1] of it: a
#: relay's many agents must not come back together at the first backoff steps
BUSY_RETRY = 2.0


class Backoff:
    """Exponential backoff with "equal jitter": delay in [d/2, d], d = min(max, base*2^n)."""

    def __init__(
        self, initial: float, maximum: float, rng: Callable[[], float] = random.random
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng

    def next_delay(self) -> float:
        d = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return d / 2 + self._rng() * d / 2

    def at_least(self, seconds: float, delay: float) -> float:
        """`delay`, or `seconds` with the same jitter if that is longer."""
        return max(delay, seconds / 2 + self._rng() * seconds / 2)

    def reset(self) -> None:
        self.attempt = 0

    def link_ended(self, uptime: float, stable_after: float) -> None:
        """A connection that had completed its handshake closed after `uptime` s.
        Only one that stayed up `stable_after` s resets the growth: a link that dies
        right after each connect (e.g. a message-too-big close) keeps backing off
        instead of reconnecting every `initial` s forever."""
        if uptime >= stable_after:
            self.reset()


def events_url(server: str) -> str:
    parts = urlsplit(server)
    if parts.path in ("", "/"):
        return server.rstrip("/") + EVENTS_PATH
    return server


class _HotConnection(DirectMessages, ClientConnection):
    """Delivers whole messages to `handler` from the protocol callback."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        why = _refusal_reason(exc)
        return f"relay refused the connection: HTTP {exc.response.status_code}" + (
            f" ({why})" if why else ""
        )
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _refusal_reason(exc: InvalidStatus) -> str:
    """The relay's one-line reason from a refused upgrade's body ("unauthorized: bad
    token signature" -> "bad token signature"), bounded and printable."""
    body = exc.response.body or b""
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    line = text[0] if text else ""
    line = line.removeprefix("unauthorized:").strip()
    return "".join(c for c in line if c.isprintable())


def is_auth_refusal(exc: BaseException) -> bool:
    return isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403)


def retry_delay(exc: BaseException, backoff: Backoff) -> float:
    """Seconds before the next attempt after a failed connect: the backoff, but at
    least `AUTH_RETRY` when the relay refused our token (no retry storm on a bad one)
    and about `BUSY_RETRY` when it said it is at capacity."""
    delay = backoff.next_delay()
    if is_auth_refusal(exc):
        return max(AUTH_RETRY, delay)
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (429, 503):
        return backoff.at_least(BUSY_RETRY, delay)
    return delay


class IdentityMismatch(Exception):
    """The relay authenticated our token as another user than the agent's --email."""


class WsLink(Transport):
    #: spans (agent/tracing.py), set by the app when tracing is on
    tracer: AgentTracer | None = None
    #: seconds a connection must stay up before the reconnect backoff starts over
    stable_after: float = STABLE_AFTER

    def __init__(
        self,
        server: str | Sequence[str],
        token: str,
        *,
        max_message: int,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        write_limit: int = 1 << 20,
        open_timeout: float = 10.0,
        expect_user: str = "",
        on_fatal: Callable[[str], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        token_loader: Callable[[], str] | None = None,
    ) -> None:
        #: re-reads the token (the --token-file) before each attempt, so a token
        #: rotated on disk is used without restarting the agent
        self.token_loader = token_loader
        #: the relay URLs (several: nodes of a relay cluster), tried in order; a
        #: failed attempt moves to the next one, a link that was up retries its own first
        self.urls = [events_url(u) for u in ([server] if isinstance(server, str) else server)]
        self._at = 0
        self.url = self.urls[0]
        #: the --email: the relay must authenticate the token as this user
        self.expect_user = expect_user
        #: the user the relay says the token is for (learnt at each connect)
        self.user = ""
        #: called once with the reason when the link gives up for good
        self.on_fatal = on_fatal
        self.fatal = ""
        #: wss:// trust (`tls.client_context`); None when no URL is wss://
        self.ssl_context = ssl_context
        self._token = token
        self.max_message = max_message
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.write_limit = write_limit
        self.open_timeout = open_timeout
        self.state = LinkState.DOWN
        self.since_ns = time.time_ns()
        self.last_error = ""
        self.reconnects = 0
        self.encoding = ""
        #: extensions the relay confirmed on the current connection
        self.extensions: frozenset[str] = NONE
        self._listener: TransportListener | None = None
        self._conn: _HotConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = itertools.count(1)
        self._id_prefix = format(random.getrandbits(24), "x") + "-"
        self._bad_messages = 0
        #: masking keys for our (client) frames, cut from a refilled urandom buffer
        self._mask_keys = MaskKeys()

    def _wss(self) -> bool:
        return self.ssl_context is not None and self.url.startswith("wss://")

    def set_listener(self, listener: TransportListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hotlink-link")

    async def stop(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def writable(self) -> bool:
        c = self._conn
        return c is not None and not c.paused and self.state is LinkState.UP

    def next_id(self) -> str:
        """A fresh message id: this link's random prefix and a counter, so no random
        draw (a getrandom syscall for `secrets`) per message. The direct links' frames
        take theirs here too."""
        return self._id_prefix + format(next(self._ids), "x")

    def send(self, msg: Message, id: str | None = None) -> str:
        c = self._conn
        if c is None or self.state is not LinkState.UP or c.protocol.state is not State.OPEN:
            raise LinkDown("relay link is down")
        mid = id if id is not None else self.next_id()
        tr = self.tracer
        if tr is None:  # tracing off
            data = encode(msg, mid)  # a ProtocolError here is the caller's problem
            rec = None
        else:
            rec, tp = tr.before_send(msg, mid)
            data = encode(msg, mid, tp)
        try:
            send_binary(c, data, self._mask_keys)
        except Exception as exc:  # the connection is going away under us
            raise LinkDown(f"relay link is closing: {exc}") from None
        if rec is not None:
            tr.after_send(rec)  # type: ignore[union-attr]
        return mid

    def _new_token(self) -> str:
        """The token file's token if it differs from the one in use, else "". A file
        that cannot be read (being rewritten, removed) keeps the token in use."""
        if self.token_loader is None:
            return ""
        try:
            token = self.token_loader().strip()
        except (OSError, UnicodeDecodeError):
            return ""
        return token if token != self._token else ""

    def _reload_token(self) -> None:
        token = self._new_token()
        if token:
            self._token = token
            log.info("token file changed: connecting with the new token")

    async def _sleep_or_new_token(self, delay: float) -> None:
        """Wait `delay` after the relay refused our token, or until the token file
        holds another token (checked every second), whichever comes first."""
        end = time.monotonic() + delay
        while not self._stopping and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            if self._new_token():
                return

    def _set_state(self, state: LinkState) -> None:
        if state is not self.state:
            self.state = state
            self.since_ns = time.time_ns()

    async def _run(self) -> None:
        listener = self._listener
        assert listener is not None, "set_listener() first"
        connected_before = False
        while not self._stopping:
            self._set_state(LinkState.CONNECTING)
            self._reload_token()
            try:
                conn = await connect(
                    self.url,
                    additional_headers={
                        "Authorization": f"Bearer {self._token}",
                        HDR_ENCODINGS: "msgpack,json",
                        HDR_EXTENSIONS: header_value(ALL),
                    },
                    compression=None,
                    max_size=self.max_message,
                    create_connection=_HotConnection,
                    open_timeout=self.open_timeout,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                    write_limit=self.write_limit,
                    proxy=None,
                    **({"ssl": self.ssl_context} if self._wss() else {}),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_state(LinkState.DOWN)
                if is_auth_refusal(exc):
                    # Final until someone changes the token: say which refusal, once
                    # per distinct reason at ERROR, and retry slowly.
                    msg = f"relay refused our token: {_describe(exc)}"
                    if msg != self.last_error:
                        log.error(
                            "%s; check --token-file (mint one with: hotlink-relay token "
                            "EMAIL --data DIR --out FILE); retrying every %.0fs",
                            msg,
                            AUTH_RETRY,
                        )
                    self.last_error = msg
                    await self._sleep_or_new_token(retry_delay(exc, self.backoff))
                    continue
                self.last_error = _describe(exc)
                delay = retry_delay(exc, self.backoff)
                failed = self.url
                self._at = (self._at + 1) % len(self.urls)
                self.url = self.urls[self._at]
                log.warning(
                    "relay %s unreachable (%s); retry %s in %.2fs",
                    failed,
                    self.last_error,
                    self.url,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            assert isinstance(conn, _HotConnection)
            user = conn.response.headers.get(HDR_USER, "") if conn.response else ""
            if user and self.expect_user and user != self.expect_user:
                self._give_up(
                    f"the relay authenticated our token as {user}, but this agent is "
                    f"{self.expect_user} (--email): the token file is another user's; "
                    f"use a token minted for {self.expect_user}"
                )
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(1008, "identity mismatch"), 2)
                return
            self.user = user
            sock = conn.transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.encoding = conn.response.headers.get(HDR_ENCODING, "") if conn.response else ""
            hdrs = conn.response.headers.get_all(HDR_EXTENSIONS) if conn.response else []
            self.extensions = parse(hdrs)
            if ACKS not in self.extensions:
                log.warning(
                    "relay %s did not confirm the hotlink extensions (got %r): it may be a "
                    "reference server, which never acknowledges opens; sessions will not open",
                    self.url,
                    header_value(self.extensions),
                )
            self._conn = conn
            up_at = time.monotonic()  # the backoff resets only once the link proved stable
            if connected_before:
                self.reconnects += 1
            connected_before = True
            self._set_state(LinkState.UP)
            self.last_error = ""  # the error of a down period, not history
            log.info(
                "link up: %s as %s (encoding %s)",
                self.url,
                self.user or self.expect_user or "?",
                self.encoding or "?",
            )
            conn.on_resume = listener.on_writable
            try:
                listener.on_link_up()
            except Exception:
                log.exception("on_link_up failed")
            conn.set_handler(self._on_raw)
            try:
                await conn.wait_closed()
            finally:
                reason = f"closed: code {conn.close_code} {conn.close_reason or ''}".strip()
                self._conn = None
                self._set_state(LinkState.DOWN)
                self.last_error = reason
            self.backoff.link_ended(time.monotonic() - up_at, self.stable_after)
            if self._stopping:  # our own shutdown closed it: nothing to warn about
                log.info("link closed: %s", reason)
            else:
                log.warning("link down: %s", reason)
            try:
                listener.on_link_down(reason)
            except Exception:
                log.exception("on_link_down failed")
            if not self._stopping:
                await asyncio.sleep(self.backoff.next_delay())

    def _give_up(self, reason: str) -> None:
        """Stop for good: nothing a retry could fix (the token names another user)."""
        self.fatal = self.last_error = reason
        self._stopping = True
        self._set_state(LinkState.DOWN)
        log.error("%s", reason)
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def _on_raw(self, data: bytes | str) -> None:
        tr = self.tracer
        t0 = time.time_ns() if tr is not None else 0  # tracing on: before decode
        try:
            env = decode(data, self.max_message)
        except ProtocolError as exc:
            self._bad_messages += 1
            if self._bad_messages <= 10 or self._bad_messages % 1000 == 0:
                log.warning("undecodable message from relay (#%d): %s", self._bad_messages, exc)
            return
        listener = self._listener
        assert listener is not None
        try:
            if t0 and (env.traceparent or type(env.msg) in CONTROL):
                tr.on_message(env, t0, listener)  # type: ignore[union-attr]
            else:
                listener.on_message(env)
        except Exception:
            log.exception("error handling %s from relay", type(env.msg).__name__)
