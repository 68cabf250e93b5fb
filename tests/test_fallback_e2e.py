"""File fallback end to end: real relay and agent processes, apps on stream.sock.

Automatic switching between the hotlink and the file path must not lose, duplicate or
reorder: every test checks that the reader app gets every frame once, in seq order,
with the payload the writer sent under that index.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time

import grpc
import pytest
from fixtures_agent import AgentProcess, AppClient, wait_for
from hotlink.ctl.errors import ExitCode
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.fallbackfile import decode as decode_fallback
from hotlink.wire.frames import Frame, encode_frame

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
REL = "_mpc/0_to_1"
PATH = f"{A}/{REL}"
HOTLINKCTL = [sys.executable, "-m", "hotlink.ctl.cli"]
IDX = struct.Struct(">Q")


class Reader(threading.Thread):
    """Reads `n` frames from bob's stream.sock in the background."""

    def __init__(self, agent: AgentProcess, n: int, timeout: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.app = AppClient(agent.session_dir(PATH), timeout=timeout)
        self.n = n
        self.frames: list[Frame] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.frames) < self.n:
                self.frames.append(self.app.recv())
        except BaseException as exc:
            self.error = exc

    def check(self, first_index: int = 0, first_seq: int = 1) -> None:
        self.join(90)
        assert not self.is_alive(), f"reader got {len(self.frames)} of {self.n} frames"
        assert self.error is None, self.error
        seqs = [f.seq for f in self.frames]
        assert seqs == list(range(first_seq, first_seq + self.n)), _diff(seqs, first_seq)
        idx = [IDX.unpack_from(f.payload)[0] for f in self.frames]
        assert idx == list(range(first_index, first_index + self.n))


def _diff(seqs: list[int], first: int) -> str:
    for i, s in enumerate(seqs):
        if s != first + i:
            return f"first difference at {i}: seq {s}, expected {first + i}"
    return "lengths differ"


def frames(lo: int, hi: int, size: int = 64) -> bytes:
    pad = b"p" * (size - IDX.size)
    return b"".join(encode_frame(Frame(IDX.pack(i) + pad)) for i in range(lo, hi))


def open_pair(alice: AgentProcess, bob: AgentProcess, mode: int = 0) -> None:
    alice.open(REL, fallback_mode=mode)
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: B in s.readers and s.active_path == pb.ACTIVE_PATH_HOTLINK)
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)


def send_paced(writer: AppClient, lo: int, hi: int, step: int = 250, pause: float = 0.005):
    for i in range(lo, hi, step):
        writer.send_raw(frames(i, min(i + step, hi)))
        time.sleep(pause)


def test_relay_killed_mid_stream(agent_factory, relay):
    """10 000 frames; the relay is killed -9 after 3 000 and restarted (same port, same
    --data) while alice keeps writing: frames sent meanwhile go as fallback files,
    which travel once the relay is back; then the stream returns to the hotlink."""
    n = 10_000
    alice = agent_factory(A)
    bob = agent_factory(B)
    open_pair(alice, bob)
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, 3000)
    relay.kill()
    send_paced(writer, 3000, 6000)
    alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_FILES)
    time.sleep(0.3)
    relay.start()
    send_paced(writer, 6000, n)
    reader.check()
    a = alice.wait_session(
        PATH,
        lambda s: s.active_path == pb.ACTIVE_PATH_HOTLINK and s.counters.files_pending == 0,
    )
    b = bob.session(PATH)
    assert a.counters.files_sent > 0 and a.counters.path_switches >= 2
    assert b.counters.files_received > 0 and b.counters.drops == 0
    assert b.counters.frames_received == n
    assert b.last_seq == n


def test_session_rejected_mid_stream(agent_factory, relay):
    """The relay restarts with a limit of one session per user and alice's stream is
    re-opened second: "too many sessions". The stream goes on by files; when the
    other session closes, alice's retried open succeeds and it is back on hotlink."""
    n = 10_000
    alice = agent_factory(A)
    bob = agent_factory(B)
    alice.open("_mpc/placeholder")  # opened first: re-opened first after the restart
    open_pair(alice, bob)
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, 3000)
    relay.kill()
    relay.extra_args = ["--max-sessions-per-user", "1"]
    relay.start()
    alice.wait_session(PATH, lambda s: s.reason == "too many sessions", timeout=60)
    send_paced(writer, 3000, 7000)
    assert alice.session(PATH).active_path == pb.ACTIVE_PATH_FILES
    alice.stub.CloseSession(
        pb.CloseSessionRequest(session=pb.SessionRef(path=f"{A}/_mpc/placeholder")), timeout=5
    )
    # the retried open comes on a backoff of up to 5 s, then the reader's re-accept:
    # a generous wait, as the fixture's 15 s default ran out once under full-suite load
    alice.wait_session(
        PATH, lambda s: s.state == pb.SESSION_STATE_OPEN and B in s.readers, timeout=60
    )
    send_paced(writer, 7000, n)
    reader.check()
    a = alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_HOTLINK)
    assert a.counters.files_sent > 0
    assert bob.session(PATH).counters.files_received > 0


def test_open_over_the_session_limit_without_files_says_it_is_a_limit(agent_factory, relay):
    """With no file path to wait on (fallback OFF), an open refused for the relay's
    session limit fails RESOURCE_EXHAUSTED, and hotlinkctl points at the limit (exit 6),
    not at the ACL as for a real "permission denied"."""
    relay.kill()
    relay.extra_args = ["--max-sessions-per-user", "1"]
    relay.start()
    alice = agent_factory(A)
    alice.open("_mpc/first", fallback_mode=pb.FALLBACK_MODE_OFF)
    with pytest.raises(grpc.RpcError) as ei:
        alice.open("_mpc/second", fallback_mode=pb.FALLBACK_MODE_OFF)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    assert "too many sessions" in ei.value.details()
    r = subprocess.run(
        [*HOTLINKCTL, "--agent", str(alice.control), "open", "_mpc/third", "--fallback", "off"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == ExitCode.UNAVAILABLE, r.stderr
    assert "too many sessions" in r.stderr and "--max-sessions-per-user" in r.stderr, r.stderr
    assert "syft.pub.yaml" not in r.stderr, r.stderr


def test_reader_offline_gets_what_it_missed(agent_factory, relay):
    """bob's agent stops; alice sends 1 000 frames (file path: no reader); bob's agent
    starts again, restores its session from its state file on the same stream.sock
    and its app gets all 1 000, once, in order."""
    alice = agent_factory(A)
    bob = agent_factory(B)
    open_pair(alice, bob)
    first = Reader(bob, 100)
    first.start()
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(frames(0, 100))
    first.check()
    bob.wait_session(PATH, lambda s: s.last_seq == 100)
    time.sleep(0.4)  # state file debounce (not needed for a clean stop; shows it)
    assert bob.stop() == 0
    first.app.close()
    alice.wait_session(PATH, lambda s: B not in s.readers)
    writer.send_raw(frames(100, 1100))
    alice.wait_session(PATH, lambda s: s.counters.files_pending == 0 and s.last_seq == 1100)
    assert alice.session(PATH).active_path == pb.ACTIVE_PATH_FILES
    bob.start()
    s = bob.session(PATH)  # restored, not re-opened by anyone
    assert s.role == pb.ROLE_READER
    second = Reader(bob, 1000)
    second.start()
    second.check(first_index=100, first_seq=101)
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_HOTLINK)
    writer.send_raw(frames(1100, 1101))
    assert second.app.recv().seq == 1101
    assert bob.session(PATH).counters.files_received == 1000


def test_tee_every_frame_also_a_file(agent_factory):
    """TEE: every frame by hotlink and, in the background, as a fallback file; the
    reader drops the file copies by seq (each frame reaches the app once)."""
    n = 2000
    alice = agent_factory(A, args=["--keep-files"])
    bob = agent_factory(B, args=["--keep-files"])
    open_pair(alice, bob, pb.FALLBACK_MODE_TEE)
    reader = Reader(bob, n)
    reader.start()
    writer = AppClient(alice.session_dir(PATH))
    send_paced(writer, 0, n)
    reader.check()
    a = alice.wait_session(PATH, lambda s: s.counters.files_sent == n)
    assert a.active_path == pb.ACTIVE_PATH_HOTLINK and a.counters.frames_sent == n
    b = bob.wait_session(PATH, lambda s: s.counters.file_duplicates == n)
    assert b.counters.frames_received == n and b.counters.files_received == 0
    # the audit copies: alice's own and bob's mirror, each a fallback file with its seq
    for agent in (alice, bob):
        d = agent.session_dir(PATH)
        names = sorted(p.name for p in d.glob("*.request"))
        assert names == [f"{i:08d}.request" for i in range(1, n + 1)]
        fr = decode_fallback((d / "00000007.request").read_bytes())
        assert fr.seq == 7 and IDX.unpack_from(fr.payload)[0] == 6


def test_app_written_request_files_and_bad_input(agent_factory):
    """The priority file path: a `.request` file an app writes into the sender's
    session dir reaches the reader app as the session's next frame and the reader's
    mirror. Unreadable, too large and symlinked files are refused with a logged
    reason and the watcher goes on."""
    alice = agent_factory(A, args=["--max-payload", "4096"])
    bob = agent_factory(B, args=["--keep-files"])
    open_pair(alice, bob)
    app = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(frames(0, 3))
    assert [f.seq for f in (app.recv(), app.recv(), app.recv())] == [1, 2, 3]
    d = alice.session_dir(PATH)
    os.symlink("/etc/hostname", d / "link.request")
    (d / "huge.request").write_bytes(b"h" * 5000)
    if os.getuid() != 0:
        (d / "locked.request").write_bytes(b"secret")
        (d / "locked.request").chmod(0)
    tmp = d / "hello.request.tmp"
    tmp.write_bytes(b"hello by file")
    os.replace(tmp, d / "hello.request")
    f = app.recv()
    assert (f.seq, f.path, f.payload) == (4, f"{PATH}/hello.request", b"hello by file")
    mirror = bob.session_dir(PATH) / "hello.request"
    fr = decode_fallback(mirror.read_bytes())
    assert (fr.seq, fr.payload) == (4, b"hello by file")
    # the refusals are logged by the disk thread, in whatever order the watcher saw them
    expected = ["link.request is a symlink", "huge.request has 5000 bytes, over the"]
    if os.getuid() != 0:
        expected.append("locked.request: Permission denied")
    wait_for(lambda: all(e in alice.log_text() for e in expected), 10, f"log lines {expected}")
    writer.send_raw(frames(3, 4))  # hotlink goes on after the file
    assert app.recv().seq == 5
    b = bob.session(PATH)
    assert b.counters.files_received == 1 and b.counters.drops == 0


def test_idle_timeout_is_a_disconnect_not_a_reject(agent_factory, relay_factory):
    """The relay closes idle sessions ("idle timeout"): the sender re-opens the same
    session, the reader re-accepts, seqs continue; each switch is a WatchEvents event."""
    r = relay_factory(extra_args=["--idle-timeout", "1"])
    alice = agent_factory(A, relay_=r)
    bob = agent_factory(B, relay_=r)
    events: list[pb.Event] = []
    call = alice.stub.WatchEvents(pb.WatchEventsRequest())

    def pump() -> None:
        try:
            for ev in call:
                events.append(ev)
        except grpc.RpcError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    alice.status()
    time.sleep(0.2)
    open_pair(alice, bob)
    app = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(frames(0, 1))
    assert app.recv().seq == 1
    wait_for(lambda: "idle timeout" in alice.log_text() or "idle" in r.log_text(), 10)
    r.wait_for_log("idle for")
    time.sleep(0.3)
    alice.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN and B in s.readers)
    assert bob.session(PATH).state in (pb.SESSION_STATE_OPEN, pb.SESSION_STATE_PENDING)
    writer.send_raw(frames(1, 3))
    assert [app.recv().seq, app.recv().seq] == [2, 3]
    call.cancel()
    closes = [e for e in events if e.type == pb.EVENT_TYPE_CLOSED and e.reason == "idle timeout"]
    assert closes and closes[0].session.state == pb.SESSION_STATE_PENDING
    switched = {e.session.active_path for e in events if e.type == pb.EVENT_TYPE_PATH_SWITCHED}
    assert switched == {pb.ACTIVE_PATH_FILES, pb.ACTIVE_PATH_HOTLINK}
    assert not [e for e in events if e.type == pb.EVENT_TYPE_REJECTED]


def test_sender_clean_restart_continues_the_stream(agent_factory):
    """alice stops cleanly with frames on the file path (bob away) and starts again:
    same session id, next seq; her unacknowledged files and new frames reach bob."""
    alice = agent_factory(A)
    bob = agent_factory(B)
    open_pair(alice, bob)
    app = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(frames(0, 10))
    assert [app.recv().seq for _ in range(10)] == list(range(1, 11))
    sid = alice.session(PATH).session_id
    assert alice.stop() == 0
    writer.close()
    alice.start()
    s = alice.session(PATH)  # restored from the state file
    assert (s.session_id, s.last_seq) == (sid, 10)
    alice.wait_session(PATH, lambda x: B in x.readers)
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(frames(10, 20))
    got = [app.recv() for _ in range(10)]
    assert [f.seq for f in got] == list(range(11, 21))
    assert [IDX.unpack_from(f.payload)[0] for f in got] == list(range(10, 20))
    assert bob.session(PATH).counters.drops == 0
