"""hotlink.ctl.client: endpoint resolution, HLNK streams against a fake agent endpoint,
control-address handling and gRPC error translation. No agent process needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from hotlink.ctl.client import (
    Endpoint,
    Stream,
    control_target,
    parse_hostport,
    resolve_endpoint,
    translate_rpc_error,
)
from hotlink.ctl.errors import (
    AgentUnreachable,
    Conflict,
    EndpointNotFound,
    ExitCode,
    NotFound,
    PermissionDenied,
    StreamClosed,
    Unavailable,
    UsageError,
)
from hotlink.ctl.stats import parse_size, percentile, ratios, summarize
from hotlink.wire.frames import Frame, FrameDecoder, encode_frame

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """UNIX socket paths must stay under ~108 bytes: pytest's tmp_path can be longer."""
    with tempfile.TemporaryDirectory(prefix="hlctl-", dir="/tmp") as d:
        yield Path(d)


def _bind_unix(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    return s


# --------------------------------------------------------------------------- resolution


def test_resolve_socket(short_tmp: Path) -> None:
    s = _bind_unix(short_tmp / "stream.sock")
    try:
        ep = resolve_endpoint(short_tmp)
    finally:
        s.close()
    assert ep == Endpoint("unix", path=str(short_tmp / "stream.sock"))


def test_resolve_file_holding_socket_path(short_tmp: Path) -> None:
    real = short_tmp / "abc123.sock"
    s = _bind_unix(real)
    sess = short_tmp / "a" / ("x" * 120)
    sess.mkdir(parents=True)
    (sess / "stream.sock").write_text(str(real) + "\n")
    try:
        ep = resolve_endpoint(sess)
    finally:
        s.close()
    assert ep.kind == "unix"
    assert ep.path == str(real)


def test_resolve_tcp(tmp_path: Path) -> None:
    (tmp_path / "stream.tcp").write_text("127.0.0.1:45678\n")
    assert resolve_endpoint(tmp_path) == Endpoint("tcp", host="127.0.0.1", port=45678)
    (tmp_path / "stream.tcp").write_text("[::1]:9")
    assert resolve_endpoint(tmp_path) == Endpoint("tcp", host="::1", port=9)


def test_resolve_windows_pipe_marker(tmp_path: Path) -> None:
    """`stream.pipe` holds the named pipe's name (Windows; the connect is untested)."""
    name = "\\\\.\\pipe\\hotlink-" + "a" * 40
    (tmp_path / "stream.pipe").write_text(name)
    ep = resolve_endpoint(tmp_path)
    assert (ep.kind, ep.path, str(ep)) == ("pipe", name, name)


def test_resolve_path_that_is_the_socket(short_tmp: Path) -> None:
    s = _bind_unix(short_tmp / "x.sock")
    try:
        assert resolve_endpoint(short_tmp / "x.sock").path == str(short_tmp / "x.sock")
    finally:
        s.close()


def test_resolve_missing(tmp_path: Path) -> None:
    with pytest.raises(EndpointNotFound) as ei:
        resolve_endpoint(tmp_path)
    assert ei.value.exit_code == ExitCode.NOT_FOUND
    with pytest.raises(EndpointNotFound):
        resolve_endpoint(tmp_path / "nope")
    (tmp_path / "stream.tcp").write_text("garbage")
    with pytest.raises(EndpointNotFound):
        resolve_endpoint(tmp_path)


def test_parse_hostport_and_control_target() -> None:
    assert parse_hostport("localhost:1") == ("localhost", 1)
    with pytest.raises(ValueError):
        parse_hostport("nocolon")
    assert control_target("unix:/x/agent.sock") == "unix:/x/agent.sock"
    assert control_target("/x/agent.sock") == "unix:/x/agent.sock"
    assert control_target("rel/agent.sock") == "unix:" + os.path.abspath("rel/agent.sock")
    assert control_target("127.0.0.1:7000") == "127.0.0.1:7000"


# --------------------------------------------------------------------------- streams


class FakeAgentEndpoint:
    """Echoes every HLNK frame back with an agent-style seq and `<seq>.request` name."""

    def __init__(self) -> None:
        self.seq = 0
        self.received: list[Frame] = []
        self.nodelay: list[int] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            self.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        dec = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for f in dec.feed(data):
                    self.received.append(f)
                    self.seq += 1
                    name = f.path or f"{self.seq:08d}.request"
                    writer.write(encode_frame(Frame(f.payload, self.seq, name, f.etag)))
                await writer.drain()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def unix_endpoint(d: Path) -> AsyncIterator[FakeAgentEndpoint]:
    fake = FakeAgentEndpoint()
    server = await asyncio.start_unix_server(fake.handle, str(d / "stream.sock"))
    try:
        yield fake
    finally:
        server.close()


async def test_stream_roundtrip_unix(short_tmp: Path) -> None:
    async with unix_endpoint(short_tmp) as fake:
        s = await Stream.connect(short_tmp, timeout=2)
        await s.send(b"hello")
        await s.send(b"x" * 200_000, path="big.request", etag="e1")
        await s.send(b"hello")  # identical payloads are two frames, never deduped
        f1, f2, f3 = await s.recv(), await s.recv(), await s.recv()
        assert (f1.seq, f1.path, f1.payload) == (1, "00000001.request", b"hello")
        assert (f2.seq, f2.path, f2.etag, len(f2.payload)) == (2, "big.request", "e1", 200_000)
        assert (f3.seq, f3.payload) == (3, b"hello")
        assert [f.seq for f in fake.received] == [0, 0, 0]  # the app's seq is 0
        await s.close()
        assert s.closed
        with pytest.raises(StreamClosed):
            await s.send(b"late")


async def test_stream_async_iteration_ends_at_eof(short_tmp: Path) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in range(1, 4):
            writer.write(encode_frame(Frame(f"m{i}".encode(), i, f"{i:08d}.request")))
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(short_tmp / "stream.sock"))
    try:
        s = await Stream.connect(short_tmp, timeout=2)
        got = [f.payload async for f in s]
        assert got == [b"m1", b"m2", b"m3"]
        with pytest.raises(StreamClosed):
            await s.recv()
        await s.close()
    finally:
        server.close()


async def test_stream_bad_frame_raises(short_tmp: Path) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOPE" + b"\0" * 30)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_unix_server(serve, str(short_tmp / "stream.sock"))
    try:
        s = await Stream.connect(short_tmp, timeout=2)
        with pytest.raises(StreamClosed, match="magic"):
            await s.recv()
        await s.close()
    finally:
        server.close()


async def test_stream_roundtrip_tcp_sets_nodelay(tmp_path: Path) -> None:
    fake = FakeAgentEndpoint()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "stream.tcp").write_text(f"127.0.0.1:{port}")
    try:
        s = await Stream.connect(tmp_path, timeout=2)
        assert s.endpoint.kind == "tcp"
        sock = s._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await s.send(b"over tcp")
        assert (await s.recv()).payload == b"over tcp"
        await s.close()
    finally:
        server.close()


async def test_connect_waits_for_endpoint(short_tmp: Path) -> None:
    async def later() -> asyncio.AbstractServer:
        await asyncio.sleep(0.2)
        return await asyncio.start_unix_server(
            FakeAgentEndpoint().handle, str(short_tmp / "stream.sock")
        )

    task = asyncio.create_task(later())
    s = await Stream.connect(short_tmp, timeout=5)
    await s.send(b"ok")
    assert (await s.recv()).payload == b"ok"
    await s.close()
    (await task).close()


async def test_connect_times_out_with_hint(short_tmp: Path) -> None:
    with pytest.raises(Unavailable) as ei:
        await Stream.connect(short_tmp, timeout=0.2)
    assert "hotlinkctl open" in ei.value.hint


# --------------------------------------------------------------------------- errors


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "cls", "exit_code"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFound, ExitCode.NOT_FOUND),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied, ExitCode.PERMISSION),
        (grpc.StatusCode.INVALID_ARGUMENT, UsageError, ExitCode.USAGE),
        (grpc.StatusCode.ALREADY_EXISTS, Conflict, ExitCode.CONFLICT),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Unavailable, ExitCode.UNAVAILABLE),
        (grpc.StatusCode.UNAVAILABLE, Unavailable, ExitCode.UNAVAILABLE),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, Unavailable, ExitCode.UNAVAILABLE),
    ],
)
def test_translate_rpc_error(code: grpc.StatusCode, cls: type, exit_code: ExitCode) -> None:
    err = translate_rpc_error(_rpc_error(code, "boom"), "127.0.0.1:1", "open x")
    assert isinstance(err, cls)
    assert err.exit_code == exit_code
    assert "boom" in err.message
    assert err.hint


def test_translate_unreachable_says_how_to_start() -> None:
    err = translate_rpc_error(
        _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
        "unix:/nonexistent/agent.sock",
        "ls",
    )
    assert isinstance(err, AgentUnreachable)
    assert err.exit_code == ExitCode.UNREACHABLE
    assert "/nonexistent/agent.sock" in err.message
    assert "hotlink-agent" in err.hint


# --------------------------------------------------------------------------- stats


def test_percentiles_nearest_rank() -> None:
    s = list(range(1, 101))
    assert percentile(s, 50) == 50
    assert percentile(s, 99) == 99
    assert percentile(s, 100) == 100
    assert percentile([7], 50) == 7
    summ = summarize([3, 1, 2], 1024, 1.0)
    assert (summ.p50_ns, summ.min_ns, summ.max_ns, summ.mean_ns) == (2, 1, 3, 2.0)
    assert summ.mb_per_s == pytest.approx(3 * 1024 / 1e6)
    assert ratios(summ, summarize([1, 1, 1], 1024, 1.0))["p50"] == 2.0


def test_parse_size() -> None:
    assert parse_size("1KB") == 1024
    assert parse_size("100kb") == 100 * 1024
    assert parse_size("1MiB") == 1024 * 1024
    assert parse_size("512") == 512
    with pytest.raises(ValueError):
        parse_size("huge")
    with pytest.raises(ValueError):
        parse_size("4")
