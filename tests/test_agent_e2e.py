"""End-to-end: real relay + real agent processes over real sockets, driven by gRPC."""

from __future__ import annotations

import grpc
import pytest
from fixtures_agent import AppClient, wait_for
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import HEADER

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
C = "carol@example.org"
PATH = f"{A}/_mpc/0_to_1"


def _open_pair(alice, bob, sender_first: bool = True, fallback: int = 0):
    if sender_first:
        s = alice.open("_mpc/0_to_1", fallback_mode=fallback)
        assert s.state == pb.SESSION_STATE_OPEN, s
        assert s.role == pb.ROLE_SENDER
        r = bob.open(PATH)
    else:
        r = bob.open(PATH)
        assert r.state == pb.SESSION_STATE_PENDING
        assert r.role == pb.ROLE_READER
        s = alice.open("_mpc/0_to_1", fallback_mode=fallback)
        assert s.state == pb.SESSION_STATE_OPEN
    bob.wait_session(PATH, lambda x: x.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(PATH, lambda x: B in x.readers)


@pytest.mark.parametrize("sender_first", [True, False], ids=["sender-first", "reader-first"])
def test_two_peers(agent_factory, sender_first):
    alice = agent_factory(A)
    bob = agent_factory(B)
    _open_pair(alice, bob, sender_first)
    reader = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"hello")
    writer.send(b"hello")  # identical payload: must not be deduped
    writer.send(b"named", path="x/y.request", etag="e1")
    got = reader.recv_n(3)
    assert [f.payload for f in got] == [b"hello", b"hello", b"named"]
    assert [f.seq for f in got] == [1, 2, 3]
    # the reader app sees full datasite paths, as from the reference's reader
    assert got[0].path == f"{PATH}/00000001.request"
    assert got[2].path == f"{PATH}/x/y.request" and got[2].etag == "e1"
    st = bob.status()
    assert st.counters.frames_in == 3
    assert alice.status().counters.frames_out == 3
    token = alice.token_file.read_text().strip()
    assert token not in alice.log_text()  # tokens are never logged


def test_three_peers_and_late_reader_app(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B)
    carol = agent_factory(C)
    assert alice.open("_mpc/0_to_1").state == pb.SESSION_STATE_OPEN
    bob.open(PATH)
    carol.open(PATH)
    alice.wait_session(PATH, lambda s: {B, C} <= set(s.readers))
    writer = AppClient(alice.session_dir(PATH))
    # No reader app is connected yet: the reader agents keep a bounded backlog.
    for i in range(5):
        writer.send(b"early-%d" % i)
    bob.wait_session(PATH, lambda s: s.last_seq == 5)
    carol.wait_session(PATH, lambda s: s.last_seq == 5)
    rb = AppClient(bob.session_dir(PATH))
    rc = AppClient(carol.session_dir(PATH))
    assert [f.payload for f in rb.recv_n(5)] == [b"early-%d" % i for i in range(5)]
    assert [f.payload for f in rc.recv_n(5)] == [b"early-%d" % i for i in range(5)]
    writer.send(b"six")
    assert rb.recv().payload == b"six"
    assert rc.recv().payload == b"six"
    # A second app connecting late on bob gets frames from then on.
    rb2 = AppClient(bob.session_dir(PATH))
    bob.wait_session(PATH, lambda s: s.ipc_clients == 2)
    writer.send(b"seven")
    for r in (rb, rb2, rc):
        f = r.recv()
        assert (f.payload, f.seq) == (b"seven", 7)


def test_tcp_ipc(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B)
    s = alice.open("_mpc/0_to_1", ipc_mode=pb.IPC_MODE_TCP)
    assert s.ipc_mode == pb.IPC_MODE_TCP and s.endpoint.startswith("127.0.0.1:")
    assert (alice.session_dir(PATH) / "stream.tcp").read_text() == s.endpoint
    r = bob.open(PATH, ipc_mode=pb.IPC_MODE_TCP, tcp_addr="127.0.0.1:0")
    assert (bob.session_dir(PATH) / "stream.tcp").exists()
    assert not (bob.session_dir(PATH) / "stream.sock").exists()
    assert r.role == pb.ROLE_READER
    alice.wait_session(PATH, lambda x: B in x.readers)
    reader = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"over tcp")
    assert reader.recv().payload == b"over tcp"


def test_ten_thousand_frames_in_order(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B)
    _open_pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH), timeout=60)
    writer = AppClient(alice.session_dir(PATH))
    n = 10_000
    buf = bytearray()
    from hotlink.wire.frames import Frame, encode_frame

    for i in range(n):
        buf += encode_frame(Frame(i.to_bytes(4, "big") + b"x" * 100))
    writer.send_raw(bytes(buf))
    got = reader.recv_n(n)
    assert [f.seq for f in got] == list(range(1, n + 1))
    assert [int.from_bytes(f.payload[:4], "big") for f in got] == list(range(n))
    st = bob.session(PATH)
    assert st.counters.frames_received == n and st.counters.drops == 0


def test_relay_restart_mid_stream(agent_factory, relay):
    alice = agent_factory(A)
    bob = agent_factory(B)
    # hotlink only (mode OFF): frames wait in memory; the file fallback is
    # tests/test_fallback_e2e.py
    _open_pair(alice, bob, fallback=pb.FALLBACK_MODE_OFF)
    reader = AppClient(bob.session_dir(PATH), timeout=30)
    writer = AppClient(alice.session_dir(PATH))
    for i in range(100):
        writer.send(b"before-%d" % i)
    assert [f.seq for f in reader.recv_n(100)] == list(range(1, 101))
    # bob reports what he delivered (HotlinkProgress): alice keeps none of it
    alice.wait_session(PATH, lambda s: s.counters.confirmed_seq == 100)
    relay.kill()
    alice.wait_link(pb.LINK_STATE_DOWN, 15)
    bob.wait_link(pb.LINK_STATE_DOWN, 15)
    assert alice.session(PATH).state == pb.SESSION_STATE_PENDING
    for i in range(50):
        writer.send(b"during-%d" % i)
    # the 50 new frames wait; the 100 before were confirmed, so none is re-sent
    alice.wait_session(PATH, lambda s: s.counters.queued == 50)
    relay.start()
    alice.wait_link(pb.LINK_STATE_UP, 15)
    got = reader.recv_n(50)
    assert [f.payload for f in got] == [b"during-%d" % i for i in range(50)]
    assert [f.seq for f in got] == list(range(101, 151))
    assert alice.session(PATH).state == pb.SESSION_STATE_OPEN
    assert bob.session(PATH).state == pb.SESSION_STATE_OPEN
    assert alice.status().counters.reconnects >= 1
    writer.send(b"after")
    assert reader.recv().seq == 151
    # recent frames were re-sent after the reconnect; bob dropped the copies by seq
    assert bob.session(PATH).counters.drops == 0
    assert bob.session(PATH).last_seq == 151
    # the relay's death was a warning; bob's own clean stop is not
    assert "WARNING hotlink.agent.link: link down" in alice.log_text()
    assert bob.stop() == 0
    assert "INFO hotlink.agent.link: link closed" in bob.log_text()
    assert "WARNING hotlink.agent.link" not in bob.log_text().split("shutting down")[-1]


def test_agent_killed_endpoints_cleaned_on_restart(agent_factory):
    # without restoring its sessions (state.json), which would re-create the endpoints
    alice = agent_factory(A, args=["--restore-sessions=false"])
    s = alice.open("_mpc/0_to_1", require_link=True)
    t = alice.open("_mpc/tcp_side", ipc_mode=pb.IPC_MODE_TCP)
    marker = alice.session_dir(PATH) / "stream.sock"
    real = marker.read_text().strip() if marker.is_file() else str(marker)
    assert s.endpoint == real
    tcp_marker = alice.session_dir(f"{A}/_mpc/tcp_side") / "stream.tcp"
    assert tcp_marker.exists() and t.endpoint
    alice.kill()
    import os

    assert os.path.exists(real) and marker.exists() and tcp_marker.exists()
    alice.start()
    assert not os.path.exists(real)
    assert not marker.exists() and not tcp_marker.exists()
    assert "stale endpoint" in alice.log_text()
    # a clean stop removes endpoints and the control socket itself
    s = alice.open("_mpc/0_to_1")
    assert os.path.exists(s.endpoint)
    assert alice.stop() == 0
    assert not os.path.exists(s.endpoint) and not marker.exists()
    assert not alice.control.exists()


def test_permission_denied(agent_factory):
    alice = agent_factory(A)
    agent_factory(B, acl_read=[])  # bob's datasite: nobody but bob may write
    with pytest.raises(grpc.RpcError) as exc:
        alice.open(f"{B}/_mpc/x", role=pb.ROLE_SENDER)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # alice writes into bob's datasite: her write access is what is missing
    assert f"permission denied: {A} has no write access to {B}/_mpc/x" in exc.value.details()
    s = alice.session(f"{B}/_mpc/x")
    assert s.state == pb.SESSION_STATE_REJECTED
    assert not (alice.session_dir(f"{B}/_mpc/x") / "stream.sock").exists()


def test_owner_sending_to_a_reader_without_read_access_is_told_who(agent_factory):
    """The owner's open --to a reader the ACL does not let read: the relay's Reject
    says "permission denied"; the owner learns whose access is missing and the grant."""
    alice = agent_factory(A, acl_read=[])
    agent_factory(B)
    with pytest.raises(grpc.RpcError) as exc:
        alice.open("_mpc/0_to_1", to=B)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    why = (
        f"{B} has no read access to {PATH} (grant it: hotlinkctl acl grant _mpc/0_to_1 {B} --read)"
    )
    assert why in exc.value.details()
    assert why in alice.session(PATH).reason


def test_malformed_frames_close_only_that_connection(agent_factory):
    alice = agent_factory(A, args=["--max-message", "65536"])
    bob = agent_factory(B)
    _open_pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH))
    good = AppClient(alice.session_dir(PATH))
    bad = [AppClient(alice.session_dir(PATH)) for _ in range(4)]
    alice.wait_session(PATH, lambda s: s.ipc_clients == 5)
    bad[0].send_raw(b"NOPE" + b"\x00" * 40)
    bad[1].send(b"x", path="../escape")
    bad[2].send_raw(HEADER.pack(b"HLNK", 1, 0, 0, 1 << 30, 0))  # claims 1 GiB: no allocation
    bad[3].send(b"y" * 65400)  # fits the IPC limit, not one relay message with its envelope
    for b in bad:
        assert b.is_closed()
    good.send(b"still fine")
    f = reader.recv()
    assert (f.payload, f.seq) == (b"still fine", 1)
    log = alice.log_text()
    assert "malformed frame: bad magic" in log
    assert "'..' segment" in log
    assert "over the configured maximum" in log
    assert "does not fit the relay's 65536-byte message limit" in log
    st = alice.status()
    assert st.link_state == pb.LINK_STATE_UP and st.counters.reconnects == 0
    assert alice.session(PATH).ipc_clients == 1


def test_acl_change_is_uploaded_and_opens_the_session(agent_factory):
    alice = agent_factory(A, acl_read=[], args=["--pub-scan-interval", "0.2"])
    bob = agent_factory(B)
    alice.open("_mpc/0_to_1")
    assert bob.open(PATH).state == pb.SESSION_STATE_PENDING  # bob may not read yet
    from fixtures_agent import acl_yaml

    acl = alice.root / "datasites" / A / "syft.pub.yaml"
    acl.write_text(acl_yaml([B]))
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(PATH, lambda s: s.readers == [B])
    writer = AppClient(alice.session_dir(PATH))
    reader = AppClient(bob.session_dir(PATH))
    writer.send(b"now readable")
    assert reader.recv().payload == b"now readable"
    # removing the file takes the grant back on the relay too ("no rule: owner only")
    acl.unlink()
    alice.wait_session(PATH, lambda s: B not in s.readers, 15)
    wait_for(lambda: "closed: permission denied" in bob.log_text(), 15, "bob cut off")
    assert reader.is_closed()


def test_sender_agent_restart_reader_follows_new_session(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B)
    _open_pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"first life")
    assert reader.recv().seq == 1
    old_sid = bob.session(PATH).session_id
    alice.kill()
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_PENDING)
    alice.start()
    s = alice.open("_mpc/0_to_1")
    assert s.session_id != old_sid
    # bob's session re-accepts the new sid by itself; its endpoint and app stay
    bob.wait_session(
        PATH, lambda x: x.session_id == s.session_id and x.state == pb.SESSION_STATE_OPEN
    )
    alice.wait_session(PATH, lambda x: B in x.readers)
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"second life")
    f = reader.recv()
    assert (f.payload, f.seq) == (b"second life", 1)  # a new stream starts at seq 1
    assert bob.session(PATH).counters.drops == 0


def test_second_agent_on_the_same_root_touches_nothing(agent_factory):
    """A second agent on a running agent's root (even with another --control)
    must refuse to start before it deletes the first one's endpoints or state."""
    import os

    from fixtures_agent import AgentProcess

    alice = agent_factory(A)
    s = alice.open("_mpc/0_to_1")
    assert os.path.exists(s.endpoint)
    for extra in ([], ["--control", str(alice.root.parent / "other.sock")]):
        second = AgentProcess(alice.root, A, alice.relay, extra)
        second.token_file = alice.token_file
        res = second.run_to_exit(timeout=30)
        assert res.returncode != 0
        assert "another agent is running on the root" in res.stderr, res.stderr
        assert os.path.exists(s.endpoint), "the running agent's stream.sock was removed"
    writer = AppClient(alice.session_dir(f"{A}/_mpc/0_to_1"))
    writer.send(b"still served")
    alice.wait_session(f"{A}/_mpc/0_to_1", lambda x: x.counters.frames_sent >= 1)
