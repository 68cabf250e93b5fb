"""Relay cluster e2e: a real nats-server, relay nodes as processes, real agents.

Peers sit on different nodes; sessions must behave as on one relay: 2000 frames in
order across nodes, ACL rejects decided by the entry node, a reader joining on another
node after the open, a node killed (-9) mid-stream and NATS restarted mid-stream with
nothing lost, duplicated or reordered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_chaos as tc
from fixtures_agent import AgentProcess, AppClient, acl_yaml, wait_for
from fixtures_cluster import Cluster, needs_nats
from fixtures_relay import relay_client
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import Frame, encode_frame
from hotlink.wire.messages import (
    REASON_PERMISSION_DENIED,
    Ack,
    FileWrite,
    HotlinkOpen,
    HotlinkReject,
)

pytestmark = [pytest.mark.e2e, needs_nats]

A, B, C = tc.A, tc.B, "carol@example.org"
REL = tc.REL
PATH = tc.PATH


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def factory(
        email: str,
        relay: object,
        acl_read: list[str] | None = None,
        args: list[str] | None = None,
    ) -> AgentProcess:
        root = tmp_path / email.split("@")[0]
        ds = root / "datasites" / email
        ds.mkdir(parents=True, exist_ok=True)
        (ds / "syft.pub.yaml").write_text(acl_yaml(acl_read if acl_read is not None else ["*"]))
        a = AgentProcess(root, email, relay, args=args)
        started.append(a)
        return a.start()

    yield factory
    for a in started:
        a.stop()


def _numbered(n: int, size: int = 100) -> bytes:
    buf = bytearray()
    for i in range(n):
        buf += encode_frame(Frame(i.to_bytes(8, "big") + b"x" * (size - 8)))
    return bytes(buf)


def test_cross_node_2000_frames_in_order(cluster_factory, agents):
    c: Cluster = cluster_factory(2)
    alice = agents(A, c.via(0))
    bob = agents(B, c.via(1))
    tc.open_pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH), timeout=30)
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(_numbered(2000))
    got = reader.recv_n(2000)
    assert [f.seq for f in got] == list(range(1, 2001))
    assert [int.from_bytes(f.payload[:8], "big") for f in got] == list(range(2000))
    # the link of each agent is on its own node: the frames did cross
    assert "alice@example.org connected" in c.relays[0].log_text()
    assert "bob@example.org connected" in c.relays[1].log_text()
    assert "bob@example.org connected" not in c.relays[0].log_text()
    for i in (0, 1):
        assert c.health(i) == (200, "ok\n")


def test_direct_path_between_agents_on_different_nodes(cluster_factory, agents):
    """The direct-path signals cross nodes both ways (offer from the session's home,
    answer from the reader's node back to it), each stamped with the address the
    agent's own node observed; the frames then skip the relays."""
    c: Cluster = cluster_factory(2)
    alice = agents(A, c.via(0), args=["--direct", "auto"])
    bob = agents(B, c.via(1), args=["--direct", "auto"])
    tc.open_pair(alice, bob)
    alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_DIRECT, 20)
    reader = AppClient(bob.session_dir(PATH), timeout=30)
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(_numbered(500))
    got = reader.recv_n(500)
    assert [f.seq for f in got] == list(range(1, 501))
    s = alice.wait_session(PATH, lambda x: x.counters.frames_direct == 500, 20)
    assert s.counters.frames_relay == 0
    # the answer came through node 1, which stamped the IP it saw bob connect from
    assert "observed address 127.0.0.1" in alice.log_text()


def test_token_of_one_node_accepted_by_another(cluster_factory):
    """One token (minted by `hotlink-relay token` on the shared data dir) opens every
    node; a token signed with another secret is refused by every node."""
    import subprocess
    import sys

    from hotlink.relay.auth import mint_token
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    c = cluster_factory(2)
    token = subprocess.run(
        [sys.executable, "-m", "hotlink.relay.cli", "token", B, "--data", str(c.data)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    forged = mint_token(b"x" * 32, B)

    async def run() -> None:
        for r in c.relays:
            async with connect(r.events_url, additional_headers=_auth(token)) as ws:
                assert "ok" in str(await ws.recv())
            with pytest.raises(InvalidStatus) as err:
                async with connect(r.events_url, additional_headers=_auth(forged)):
                    pass
            assert err.value.response.status_code == 401

    asyncio.run(run())


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Syft-WS-Encodings": "json"}


def test_acl_reject_across_nodes(cluster_factory, agents):
    """bob (node-1) may not read alice's folder: the session's home (node-0) never
    offers it to him, alice never sees him as a reader; carol (node-1, allowed) is
    offered it across nodes and gets the frames."""
    c = cluster_factory(2)
    alice = agents(A, c.via(0), acl_read=[C])
    bob = agents(B, c.via(1))
    carol = agents(C, c.via(1))
    assert alice.open(REL).state == pb.SESSION_STATE_OPEN
    carol.open(PATH)
    alice.wait_session(PATH, lambda s: C in s.readers)
    bob.open(PATH)
    writer = AppClient(alice.session_dir(PATH))
    rc = AppClient(carol.session_dir(PATH))
    writer.send(b"for carol")
    assert rc.recv().payload == b"for carol"
    assert B not in alice.session(PATH).readers
    assert bob.session(PATH).state == pb.SESSION_STATE_PENDING  # never offered


def test_acl_write_on_one_node_applies_on_another(cluster_factory):
    """alice writes her ACL through node-0; bob's open on node-1 is decided by node-1
    with the new ACL (denied before, accepted after)."""
    c = cluster_factory(2)
    shared = f"{A}/_mpc/shared"
    acl = acl_yaml(["*"], [B]).encode()

    async def run() -> None:
        async with (
            relay_client(c.relays[0], A) as alice,
            relay_client(c.relays[1], B) as bob,
        ):
            await bob.send(HotlinkOpen("s-1", f"{shared}/x", "", ""))
            rej = await bob.recv_type(HotlinkReject)
            assert rej.reason == REASON_PERMISSION_DENIED
            await alice.send(FileWrite(f"{shared}/syft.pub.yaml", "", len(acl), acl), "w1")
            ack = await alice.recv_type(Ack)
            assert ack.original_id == "w1"
            c.relays[1].wait_for_log(f"cluster: ACL {shared} changed on node node-0")
            await bob.send(HotlinkOpen("s-2", f"{shared}/x", "", ""), "o2")
            ack = await bob.recv_type(Ack)
            assert ack.original_id == "o2"

    asyncio.run(run())


def test_reader_on_another_node_after_the_open(cluster_factory, agents):
    c = cluster_factory(3)
    alice = agents(A, c.via(0))
    assert alice.open(REL).state == pb.SESSION_STATE_OPEN
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"before bob")  # no reader yet: kept by alice's re-send window
    bob = agents(B, c.via(2))  # connects to node-2 after the open on node-0
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: B in s.readers)
    reader = AppClient(bob.session_dir(PATH))
    writer.send(b"after bob")
    payloads = [reader.recv().payload for _ in range(2)]
    assert payloads[-1] == b"after bob"


@pytest.mark.parametrize("victim", ["sender-node", "reader-node"])
def test_node_kill_mid_stream(cluster_factory, agents, victim):
    """kill -9 of the node holding one side: that agent reconnects to the next node
    on its list and the stream resumes by ack/resend, exactly once and in order."""
    c = cluster_factory(3)
    alice = agents(A, c.via(0))
    bob = agents(B, c.via(1))
    flow = tc.Flow(alice, bob, 300, 64).start()
    try:
        wait_for(lambda: len(flow.got.idx) > 300, 20, "frames before the kill")
        dead = c.relays[0 if victim == "sender-node" else 1]
        moved = alice if victim == "sender-node" else bob
        assert moved.status().relay_url.startswith(dead.url)  # status names the node in use
        dead.kill()
        wait_for(lambda: moved.status().counters.reconnects >= 1, 20, "reconnect to another node")
        moved.wait_link(pb.LINK_STATE_UP, timeout=20)
        assert not moved.status().relay_url.startswith(dead.url)
        n = len(flow.got.idx)
        wait_for(lambda: len(flow.got.idx) > n + 300, 30, "frames after the kill")
    finally:
        report = flow.finish()
    tc.show(f"NODE KILL ({victim})", report)
    tc.assert_clean(report)
    if victim == "sender-node":
        # the session registry (JetStream KV) outlived node-0: the session is recorded
        # with its new home, the node alice reconnected to
        sid = alice.session(PATH).session_id
        wait_for(lambda: _registry_home(c, sid) == "node-1", 10, "registry: new home")


def _registry_home(c: Cluster, sid: str) -> str:
    import nats
    from hotlink.relay.cluster.registry import BUCKET, key_of

    async def get() -> str:
        nc = await nats.connect(c.nats.url)
        try:
            kv = await nc.jetstream().key_value(BUCKET)
            entry = await kv.get(key_of(sid))
            return json.loads(entry.value)["home"]
        except Exception as exc:
            return f"? {exc}"
        finally:
            await nc.close()

    return asyncio.run(get())


def _nats_down(c: Cluster, flow: tc.Flow) -> None:
    """Kill nats-server once the flow is going, and wait for its sender (alice, whose
    only reader is on another node) to turn to fallback files."""
    wait_for(lambda: len(flow.got.idx) > 300, 20, "frames before the outage")
    c.nats.kill()
    wait_for(lambda: "now on the file path" in flow.alice.log_text(), 10, "alice on files")


def _nats_back(c: Cluster, flow: tc.Flow, nodes: tuple[int, ...] = (0, 1)) -> None:
    """Restart nats-server; `nodes` healthy again, and 300 more frames across."""
    c.nats.start()
    wait_for(lambda: all(c.health(i)[0] == 200 for i in nodes), 30, "healthy again")
    n = len(flow.got.idx)
    wait_for(lambda: len(flow.got.idx) > n + 300, 30, "cross-node frames after NATS is back")


def test_nats_restart_mid_stream(cluster_factory, agents):
    """NATS goes away and comes back: nodes report degraded meanwhile, keep local
    sessions, and the cross-node stream resumes with nothing lost."""
    c = cluster_factory(2)
    alice = agents(A, c.via(0))
    bob = agents(B, c.via(1))
    carol = agents(C, c.via(0))  # a local reader of alice's session on node-0
    flow = tc.Flow(alice, bob, 300, 64)
    carol.open(PATH)
    alice.wait_session(PATH, lambda s: C in s.readers)
    local = AppClient(carol.session_dir(PATH), timeout=30)
    flow.start()
    try:
        wait_for(lambda: len(flow.got.idx) > 300, 20, "frames before the outage")
        c.nats.kill()
        wait_for(lambda: c.health(0)[0] == 503, 15, "node-0 degraded")
        code, text = c.health(1)
        assert code == 503 and "NATS" in text, text
        c.relays[0].wait_for_log("degraded: lost NATS")
        time.sleep(0.5)  # let frames flow on node-0 only for a while
        _nats_back(c, flow)
    finally:
        report = flow.finish()
    tc.show("NATS RESTART", report)
    tc.assert_clean(report)
    # carol (same node as alice) was served all along: everything, in order
    got = [int.from_bytes(f.payload[:8], "big") for f in local.recv_n(report["sent"])]
    assert got == list(range(report["sent"]))


def test_nats_outage_files_reach_a_reader_on_another_node(cluster_factory, agents):
    """NATS goes away with bob as the only reader, on the other node: alice's frames go
    by fallback files through her node, whose announcements bob's node misses. When
    NATS is back, bob's node re-reads the store before it rejoins (a store with many
    files is slow to re-read; the re-offer used to come first) and bob catches up
    from it before accepting again, though his own link never went down."""
    c = cluster_factory(2)
    bulk = c.data / "datasites" / C / "bulk"
    for d in range(40):
        (bulk / str(d)).mkdir(parents=True)
        for i in range(500):
            (bulk / str(d) / f"{i}.bin").write_bytes(b"x")
    alice = agents(A, c.via(0))
    bob = agents(B, c.via(1))
    flow = tc.Flow(alice, bob, 300, 64)
    flow.start()
    try:
        _nats_down(c, flow)
        time.sleep(1.5)
        _nats_back(c, flow)
    finally:
        report = flow.finish()
    tc.show("NATS OUTAGE, FILES", report)
    tc.assert_clean(report)
    assert "never arrived" not in bob.log_text()


@pytest.mark.parametrize("victim", ["reader-node", "sender-node"])
def test_nats_outage_and_a_node_kill(cluster_factory, agents, victim):
    """NATS down, and one side's node killed during the outage: that agent moves to
    another node, whose index cannot hear the other nodes' writes. Its catch-ups read
    the session folder from disk meanwhile, and every (re-)offer catches up again, so
    the fallback files of the outage reach bob (the sender's move lost ~190 frames,
    the reader's ~800). The reader's move also lost 1-15 frames in one run of three
    when bob's new node and alice's rejoined a few ms apart: the writes of the node
    still cut off were never announced, and announcements were handled behind the
    offers and file broadcasts they came before (`StoreSync.announce`,
    `StoreSync.on_file`)."""
    c = cluster_factory(3)
    alice = agents(A, c.via(0))  # tries node 0, 1, 2
    bob = agents(B, c.via(1))  # tries node 1, 2, 0
    flow = tc.Flow(alice, bob, 300, 64)
    flow.start()
    try:
        _nats_down(c, flow)
        time.sleep(1.0)
        moved, dead = (bob, 1) if victim == "reader-node" else (alice, 0)
        n = moved.status().counters.reconnects
        c.relays[dead].kill()
        wait_for(lambda: moved.status().counters.reconnects > n, 20, "reconnect elsewhere")
        moved.wait_link(pb.LINK_STATE_UP, timeout=20)
        time.sleep(1.0)
        _nats_back(c, flow, tuple(i for i in range(3) if i != dead))
    finally:
        report = flow.finish()
    tc.show(f"NATS OUTAGE + NODE KILL ({victim})", report)
    tc.assert_clean(report)
    assert "never arrived" not in bob.log_text()


def test_devstack_with_three_relays_and_bench():
    """`hotlinkctl devstack up --relays 3`: nats-server + 3 nodes, peer i on node i mod 3
    (devstack.json), stop/start of one node, `hotlinkctl bench` across nodes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hlcl-ds-", dir="/tmp") as tmp:  # short socket paths
        _devstack_run(Path(tmp) / "ds")


def _devstack_run(d: Path) -> None:
    import json
    import subprocess
    import sys

    ctl = [sys.executable, "-m", "hotlink.ctl.cli"]

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ctl, *args], capture_output=True, text=True, timeout=timeout)

    peers = "alice@example.org,bob@example.org,carol@example.org,dave@example.org"
    up = run("devstack", "up", "--dir", str(d), "--relays", "3", "--peers", peers)
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((d / "devstack.json").read_text())
        cl = state["cluster"]
        assert [n["name"] for n in cl["nodes"]] == ["relay-0", "relay-1", "relay-2"]
        assert cl["placement"] == {
            "alice@example.org": "relay-0",
            "bob@example.org": "relay-1",
            "carol@example.org": "relay-2",
            "dave@example.org": "relay-0",
        }
        assert cl["nats"]["url"].startswith("nats://127.0.0.1:")
        bench = run("bench", "--dir", str(d), "--sizes", "1024", "--count", "50",
                    "--warmup", "5", "--no-floor", "--inflight", "1", "--json", "-q")  # fmt: skip
        assert bench.returncode == 0, bench.stderr
        row = json.loads(bench.stdout)["results"][0]["hotlink"]
        assert row["count"] == 50
        # alice on relay-0 sends to bob on relay-1: both nodes and NATS are on the path
        roles = ["sender agent", "relay-0", "nats-server", "relay-1", "reader agent"]
        assert list(row["cpu_us"]) == roles and all(v > 0 for v in row["cpu_us"].values())
        assert run("devstack", "stop", "relay-1", "--dir", str(d)).returncode == 0
        st = run("devstack", "status", "--dir", str(d))
        assert st.returncode != 0 and "relay-1" in st.stdout and "STOPPED" in st.stdout
        start = run("devstack", "start", "relay-1", "--dir", str(d))
        assert start.returncode == 0, start.stderr
        st = run("devstack", "status", "--dir", str(d))
        assert "STOPPED" not in st.stdout, st.stdout
    finally:
        down = run("devstack", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert "nats: stopped" in down.stdout, down.stdout


def test_without_jetstream_health_says_why(tmp_path):
    """NATS without JetStream: the node routes but is degraded (no session registry)."""
    from fixtures_cluster import NatsServer
    from fixtures_relay import RelayProcess

    nats = NatsServer(tmp_path, jetstream=False).start()
    relay = RelayProcess(tmp_path / "data", extra_args=["--nats", nats.url, "--node-id", "solo"])
    (tmp_path / "data").mkdir()
    try:
        relay.start()
        relay.wait_for_log("JetStream KV unavailable")
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(relay.http_url + "/healthz", timeout=5)
        assert err.value.code == 503
        assert "JetStream" in err.value.read().decode()
    finally:
        relay.stop()
        nats.stop()


@pytest.mark.slow
def test_cluster_chaos_repeated_node_kills(cluster_factory, agents):
    """Slow: 6 cycles of kill -9 of two of the three nodes (in rotation) and their
    restart while a stream flows; then exactly once, in order.

        .venv/bin/python -m pytest -q -m slow tests/test_cluster_e2e.py
    """
    c = cluster_factory(3)
    alice = agents(A, c.via(0))
    bob = agents(B, c.via(1))
    flow = tc.Flow(alice, bob, 300, 64).start()
    try:
        for k in range(6):
            n = len(flow.got.idx)
            wait_for(lambda n=n: len(flow.got.idx) > n + 200, 30, f"frames before kill {k}")
            # two of the three nodes die: whoever was on them moves to the third
            victims = [c.relays[k % 3], c.relays[(k + 1) % 3]]
            for v in victims:
                v.kill()
            time.sleep(1.0)
            for v in victims:
                v.start()
            c.wait_joined()
        n = len(flow.got.idx)
        wait_for(lambda: len(flow.got.idx) > n + 300, 30, "frames after the last kill")
    finally:
        report = flow.finish()
    tc.show("CLUSTER CHAOS", report)
    tc.assert_clean(report)


def test_catch_up_on_another_node_sees_files_and_deletes(cluster_factory):
    """Catch-up pages come from each node's index of the shared store: a file written
    through node-0 is listed by node-1 (announced on NATS), and so is its deletion."""
    from hotlink.wire.messages import FileDelete, FileSync

    c = cluster_factory(2)
    folder = f"{A}/pub"
    acl = acl_yaml(["*"]).encode()

    async def sync(bob) -> list[str]:
        await bob.send(FileSync(folder))
        paths: list[str] = []
        while True:
            msg = await bob.recv()
            if isinstance(msg, FileSync):
                return paths
            if isinstance(msg, FileWrite) and msg.mtime:
                paths.append(msg.path)

    async def run() -> None:
        async with (
            relay_client(c.relays[0], A) as alice,
            relay_client(c.relays[1], B) as bob,
        ):
            await alice.send(FileWrite(f"{A}/syft.pub.yaml", "", len(acl), acl), "w0")
            assert (await alice.recv_type(Ack)).original_id == "w0"
            await alice.send(FileWrite(f"{folder}/a.txt", "", 1, b"a"), "w1")
            assert (await alice.recv_type(Ack)).original_id == "w1"
            deadline = time.monotonic() + 15
            while f"{folder}/a.txt" not in await sync(bob):
                assert time.monotonic() < deadline, "node-1 never listed the file"
                await asyncio.sleep(0.05)
            await alice.send(FileDelete(f"{folder}/a.txt"), "d1")
            assert (await alice.recv_type(Ack)).original_id == "d1"
            while f"{folder}/a.txt" in await sync(bob):
                assert time.monotonic() < deadline, "node-1 still lists the deleted file"
                await asyncio.sleep(0.05)

    asyncio.run(run())
