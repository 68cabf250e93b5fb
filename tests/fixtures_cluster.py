"""A real `nats-server` (JetStream on, temp store) and relay nodes joined through it.

The tests skip, saying why, only when the `nats-server` binary is missing; `.ci/run`
installs the Debian package, so in CI they run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_relay import RelayProcess, terminate
from hotlink.common.ports import free_port

NATS_BIN = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
)
needs_nats = pytest.mark.skipif(
    NATS_BIN is None,
    reason="nats-server not installed (apt-get install nats-server; .ci/run does it)",
)


class NatsServer:
    """nats-server on a fixed loopback port (kept across restarts), JetStream on."""

    def __init__(self, workdir: Path, port: int | None = None, jetstream: bool = True) -> None:
        self.port = port or free_port()
        self.jetstream = jetstream
        self.store = workdir / "nats-js"
        self.log_path = workdir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        assert NATS_BIN is not None
        self.store.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                [NATS_BIN, "-a", "127.0.0.1", "-p", str(self.port)]
                + (["-js", "-sd", str(self.store)] if self.jetstream else []),
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited:\n{self.log_path.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not listen in time")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)  # type: ignore[arg-type]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Cluster:
    """nats-server plus relay nodes `node-0..` sharing one data directory."""

    def __init__(self, tmp_path: Path, nodes: int, extra_args: list[str] | None = None) -> None:
        self.nats = NatsServer(tmp_path)
        self.data = tmp_path / "relay-data"
        self.data.mkdir()
        self.relays = [
            RelayProcess(
                self.data,
                extra_args=[
                    "--nats",
                    self.nats.url,
                    "--node-id",
                    f"node-{i}",
                    *(extra_args or []),
                ],
            )
            for i in range(nodes)
        ]

    def start(self) -> Cluster:
        self.nats.start()
        for r in self.relays:
            r.start()
        self.wait_joined()
        return self

    def wait_joined(self, timeout: float = 20.0) -> None:
        """Every running node has seen every other running node join."""
        running = [i for i, r in enumerate(self.relays) if r.running]
        deadline = time.monotonic() + timeout
        for i in running:
            for j in running:
                if i == j:
                    continue
                want = f"cluster: node node-{j} joined"
                while want not in self.relays[i].log_text():
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"node-{i} never saw node-{j}:\n{self.relays[i].log_text()[-3000:]}"
                        )
                    time.sleep(0.05)

    def health(self, i: int) -> tuple[int, str]:
        """(status, body); (0, why) when node `i` did not answer.

        A node that takes a flood of fallback-file writes can leave /healthz waiting
        for more than 5 s on a busy machine: its event loop writes the files first.
        That is "not healthy yet" to the `wait_for` loops of the tests, whose own
        deadline still bounds the wait. Before, it raised and failed the test at once.
        """
        try:
            with urllib.request.urlopen(self.relays[i].http_url + "/healthz", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, OSError) as e:  # TimeoutError, reset, refused
            return 0, f"no answer from node {i}: {e}"

    def via(self, first: int) -> Any:
        """What `AgentProcess` needs (`url`, `write_token`): every node's URL, node
        `first` first (the agent tries them in order)."""
        n = len(self.relays)
        return Via(self, ",".join(self.relays[(first + k) % n].url for k in range(n)))

    def write_token(self, email: str, path: Path) -> Path:
        return self.relays[0].write_token(email, path)

    def stop(self) -> None:
        for r in self.relays:
            r.stop()
        self.nats.stop()


class Via:
    def __init__(self, cluster: Cluster, url: str) -> None:
        self.cluster = cluster
        self.url = url

    def write_token(self, email: str, path: Path) -> Path:
        return self.cluster.write_token(email, path)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def factory(nodes: int = 2, extra_args: list[str] | None = None) -> Cluster:
        c = Cluster(tmp_path, nodes, extra_args)
        made.append(c)
        return c.start()

    yield factory
    for c in made:
        c.stop()
