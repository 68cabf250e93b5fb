"""Relay cluster, sans-I/O parts: membership decisions, routed payloads, the KV diff,
and the Router driven through virtual connections (no NATS, no sockets)."""

from __future__ import annotations

import pytest
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.cluster import codec, registry, store_sync
from hotlink.relay.cluster.membership import FIRST_VID, Membership
from hotlink.relay.cluster.store_sync import StoreSync
from hotlink.relay.router import Router
from hotlink.relay.store import Store
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import (
    HotlinkAccept,
    HotlinkData,
    HotlinkOpen,
    HotlinkSignal,
    System,
)

A, B = "alice@example.org", "bob@example.org"


def test_conn_up_down_and_snapshot_reconcile():
    m = Membership("n0")
    ch = m.conn_up("n1", "e1", 7, B, now=0.0)
    assert ch.joined == ["n1"]
    [rc] = ch.added
    assert (rc.node, rc.cid, rc.user, rc.vid) == ("n1", 7, B, FIRST_VID)
    assert m.conn_up("n1", "e1", 7, B, now=0.0).added == []  # idempotent
    # a snapshot without 7 but with 8 removes 7 and adds 8
    ch = m.snapshot("n1", "e1", [(8, A, frozenset(), "192.0.2.8")], now=1.0)
    assert [r.cid for r in ch.removed] == [7] and [r.cid for r in ch.added] == [8]
    assert ch.added[0].addr == "192.0.2.8"  # what n1 observed, for direct-path signals
    assert m.conn_up("n1", "e1", 9, B, now=1.0, addr="192.0.2.9").added[0].addr == "192.0.2.9"
    m.conn_down("n1", "e1", 9)
    assert m.conn_down("n1", "e1", 8).removed[0].user == A
    assert m.by_vid == {}
    assert m.conn_up("n0", "x", 1, A, now=0.0).added == []  # our own announcements


def test_new_epoch_drops_the_old_instance():
    m = Membership("n0")
    m.conn_up("n1", "e1", 7, B, now=0.0)
    assert m.remote("n1", 7, "e1") is not None and m.remote("n1", 7, "e0") is None
    ch = m.heartbeat("n1", "e2", now=1.0)
    assert [r.cid for r in ch.removed] == [7] and ch.lost == ["n1"] and ch.joined == ["n1"]
    assert m.nodes["n1"].conns == {}


def test_silent_node_expires_and_orphans_its_sessions():
    m = Membership("n0", dead_after=3.0)
    m.heartbeat("n1", "e1", now=0.0)
    m.conn_up("n1", "e1", 7, A, now=0.0)
    assert m.offer_from("n1", "s1", cid=3) == []
    assert m.home_of("s1") == "n1"
    assert m.expire(now=2.0).lost == []
    ch = m.expire(now=3.5)
    assert ch.lost == ["n1"] and ch.orphaned == [(3, "s1")] and len(ch.removed) == 1
    assert m.home_of("s1") is None


def test_session_moving_home_tells_the_old_readers_first():
    m = Membership("n0")
    m.offer_from("n1", "s1", cid=3)
    m.offer_from("n1", "s1", cid=4)
    assert m.is_home("n1", "s1") and not m.is_home("n2", "s1")
    assert m.offer_from("n2", "s1", cid=3) == [3, 4]  # the sender re-opened on n2
    assert m.home_of("s1") == "n2" and m.offered["s1"] == {3}
    assert m.local_session("s1") == [3]  # ...and then here
    assert m.local_session("never-offered", A, "p") == []
    assert m.home_of("s1") is None
    m.offer_from("n1", "s2", cid=5)
    m.ended_for("s2", 5)
    assert m.home_of("s2") is None
    m.offer_from("n1", "s3", cid=6)
    m.local_gone(6)
    assert m.home_of("s3") is None and m.offered == {}


def test_forget_all_on_nats_loss():
    m = Membership("n0")
    m.conn_up("n1", "e", 1, A, now=0.0)
    m.conn_up("n2", "e", 1, B, now=0.0)
    m.offer_from("n2", "s", cid=9)
    ch = m.forget_all()
    assert sorted(ch.lost) == ["n1", "n2"] and len(ch.removed) == 2 and ch.orphaned == [(9, "s")]


def test_routed_payload_roundtrip_and_errors():
    head = codec.routed_head(b"node-1", b"ab12.3", 300, False)
    msg = b"SB\x01\x01x"
    assert codec.parse_routed(head + msg) == ("node-1", "ab12.3", 300, msg)
    head = codec.routed_head(b"n", b"e", 1, True)
    assert codec.parse_routed(head + b'{"a":1}') == ("n", "e", 1, '{"a":1}')
    with pytest.raises(ProtocolError):
        codec.parse_routed(b"\x09ab")
    with pytest.raises(ProtocolError):
        codec.unpack_json(b"[1]")
    assert codec.valid_node_id("relay-0") and not codec.valid_node_id("a.b")
    assert not codec.valid_node_id("") and not codec.valid_node_id("x" * 65)


def test_registry_keys_and_diff():
    for sid in ("s-1", "a/b c", "é", "x" * 128):
        key = registry.key_of(sid)
        assert registry.sid_of(key) == sid
        assert all(c.isalnum() or c in "-_" for c in key)
    before = {"a": (A, "p", "", ()), "b": (A, "q", "", ())}
    now = {"a": (A, "p", "", ((B, 5),)), "c": (B, "r", "", ())}
    puts, dels = registry.diff(before, now)
    assert set(puts) == {"a", "c"} and dels == ["b"]
    rec = registry.encode_record("a", now["a"], "n1")
    assert b'"home":"n1"' in rec and b'"acked":{"bob@example.org":5}' in rec


def test_router_serves_a_virtual_connection_like_a_local_one(tmp_path):
    """What ClusterNode relies on: a remote reader registered as a virtual
    connection is offered the session, accepts, and gets the data."""
    store = Store(tmp_path)
    acl = AclIndex()
    acl.set_file(
        f"{A}/_mpc", parse_acl(f'rules:\n  - pattern: "**"\n    access:\n      read: ["{B}"]\n')
    )
    r = Router(acl, store)
    r.connect(1, A)
    vid = FIRST_VID
    out = r.connect(vid, B)
    assert [type(o.msg) for o in out] == [System]  # greeting (dropped by the adapter)
    out = r.handle(1, Envelope("m1", HotlinkOpen("s1", f"{A}/_mpc/x", "", B)))
    assert any(o.conn == vid and isinstance(o.msg, HotlinkOpen) for o in out)
    out = r.handle(vid, Envelope("m2", HotlinkAccept("s1")))
    assert any(o.conn == 1 and isinstance(o.msg, HotlinkAccept) and o.msg.frm == B for o in out)
    data = HotlinkData("s1", 1, f"{A}/_mpc/x", b"x")
    assert [o.conn for o in r.handle(1, Envelope("", data))] == [vid]
    out = r.disconnect(vid)  # the remote node is gone: the sender learns it
    assert any(o.conn == 1 and o.msg.frm == B for o in out)


def test_signal_of_a_remote_reader_carries_its_observed_address(tmp_path):
    """A reader's direct-path answer reaches the session's home through the cluster
    and leaves it stamped with the IP the reader's own node saw (not ""): the
    sender dials that address combined with the reader's ports."""
    acl = AclIndex()
    acl.set_file(
        f"{A}/_mpc", parse_acl(f'rules:\n  - pattern: "**"\n    access:\n      read: ["{B}"]\n')
    )
    r = Router(acl, Store(tmp_path))
    r.connect(1, A, addr="10.0.0.1")
    m = Membership("n0")
    [rc] = m.conn_up("n1", "e1", 7, B, now=0.0, addr="192.0.2.7").added
    r.connect(rc.vid, rc.user, rc.ext, rc.addr)  # as ClusterNode._apply does
    r.handle(1, Envelope("m1", HotlinkOpen("s1", f"{A}/_mpc/x", "", B)))
    r.handle(rc.vid, Envelope("m2", HotlinkAccept("s1")))
    answer = HotlinkSignal("s1", "hotlink.direct.answer", ["[::1]:7000"], "tok")
    [o] = r.handle(rc.vid, Envelope("m3", answer))
    assert o.conn == 1 and isinstance(o.msg, HotlinkSignal)
    assert (o.msg.frm, o.msg.obs) == (B, "192.0.2.7")


def test_agent_takes_a_list_of_relay_urls():
    from hotlink.agent.config import ConfigError, load_config
    from hotlink.agent.link import WsLink

    base = ["--email", A, "--token-file", "/t", "--root", "/r"]
    cfg = load_config(["--server", "ws://a:1", "--server", "ws://b:2,ws://c:3/", *base], {})
    assert cfg.servers == ("ws://a:1", "ws://b:2", "ws://c:3")
    cfg = load_config(base, {"HOTLINK_SERVER": "ws://a:1, ws://b:2"})
    assert cfg.servers == ("ws://a:1", "ws://b:2")
    with pytest.raises(ConfigError, match="ws://"):
        load_config(["--server", "ws://a:1,http://b", *base], {})
    link = WsLink(cfg.servers, "tok", max_message=1 << 20)
    assert link.urls == ["ws://a:1/api/v1/events", "ws://b:2/api/v1/events"]
    assert link.url == link.urls[0]


def test_a_reused_session_id_takes_over_nobody():
    """Ids are checked per node: another user's session under a live session's id,
    homed on another node, must not move the first session's readers."""
    m = Membership("n0")
    assert m.offer_from("n1", "s1", 3, A, f"{A}/_mpc/x") == []
    assert m.offer_from("n2", "s1", 3, "mallory@x.org", "mallory@x.org/p") is None
    assert m.home_of("s1") == "n1"
    assert m.local_session("s1", "mallory@x.org", "mallory@x.org/p") is None
    assert m.home_of("s1") == "n1"
    assert m.offer_from("n2", "s1", 3, A, f"{A}/_mpc/x") == [3]  # the real sender moved
    assert m.local_session("s1", A, f"{A}/_mpc/x") == [3]


def test_a_stale_store_index_reads_the_session_folder_from_disk(tmp_path):
    """A node cut from NATS misses the other nodes' file announcements: while its
    store is `stale`, a catch-up page re-reads the folder it names from disk (files
    written and deleted through another node), and only that folder."""
    store = Store(tmp_path)
    store.write("alice@x.org/_mpc/s/00000001.request", b"one")
    other = tmp_path / "datasites" / "alice@x.org" / "_mpc"
    (other / "s" / "00000002.request").write_bytes(b"two")  # through another node
    (other / "s" / "00000001.request").unlink()
    (other / "t").mkdir()
    (other / "t" / "00000001.request").write_bytes(b"elsewhere")
    everything = (0, "")
    assert [p for _, p, _ in store.after("alice@x.org/_mpc/s", everything)] == [
        "alice@x.org/_mpc/s/00000001.request"
    ]
    store.stale = True
    assert [p for _, p, _ in store.after("alice@x.org/_mpc/s", everything)] == [
        "alice@x.org/_mpc/s/00000002.request"
    ]
    assert "alice@x.org/_mpc/t/00000001.request" not in {
        p for _, p, _ in store.index.after("alice@x.org", everything)
    }


def test_writes_nats_did_not_take_are_announced_once_it_does(tmp_path):
    """A node cut from NATS cannot announce its writes; a node that rejoined first may
    have walked the store before them, so they are announced when NATS takes them
    again: in order of their last change (the order a receiver indexes them in)."""
    sent: list[str] = []
    nats_up = [False]

    def publish(subject: str, **fields: str) -> bool:
        if nats_up[0]:
            sent.append(fields["p"].rsplit("/", 1)[1])
        return nats_up[0]

    store = Store(tmp_path)
    sync = StoreSync(store, "n0", publish)
    sync.connected = True
    for name in ("1", "2", "1"):
        store.write(f"alice@x.org/_mpc/s/{name}.request", name.encode())
    sync.announce()
    assert sent == []
    nats_up[0] = True
    store.write("alice@x.org/_mpc/s/3.request", b"3")
    assert sent == ["2.request", "1.request", "3.request"]
    sync.announce()
    assert len(sent) == 3


def test_a_reconnect_announces_the_last_seconds_again(tmp_path):
    """Announcements written into a dead connection before nats-py noticed are gone:
    after a reconnect the last `RECENT` seconds of them go out again, before what was
    not announced yet."""
    sent: list[str] = []
    nats_up = [True]
    now = [0.0]

    def publish(subject: str, **fields: str) -> bool:
        if nats_up[0]:
            sent.append(fields["p"].rsplit("/", 1)[1])
        return nats_up[0]

    store = Store(tmp_path)
    sync = StoreSync(store, "n0", publish, clock=lambda: now[0])
    sync.connected = True
    store.write("alice@x.org/_mpc/s/1.request", b"1")
    now[0] = 5.0
    store.write("alice@x.org/_mpc/s/2.request", b"2")
    nats_up[0] = False
    now[0] = 12.0
    store.write("alice@x.org/_mpc/s/3.request", b"3")
    assert sent == ["1.request", "2.request"]
    nats_up[0] = True
    sync.reconnected()  # 1 is older than RECENT; 2 may have died with the connection
    assert sent == ["1.request", "2.request", "2.request", "3.request"]
    sync.reconnected()  # announced again at 12: within RECENT still
    assert sent[4:] == ["2.request", "3.request"]


def test_a_long_outage_announces_folders_not_every_path(tmp_path, monkeypatch):
    """What waits for NATS is bounded: past `MAX_UNANNOUNCED` paths they are folded
    into their folders (never above a datasite), announced as `d`, and a receiver
    re-reads such a folder from disk: new files indexed, deleted ones dropped."""
    monkeypatch.setattr(store_sync, "MAX_UNANNOUNCED", 8)
    sent: list[dict[str, str]] = []
    nats_up = [False]

    def publish(subject: str, **fields: str) -> bool:
        if nats_up[0]:
            sent.append(fields)
        return nats_up[0]

    store = Store(tmp_path / "shared")
    # a receiver on the same store whose index misses the outage (and has a stale file)
    other = Store(tmp_path / "shared")
    stale = "alice@x.org/_mpc/a/old.request"
    other.index.put(stale, 1, 3)
    sync = StoreSync(store, "n0", publish)
    sync.connected = True
    for i in range(5):
        store.write(f"alice@x.org/_mpc/a/{i}.request", b"a")
        store.write(f"alice@x.org/_mpc/b/{i}.request", b"b")
    assert len(sync._unannounced) <= 8
    store.write("bob@x.org/c.txt", b"c")
    nats_up[0] = True
    sync.announce()
    assert sent == [  # the 9th path folded what waited; the last two came after
        {"d": "alice@x.org/_mpc/a"},
        {"d": "alice@x.org/_mpc/b"},
        {"p": "alice@x.org/_mpc/b/4.request"},
        {"p": "bob@x.org/c.txt"},
    ]
    receiver = StoreSync(other, "n1", lambda *a, **k: True)
    everything = (0, "")
    for fields in sent:
        receiver.on_file(codec.pack_json(n="n0", **fields))
    got = {p for _, p, _ in other.index.after("alice@x.org", everything)}
    assert got == {f"alice@x.org/_mpc/{s}/{i}.request" for s in "ab" for i in range(5)}
    assert "bob@x.org/c.txt" in other.index.files


def test_folding_stops_at_the_datasites(tmp_path, monkeypatch, caplog):
    """More datasites than the bound: their folders are what waits (a user's datasite
    is never folded into the whole store), and the fold is logged once, not per write."""
    monkeypatch.setattr(store_sync, "MAX_UNANNOUNCED", 2)
    sync = StoreSync(Store(tmp_path), "n0", lambda *a, **k: False)
    for user in ("a", "b", "c", "d"):
        sync._changed(f"{user}@x.org/_mpc/s/1.request")
    assert list(sync._unannounced) == [(f"{u}@x.org", True) for u in "abcd"]
    assert sum("announcing" in r.message for r in caplog.records) == 1


class _Nats:
    """What ClusterNode and its Publisher touch of a nats-py client."""

    def __init__(self) -> None:
        self.is_connected = True
        self.sent: list[bytes] = []
        self._transport = self

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.sent.append(b"".join(parts))

    def jetstream(self) -> None:
        raise RuntimeError("no JetStream here")


class _Server:
    """What ClusterNode touches of a RelayServer; `_dispatch` keeps what it sends."""

    def __init__(self, store: Store, acl: AclIndex) -> None:
        self.store, self.acl = store, acl
        self.router = Router(acl, store)
        self.peers: dict[int, object] = {}
        self.sent: list[tuple[int, object]] = []

    def _dispatch(self, out: list) -> None:
        self.sent += [(o.conn, o.msg) for o in out]

    def offers_to_remote(self) -> list[str]:
        got = [m.sid for c, m in self.sent if c >= FIRST_VID and isinstance(m, HotlinkOpen)]
        self.sent.clear()
        return got


def test_a_node_stays_out_of_the_cluster_until_its_rejoin(tmp_path):
    """nats-py is connected again (it delivers and takes publishes) before it runs the
    reconnected callback, which gives the node its new epoch. A node that took part
    in the cluster in between, under its old epoch, heartbeated and learnt node-1's
    reader and offered it the session. The new epoch then made node-1 drop that old
    instance with its offer (its reader told "sender gone"), while this node kept
    what it had learnt, so it never offered the session again and the stream stopped
    (test_nats_outage_files_reach_a_reader_on_another_node, about one run in 30)."""
    import asyncio
    from types import SimpleNamespace

    from hotlink.relay.cluster.node import ClusterNode

    acl_dir = tmp_path / "datasites" / A / "_mpc"
    acl_dir.mkdir(parents=True)
    (acl_dir / "syft.pub.yaml").write_text(
        f'rules:\n  - pattern: "**"\n    access:\n      read: ["{B}"]\n'
    )
    store = Store(tmp_path)
    server = _Server(store, AclIndex.load(store.root))

    def msg(**fields: object) -> SimpleNamespace:
        return SimpleNamespace(subject="x", data=codec.pack_json(**fields))

    async def node_1_says_hello(node: ClusterNode) -> None:
        """node-1 (never re-connected: same epoch) heartbeats; its snapshot: bob."""
        await node._on_hb(msg(n="node-1", e="e1"))
        await node._on_conn(msg(n="node-1", e="e1", op="snap", cs=[[7, B, None, ""]]))

    async def run() -> None:
        node = ClusterNode(server, "nats://unused", "node-0", heartbeat=0.01)  # type: ignore[arg-type]
        nc = _Nats()
        node.nc = node.pub.nc = nc
        node.problem = ""
        server.router.connect(1, A)
        server.router.handle(1, Envelope("m1", HotlinkOpen("s1", f"{A}/_mpc/x", "", "")))
        await node_1_says_hello(node)
        assert server.offers_to_remote() == ["s1"]

        await node._on_disconnected()  # NATS lost
        assert not node.members.nodes
        # nats-py reconnected; our reconnected callback has not run yet
        ticker = asyncio.ensure_future(node._ticker())
        nc.sent.clear()
        await node_1_says_hello(node)
        await asyncio.sleep(0.05)
        assert not [p for p in nc.sent if p.startswith(b"PUB " + codec.hb_subject().encode())]
        assert not node.members.nodes and server.offers_to_remote() == []
        # an agent connecting (and one leaving) meanwhile is not announced under
        # either epoch: the rejoin's snapshot names it
        node.local_up(9, B)
        node.local_down(8)
        conn = b"PUB " + codec.conn_subject("node-0").encode()
        assert not [p for p in nc.sent if p.startswith(conn)]

        await node._on_reconnected()
        await node._tasks[-1]  # the rejoin: rescan, then the new epoch is announced
        assert any(codec.hb_subject().encode() in p for p in nc.sent)
        # node-1 dropped our old epoch's instance and tells us about itself again:
        # the session is offered to its reader afresh
        await node_1_says_hello(node)
        assert server.offers_to_remote() == ["s1"]
        ticker.cancel()

    asyncio.run(run())
