"""`ClusterNode`: joins one relay process to the cluster over NATS (asyncio adapter).

It plugs into `RelayServer` through four hooks (`local_up`, `local_down`,
`intercept`, `degraded`) and otherwise works through the server's own objects: a
remote agent connection is a virtual connection of the local `Router` whose send side
(`RemotePeer.push`) publishes to that agent's node, so the Router's rules (ACLs,
limits, offers, per-session order) apply unchanged and the single-node data path does
no extra work. The bookkeeping is `Membership` (sans-I/O); subjects and payloads are
in `codec`; what outlives a node is in `registry` (JetStream KV).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any, cast

from hotlink.wire.envelope import Envelope, decode, decode_data_view, encode, encode_json
from hotlink.wire.errors import ProtocolError
from hotlink.wire.extensions import ALL
from hotlink.wire.messages import (
    REASON_SENDER_GONE,
    REASON_SESSION_IN_USE,
    Ack,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
    HotlinkSignal,
    Message,
    System,
)

from ..acl import ACL_FILE, DENY_ALL, AclError, is_acl_path, parse_acl
from ..router import Outgoing
from . import codec
from .membership import Changes, Membership
from .nats_direct import direct_client
from .publisher import Publisher, RemotePeer
from .registry import SessionRegistry
from .registry import key_of as registry_key
from .store_sync import StoreSync

if TYPE_CHECKING:
    from ..server import RelayServer

log = logging.getLogger(__name__)

#: reader -> home control messages: routed to the session's home node (signals too:
#: the home's Router checks them and forwards them to the sender)
_TO_HOME = (HotlinkAccept, HotlinkReject, HotlinkClose, HotlinkProgress, HotlinkSignal)
#: seconds a lost node's sessions stay in the registry for their senders to re-open
ORPHAN_GRACE = 60.0
#: seconds between writes of the session registry
REGISTRY_INTERVAL = 1.0


class ClusterNode:
    def __init__(
        self,
        server: RelayServer,
        url: str,
        node_id: str,
        *,
        heartbeat: float = 0.5,
        dead_after: float = 3.0,
    ) -> None:
        if not codec.valid_node_id(node_id):
            raise ValueError(f"bad node id {node_id!r}: use letters, digits, '-' and '_'")
        self.server = server
        self.url = url
        self.me = node_id
        self.heartbeat = heartbeat
        self.members = Membership(node_id, dead_after)
        self.pub = Publisher()
        self.registry = SessionRegistry(server.router, node_id)
        self._base_epoch = os.urandom(4).hex()
        self._links = 0
        self.epoch = self._base_epoch
        self.nc: Any = None
        self.problem = "not connected to NATS yet"
        self.kv_problem = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.store_sync = StoreSync(server.store, node_id, self._publish_json)
        server.store.stale = True  # until the first join's rescan
        #: set while the store index is rebuilt after a (re)connect: the node stays
        #: out of the cluster (no heartbeats, other nodes ignored) until its index has
        #: every file, else a reader's catch-up through it would miss the files other
        #: nodes wrote meanwhile and the re-offered stream would skip them
        self.rejoining = 0
        #: from a NATS loss until `_rejoin` announces our new epoch. nats-py delivers
        #: before it calls our reconnected callback: under the old epoch we learnt
        #: others' readers, which the new epoch then told "sender gone", and never
        #: offered them our sessions again (the stream stopped for good)
        self.cut_off = False

    @property
    def out_of_cluster(self) -> bool:
        """No heartbeats sent, other nodes' announcements ignored (see `cut_off`
        and `rejoining`)."""
        return self.cut_off or self.rejoining > 0

    # ------------------------------------------------------------- server hooks

    def degraded(self) -> str:
        """Why this node cannot serve cross-node sessions now ('' when healthy)."""
        return self.problem or self.kv_problem

    def local_up(self, cid: int, user: str, ext: frozenset[str] = ALL, addr: str = "") -> None:
        """Announce a local agent connection (`addr`: the IP this node saw it come
        from, which the other nodes stamp on its direct-path signals). Out of the
        cluster nothing is announced: the snapshot sent with the rejoin names every
        local connection, under the epoch the others will know us by."""
        if not self.out_of_cluster:
            self._publish_json(
                codec.conn_subject(self.me), op="up", c=cid, u=user, x=sorted(ext), a=addr
            )

    def local_down(self, cid: int) -> None:
        self.members.local_gone(cid)
        if not self.out_of_cluster:
            self._publish_json(codec.conn_subject(self.me), op="down", c=cid)

    def intercept(self, peer: Any, env: Envelope) -> bool:
        """A non-data message from a local agent. True when handled here: control for
        a session homed on another node goes there. Opens move a session's home here;
        ACL writes are announced to the other nodes."""
        msg = env.msg
        typ = type(msg)
        if typ in _TO_HOME:
            sid = msg.sid  # type: ignore[attr-defined]
            if sid in self.server.router.sessions:
                return False
            home = self.members.home_of(sid)
            if home is None:
                return False
            body = encode(msg, env.id, env.traceparent)
            head = codec.routed_head(self.me.encode(), self.epoch.encode(), peer.id, False)
            if not self.pub.send(codec.in_subject(home).encode(), head, body):
                log.info("session %s: %s for node %s dropped, NATS down", sid, typ.__name__, home)
            return True
        if typ is HotlinkOpen:
            op = cast(HotlinkOpen, msg)
            moved = self.members.local_session(op.sid, peer.user, op.path)
            if moved is None:
                log.warning(
                    "%s: open of session id %r refused: another sender's", peer.user, op.sid
                )
                reject = HotlinkReject(op.sid, REASON_SESSION_IN_USE)
                self.server._dispatch([Outgoing(peer.id, reject)])
                return True
            if moved:
                self._sender_gone(op.sid, moved)
            return False
        if typ is FileWrite and is_acl_path(msg.path):  # type: ignore[attr-defined]
            out = self.server.router.handle(peer.id, env)
            self.server._dispatch(out)
            if any(o.conn == peer.id and type(o.msg) is Ack for o in out):
                folder = msg.path.rsplit("/", 1)[0]  # type: ignore[attr-defined]
                self._publish_json(codec.acl_subject(), n=self.me, f=folder)
            return True
        return False

    # --------------------------------------------------------------- life cycle

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_loop(), name="cluster-connect"))

    async def close(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        nc = self.nc
        if nc is not None:
            # nats-py's close flushes and may swallow a cancellation while it waits
            # (so `wait_for` could hang shutdown): bounded wait, then drop the socket.
            closing = asyncio.ensure_future(nc.close())
            await asyncio.wait({closing}, timeout=2.0)
            if not closing.done():
                log.warning("cluster: NATS close did not finish in 2 s; dropping the connection")
                with contextlib.suppress(Exception):
                    nc._transport.close()
                await asyncio.wait({closing}, timeout=1.0)

    async def _connect_loop(self) -> None:
        delay = 0.2
        while self.nc is None:
            try:
                nc = direct_client()
                await nc.connect(
                    self.url,
                    name=f"hotlink-relay {self.me}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    ping_interval=2,
                    max_outstanding_pings=2,
                    pending_size=0,  # no buffering while disconnected: drop, agents resend
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
                self.nc = nc
            except Exception as exc:
                self.problem = f"NATS {self.url} unreachable: {exc or type(exc).__name__}"
                log.warning("cluster: %s; retry in %.1fs", self.problem, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        nc = self.nc
        self.pub.nc = nc
        await nc.subscribe(codec.hb_subject(), cb=self._on_hb)
        await nc.subscribe(codec.conn_subject("*"), cb=self._on_conn)
        await nc.subscribe(codec.ctl_subject(self.me), cb=self._on_ctl)
        await nc.subscribe(codec.acl_subject(), cb=self._on_acl)
        for subject, fn in ((codec.to_subject(self.me), self._on_to),
                            (codec.in_subject(self.me), self._on_in),
                            (codec.file_subject(), self.store_sync.on_file)):  # fmt: skip
            sub = await nc.subscribe(subject)
            nc.direct[sub._id] = fn
        await nc.flush()
        self.store_sync.connected = True
        self.store_sync.announce()  # what was written through us before this join
        # files other nodes wrote between our store's start and this join
        await self._rescan()
        self.problem = ""
        log.info("cluster: node %s joined via %s", self.me, self.url)
        await self._open_kv()
        self._announce()
        self._tasks.append(asyncio.create_task(self._ticker(), name="cluster-tick"))
        self._tasks.append(asyncio.create_task(self._registry_sync(), name="cluster-kv"))

    async def _open_kv(self) -> None:
        try:
            await self.registry.open(self.nc.jetstream())
            self.kv_problem = ""
        except Exception as exc:
            self.kv_problem = f"JetStream KV unavailable (run nats-server with -js): {exc}"
            log.error("cluster: %s", self.kv_problem)

    async def _ticker(self) -> None:
        """Heartbeats and the dead-node check. Nothing here awaits NATS: a slow
        JetStream must not delay heartbeats (the others would declare us dead)."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                if self.nc.is_connected:
                    self.store_sync.announce()  # any a full NATS buffer dropped
                if self.nc.is_connected and not self.out_of_cluster:
                    self._publish_json(codec.hb_subject(), n=self.me, e=self.epoch)
                    self._apply(self.members.expire(time.monotonic()))
            except Exception:
                log.exception("cluster: internal error in the tick")

    async def _registry_sync(self) -> None:
        """The session registry, written once a second when something changed."""
        while True:
            await asyncio.sleep(REGISTRY_INTERVAL)
            if self.registry.kv is None or not self.nc.is_connected:
                continue
            try:
                await self.registry.sync()
            except Exception as exc:  # NATS went away meanwhile: the next round retries
                log.info("cluster: session registry sync failed: %s", exc)

    # ----------------------------------------------------------- NATS callbacks

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self.problem = f"NATS {self.url} unreachable (reconnecting)"
        self.cut_off = True  # until `_rejoin`, whenever nats-py reconnects
        # other nodes' writes are not announced now: catch-ups read the disk
        self.server.store.stale = True
        log.warning(
            "cluster: degraded: lost NATS; serving local sessions only, %d remote nodes dropped",
            len(self.members.nodes),
        )
        self._apply(self.members.forget_all())

    async def _on_reconnected(self) -> None:
        # A new epoch: the other nodes drop what they knew of us and re-learn it, so
        # every cross-node leg is offered and accepted afresh (resume by seq).
        self._links += 1
        self.epoch = f"{self._base_epoch}.{self._links}"
        self.registry.reset()
        self.store_sync.reconnected()  # our writes of the outage: see StoreSync
        self._reload_acls()
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._rejoin(self.epoch)))

    async def _rejoin(self, epoch: str) -> None:
        """Back on NATS: rebuild the store index (the file announcements of the outage
        were missed), then announce ourselves. A newer reconnect supersedes this one."""
        await self._rescan()
        if epoch != self.epoch or self._closing or not self.nc.is_connected:
            return
        self.problem = ""
        self.cut_off = False
        log.info("cluster: NATS back; node %s re-announced (epoch %s)", self.me, epoch)
        self._announce()
        if self.registry.kv is None:
            await self._open_kv()

    async def _rescan(self) -> None:
        """Rebuild the store index while out of the cluster (see `rejoining`)."""
        self.rejoining += 1
        self.problem = "rejoining the cluster: re-reading the store index"
        log.info("cluster: node %s re-reading the store index before it joins", self.me)
        try:
            await self.store_sync.rescan()
            if self.rejoining == 1 and self.nc is not None and self.nc.is_connected:
                self.server.store.stale = False
        except Exception:
            log.exception("cluster: store rescan failed; joining with the index as it is")
        finally:
            self.rejoining -= 1

    async def _on_error(self, exc: Exception) -> None:
        log.info("cluster: NATS: %s", exc)

    def _announce(self) -> None:
        self._publish_json(codec.hb_subject(), n=self.me, e=self.epoch)
        self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        local = self.server.router.conns
        conns = [
            [p.id, p.user, sorted(p.ext), local[p.id].addr if p.id in local else ""]
            for p in self.server.peers.values()
            if type(p) is not RemotePeer
        ]
        self._publish_json(codec.conn_subject(self.me), op="snap", cs=conns)

    def _publish_json(self, subject: str, **fields: Any) -> bool:
        """False when the message was dropped (NATS down or its buffer full)."""
        fields.setdefault("n", self.me)
        fields.setdefault("e", self.epoch)
        return self.pub.send(subject.encode(), b"", codec.pack_json(**fields))

    async def _on_hb(self, msg: Any) -> None:
        j = self._json(msg)
        if j is not None and j.get("n") != self.me and not self.out_of_cluster:
            self._apply(self.members.heartbeat(str(j["n"]), str(j["e"]), time.monotonic()))

    async def _on_conn(self, msg: Any) -> None:
        j = self._json(msg)
        if j is None or j.get("n") == self.me or self.out_of_cluster:
            return  # while rejoining: the snapshot asked for after the join tells all
        node, epoch, op = str(j["n"]), str(j["e"]), j.get("op")
        now = time.monotonic()
        if op == "up":
            ext, addr = _ext(j.get("x")), str(j.get("a", ""))
            ch = self.members.conn_up(node, epoch, int(j["c"]), str(j["u"]), now, ext, addr)
            self._apply(ch)
        elif op == "down":
            self._apply(self.members.conn_down(node, epoch, int(j["c"])))
        elif op == "snap":
            conns = [
                (
                    int(c[0]),
                    str(c[1]),
                    _ext(c[2] if len(c) > 2 else None),
                    str(c[3]) if len(c) > 3 else "",
                )
                for c in j.get("cs", [])
            ]
            self._apply(self.members.snapshot(node, epoch, conns, now))

    async def _on_ctl(self, msg: Any) -> None:
        j = self._json(msg)
        if j is not None and j.get("op") == "snap?" and not self.out_of_cluster:
            self._publish_snapshot()

    async def _on_acl(self, msg: Any) -> None:
        j = self._json(msg)
        if j is None or j.get("n") == self.me:
            return
        folder = str(j.get("f", ""))
        path = self.server.store.root / folder / ACL_FILE
        try:
            acl = parse_acl(path.read_bytes())
        except (AclError, OSError) as exc:
            log.error("cluster: ACL %s from node %s unusable, owner-only: %s", folder, j["n"], exc)
            acl = DENY_ALL
        self.server.acl.set_file(folder, acl)
        log.info("cluster: ACL %s changed on node %s, re-checking sessions", folder, j["n"])
        self.server._dispatch(self.server.router.recheck_all())

    def _json(self, msg: Any) -> dict[str, Any] | None:
        try:
            j = codec.unpack_json(msg.data)
            if "n" not in j or "e" not in j:
                raise KeyError("n/e")
            return j
        except (ProtocolError, KeyError) as exc:
            log.warning("cluster: bad message on %s: %s", msg.subject, exc)
            return None

    # ------------------------------------------------------------ routed frames

    def _on_to(self, data: bytes) -> None:
        """A relay message from a session's home for one of our agents."""
        try:
            origin, epoch, cid, frame = codec.parse_routed(data)
        except ProtocolError as exc:
            log.warning("cluster: %s", exc)
            return
        if epoch != self.epoch:
            return  # for a connection of this node's previous epoch: that leg is gone
        peer = self.server.peers.get(cid)
        if peer is None or type(peer) is RemotePeer:
            return  # that agent left meanwhile
        if type(frame) is bytes:
            env = decode_data_view(frame, self.server.max_message)
            if env is not None:  # data: the bytes the sender sent, forwarded as they are
                if peer.encoding == "msgpack":
                    peer.push(frame)
                else:
                    peer.push(encode_json(env.msg, env.id, env.traceparent))
                return
        try:
            env = decode(frame, self.server.max_message)
        except ProtocolError as exc:
            log.warning("cluster: bad message from node %s: %s", origin, exc)
            return
        m = env.msg
        typ = type(m)
        if typ is HotlinkOpen:
            op = cast(HotlinkOpen, m)
            moved = self.members.offer_from(origin, op.sid, cid, op.frm, op.path)
            if moved is None:
                log.warning(
                    "cluster: offer of session id %r by node %s (%s) dropped: a live session "
                    "of another sender has that id",
                    op.sid,
                    origin,
                    op.frm,
                )
                return
            if moved:
                self._sender_gone(op.sid, moved)
        elif typ is HotlinkClose or typ is HotlinkReject:
            if not self.members.is_home(origin, m.sid):  # type: ignore[attr-defined]
                return  # from a session's previous home: stale
            if typ is HotlinkClose and not m.frm:  # type: ignore[attr-defined]
                self.members.ended_for(m.sid, cid)  # type: ignore[attr-defined]
        if peer.encoding == "msgpack" and type(frame) is bytes:
            peer.push(frame)
        else:
            peer.push(_encoded(m, env, peer.encoding))

    def _on_in(self, data: bytes) -> None:
        """A control message of an agent on another node, for a session homed here."""
        try:
            origin, epoch, cid, frame = codec.parse_routed(data)
            env = decode(frame, self.server.max_message)
        except ProtocolError as exc:
            log.warning("cluster: %s", exc)
            return
        rc = self.members.remote(origin, cid, epoch)
        if rc is None:
            what = type(env.msg).__name__
            log.info("cluster: %s from unknown conn %s/%d dropped", what, origin, cid)
            return
        self.server._dispatch(self.server.router.handle(rc.vid, env))

    # ------------------------------------------------------------------ effects

    def _apply(self, ch: Changes) -> None:
        server = self.server
        router = server.router
        out: list[Outgoing] = []
        for rc in ch.removed:
            server.peers.pop(rc.vid, None)
            out += router.disconnect(rc.vid)
        for rc in ch.added:
            server.peers[rc.vid] = RemotePeer(  # type: ignore[assignment]
                rc.vid, rc.user, rc.node, self.members.nodes[rc.node].epoch, rc.cid, self.me,
                self.pub, rc.ext,
            )  # fmt: skip
            greet = router.connect(rc.vid, rc.user, rc.ext, rc.addr)
            out += [o for o in greet if type(o.msg) is not System]
        by_sid: dict[str, list[int]] = {}
        for cid, sid in ch.orphaned:
            by_sid.setdefault(sid, []).append(cid)
        for sid, cids in by_sid.items():
            out += [Outgoing(c, HotlinkClose(sid, REASON_SENDER_GONE)) for c in cids]
        for node in ch.joined:
            log.info("cluster: node %s joined", node)
            self._publish_json(codec.ctl_subject(node), op="snap?")
        for node in ch.lost:
            log.warning(
                "cluster: node %s lost; its agents reconnect elsewhere, its sessions resume "
                "when their senders re-open them",
                node,
            )
            if self.registry.kv is not None and not self.problem:
                self._tasks = [t for t in self._tasks if not t.done()]
                self._tasks.append(asyncio.create_task(self._orphans(node)))
        if out:
            server._dispatch(out)

    async def _orphans(self, node: str) -> None:
        """A lost node's sessions, from the registry: logged now; the records still
        homed there after a grace period (their senders never came back) are removed
        by one survivor (the lowest node id), so the registry does not keep them."""
        try:
            recs = await self.registry.homed_at(node)
            if recs:
                log.warning(
                    "cluster: %d session(s) were homed on lost node %s: %s",
                    len(recs),
                    node,
                    ", ".join(f"{r['sid']} ({r['sender']})" for r in recs[:20]),
                )
            await asyncio.sleep(ORPHAN_GRACE)
            if node in self.members.nodes or min([self.me, *self.members.nodes]) != self.me:
                return
            for r in await self.registry.homed_at(node):
                await self.registry.kv.delete(registry_key(r["sid"]))
        except Exception as exc:  # NATS gone meanwhile: the next loss report retries
            log.info("cluster: registry clean-up for %s skipped: %s", node, exc)

    def _sender_gone(self, sid: str, cids: list[int]) -> None:
        self.server._dispatch([Outgoing(c, HotlinkClose(sid, REASON_SENDER_GONE)) for c in cids])

    def _reload_acls(self) -> None:
        """ACL writes on other nodes during an outage were not announced: re-read."""
        self.server.acl.reload(self.server.store.root)
        self.server._dispatch(self.server.router.recheck_all())


def _ext(raw: Any) -> frozenset[str]:
    """Extensions from a conn announcement (absent: all, as an agent of this version)."""
    if raw is None:
        return ALL
    ext = frozenset(str(x) for x in raw)
    return ALL if ext == ALL else ext


def _encoded(m: Message, env: Envelope, encoding: str) -> bytes | str:
    if encoding == "json":
        return encode_json(m, env.id, env.traceparent)
    return encode(m, env.id, env.traceparent)
