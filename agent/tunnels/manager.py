"""Tunnels of one agent: open/close/list, admission of forwarders, restore, counters.

Sessions are opened through `SessionManager.open_session` / `close_session` (its
public API) and data moves through the sessions' own endpoints (`session_io`), so
the session layer stays unaware of tunnels. The expose side learns of forwarders from
the agent's event bus (the same `ACCEPTED` events `WatchEvents` streams): an accept on
the door session means the relay checked the forwarder's read right on the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotlink.common.hostport import join_hostport, split_hostport
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import REASON_PERMISSION_DENIED
from hotlink.wire.paths import validate_email

from ..core.state import Role
from ..open_args import SessionError, is_loopback, resolve_path
from ..sessions import SessionManager
from . import mux as M
from . import naming
from .peer import Endpoints, PeerLink
from .state import TunnelSpec, load_tunnels, save_tunnels
from .tcp import TcpConn
from .tracing import TunnelTracer

log = logging.getLogger("hotlink.agent.tunnels")

#: reason this agent gives when it closes a tunnel's sessions on purpose
CLOSE_REASON = "tunnel closed"
#: how long a restored forward tunnel waits before it tries its taken port again
#: (doubling up to the max)
RELISTEN_INITIAL = 0.5
RELISTEN_MAX = 5.0
#: door-leg endings that end a forwarder's link (others, like "reader disconnected",
#: are a link drop: its sessions carry on once it is back)
DROP_REASONS = (CLOSE_REASON, REASON_PERMISSION_DENIED)
EVENT_ACCEPTED = 2
EVENT_CLOSED = 4
ROLE_SENDER = 1

PublishFn = Callable[[], Awaitable[None]]


@dataclass
class Tunnel:
    spec: TunnelSpec
    links: dict[str, PeerLink] = field(default_factory=dict)
    server: asyncio.base_events.Server | None = None
    closed: bool = False
    warnings: list[str] = field(default_factory=list)
    #: forward: why there is no listener (the saved port was taken at restore); the
    #: tunnel keeps trying that same port, since its users connect to it
    listen_error: str = ""
    relisten: asyncio.Task[None] | None = None

    @property
    def side(self) -> M.Side:
        return M.Side(self.spec.side)

    @property
    def rel(self) -> str:
        return self.spec.path.partition("/")[2]

    @property
    def owner(self) -> str:
        return self.spec.path.partition("/")[0]

    def totals(self) -> M.MuxCounters:
        t = M.MuxCounters()
        for link in self.links.values():
            c = link.counters
            t.connections += c.connections
            t.active += c.active
            t.bytes_in += c.bytes_in
            t.bytes_out += c.bytes_out
            t.resets += c.resets
            t.refused += c.refused
            t.last_refusal = c.last_refusal or t.last_refusal
        return t

    @property
    def state(self) -> str:
        if self.closed:
            return "closed"
        if self.listen_error:
            return "waiting"
        if not self.links:
            return "waiting" if self.side is M.Side.EXPOSE else "starting"
        if any(link.state == "ready" for link in self.links.values()):
            return "ready"
        return "waiting"

    @property
    def reason(self) -> str:
        """Why the tunnel is not ready ("" when it is)."""
        if self.listen_error:
            return self.listen_error
        if self.state == "ready":
            return ""
        return next((link.reason for link in self.links.values() if link.reason), "")


class TunnelManager:
    def __init__(
        self,
        sessions: SessionManager,
        *,
        publish: PublishFn,
        state_path: Path | None,
        window: int = M.DEFAULT_WINDOW,
        peer_timeout: float = M.DEFAULT_PEER_TIMEOUT,
        tracer: TunnelTracer | None = None,
        subscribe: Callable[[], asyncio.Queue[Any]] | None = None,
    ) -> None:
        self.sessions = sessions
        #: the session events (control API bus); watched only while an expose tunnel
        #: exists, so an agent without tunnels pays nothing for them
        self.subscribe = subscribe
        self._watch: asyncio.Task[None] | None = None
        self.email = sessions.email
        self.root = sessions.cfg.root
        self.publish = publish
        self.state_path = state_path
        self.window = window
        self.peer_timeout = peer_timeout
        self.tracer = tracer
        self.tunnels: dict[str, Tunnel] = {}
        #: saved tunnels between `bind_saved` and `restore` (None: file not read yet)
        self._saved: list[Tunnel] | None = None
        self._publish_lock = asyncio.Lock()

    # --- control plane ----------------------------------------------------------------

    async def open(
        self,
        path: str,
        *,
        target: str = "",
        to: str = "",
        listen: str = "",
        allow_remote: bool = False,
        fallback_mode: int = 0,
        connect_timeout: float = 0.0,
        window: int = 0,
    ) -> Tunnel:
        try:
            full, role = resolve_path(self.email, path)
        except ProtocolError as exc:
            raise SessionError(SessionError.INVALID, str(exc)) from None
        if not 0 <= connect_timeout < math.inf:  # also refuses nan
            raise SessionError(
                SessionError.INVALID,
                f"connect_timeout must be a finite number of seconds >= 0, got {connect_timeout}",
            )
        if window and not M.MIN_WINDOW <= window <= M.MAX_WINDOW:
            raise SessionError(SessionError.INVALID, "window must be 1024 B .. 1 GiB")
        if role is Role.SENDER:
            spec = self._expose_spec(full, target, to, listen)
        else:
            spec = self._forward_spec(full, target, to, listen, allow_remote)
        spec.fallback_mode = fallback_mode
        spec.connect_timeout = connect_timeout
        spec.window = window
        old = self.tunnels.get(full)
        if old is not None:
            same = (old.spec.target, old.spec.to, old.spec.listen, old.spec.allow_remote) == (
                spec.target,
                spec.to,
                spec.listen,
                spec.allow_remote,
            )
            if same or (spec.side == 1 and spec.listen in ("", old.spec.bound)):
                return old
            raise SessionError(
                SessionError.EXISTS,
                f"a tunnel on {full} exists with other settings; close it first",
            )
        spec.created_ns = time.time_ns()
        t = await self._start(Tunnel(spec))
        self._save()
        return t

    def _expose_spec(self, full: str, target: str, to: str, listen: str) -> TunnelSpec:
        if listen:
            raise SessionError(
                SessionError.INVALID, f"{full} is in your own datasite: expose it with a target"
            )
        if not target:
            raise SessionError(SessionError.INVALID, "expose needs a target HOST:PORT")
        try:
            _, port = split_hostport(target)
            if port == 0:
                raise ValueError("target port must not be 0")
            if to:
                validate_email(to)
        except (ValueError, ProtocolError) as exc:
            raise SessionError(SessionError.INVALID, str(exc)) from None
        return TunnelSpec(full, int(M.Side.EXPOSE), target=target, to=to)

    def _forward_spec(
        self, full: str, target: str, to: str, listen: str, allow_remote: bool
    ) -> TunnelSpec:
        if target or to:
            raise SessionError(
                SessionError.INVALID,
                f"{full} is in another datasite: forward it with a listen address "
                "(target and to belong to the owner's expose)",
            )
        listen = listen or "127.0.0.1:0"
        try:
            host, _ = split_hostport(listen)
        except ValueError as exc:
            raise SessionError(SessionError.INVALID, str(exc)) from None
        if not is_loopback(host) and not allow_remote:
            raise SessionError(
                SessionError.INVALID,
                f"listen address {listen} is not loopback: anyone who can reach it could "
                "use the tunnel; pass allow_remote_listen (--allow-remote) to mean it",
            )
        return TunnelSpec(full, int(M.Side.FORWARD), listen=listen, allow_remote=allow_remote)

    async def close(self, path: str) -> Tunnel:
        t = self.find(path)
        await self._stop(t, close_sessions=True)
        del self.tunnels[t.spec.path]
        self._save()
        log.info("tunnel %s closed", t.spec.path)
        return t

    def find(self, path: str) -> Tunnel:
        try:
            full, _ = resolve_path(self.email, path)
        except ProtocolError as exc:
            raise SessionError(SessionError.INVALID, str(exc)) from None
        t = self.tunnels.get(full)
        if t is None:
            raise SessionError(SessionError.NOT_FOUND, f"no tunnel on {full}")
        return t

    def list(self) -> list[Tunnel]:
        return list(self.tunnels.values())

    def owner_of(self, session_path: str) -> str:
        """Why a session may not be closed on its own ("" = it may): a tunnel's door
        is its admission check (the relay's verdicts on it cut peers off), and its data
        sessions are the tunnel's streams; only closing the tunnel ends them."""
        t = self.tunnels.get(session_path)
        if t is not None and not t.closed:
            rel = t.rel
            return (
                f"{session_path} is the session of tunnel {t.spec.path}: close the tunnel "
                f"instead (hotlinkctl tunnel close {shlex.quote(rel)})"
            )
        if session_path.partition("/")[2].startswith(naming.AREA + "/"):
            return (
                f"{session_path} carries a tunnel's data: close its tunnel instead "
                "(hotlinkctl tunnel ls, hotlinkctl tunnel close PATH)"
            )
        return ""

    async def bind_saved(self) -> None:
        """First half of `restore`: listen on the saved forward tunnels' ports before
        the agent binds anything else. Those ports came from the ephemeral range (a
        `--listen HOST:0` resolved), so another port-0 bind of this agent at start (the
        direct listener) could otherwise be given one of them. A port that is taken
        leaves the tunnel waiting (`listen_error`) instead of dropping it."""
        if self.state_path is None or self._saved is not None:
            return
        self._saved = [Tunnel(spec) for spec in load_tunnels(self.state_path)]
        for t in self._saved:
            if t.side is M.Side.FORWARD:
                await self._try_listen(t)

    async def restore(self) -> int:
        """Start the saved tunnels (after `bind_saved`, which it runs if nobody did)."""
        await self.bind_saved()
        saved, self._saved = self._saved or [], []
        n = 0
        for t in saved:
            try:
                await self._start(t)
                n += 1
            except SessionError as exc:
                log.error("cannot restore tunnel %s: %s", t.spec.path, exc)
                continue
            if t.listen_error:
                log.warning("tunnel %s: %s", t.spec.path, t.listen_error)
                t.relisten = asyncio.get_running_loop().create_task(
                    self._relisten(t), name=f"tunnel {t.spec.path} listen"
                )
        return n

    async def _try_listen(self, t: Tunnel) -> bool:
        """Listen on the forward tunnel's saved address; a failure is kept as
        `listen_error` (the tunnel waits and tries again) instead of raised."""
        try:
            await self._listen(t)
        except SessionError as exc:
            t.listen_error = f"{exc}; trying again"
            return False
        t.listen_error = ""
        return True

    async def _relisten(self, t: Tunnel) -> None:
        delay = RELISTEN_INITIAL
        while not t.closed:
            await asyncio.sleep(delay)
            if await self._try_listen(t):
                log.info("tunnel %s: listening on %s again", t.spec.path, t.spec.bound)
                return
            delay = min(RELISTEN_MAX, delay * 2)

    async def shutdown(self) -> None:
        """Agent stop: connections die with the process (reset), sessions and the
        tunnel file stay for the next start."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for t in list(self.tunnels.values()):
            await self._stop(t, close_sessions=False)

    # --- events from the session layer -----------------------------------------------

    def _ensure_watch(self) -> None:
        if self._watch is None and self.subscribe is not None:
            self._watch = asyncio.get_running_loop().create_task(
                self.watch(self.subscribe), name="hotlink-tunnel-events"
            )

    async def watch(self, subscribe: Callable[[], asyncio.Queue[Any]]) -> None:
        """Consume session events (the control API's bus) from the first expose on."""
        while True:
            q = subscribe()
            self._admit_known()
            while True:
                ev = await q.get()
                if ev is None:  # fell behind: subscribe again and resync from sessions
                    break
                try:
                    self.on_event(ev)
                except Exception:
                    log.exception("tunnel event handling failed")

    def on_event(self, ev: Any) -> None:
        t = self.tunnels.get(ev.path)
        if t is None or t.closed or t.side is not M.Side.EXPOSE or not ev.peer:
            return
        if ev.type == EVENT_ACCEPTED and ev.session.role == ROLE_SENDER:
            self._admit(t, ev.peer)
        elif ev.type == EVENT_CLOSED and ev.reason in DROP_REASONS and ev.peer in t.links:
            # the forwarder closed its tunnel, or the relay says it lost read access to
            # the path: its connections are reset and its data sessions closed
            log.info("tunnel %s: %s left (%s)", t.spec.path, ev.peer, ev.reason)
            asyncio.get_running_loop().create_task(self._drop_peer(t, ev.peer))

    def _admit_known(self) -> None:
        """Forwarders already accepted on a door (events before we subscribed)."""
        for t in self.tunnels.values():
            if t.side is M.Side.EXPOSE and not t.closed:
                s = self.sessions.by_path.get(t.spec.path)
                for peer in sorted(getattr(s, "readers", ()) or ()):
                    self._admit(t, peer)

    def _admit(self, t: Tunnel, peer: str) -> None:
        if peer in t.links or peer == self.email or (t.spec.to and peer != t.spec.to):
            return
        log.info("tunnel %s: %s admitted by the relay; linking", t.spec.path, peer)
        self._start_link(t, peer)
        if peer not in t.spec.peers:
            t.spec.peers.append(peer)
            self._save()

    async def _drop_peer(self, t: Tunnel, peer: str) -> None:
        link = t.links.pop(peer, None)
        if link is None:
            return
        await link.stop(f"{peer} closed the tunnel")
        with contextlib.suppress(ValueError):
            t.spec.peers.remove(peer)
        for p in (
            naming.down_path(self.email, t.rel, peer),
            naming.up_path(self.email, t.rel, peer),
        ):
            self._close_session(p)
        self._save()

    # --- internals ----------------------------------------------------------------------

    async def _start(self, t: Tunnel) -> Tunnel:
        """Open the tunnel's sessions and link(s); a forward tunnel listens first
        unless `bind_saved` already did (or found its port taken)."""
        spec = t.spec
        if t.side is M.Side.FORWARD:
            if t.server is None and not t.listen_error:
                await self._listen(t)
            try:
                await self._open_session(spec.path, Role.READER)  # the door
            except SessionError as exc:
                if t.server is not None:
                    t.server.close()
                raise exc
            self.tunnels[spec.path] = t
            self._start_link(t, t.owner)
        else:
            await self._open_session(
                spec.path, Role.SENDER, to=spec.to, fallback=spec.fallback_mode
            )
            self.tunnels[spec.path] = t
            self._ensure_watch()
            # Peers of a previous run are not linked from the file: each is linked again
            # when the relay admits it on the door (its ACL may have changed meanwhile).
            self._admit_known()
        log.info(
            "tunnel %s: %s %s",
            spec.path,
            "forwarding" if t.side is M.Side.FORWARD else "exposing",
            f"{spec.bound} -> {spec.path}" if t.side is M.Side.FORWARD else f"to {spec.target}",
        )
        return t

    async def _listen(self, t: Tunnel) -> None:
        spec = t.spec
        host, port = split_hostport(spec.bound or spec.listen)
        loop = asyncio.get_running_loop()

        def factory() -> TcpConn:
            conn = TcpConn(_Unlinked())
            conn.on_made = self._on_accept_for(t)
            return conn

        try:
            server = await loop.create_server(factory, host, port, reuse_address=True)
        except OSError as exc:
            raise SessionError(
                SessionError.PRECONDITION,
                f"cannot listen on {join_hostport(host, port)}: {exc.strerror or exc}",
            ) from None
        sock = server.sockets[0].getsockname()
        spec.bound = join_hostport(sock[0], sock[1])
        t.server = server
        if not is_loopback(host):
            msg = (
                f"tunnel {spec.path} listens on {spec.bound}, NOT a loopback address: "
                "anyone who can reach this port can use the tunnel as you"
            )
            log.warning("!!! %s !!!", msg)
            t.warnings.append(msg)

    def _on_accept_for(self, t: Tunnel) -> Callable[[TcpConn], None]:
        def on_made(conn: TcpConn) -> None:
            link = t.links.get(t.owner)
            if link is None or t.closed:
                conn.abort()
                return
            conn.owner = link
            link.accept(conn)

        return on_made

    def _start_link(self, t: Tunnel, peer: str) -> None:
        spec = t.spec
        tracer = self.tracer

        def on_conn(p: str, cid: int, e: M.Opened | M.Ended) -> None:
            if tracer is not None:
                tracer.conn_event(spec.path, p, cid, e)

        link = PeerLink(
            spec.path,
            peer,
            t.side,
            lambda: self._ensure(t, peer),
            target=spec.target,
            window=spec.window or self.window,
            connect_timeout=spec.connect_timeout or M.DEFAULT_CONNECT_TIMEOUT,
            peer_timeout=self.peer_timeout,
            on_conn=on_conn,
        )
        t.links[peer] = link
        link.start()

    async def _ensure(self, t: Tunnel, peer: str) -> Endpoints:
        """Open (or find) this peer's two data sessions; returns their endpoints."""
        rel = t.rel
        if t.side is M.Side.EXPOSE:
            kind, out_path = "down", naming.down_path(self.email, rel, peer)
            in_path = naming.up_path(self.email, rel, peer)
        else:
            kind, out_path = "up", naming.up_path(t.owner, rel, self.email)
            in_path = naming.down_path(t.owner, rel, self.email)
            # the door too: the owner closing its tunnel ended our leg; re-exposing
            # must find us waiting on it again
            await self._open_session(t.spec.path, Role.READER)
        await self._write_acl(kind, peer)
        out = await self._open_session(
            out_path, Role.SENDER, to=peer, fallback=t.spec.fallback_mode
        )
        inn = await self._open_session(in_path, Role.READER)
        if not out.endpoint or not inn.endpoint:
            raise SessionError(SessionError.UNAVAILABLE, "session endpoint not ready")
        return Endpoints(out.endpoint, inn.endpoint)

    async def _write_acl(self, kind: str, peer: str) -> None:
        d = naming.acl_dir(self.root, self.email, kind, peer)
        f = d / "syft.pub.yaml"
        text = naming.acl_yaml(peer)
        async with self._publish_lock:
            try:
                current = f.read_text()
            except OSError:
                current = ""
            if current != text:
                d.mkdir(parents=True, exist_ok=True)
                f.write_text(text)
            # The relay must know the ACL before our open names `peer` as its reader;
            # frames on one link are handled in order, so publishing first suffices.
            await self.publish()

    async def _open_session(self, path: str, role: Role, *, to: str = "", fallback: int = 0) -> Any:
        try:
            return await self.sessions.open_session(
                path, role=int(role), to=to, fallback_mode=fallback
            )
        except SessionError as exc:
            if exc.code == SessionError.DEADLINE:
                # pending: the relay has not answered yet; the session is there
                return self.sessions.find(path=path)
            raise

    def _close_session(self, path: str) -> None:
        try:
            s = self.sessions.find(path=path)
        except SessionError:
            return
        self.sessions.close_session(s, CLOSE_REASON)

    async def _stop(self, t: Tunnel, *, close_sessions: bool) -> None:
        t.closed = True
        if t.relisten is not None:
            t.relisten.cancel()
            t.relisten = None
        if t.server is not None:
            t.server.close()
            t.server = None
        reason = CLOSE_REASON if close_sessions else "agent stopping"
        for link in list(t.links.values()):
            await link.stop(reason)
        if not close_sessions:
            return
        rel = t.rel
        if t.side is M.Side.EXPOSE:
            for peer in list(t.links):
                self._close_session(naming.down_path(self.email, rel, peer))
                self._close_session(naming.up_path(self.email, rel, peer))
        else:
            self._close_session(naming.up_path(t.owner, rel, self.email))
            self._close_session(naming.down_path(t.owner, rel, self.email))
        self._close_session(t.spec.path)

    def _save(self) -> None:
        if self.state_path is not None:
            save_tunnels(self.state_path, [t.spec for t in self.tunnels.values()])


class _Unlinked:
    """Owner of an accepted connection until the link takes it (connection_made)."""

    def on_tcp_data(self, cid: int, data: bytes) -> None: ...
    def on_tcp_eof(self, cid: int) -> None: ...
    def on_tcp_lost(self, cid: int, reason: str) -> None: ...
    def on_tcp_written(self, cid: int, n: int) -> None: ...
