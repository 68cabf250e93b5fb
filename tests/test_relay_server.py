"""Unit tests of the websockets adapter's pieces that need no socket."""

from __future__ import annotations

import asyncio
from typing import Any

from hotlink.common.websocket import binary_header
from hotlink.relay.cli import build_parser, parse_size
from hotlink.relay.peer import Peer
from hotlink.relay.server import format_url, negotiate
from websockets.protocol import State


def test_negotiate() -> None:
    assert negotiate(["msgpack,json"]) == "msgpack"
    assert negotiate(["json, msgpack"]) == "json"
    assert negotiate(["cbor, MsgPack;q=1"]) == "msgpack"
    assert negotiate([]) == "json"  # legacy clients do not negotiate
    assert negotiate(["cbor"]) == "json"


def test_format_url() -> None:
    assert format_url("127.0.0.1", 80) == "ws://127.0.0.1:80"
    assert format_url("::1", 80) == "ws://[::1]:80"


def test_cli_parses_sizes() -> None:
    assert parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("4096") == 4096
    assert parse_size("512k") == 512 * 1024
    args = build_parser().parse_args(["serve", "--port", "0", "--data", "d"])
    assert args.max_message == 16 * 1024 * 1024 and args.host == "127.0.0.1"


class FakeProtocol:
    def __init__(self) -> None:
        self.state = State.OPEN
        self.extensions: list[Any] = []
        self.writes: list[bytes] = []
        self.out: list[bytes | str] = []

    def send_binary(self, data: bytes) -> None:
        self.out.append(data)

    def send_text(self, data: bytes) -> None:
        self.out.append(data.decode())


class FakeWS:
    """Stands in for a RelayConnection whose client reads slowly: `paused` is the
    transport's flow control, `resume()` what `resume_writing` does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.protocol = FakeProtocol()
        self.sent: list[bytes | str] = []
        self.paused = False
        self.closed: tuple[int, str] | None = None
        self.on_resume: Any = None

    def send_data(self) -> None:
        self.sent += self.protocol.out
        self.protocol.out = []

    @property
    def transport(self) -> FakeWS:
        return self

    def writelines(self, parts: tuple[bytes, bytes]) -> None:
        """Binary messages are written as (frame header, message) without a copy."""
        header, data = parts
        assert header == binary_header(len(data))
        self.sent.append(data)

    def resume(self) -> None:
        self.paused = False
        if self.on_resume is not None:
            self.on_resume()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_queue_overflow_closes_instead_of_growing() -> None:
    async def main() -> None:
        ws: Any = FakeWS(asyncio.get_running_loop())
        peer = Peer(1, ws, "bob@example.org", "msgpack", max_queue_bytes=1000)
        ws.on_resume = peer.flush
        peer.push(b"x" * 100)  # written at once
        assert ws.sent == [b"x" * 100] and not peer.queue
        ws.paused = True  # the client stopped reading: the transport buffer is full
        for _ in range(5):
            peer.push(b"x" * 100)
        assert not peer.overflowed and len(peer.queue) == 5
        for _ in range(20):
            peer.push(b"x" * 100)
        assert peer.overflowed and len(peer.queue) == 0
        await asyncio.sleep(0)
        assert ws.closed == (1008, "send queue overflow")
        ws.resume()
        peer.push(b"late")
        assert ws.sent == [b"x" * 100]  # nothing after the overflow

    asyncio.run(main())


def test_writes_are_synchronous_and_keep_order_under_backpressure() -> None:
    async def main() -> None:
        ws: Any = FakeWS(asyncio.get_running_loop())
        peer = Peer(1, ws, "bob@example.org", "msgpack", max_queue_bytes=1 << 20)
        ws.on_resume = peer.flush
        for i in range(100):
            if i % 7 == 0:
                ws.paused = True
            if i % 7 == 3:
                ws.resume()
            peer.push(str(i) if i % 2 else str(i).encode())
        ws.resume()
        assert [x if isinstance(x, str) else x.decode() for x in ws.sent] == [
            str(i) for i in range(100)
        ]
        assert all(isinstance(x, str) == bool(i % 2) for i, x in enumerate(ws.sent))
        assert peer.queued_bytes == 0 and not peer.queue

    asyncio.run(main())


def test_closing_connection_drops_writes() -> None:
    async def main() -> None:
        ws: Any = FakeWS(asyncio.get_running_loop())
        peer = Peer(1, ws, "bob@example.org", "msgpack", max_queue_bytes=1 << 20)
        ws.protocol.state = State.CLOSING
        peer.push(b"x")
        assert ws.sent == [] and not peer.queue

    asyncio.run(main())


def test_binary_header_matches_websockets() -> None:
    from websockets.frames import Frame, Opcode

    for n in (0, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 20):
        wire = Frame(Opcode.BINARY, b"x" * n).serialize(mask=False)
        assert wire == binary_header(n) + b"x" * n
