"""hotlinkctl argument parsing, exit codes and --json output, against an in-process fake
agent (a real gRPC server on a UNIX socket) so every code path is deterministic."""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hotlink.ctl import cli
from hotlink.ctl.errors import ExitCode
from hotlink.v1 import agent_pb2 as pb
from hotlink.v1 import agent_pb2_grpc as pb_grpc
from hotlink.wire.frames import Frame, FrameDecoder, encode_frame

ME = "alice@example.org"


@dataclass
class FakeAgent(pb_grpc.HotlinkAgentServicer):
    root: Path
    sessions: dict[str, pb.Session] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)

    def _full(self, path: str) -> str:
        return path if "@" in path.split("/", 1)[0] else f"{ME}/{path}"

    def OpenSession(self, request: pb.OpenSessionRequest, context: Any) -> Any:
        self.requests.append(request)
        if "denied" in request.path:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "relay rejected: no write access")
        full = self._full(request.path)
        role = pb.ROLE_SENDER if full.startswith(ME + "/") else pb.ROLE_READER
        d = self.root / "datasites" / full
        s = pb.Session(
            session_id="sid1",
            path=full,
            role=role,
            state=pb.SESSION_STATE_OPEN,
            sender=ME,
            to=request.to,
            session_dir=str(d),
            ipc_mode=request.ipc_mode or pb.IPC_MODE_UNIX,
            endpoint=str(d / "stream.sock"),
            fallback_mode=request.fallback_mode or pb.FALLBACK_MODE_ON_FAILURE,
        )
        self.sessions[full] = s
        return pb.OpenSessionResponse(session=s)

    def _get(self, ref: pb.SessionRef, context: Any) -> pb.Session:
        key = self._full(ref.path) if ref.WhichOneof("target") == "path" else None
        for s in self.sessions.values():
            if s.path == key or (key is None and s.session_id == ref.session_id):
                return s
        context.abort(grpc.StatusCode.NOT_FOUND, "no such session")
        raise AssertionError

    def GetSession(self, request: pb.GetSessionRequest, context: Any) -> Any:
        return self._get(request.session, context)

    def CloseSession(self, request: pb.CloseSessionRequest, context: Any) -> Any:
        s = self._get(request.session, context)
        del self.sessions[s.path]
        s.state = pb.SESSION_STATE_CLOSED
        return pb.CloseSessionResponse(session=s)

    def ListSessions(self, request: Any, context: Any) -> Any:
        return pb.ListSessionsResponse(sessions=list(self.sessions.values()))

    def GetStatus(self, request: Any, context: Any) -> Any:
        return pb.GetStatusResponse(
            version="0.1.0",
            email=ME,
            server_url="ws://127.0.0.1:1",
            link_state=pb.LINK_STATE_UP,
            root=str(self.root),
            sessions=list(self.sessions.values()),
        )

    def WatchEvents(self, request: Any, context: Any) -> Any:
        yield pb.Event(type=pb.EVENT_TYPE_LINK_UP, time_unix_nano=1)
        yield pb.Event(type=pb.EVENT_TYPE_OPENED, path=f"{ME}/_mpc/0_to_1", session_id="sid1")


@pytest.fixture
def fake_agent() -> Iterator[tuple[FakeAgent, str]]:
    with tempfile.TemporaryDirectory(prefix="hlcli-", dir="/tmp") as d:
        root = Path(d)
        (root / ".hotlink").mkdir()
        sock = str(root / ".hotlink" / "agent.sock")
        agent = FakeAgent(root)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_HotlinkAgentServicer_to_server(agent, server)
        hs = health.HealthServicer()
        hs.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(hs, server)
        server.add_insecure_port("unix:" + sock)
        server.start()
        try:
            yield agent, str(root)
        finally:
            server.stop(None)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes" in out
    assert "agent unreachable" in out
    for cmd in ("open", "close", "ls", "status", "send", "tail", "watch", "devstack", "bench"):
        assert cmd in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["open"],
        ["open", "x", "--ipc", "carrier-pigeon"],
        ["open", "x", "--fallback", "sometimes"],
        ["bench", "--bench", "nope"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(argv)
    assert ei.value.code == ExitCode.USAGE


def test_no_agent_given_is_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOTLINK_ROOT", raising=False)
    monkeypatch.delenv("HOTLINK_AGENT", raising=False)
    code, _, err = run(capsys, "ls")
    assert code == ExitCode.USAGE
    assert "HOTLINK_ROOT" in err


def test_unreachable_agent_exit_3_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--json", "--root", "/nonexistent/hl", "ls")
    assert code == ExitCode.UNREACHABLE
    doc = json.loads(out)
    assert doc["exit_code"] == 3
    assert "/nonexistent/hl/.hotlink/agent.sock" in doc["error"]
    assert "hotlink-agent" in doc["hint"]
    assert "is hotlink-agent running?" in err


def test_lang_other_than_python_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "bench", "--lang", "go")
    assert code == ExitCode.USAGE
    assert "python" in err


def test_bench_unknown_lang_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # e2e-latency exists (tests/test_fallback_devstack.py runs it); only the language is bad
    code, _, err = run(capsys, "bench", "--bench", "e2e-latency", "--lang", "go", "-q")
    assert code == ExitCode.USAGE
    assert "--lang go" in err


@pytest.mark.parametrize("argv", [("--count", "0"), ("--sizes", ",")])
def test_bench_with_nothing_to_measure_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, str]
) -> None:
    """Not an empty table: no message to send and no throughput to stream says so."""
    code, out, err = run(capsys, "bench", *argv, "-q")
    assert code == ExitCode.USAGE
    assert "nothing to measure" in err and "P50" not in out


def test_open_ls_get_close_json(
    fake_agent: tuple[FakeAgent, str], capsys: pytest.CaptureFixture[str]
) -> None:
    agent, root = fake_agent
    code, out, _ = run(
        capsys,
        "open",
        "_mpc/0_to_1",
        "--root",
        root,
        "--to",
        "bob@example.org",
        "--ipc",
        "tcp",
        "--fallback",
        "tee",
        "--direct",
        "off",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert agent.requests[-1].direct == pb.DIRECT_MODE_OFF
    assert doc["path"] == f"{ME}/_mpc/0_to_1"
    assert doc["state"] == "OPEN"
    assert doc["role"] == "SENDER"
    req = agent.requests[-1]
    assert (req.to, req.ipc_mode, req.fallback_mode) == (
        "bob@example.org",
        pb.IPC_MODE_TCP,
        pb.FALLBACK_MODE_TEE,
    )

    code, out, _ = run(capsys, "--root", root, "--json", "ls")
    assert code == 0
    assert [s["path"] for s in json.loads(out)["sessions"]] == [f"{ME}/_mpc/0_to_1"]

    code, out, _ = run(capsys, "--root", root, "ls")
    assert code == 0
    assert "_mpc/0_to_1" in out and "sender" in out

    code, out, _ = run(capsys, "--root", root, "--json", "get", "sid1")
    assert code == 0 and json.loads(out)["session_id"] == "sid1"

    code, out, _ = run(capsys, "--root", root, "close", "_mpc/0_to_1", "--json")
    assert code == 0 and json.loads(out)["state"] == "CLOSED"

    code, out, err = run(capsys, "--root", root, "close", "_mpc/0_to_1", "--json")
    assert code == ExitCode.NOT_FOUND
    assert json.loads(out)["kind"] == "NotFound"
    assert "hotlinkctl ls" in err


def test_open_denied_exit_5(
    fake_agent: tuple[FakeAgent, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = fake_agent
    code, _, err = run(capsys, "--root", root, "open", "_mpc/denied")
    assert code == ExitCode.PERMISSION
    assert "syft.pub.yaml" in err


def test_status_and_env_resolution(
    fake_agent: tuple[FakeAgent, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, root = fake_agent
    monkeypatch.setenv("HOTLINK_ROOT", root)
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["health"], doc["link_state"], doc["email"]) == ("SERVING", "UP", ME)
    code, out, _ = run(capsys, "status")
    assert code == 0 and "link:      UP" in out
    monkeypatch.delenv("HOTLINK_ROOT")
    monkeypatch.setenv("HOTLINK_AGENT", str(Path(root) / ".hotlink" / "agent.sock"))
    assert run(capsys, "ls")[0] == 0


def test_watch_count_json(
    fake_agent: tuple[FakeAgent, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = fake_agent
    code, out, _ = run(capsys, "--root", root, "watch", "--count", "2", "--json", "-q")
    assert code == 0
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert types == ["LINK_UP", "OPENED"]


class _Collect(socketserver.StreamRequestHandler):
    frames: list[Frame]

    def handle(self) -> None:
        dec = FrameDecoder()
        while data := self.request.recv(65536):
            self.server.frames.extend(dec.feed(data))  # type: ignore[attr-defined]


def test_send_finds_session_dir_and_writes_frames(
    fake_agent: tuple[FakeAgent, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    agent, root = fake_agent
    assert run(capsys, "--root", root, "open", "_mpc/0_to_1")[0] == 0
    d = Path(agent.sessions[f"{ME}/_mpc/0_to_1"].session_dir)
    d.mkdir(parents=True)
    server = socketserver.ThreadingUnixStreamServer(str(d / "stream.sock"), _Collect)
    server.frames = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        f = tmp_path / "msg.bin"
        f.write_bytes(b"\x00\x01binary")
        code, out, _ = run(capsys, "--root", root, "send", "_mpc/0_to_1", "--file", str(f))
        assert code == 0
        code, out, _ = run(
            capsys, "--root", root, "send", "_mpc/0_to_1", "--data", "a\nb\n", "--lines", "--json"
        )
        assert code == 0 and json.loads(out) == {
            "path": f"{ME}/_mpc/0_to_1",
            "frames": 2,
            "bytes": 2,
        }
        code, _, err = run(capsys, "--root", root, "send", "_mpc/0_to_1")
        assert code == ExitCode.USAGE
        code, _, err = run(capsys, "--root", root, "send", "_mpc/nope", "--data", "x")
        assert code == ExitCode.NOT_FOUND and "hotlinkctl open" in err
        for _ in range(200):
            if len(server.frames) >= 3:  # type: ignore[attr-defined]
                break
            threading.Event().wait(0.01)
        payloads = [fr.payload for fr in server.frames]  # type: ignore[attr-defined]
        assert payloads == [b"\x00\x01binary", b"a", b"b"]
    finally:
        server.shutdown()
        server.server_close()


def test_tail_on_sender_session_is_refused(
    fake_agent: tuple[FakeAgent, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = fake_agent
    run(capsys, "--root", root, "open", "_mpc/0_to_1")
    code, _, err = run(capsys, "--root", root, "tail", "_mpc/0_to_1")
    assert code == ExitCode.USAGE
    assert "reader" in err


def test_encode_frame_helper_roundtrip() -> None:
    """The fake endpoints above rely on the shared codec; keep them honest."""
    f = Frame(b"p", 3, "x.request", "e")
    assert FrameDecoder().feed(encode_frame(f)) == [f]


@pytest.mark.parametrize(
    ("to", "mode", "says"),
    [
        ("", pb.FALLBACK_MODE_ON_FAILURE, ["acl grant _mpc/0_to_1 READER --read", "go by file"]),
        (
            "bob@example.org",
            pb.FALLBACK_MODE_TEE,
            ["bob@example.org is not in this session", "go by file"],
        ),
        (
            "",
            pb.FALLBACK_MODE_OFF,
            ["acl grant _mpc/0_to_1 READER --read", "wait in this agent's send queue"],
        ),
        ("bob@example.org", pb.FALLBACK_MODE_OFF, ["bob@example.org is not", "send queue"]),
    ],
)
def test_no_reader_yet_says_who_and_where_the_frames_go(
    to: str, mode: int, says: list[str]
) -> None:
    """A sender without readers is told where its frames wait: by file, or (fallback
    off) in the agent's queue; a `--to` reader is named, its read access being there."""
    from hotlink.ctl.commands.sessions import no_reader_yet

    s = pb.Session(path="alice@example.org/_mpc/0_to_1", to=to, fallback_mode=mode)
    text = no_reader_yet(s)
    assert all(x in text for x in says), text
    assert ("by file" in text) == (mode != pb.FALLBACK_MODE_OFF)
    assert ("READER" in text) == (not to)
