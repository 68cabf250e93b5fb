"""pytest fixtures that run REAL agent processes (`python -m hotlink.agent.cli`) against
the real relay fixture (`fixtures_relay.relay`).

- `agent_factory(email, acl_read=["*"], args=[...], env={...})` starts an agent in
  `tmp_path/<email>` after writing its own `syft.pub.yaml` (read for `acl_read`), waits
  until gRPC health answers SERVING and its link is UP, and returns an `AgentProcess`.
  All agents are stopped at teardown. Agents run with `--direct off` unless `args`
  says `--direct ...` (the direct path's tests pass `--direct auto`).
- `AgentProcess`: `.stub` (sync `HotlinkAgentStub`), `.health()`, `.status()`,
  `.open(path, **fields)`, `.session(path)`, `.wait_session(path, pred)`, `.stop()`,
  `.kill()`, `.start()`, `.log_text()`, `.session_dir(full_path)`.
- `AppClient`: a tiny blocking app-side HLNK client (UNIX or TCP endpoint), built on
  `hotlink.wire.frames` only, so these tests do not depend on `hotlink.ctl`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fixtures_relay import terminate
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hotlink.ctl.agent_client import CHANNEL_OPTIONS
from hotlink.v1 import agent_pb2 as pb
from hotlink.v1 import agent_pb2_grpc as pb_grpc
from hotlink.wire.frames import Frame, FrameDecoder, encode_frame

START_TIMEOUT = 20.0


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def acl_yaml(read: list[str], write: list[str] | None = None) -> str:
    def lst(xs: list[str]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    return (
        "rules:\n"
        '  - pattern: "**"\n'
        "    access:\n"
        "      admin: []\n"
        f"      write: {lst(write or [])}\n"
        f"      read: {lst(read)}\n"
    )


class AgentProcess:
    def __init__(
        self,
        root: Path,
        email: str,
        relay: Any,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.env = {**os.environ, **(env or {})}
        self.root = root
        self.email = email
        self.relay = relay
        self.args = list(args or [])
        if not any(a == "--direct" or a.startswith("--direct=") for a in self.args):
            # the suite's e2e tests are about the relay and file paths (their counters,
            # relay kills); the direct path's own tests ask for it (tests/test_direct_*)
            self.args += ["--direct", "off"]
        self.control = root / ".hotlink" / "agent.sock"
        self.log_path = root.parent / f"agent-{email}.log"
        self.token_file = root.parent / f"{email}.token"
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self.stub: pb_grpc.HotlinkAgentStub

    # ------------------------------------------------------------- life cycle
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hotlink.agent.cli",
            "--server",
            self.relay.url,
            "--email",
            self.email,
            "--token-file",
            str(self.token_file),
            "--root",
            str(self.root),
            "--log-level",
            "DEBUG",
            "--backoff-initial",
            "0.05",
            "--backoff-max",
            "0.5",
            *self.args,
        ]

    def run_to_exit(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the agent in the foreground until it exits (a start-up that must fail),
        with this agent's environment; its output captured."""
        if not self.token_file.exists():
            self.relay.write_token(self.email, self.token_file)
        return subprocess.run(
            self.command(), capture_output=True, text=True, timeout=timeout, env=self.env
        )

    def start(self, wait_link: bool = True) -> AgentProcess:
        if not self.token_file.exists():
            self.relay.write_token(self.email, self.token_file)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                env=self.env,
            )
        finally:
            log.close()
        self._channel = grpc.insecure_channel(f"unix://{self.control}", options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.HotlinkAgentStub(self._channel)
        wait_for(self._serving, START_TIMEOUT, f"agent {self.email} health SERVING")
        if wait_link:
            self.wait_link(pb.LINK_STATE_UP)
        return self

    def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent {self.email} exited:\n{self.log_text()}")
        return self.health() == health_pb2.HealthCheckResponse.SERVING

    def health(self) -> int:
        assert self._channel is not None
        try:
            r = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.RpcError:
            return -1
        return r.status

    def wait_link(self, state: int, timeout: float = 15.0) -> None:
        wait_for(lambda: self.status().link_state == state, timeout, f"{self.email} link {state}")

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def stop(self, timeout: float = 10.0) -> int | None:
        self._close_channel()
        if self.proc is None:
            return None
        return terminate(self.proc, timeout)

    def kill(self) -> None:
        self._close_channel()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---------------------------------------------------------------- control
    def status(self) -> pb.GetStatusResponse:
        return self.stub.GetStatus(pb.GetStatusRequest(), timeout=5)

    def open(self, path: str, **fields: Any) -> pb.Session:
        rpc_timeout = max(15.0, fields.get("timeout_seconds", 0) + 5.0)
        req = pb.OpenSessionRequest(path=path, **fields)
        return self.stub.OpenSession(req, timeout=rpc_timeout).session

    def session(self, path: str) -> pb.Session:
        return self.stub.GetSession(
            pb.GetSessionRequest(session=pb.SessionRef(path=path)), timeout=5
        )

    def wait_session(
        self, path: str, pred: Callable[[pb.Session], bool], timeout: float = 15.0
    ) -> pb.Session:
        box: list[pb.Session] = []

        def check() -> bool:
            try:
                s = self.session(path)
            except grpc.RpcError:
                return False
            box[:] = [s]
            return pred(s)

        wait_for(check, timeout, f"session {path} on {self.email}")
        return box[0]

    def session_dir(self, full_path: str) -> Path:
        return self.root / "datasites" / full_path


class AppClient:
    """Blocking HLNK client for a session directory (resolves stream.sock / stream.tcp)."""

    def __init__(self, session_dir: Path, timeout: float = 10.0) -> None:
        self.sock = self._connect(Path(session_dir), timeout)
        self.sock.settimeout(timeout)
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    @staticmethod
    def _connect(d: Path, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            try:
                tcp = d / "stream.tcp"
                if tcp.exists():
                    host, _, port = tcp.read_text().strip().rpartition(":")
                    host = host.strip("[]")
                    return socket.create_connection((host, int(port)), timeout=timeout)
                marker = d / "stream.sock"
                target = str(marker)
                if marker.is_file():
                    target = marker.read_text().strip()
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(target)
                except OSError:
                    s.close()
                    raise
                return s
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def send(self, payload: bytes, path: str = "", etag: str = "") -> None:
        self.sock.sendall(encode_frame(Frame(payload, 0, path, etag)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> Frame:
        while not self.frames:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("endpoint closed the connection")
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    def recv_n(self, n: int) -> list[Frame]:
        return [self.recv() for _ in range(n)]

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True once the agent closed this connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def agent_factory(tmp_path: Path, relay: Any) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def factory(
        email: str,
        *,
        relay_: Any = None,
        acl_read: list[str] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait_link: bool = True,
    ) -> AgentProcess:
        root = tmp_path / email.split("@")[0]
        ds = root / "datasites" / email
        ds.mkdir(parents=True, exist_ok=True)
        (ds / "syft.pub.yaml").write_text(acl_yaml(acl_read if acl_read is not None else ["*"]))
        a = AgentProcess(root, email, relay_ or relay, args, env)
        started.append(a)
        return a.start(wait_link=wait_link)

    yield factory
    for a in started:
        a.stop()
