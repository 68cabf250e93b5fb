"""Who is connected where, as one relay node sees the cluster (sans-I/O).

Every node announces its agent connections (`conn up` / `conn down`, and a full
snapshot on request) and a heartbeat. `Membership` turns those announcements into
decisions for the node's adapter:

- a remote connection becomes a *virtual connection* of the local `Router`
  (`RemoteConn.vid`), so the Router offers sessions to it, takes its accepts and
  routes data to it exactly as to a local one;
- a node whose heartbeats stop for `dead_after` seconds, or that comes back with a new
  epoch (restarted, or reconnected to NATS), loses all its virtual connections;
- for sessions whose *home* (the node of their sender) is another node, it remembers
  which local connections were offered them, so that a home's death or a session's
  move to a new home can be told to those readers as "sender gone" (they then accept
  the new offer with their delivered seq and the sender re-sends from there).

Time enters only as arguments; nothing here touches NATS or sockets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Virtual connection ids start here, far above any local connection id.
FIRST_VID = 1 << 40


@dataclass(slots=True, eq=False)
class RemoteConn:
    node: str
    cid: int
    user: str
    vid: int
    #: protocol extensions the agent announced to its node (`hotlink.wire.extensions`)
    ext: frozenset[str] = frozenset()
    #: IP address its node saw it connect from ("" when unknown)
    addr: str = ""


@dataclass(slots=True, eq=False)
class NodeInfo:
    name: str
    epoch: str
    seen: float
    conns: dict[int, RemoteConn] = field(default_factory=dict)


@dataclass(slots=True)
class Changes:
    """What the adapter must apply to its Router after an event."""

    #: remote connections to register as virtual connections (`Router.connect`)
    added: list[RemoteConn] = field(default_factory=list)
    #: virtual connections to drop (`Router.disconnect`)
    removed: list[RemoteConn] = field(default_factory=list)
    #: (local conn, sid): tell the reader "sender gone", its session's home is lost
    orphaned: list[tuple[int, str]] = field(default_factory=list)
    #: nodes that became known (the adapter asks them for a snapshot)
    joined: list[str] = field(default_factory=list)
    #: nodes declared gone
    lost: list[str] = field(default_factory=list)


class Membership:
    def __init__(self, me: str, dead_after: float = 3.0, first_vid: int = FIRST_VID) -> None:
        self.me = me
        self.dead_after = dead_after
        self.nodes: dict[str, NodeInfo] = {}
        self.by_vid: dict[int, RemoteConn] = {}
        self._next_vid = first_vid
        #: sid -> home node, for sessions a remote home offered to local connections
        self.homes: dict[str, str] = {}
        #: sid -> (sender, path) of those sessions: a session moves, its identity not
        self.idents: dict[str, tuple[str, str]] = {}
        #: sid -> local connections that remote home offered it to
        self.offered: dict[str, set[int]] = {}
        #: local conn -> sids of remote homes it was offered (for its disconnect)
        self._by_local: dict[int, set[str]] = {}

    # ------------------------------------------------------------------ nodes

    def heartbeat(self, node: str, epoch: str, now: float) -> Changes:
        """A node is alive. Unknown (or a new epoch): it joined, ask for its snapshot."""
        ch = Changes()
        info = self._node(node, epoch, now, ch)
        info.seen = now
        return ch

    def _node(self, node: str, epoch: str, now: float, ch: Changes) -> NodeInfo:
        info = self.nodes.get(node)
        if info is not None and info.epoch != epoch:
            # the same name with a new epoch: the old instance is gone with all its
            # connections (restarted, or it lost NATS and re-announced itself)
            self._drop_node(info, ch)
            info = None
        if info is None:
            info = self.nodes[node] = NodeInfo(node, epoch, now)
            ch.joined.append(node)
        return info

    def expire(self, now: float) -> Changes:
        """Nodes silent for `dead_after` seconds are gone."""
        ch = Changes()
        cutoff = now - self.dead_after
        for info in [i for i in self.nodes.values() if i.seen < cutoff]:
            self._drop_node(info, ch)
        return ch

    def forget_all(self) -> Changes:
        """This node lost NATS: every remote node is unreachable from here."""
        ch = Changes()
        for info in list(self.nodes.values()):
            self._drop_node(info, ch)
        return ch

    def _drop_node(self, info: NodeInfo, ch: Changes) -> None:
        del self.nodes[info.name]
        ch.lost.append(info.name)
        for rc in info.conns.values():
            self.by_vid.pop(rc.vid, None)
            ch.removed.append(rc)
        info.conns.clear()
        for sid in [s for s, h in self.homes.items() if h == info.name]:
            for cid in self.offered.pop(sid, ()):
                ch.orphaned.append((cid, sid))
                self._unlink(cid, sid)
            del self.homes[sid]
            self.idents.pop(sid, None)

    # ------------------------------------------------------------ connections

    def conn_up(
        self,
        node: str,
        epoch: str,
        cid: int,
        user: str,
        now: float,
        ext: frozenset[str] = frozenset(),
        addr: str = "",
    ) -> Changes:
        ch = Changes()
        if node == self.me:
            return ch
        info = self._node(node, epoch, now, ch)
        if cid not in info.conns:
            ch.added.append(self._add(info, cid, user, ext, addr))
        return ch

    def conn_down(self, node: str, epoch: str, cid: int) -> Changes:
        ch = Changes()
        info = self.nodes.get(node)
        if info is None or info.epoch != epoch:
            return ch
        rc = info.conns.pop(cid, None)
        if rc is not None:
            self.by_vid.pop(rc.vid, None)
            ch.removed.append(rc)
        return ch

    def snapshot(
        self,
        node: str,
        epoch: str,
        conns: Iterable[tuple[int, str, frozenset[str], str]],
        now: float,
    ) -> Changes:
        """A node's full connection list (id, user, extensions, observed IP): reconcile
        (idempotent)."""
        ch = Changes()
        if node == self.me:
            return ch
        info = self._node(node, epoch, now, ch)
        info.seen = now
        want = {cid: (user, ext, addr) for cid, user, ext, addr in conns}
        for cid in [c for c in info.conns if c not in want]:
            rc = info.conns.pop(cid)
            self.by_vid.pop(rc.vid, None)
            ch.removed.append(rc)
        for cid, (user, ext, addr) in want.items():
            rc = info.conns.get(cid)
            if rc is not None and rc.user != user:  # a recycled id: a new connection
                info.conns.pop(cid)
                self.by_vid.pop(rc.vid, None)
                ch.removed.append(rc)
                rc = None
            if rc is None:
                ch.added.append(self._add(info, cid, user, ext, addr))
        return ch

    def _add(
        self, info: NodeInfo, cid: int, user: str, ext: frozenset[str], addr: str = ""
    ) -> RemoteConn:
        rc = RemoteConn(info.name, cid, user, self._next_vid, ext, addr)
        self._next_vid += 1
        info.conns[cid] = rc
        self.by_vid[rc.vid] = rc
        return rc

    def remote(self, node: str, cid: int, epoch: str | None = None) -> RemoteConn | None:
        """The remote connection `cid` of `node` (of its instance `epoch`, if given)."""
        info = self.nodes.get(node)
        if info is None or (epoch is not None and info.epoch != epoch):
            return None
        return info.conns.get(cid)

    # --------------------------------------------------- remote-homed sessions

    def offer_from(
        self, home: str, sid: str, cid: int, sender: str = "", path: str = ""
    ) -> list[int] | None:
        """`home` offered session `sid` (of `sender`, at `path`) to local connection
        `cid`. Returns the local connections to tell "sender gone" first: the session
        moved to a new home (its sender reconnected elsewhere), and they must accept
        the new offer afresh. None: another user's session under an id a live session
        already has (each node checks ids only among its own sessions): the offer is
        refused, so nobody can take over a session's readers by reusing its id."""
        moved: list[int] = []
        old = self.homes.get(sid)
        if old is not None and old != home:
            if self.idents.get(sid, (sender, path)) != (sender, path):
                return None
            moved = sorted(self.offered.pop(sid, ()))
            for c in moved:
                self._unlink(c, sid)
        self.homes[sid] = home
        self.idents[sid] = (sender, path)
        self.offered.setdefault(sid, set()).add(cid)
        self._by_local.setdefault(cid, set()).add(sid)
        return moved

    def is_home(self, node: str, sid: str) -> bool:
        """Whether a control message about `sid` from `node` is current (a message
        from a session's previous home is stale and dropped)."""
        return self.homes.get(sid, node) == node

    def ended_for(self, sid: str, cid: int) -> None:
        """The home closed `sid` for local connection `cid`."""
        cids = self.offered.get(sid)
        if cids is None:
            return
        cids.discard(cid)
        self._unlink(cid, sid)
        if not cids:
            del self.offered[sid]
            self.homes.pop(sid, None)
            self.idents.pop(sid, None)

    def home_of(self, sid: str) -> str | None:
        return self.homes.get(sid)

    def local_gone(self, cid: int) -> None:
        for sid in self._by_local.pop(cid, ()):
            cids = self.offered.get(sid)
            if cids is not None:
                cids.discard(cid)
                if not cids:
                    del self.offered[sid]
                    self.homes.pop(sid, None)
                    self.idents.pop(sid, None)

    def local_session(self, sid: str, sender: str = "", path: str = "") -> list[int] | None:
        """`sender` opens `sid` at `path` on this node. If a remote home offered that
        session here, it moves here (its sender reconnected to this node): returns the
        local connections it was offered to, to be told "sender gone" so that they
        accept this node's offer afresh. None: a live session of another sender (or
        at another path) has that id; the open must be refused."""
        if sid not in self.homes:
            return []
        if self.idents.get(sid, (sender, path)) != (sender, path):
            return None
        self.idents.pop(sid, None)
        if self.homes.pop(sid, None) is None:
            return []
        moved = sorted(self.offered.pop(sid, ()))
        for c in moved:
            self._unlink(c, sid)
        return moved

    def _unlink(self, cid: int, sid: str) -> None:
        sids = self._by_local.get(cid)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._by_local[cid]
