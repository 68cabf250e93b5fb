"""The direct path end to end: real relay and agent processes, apps on stream.sock,
the direct link between the agents on loopback (no mocks)."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
from fixtures_agent import AppClient, wait_for
from hotlink.v1 import agent_pb2 as pb
from test_fallback_e2e import PATH, REL, A, B, Reader, send_paced

pytestmark = pytest.mark.e2e


def direct_pair(alice, bob, mode: int = pb.FALLBACK_MODE_OFF) -> None:  # type: ignore[no-untyped-def]
    alice.open(REL, fallback_mode=mode)
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_DIRECT, 20)
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)


def test_direct_comes_up_and_carries_frames_in_order(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B)
    direct_pair(alice, bob)
    s = alice.session(PATH)
    assert [(d.peer, d.status) for d in s.direct] == [(B, "up")]
    n = 2000
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, n)
    reader.check()
    s = alice.wait_session(PATH, lambda x: x.counters.frames_direct == n, 20)
    assert s.counters.frames_relay == 0
    assert bob.session(PATH).counters.frames_direct == n


def test_relay_stopped_while_direct_up(agent_factory, relay):
    alice = agent_factory(A)
    bob = agent_factory(B)
    direct_pair(alice, bob)
    n = 2000
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, 500)
    relay.kill()
    wait_for(lambda: alice.status().link_state != pb.LINK_STATE_UP, 20, "alice's relay link down")
    send_paced(writer, 500, n)
    reader.check()
    assert alice.session(PATH).active_path == pb.ACTIVE_PATH_DIRECT


def test_direct_off_stays_on_relay(agent_factory):
    alice = agent_factory(A, args=["--direct", "off"])
    bob = agent_factory(B)
    alice.open(REL, fallback_mode=pb.FALLBACK_MODE_OFF)
    bob.open(PATH)
    s = alice.wait_session(PATH, lambda x: B in x.readers, 20)
    assert s.active_path == pb.ACTIVE_PATH_HOTLINK and not s.direct
    reader = Reader(bob, 100)
    reader.start()
    send_paced(AppClient(alice.session_dir(PATH)), 0, 100)
    reader.check()


def test_reader_with_direct_off_says_why(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B, args=["--direct", "off"])
    alice.open(REL, fallback_mode=pb.FALLBACK_MODE_OFF)
    bob.open(PATH)
    s = alice.wait_session(
        PATH, lambda x: any("gave up" in d.status or "backoff" in d.status for d in x.direct), 20
    )
    assert s.active_path == pb.ACTIVE_PATH_HOTLINK
    reader = Reader(bob, 100)
    reader.start()
    send_paced(AppClient(alice.session_dir(PATH)), 0, 100)
    reader.check()


def _ss_kill_works() -> bool:
    """`ss -K` needs CAP_NET_ADMIN and a kernel with sock_destroy: probe it once."""
    if shutil.which("ss") is None:
        return False
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    acc, _ = srv.accept()
    try:
        subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{port}"],
                       capture_output=True, timeout=10)  # fmt: skip
        cli.settimeout(2)
        try:
            cli.send(b"x")
            cli.recv(1)
        except OSError:
            return True
        return False
    finally:
        for s in (cli, acc, srv):
            s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not _ss_kill_works(), reason="ss -K (CAP_NET_ADMIN, sock_destroy) unavailable")
def test_direct_link_killed_fifty_times(agent_factory):
    """The direct link's TCP connection is destroyed from outside (`ss -K`) 50 times
    mid-stream: every frame reaches the reader app once, in order."""
    port = free_port()
    alice = agent_factory(A)
    bob = agent_factory(B, args=["--direct-listen", f"127.0.0.1:{port}"])
    direct_pair(alice, bob)
    kills, batch = 50, 60
    n = kills * batch + batch
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    for k in range(kills):
        alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_DIRECT, 20)
        send_paced(writer, k * batch, (k + 1) * batch, step=20, pause=0.001)
        subprocess.run(
            ["ss", "-K", "(", "sport", "=", f":{port}", "or", "dport", "=", f":{port}", ")"],
            capture_output=True,
            timeout=10,
        )
    send_paced(writer, kills * batch, n)
    reader.check()
    s = alice.session(PATH)
    assert s.counters.direct_switches >= kills  # it really went down and up again
