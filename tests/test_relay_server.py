"""Unit tests of the websockets adapter's pieces that need no socket."""

from __future__ import annotations

import asyncio
from typing import Any

from hotlink.relay.cli import build_parser, parse_size
from hotlink.relay.server import Peer, format_url, negotiate


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


class FakeWS:
    """Stands in for a ServerConnection whose client reads slowly."""

    def __init__(self) -> None:
        self.sent: list[bytes | str] = []
        self.gate = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def send(self, data: bytes | str) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_queue_overflow_closes_instead_of_growing() -> None:
    async def main() -> None:
        ws = FakeWS()
        peer = Peer(1, ws, "bob@example.org", "msgpack", max_queue_bytes=1000)  # type: ignore[arg-type]
        task = asyncio.create_task(peer.writer())
        for _ in range(5):
            peer.push(b"x" * 100)
        await asyncio.sleep(0)
        assert not peer.overflowed
        for _ in range(20):
            peer.push(b"x" * 100)
        assert peer.overflowed and len(peer.queue) == 0
        ws.gate.set()
        await asyncio.wait_for(task, 5)
        assert ws.closed == (1008, "send queue overflow")
        assert len(ws.sent) <= 1  # at most the frame already being written

    asyncio.run(main())


def test_writer_preserves_order() -> None:
    async def main() -> None:
        ws: Any = FakeWS()
        ws.gate.set()
        peer = Peer(1, ws, "bob@example.org", "msgpack", max_queue_bytes=1 << 20)
        task = asyncio.create_task(peer.writer())
        for i in range(100):
            peer.push(str(i))
            if i % 7 == 0:
                await asyncio.sleep(0)
        while len(ws.sent) < 100:
            await asyncio.sleep(0)
        assert ws.sent == [str(i) for i in range(100)]
        assert peer.queued_bytes == 0
        task.cancel()

    asyncio.run(main())
