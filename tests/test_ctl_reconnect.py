"""ReconnectingStream against a fake agent endpoint that goes away and comes back
(no agent process: the agent side is a plain UNIX server speaking HLNK)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hotlink.ctl.errors import AgentUnreachable, NotFound, StreamClosed
from hotlink.ctl.reconnect import ReconnectingStream, session_still_open
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import Frame, encode_frame

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hlrc-", dir="/tmp") as d:
        yield Path(d)


class _Agent:
    """An 'agent' endpoint that writes `frames` to each client, then closes it."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.served = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def handle(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for f in self.frames:
            w.write(encode_frame(f))
        await w.drain()
        w.close()
        self.served.set()

    async def stop(self, sock: Path) -> None:
        """Go away like a stopped agent: after serving, listener closed, socket gone."""
        await asyncio.wait_for(self.served.wait(), 30)
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


async def _serve_once(sock: Path, frames: list[Frame]) -> _Agent:
    agent = _Agent(frames)
    agent.server = await asyncio.start_unix_server(agent.handle, str(sock))
    return agent


async def test_recv_carries_on_across_a_restart(short_tmp: Path) -> None:
    sock = short_tmp / "stream.sock"
    first = await _serve_once(sock, [Frame(b"one", 1)])
    seen: list[object] = []
    s = await ReconnectingStream.connect(short_tmp, 5, on_reconnect=seen.append)
    assert (await s.recv()).payload == b"one"
    await first.stop(sock)
    # the "restarted agent" comes back on the same endpoint while recv() waits
    recv = asyncio.ensure_future(s.recv())
    await asyncio.sleep(0)
    second = await _serve_once(sock, [Frame(b"two", 2)])
    try:
        f = await asyncio.wait_for(recv, 30)
        assert (f.seq, f.payload) == (2, b"two")
        assert s.reconnects == 1 and len(seen) == 1
    finally:
        await s.close()
        await second.stop(sock)


async def test_a_closed_session_ends_the_stream(short_tmp: Path) -> None:
    sock = short_tmp / "stream.sock"
    srv = await _serve_once(sock, [])
    asked: list[int] = []

    async def still_open() -> bool:
        asked.append(1)
        return False

    s = await ReconnectingStream.connect(short_tmp, 5, still_open=still_open)
    try:
        with pytest.raises(StreamClosed, match="was closed"):
            await asyncio.wait_for(s.recv(), 30)
        assert asked
    finally:
        await s.close()
        await srv.stop(sock)


async def test_no_reconnect_and_retry_for(short_tmp: Path) -> None:
    sock = short_tmp / "stream.sock"
    srv = await _serve_once(sock, [])
    s = await ReconnectingStream.connect(short_tmp, 5, retry_for=0.0)
    with pytest.raises(StreamClosed, match="the agent closed the stream"):
        await asyncio.wait_for(s.recv(), 30)
    await s.close()
    await srv.stop(sock)
    # nobody serves again: a bounded wait ends with a clear error, not a hang
    srv = await _serve_once(sock, [])
    s = await ReconnectingStream.connect(short_tmp, 5, retry_for=0.2)
    await srv.stop(sock)
    with pytest.raises(StreamClosed, match="did not serve"):
        await asyncio.wait_for(s.recv(), 30)
    await s.close()


class _Control:
    """The two control calls `session_still_open` makes, answering as told."""

    def __init__(self, session: pb.Session | Exception, health: str | Exception) -> None:
        self.session, self.status = session, health

    async def get_session(self, ref: str) -> pb.Session:
        if isinstance(self.session, Exception):
            raise self.session
        return self.session

    async def health(self, timeout: float = 2.0) -> str:
        if isinstance(self.status, Exception):
            raise self.status
        return self.status


@pytest.mark.parametrize(
    ("session", "health", "expected"),
    [
        (pb.Session(state=pb.SESSION_STATE_OPEN), "SERVING", True),
        (NotFound("no such session"), "SERVING", False),  # closed for good
        (pb.Session(state=pb.SESSION_STATE_CLOSED), "SERVING", False),
        (pb.Session(state=pb.SESSION_STATE_REJECTED), "SERVING", False),
        # a stopping or starting agent: its "not found" is not the last word
        (NotFound("no such session"), "NOT_SERVING", True),
        (AgentUnreachable("no agent"), AgentUnreachable("no agent"), True),
        (NotFound("no such session"), AgentUnreachable("gone meanwhile"), True),
    ],
)
async def test_session_still_open(
    session: pb.Session | Exception, health: str | Exception, expected: bool
) -> None:
    check = session_still_open(_Control(session, health), "a@x.org/_mpc/s")
    assert await check() is expected
