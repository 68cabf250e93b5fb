"""One peer of one tunnel: its `Mux`, its two session pipes and its TCP ends.

`PeerLink.run()` keeps the link alive: it asks the manager for the two session
endpoints (opening the sessions through the session manager's public API), connects
a `SessionPipe` to each, starts a fresh `Mux` (new epoch) and applies the mux's
effects until a pipe is lost (the session was closed under us); then every
connection is reset on both ends and the link starts over. Relay restarts and link
drops never reach this level: the sessions hide them (re-send, fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hotlink.common.hostport import split_hostport

from . import mux as M
from .session_io import SessionPipe
from .tcp import TcpConn

log = logging.getLogger("hotlink.agent.tunnels")

#: how long a failed link waits before it tries again (doubling up to the max)
RETRY_INITIAL = 0.2
RETRY_MAX = 5.0
TARGET_CONNECT_TIMEOUT = 10.0


@dataclass(slots=True)
class Endpoints:
    """Socket paths of our sender session (out) and our reader session (in)."""

    out: str
    inn: str


EnsureFn = Callable[[], Awaitable[Endpoints]]
ConnHook = Callable[[str, int, "M.Opened | M.Ended"], None]


class PeerLink:
    def __init__(
        self,
        name: str,
        peer: str,
        side: M.Side,
        ensure: EnsureFn,
        *,
        target: str = "",
        window: int = M.DEFAULT_WINDOW,
        connect_timeout: float = M.DEFAULT_CONNECT_TIMEOUT,
        peer_timeout: float = M.DEFAULT_PEER_TIMEOUT,
        on_conn: ConnHook | None = None,
    ) -> None:
        self.name = name
        self.peer = peer
        self.side = side
        self.ensure = ensure
        self.target = target
        self.window = window
        self.connect_timeout = connect_timeout
        self.peer_timeout = peer_timeout
        self.on_conn = on_conn
        self.loop = asyncio.get_running_loop()
        self.counters = M.MuxCounters()
        self.mux: M.Mux | None = None
        self.out: SessionPipe | None = None
        self.inn: SessionPipe | None = None
        self.tcp: dict[int, TcpConn] = {}
        self.stalled = False
        self.ready = asyncio.Event()
        self.state = "starting"
        self.reason = ""
        self._lost: asyncio.Future[str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._connects: set[asyncio.Task[None]] = set()
        #: accepted connections waiting for the link to come up
        self.parked: list[TcpConn] = []

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._task = self.loop.create_task(self._run(), name=f"tunnel {self.name} {self.peer}")

    async def stop(self, reason: str) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._teardown(reason)
        for conn in self.parked:
            conn.abort()
        self.parked.clear()
        for t in list(self._connects):
            t.cancel()
        self.state = "closed"

    async def _run(self) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                eps = await self.ensure()
                lost: asyncio.Future[str] = self.loop.create_future()
                self._lost = lost
                self.out = await SessionPipe.connect(
                    eps.out,
                    on_payload=lambda p: None,  # nothing is read from our own sender session
                    on_lost=self._pipe_lost,
                    on_pause=self._stall,
                    on_resume=self._unstall,
                )
                self.mux = M.Mux(
                    self.side,
                    epoch=secrets.randbits(63) | 1,
                    now=self.loop.time(),
                    window=self.window,
                    connect_timeout=self.connect_timeout,
                    peer_timeout=self.peer_timeout,
                    counters=self.counters,
                    first_id=secrets.randbits(32),
                )
                self.apply(self.mux.start())
                # The mux exists before the reader pipe connects: the agent hands over
                # frames that waited for an app as soon as the connection is made.
                self.inn = await SessionPipe.connect(
                    eps.inn, on_payload=self._on_payload, on_lost=self._pipe_lost
                )
                self.state, self.reason = "ready", ""
                self.ready.set()
                self._unpark()
                delay = RETRY_INITIAL
                why = await lost
                log.warning(
                    "tunnel %s (%s): %s; resetting its connections", self.name, self.peer, why
                )
                self._teardown(why)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # session refused, endpoint missing, ...
                self._teardown(str(exc))
                self.state, self.reason = "waiting", str(exc)
                log.info("tunnel %s (%s) not ready: %s", self.name, self.peer, exc)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    def _teardown(self, reason: str) -> None:
        self.ready.clear()
        mux, self.mux = self.mux, None
        if mux is not None:
            pipe, self.out = self.out, None
            # the peer learns by RST frames if our session still carries them
            for e in mux.shutdown(reason):
                if isinstance(e, M.Send):
                    if pipe is not None:
                        pipe.send(e.payload)
                else:
                    self._apply_one(e)
            self.out = pipe
        for p in (self.out, self.inn):
            if p is not None:
                p.close()
        self.out = self.inn = None
        for c in list(self.tcp.values()):
            c.abort()
        self.tcp.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stalled = False
        if self.state != "closed":
            self.state, self.reason = "waiting", reason

    def _pipe_lost(self, why: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)

    # --- session side -----------------------------------------------------------------

    def _on_payload(self, payload: bytes) -> None:
        if self.mux is not None:
            self.apply(self.mux.receive(payload, self.loop.time()))

    def _stall(self) -> None:
        """Our sender session pushes back: stop reading every TCP end of this peer."""
        self.stalled = True
        for c in self.tcp.values():
            c.pause_reading()

    def _unstall(self) -> None:
        self.stalled = False
        mux = self.mux
        if mux is None:
            return
        for cid, c in self.tcp.items():
            st = mux.conns.get(cid)
            if st is not None and not st.paused and st.state is M.ConnState.OPEN:
                c.resume_reading()

    # --- TCP side ---------------------------------------------------------------------

    def accept(self, conn: TcpConn) -> None:
        """Forward side: a client connected to our listen port. While the link is not
        up yet (agent just started, sessions opening) the connection waits, not read,
        up to the connect timeout; then it is reset, never left hanging."""
        mux = self.mux
        if mux is None:
            conn.pause_reading()
            self.parked.append(conn)
            self.loop.call_later(self.connect_timeout, self._expire, conn)
            return
        cid, effects = mux.accept(self.loop.time())
        conn.cid = cid
        self.tcp[cid] = conn
        self.apply(effects)

    def _expire(self, conn: TcpConn) -> None:
        if conn in self.parked:
            self.parked.remove(conn)
            log.warning(
                "tunnel %s: reset a connection, the tunnel did not get ready in %gs (%s)",
                self.name,
                self.connect_timeout,
                self.reason or self.state,
            )
            self.counters.refused += 1
            self.counters.last_refusal = (
                f"the tunnel did not get ready in {self.connect_timeout:g}s "
                f"({self.reason or self.state})"
            )
            conn.abort()

    def _unpark(self) -> None:
        parked, self.parked = self.parked, []
        for conn in parked:
            if not conn.gone:
                self.accept(conn)

    def on_tcp_data(self, cid: int, data: bytes) -> None:
        if self.mux is not None:
            self.apply(self.mux.tcp_data(cid, data))

    def on_tcp_eof(self, cid: int) -> None:
        if self.mux is not None:
            self.apply(self.mux.tcp_eof(cid))

    def on_tcp_lost(self, cid: int, reason: str) -> None:
        self.tcp.pop(cid, None)
        if self.mux is not None:
            self.apply(self.mux.tcp_lost(cid, reason))

    def on_tcp_written(self, cid: int, n: int) -> None:
        if self.mux is not None:
            self.apply(self.mux.tcp_written(cid, n))

    async def _connect_target(self, cid: int) -> None:
        host, port = split_hostport(self.target)
        conn = TcpConn(self, cid)
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, host, port), TARGET_CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            log.warning("tunnel %s: cannot connect to %s: %s", self.name, self.target, reason)
            if self.mux is not None:
                self.apply(
                    self.mux.connect_failed(cid, f"cannot connect to {self.target}: {reason}")
                )
            return
        if self.mux is None or conn.gone:
            conn.abort()
            return
        self.tcp[cid] = conn
        self.apply(self.mux.connected(cid))

    # --- effects ----------------------------------------------------------------------

    def apply(self, effects: list[M.Effect]) -> None:
        for e in effects:
            self._apply_one(e)
        self._reschedule()

    def _apply_one(self, e: M.Effect) -> None:
        t = type(e)
        if t is M.Send:
            if self.out is not None:
                self.out.send(e.payload)  # type: ignore[union-attr]
        elif t is M.Write:
            c = self.tcp.get(e.conn)  # type: ignore[union-attr]
            if c is not None:
                c.write(e.data)  # type: ignore[union-attr]
        elif t is M.PauseRead:
            c = self.tcp.get(e.conn)  # type: ignore[union-attr]
            if c is not None:
                c.pause_reading()
        elif t is M.ResumeRead:
            c = self.tcp.get(e.conn)  # type: ignore[union-attr]
            if c is not None and not self.stalled:
                c.resume_reading()
        elif t is M.ShutdownWrite:
            c = self.tcp.get(e.conn)  # type: ignore[union-attr]
            if c is not None:
                c.shutdown_write()
        elif t is M.Close:
            c = self.tcp.pop(e.conn, None)  # type: ignore[union-attr]
            if c is not None:
                c.close()
        elif t is M.Abort:
            c = self.tcp.pop(e.conn, None)  # type: ignore[union-attr]
            if c is not None:
                c.abort()
        elif t is M.Connect:
            task = self.loop.create_task(self._connect_target(e.conn))  # type: ignore[union-attr]
            self._connects.add(task)
            task.add_done_callback(self._connects.discard)
        elif t is M.Opened or t is M.Ended:
            if t is M.Ended:
                self.tcp.pop(e.conn, None)  # type: ignore[union-attr]
                if not e.clean:  # type: ignore[union-attr]
                    log.info(
                        "tunnel %s (%s): connection %d reset: %s",
                        self.name,
                        self.peer,
                        e.conn,  # type: ignore[union-attr]
                        e.reason,  # type: ignore[union-attr]
                    )
            if self.on_conn is not None:
                self.on_conn(self.peer, e.conn, e)  # type: ignore[union-attr,arg-type]

    def _reschedule(self) -> None:
        mux = self.mux
        when = mux.next_deadline() if mux is not None else None
        if self._timer is not None:
            if when is not None and abs(self._timer.when() - when) < 0.01:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.mux is not None:
            self.apply(self.mux.handle_timer(self.loop.time()))
