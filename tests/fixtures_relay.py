"""pytest fixtures that run the REAL relay process (`python -m hotlink.relay.cli serve`).

Fixtures:
- `relay`: one relay on a free port with its own data dir, stopped after the test.
- `relay_factory`: `relay_factory(**opts)` starts more relays (e.g. `max_message=4096`);
  all are stopped after the test.

`RelayProcess` offers `.url` (`ws://host:port`), `.events_url`, `.http_url`,
`.data_dir`, `.token(email)`, `.write_token(email, path)`, `.stop()`, `.kill()`,
`.restart()` (same port and data), `.log_text()` and `.wait_for_log(text)`.
`relay_client(relay, email)` is an async context manager giving a connected
`websockets` client that already consumed the relay's `System` greeting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hotlink.relay.auth import load_or_create_secret, mint_token
from hotlink.wire.envelope import (
    EVENTS_PATH,
    HDR_ENCODINGS,
    Envelope,
    decode,
    encode,
    encode_json,
)
from hotlink.wire.extensions import ALL, HDR_EXTENSIONS, header_value
from hotlink.wire.messages import Message, System
from websockets.asyncio.client import ClientConnection, connect

LISTEN_PREFIX = "hotlink-relay listening on "
START_TIMEOUT = 15.0


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class RelayProcess:
    """A relay subprocess; its stderr log goes to `DATA/../relay-<n>.log`."""

    _counter = 0

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message: int | None = None,
        log_level: str = "DEBUG",
        extra_args: list[str] | None = None,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        """`nofile`: the (soft, hard) RLIMIT_NOFILE the relay starts with."""
        self.nofile = nofile
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.max_message = max_message
        self.log_level = log_level
        self.extra_args = list(extra_args or [])
        RelayProcess._counter += 1
        self.log_path = self.data_dir.parent / f"relay-{RelayProcess._counter}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    # --------------------------------------------------------------- life cycle

    def start(self) -> RelayProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("relay already running")
        cmd = [
            sys.executable,
            "-m",
            "hotlink.relay.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data",
            str(self.data_dir),
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]
        if self.max_message is not None:
            cmd += ["--max-message", str(self.max_message)]
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=self._limit if self.nofile else None,
            )
        finally:
            log.close()
        line = self._first_line(self.proc, START_TIMEOUT)
        if not line.startswith(LISTEN_PREFIX):
            self.kill()
            raise RuntimeError(f"relay did not start: {line!r}\n{self.log_text()}")
        self.url = line[len(LISTEN_PREFIX) :].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _limit(self) -> None:
        """In the child, before exec."""
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    @staticmethod
    def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
        q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: q.put(stdout.readline()), daemon=True).start()
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit."""
        if self.proc is None:
            return None
        terminate(self.proc, timeout)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL: the relay vanishes without closing its connections."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self._reap()

    def _reap(self) -> int | None:
        assert self.proc is not None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def restart(self) -> RelayProcess:
        """Stop and start again on the same port with the same data dir."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ helpers

    @property
    def events_url(self) -> str:
        return self.url + EVENTS_PATH

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]

    def token(self, email: str) -> str:
        """A valid token for `email` (minted in-process with the relay's secret)."""
        return mint_token(load_or_create_secret(self.data_dir), email)

    def write_token(self, email: str, path: Path) -> Path:
        """Write a token file (0600) as agents expect it; returns `path`."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token(email) + "\n")
        return path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until `text` appears in the relay's log (it logs asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in relay log:\n{log[-4000:]}")
            time.sleep(0.02)


class RelayClient:
    """A raw WS client for relay tests: send/recv typed messages."""

    def __init__(self, ws: ClientConnection, email: str, encoding: str) -> None:
        self.ws = ws
        self.email = email
        self.encoding = encoding

    async def send(self, msg: Message, id: str | None = None, traceparent: str = "") -> None:
        if self.encoding == "json":
            await self.ws.send(encode_json(msg, id, traceparent))
        else:
            await self.ws.send(encode(msg, id, traceparent))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv_env(self, timeout: float = 10.0) -> Envelope:
        async with asyncio.timeout(timeout):
            return decode(await self.ws.recv())

    async def recv(self, timeout: float = 10.0) -> Message:
        return (await self.recv_env(timeout)).msg

    async def recv_type(self, cls: type, timeout: float = 10.0) -> Any:
        """Next message of type `cls`, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                msg = decode(await self.ws.recv()).msg
                if isinstance(msg, cls):
                    return msg

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def relay_client(
    relay: RelayProcess,
    email: str,
    encoding: str = "msgpack",
    extensions: str | None = header_value(ALL),
    **kwargs: Any,
) -> AsyncIterator[RelayClient]:
    """Connect as `email`, negotiate `encoding` and consume the System greeting. The
    client announces every extension our agent does; `extensions=None` connects like a
    reference client (no `X-Hotlink-Extensions` header)."""
    headers = {"Authorization": f"Bearer {relay.token(email)}", HDR_ENCODINGS: encoding}
    if extensions is not None:
        headers[HDR_EXTENSIONS] = extensions
    async with connect(relay.events_url, additional_headers=headers, **kwargs) as ws:
        client = RelayClient(ws, email, encoding)
        hello = await client.recv()
        assert isinstance(hello, System) and hello.message == "ok", hello
        yield client


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def factory(**opts: Any) -> RelayProcess:
        data = tmp_path / f"relay-data-{len(started)}"
        data.mkdir()
        r = RelayProcess(data, **opts)
        started.append(r)
        return r.start()

    yield factory
    for r in started:
        r.stop()


@pytest.fixture
def relay(relay_factory: Callable[..., RelayProcess]) -> RelayProcess:
    """A running relay on a free port; stopped at teardown."""
    return relay_factory()
