"""The direct path end to end: real relay and agent processes, apps on stream.sock,
the direct link between the agents on loopback (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import threading

import pytest
from fixtures_agent import AgentProcess, AppClient, wait_for
from fixtures_relay import relay_client
from hotlink.agent.direct import negotiator as n
from hotlink.agent.direct.identity import Identity, statement
from hotlink.agent.direct.keys import DirectBinding, LocalKey
from hotlink.agent.direct.transport import DirectConnectFailed, connect
from hotlink.common.ports import free_port
from hotlink.telemetry import names as N
from hotlink.telemetry.receiver import by_name, has_names
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.extensions import STREAM_START
from hotlink.wire.frames import Frame, encode_frame
from hotlink.wire.messages import HotlinkAccept, HotlinkData, HotlinkOpen, HotlinkSignal
from test_fallback_e2e import PATH, REL, A, B, Reader, send_paced

pytestmark = pytest.mark.e2e

#: the agent fixture's default is --direct off (tests/fixtures_agent.py)
AUTO = ["--direct", "auto"]


def direct_pair(alice, bob, mode: int = pb.FALLBACK_MODE_OFF) -> None:  # type: ignore[no-untyped-def]
    alice.open(REL, fallback_mode=mode)
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_DIRECT, 20)
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)


def test_direct_comes_up_and_carries_frames_in_order(agent_factory):
    alice = agent_factory(A, args=AUTO)
    bob = agent_factory(B, args=AUTO)
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
    b = bob.session(PATH)
    assert b.counters.frames_direct == n and b.counters.bytes_direct == b.counters.bytes_received
    assert b.active_path == pb.ACTIVE_PATH_DIRECT  # the reader says where frames come from


def test_relay_stopped_while_direct_up(agent_factory, relay):
    alice = agent_factory(A, args=AUTO)
    bob = agent_factory(B, args=AUTO)
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
    bob = agent_factory(B, args=AUTO)
    alice.open(REL, fallback_mode=pb.FALLBACK_MODE_OFF)
    bob.open(PATH)
    s = alice.wait_session(PATH, lambda x: B in x.readers, 20)
    assert s.active_path == pb.ACTIVE_PATH_HOTLINK and not s.direct
    reader = Reader(bob, 100)
    reader.start()
    send_paced(AppClient(alice.session_dir(PATH)), 0, 100)
    reader.check()


def test_reader_with_direct_off_says_why(agent_factory):
    alice = agent_factory(A, args=AUTO)
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


@pytest.mark.skipif(not _ss_kill_works(), reason="ss -K (CAP_NET_ADMIN, sock_destroy) unavailable")
def test_direct_link_killed_fifty_times(agent_factory):
    """The direct link's TCP connection is destroyed from outside (`ss -K`) 50 times
    mid-stream: every frame reaches the reader app once, in order."""
    port = free_port()
    alice = agent_factory(A, args=AUTO)
    bob = agent_factory(B, args=[*AUTO, "--direct-listen", f"127.0.0.1:{port}"])
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


def test_links_replaced_when_their_key_budget_is_used(agent_factory):
    """With a 64 KiB key budget (the smallest allowed), a stream of ~0.5 MB uses up many
    links' keys: each time the sender closes its link, the frames go by relay meanwhile
    and a new link with fresh keys, offered at once, takes over; every frame reaches the
    reader app once, in order."""
    env = {"HOTLINK_DIRECT_KEY_BYTES": "64KiB"}
    alice = agent_factory(A, args=AUTO, env=env)
    bob = agent_factory(B, args=AUTO, env=env)
    direct_pair(alice, bob)
    n = 4000  # ~130 bytes a record: about eight budgets
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, n, step=20, pause=0.01)
    reader.check()
    s = alice.wait_session(PATH, lambda x: x.active_path == pb.ACTIVE_PATH_DIRECT, 20)
    assert s.counters.direct_switches >= 6, s.counters  # really replaced, again and again
    # a new link took over every time, offered at once (the relay carries only the
    # frames sent during the new handshake)
    assert s.counters.frames_direct >= n // 2 and s.counters.frames_relay > 0
    wait_for(lambda: "byte budget" in alice.log_text(), 10, "the reason in the log")


def test_bad_key_budget_stops_the_agent_with_a_clear_error(relay, tmp_path):
    carol = AgentProcess(
        tmp_path / "carol", A, relay, AUTO, env={"HOTLINK_DIRECT_KEY_BYTES": "lots"}
    )
    proc = carol.run_to_exit()
    assert proc.returncode == 1, proc.stderr
    assert "HOTLINK_DIRECT_KEY_BYTES: not a size: 'lots'" in proc.stderr
    assert "Traceback" not in proc.stderr


class RecordingProxy(threading.Thread):
    """A TCP proxy in front of `target` that records what clients send."""

    def __init__(self, target: int) -> None:
        super().__init__(daemon=True)
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.srv.getsockname()[1])
        self.target = target
        self.recorded: list[bytes] = []

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                cli, _ = self.srv.accept()
                up = socket.create_connection(("127.0.0.1", self.target))
                buf = bytearray()
                self.recorded.append(buf)  # type: ignore[arg-type]
                threading.Thread(target=self._pump, args=(cli, up, buf), daemon=True).start()
                threading.Thread(target=self._pump, args=(up, cli, None), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket, rec: bytearray | None) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                if rec is not None:
                    rec += data
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _closed_by_peer(sock: socket.socket, payload: bytes) -> bool:
    sock.settimeout(15)
    with contextlib.suppress(OSError):
        sock.sendall(payload)
        while sock.recv(4096):
            pass
    return True


def test_strangers_refused_session_unaffected(agent_factory):
    port = free_port()
    alice = agent_factory(A, args=AUTO)
    bob = agent_factory(B, args=[*AUTO, "--direct-listen", f"127.0.0.1:{port}"])
    proxy = RecordingProxy(port)
    proxy.start()
    # bob also offers the proxy: alice tries it in parallel, so it sees a real handshake
    bob.kill()
    bob.args += ["--direct-advertise", f"127.0.0.1:{proxy.port}"]
    bob.start()
    direct_pair(alice, bob)
    wait_for(lambda: any(proxy.recorded), 20, "a handshake through the proxy")
    reader = Reader(bob, 400)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, 200)

    def refusals() -> int:
        return bob.log_text().count("direct listener refused")

    def refused_once_more(base: int) -> int:
        return wait_for(lambda: refusals() > base and refusals(), 20, "a refusal logged")

    base = refusals()
    # 1. garbage
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert _closed_by_peer(s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
    base = refused_once_more(base)
    # 2. a well-formed handshake for another session (keys the relay never exchanged)
    binding = DirectBinding("another-session", A, B, "leg0")
    with pytest.raises(DirectConnectFailed):
        asyncio.run(
            connect([f"127.0.0.1:{port}"], LocalKey.generate(), LocalKey.generate().public, binding)
        )
    base = refused_once_more(base)
    # 3. the bytes alice's agent sent in a real handshake, replayed
    rec = bytes(next(r for r in proxy.recorded if r))
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert _closed_by_peer(s, rec)
    refused_once_more(base)
    # the session goes on, direct
    send_paced(writer, 200, 400)
    reader.check()
    assert alice.session(PATH).active_path == pb.ACTIVE_PATH_DIRECT


def test_direct_trace_skips_the_relay(relay_factory, agent_factory, otlp_receiver, otel_env):
    relay = relay_factory(
        extra_args=["--otel", "--otel-endpoint", otlp_receiver.endpoint,
                    "--otel-sampler", "parentbased_traceidratio", "--otel-sampler-arg", "1"]
    )  # fmt: skip
    env = otel_env(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="1")
    alice = agent_factory(A, relay_=relay, env=env, args=AUTO)
    bob = agent_factory(B, relay_=relay, env=env, args=AUTO)
    direct_pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    try:
        writer.send(b"x" * 1024, path="m/1.request")
        (f,) = reader.recv_n(1)
        assert f.payload == b"x" * 1024 and f.seq == 1
    finally:
        writer.close()
        reader.close()
    stages = (N.HOTLINK_IPC_READ, N.HOTLINK_SEND, N.HOTLINK_RECEIVE_DIRECT, N.HOTLINK_IPC_WRITE)
    spans = otlp_receiver.wait_for(has_names(*stages), timeout=20)
    named = by_name(spans)
    chain = [named[n][0] for n in stages]
    assert all(len(named[n]) == 1 for n in stages)
    assert len({x["trace_id"] for x in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert child["parent_span_id"] == parent["span_id"], (parent["name"], child["name"])
    assert [x["service"] for x in chain] == [N.SERVICE_AGENT] * 4
    assert chain[0]["resource"][N.RES_PEER_EMAIL] == A
    assert chain[2]["resource"][N.RES_PEER_EMAIL] == B
    assert [x["attributes"][N.ROUTE] for x in chain] == ["direct"] * 4
    # no relay stage in that trace
    tid = chain[0]["trace_id"]
    assert not [x for x in named.get(N.RELAY_ROUTE, []) if x["trace_id"] == tid]


def test_candidate_that_never_answers_leaves_the_session_on_the_relay(relay, agent_factory):
    """A reader (a scripted protocol client) answers the offer with the address of a
    TCP server that accepts and never says a word: alice's agent gives up after its
    bounded connect, says why, and keeps sending by the relay."""
    alice = agent_factory(A, args=AUTO)
    alice.open(REL, fallback_mode=pb.FALLBACK_MODE_OFF)
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(
        target=lambda: [held.append(silent.accept()[0]) for _ in range(8)], daemon=True
    ).start()
    addr = f"127.0.0.1:{silent.getsockname()[1]}"

    async def reader() -> tuple[str, list[int]]:
        async with relay_client(relay, B) as bob:
            offer = await bob.recv_type(HotlinkOpen, 20)
            await bob.send(HotlinkAccept(offer.sid))
            start = await bob.recv_type(HotlinkSignal, 20)  # where its frames begin
            assert start.kind == STREAM_START and start.seq == 1
            sig = await bob.recv_type(HotlinkSignal, 20)
            assert sig.kind == n.OFFER and sig.frm == A
            leg = n.Token.decode(sig.token).leg
            eph = LocalKey.generate().public_b64()
            me = Identity.generate()
            signed = me.sign(statement(n.Claim(n.ANSWER, offer.sid, A, B, leg, eph)))
            tok = n.Token(leg, eph, me.public_b64, signed).encode()
            await bob.send(HotlinkSignal(offer.sid, n.ANSWER, [addr], tok))
            # the bounded connect (3 s) runs out; then the frames come by the relay
            status = await asyncio.to_thread(
                alice.wait_session,
                PATH,
                lambda s: any("connect failed" in d.status for d in s.direct),
                20,
            )
            await asyncio.to_thread(
                AppClient(alice.session_dir(PATH)).send_raw,
                b"".join(encode_frame(Frame(b"m%d" % i)) for i in range(20)),
            )
            seqs = [(await bob.recv_type(HotlinkData, 20)).seq for _ in range(20)]
            return status.direct[0].status, seqs

    try:
        why, seqs = asyncio.run(reader())
    finally:
        for s in (*held, silent):
            s.close()
    assert "direct connect failed" in why and addr in why
    assert seqs == list(range(1, 21))
    s = alice.session(PATH)
    assert s.active_path == pb.ACTIVE_PATH_HOTLINK and s.counters.frames_relay == 20
