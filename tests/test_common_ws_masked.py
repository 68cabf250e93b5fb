"""`hotlink.common.ws_masked`: client frames written without websockets' serializer.

The bytes must be exactly what `Frame.serialize(mask=True)` writes for the same key
(wire compatibility), every frame must get its own key, and a real websockets server
must read every message (all three length encodings) in order, also when websockets'
own frames (a ping's pong, the close) are interleaved with ours.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hotlink.common import ws_masked
from hotlink.common.websocket import MASK_BIT, binary_header
from hotlink.common.ws_masked import KEYS_PER_REFILL, MaskKeys, send_binary
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode

TIMEOUT = 10.0
SIZES = [0, 1, 125, 126, 127, 1024, 65_535, 65_536, 70_000]


@pytest.mark.parametrize("size", SIZES)
def test_same_bytes_as_websockets(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import websockets.frames as wf

    key = b"\x01\x02\x03\x04"
    data = os.urandom(size)
    monkeypatch.setattr(wf.secrets, "token_bytes", lambda n: key)
    expected = Frame(Opcode.BINARY, data).serialize(mask=True)

    class _T:
        out = b""

        def write(self, b: bytes) -> None:
            self.out += b

        def writelines(self, parts: tuple[bytes, ...]) -> None:
            self.out += b"".join(parts)

    class _P:
        _state = ws_masked.State.OPEN
        writes: list[bytes] = []
        extensions: list[object] = []
        expect_continuation_frame = False

    class _C:
        def __init__(self) -> None:
            self.protocol = _P()
            self.transport = _T()

    # every key from the pool is `key` (MaskKeys may be compiled: no subclassing it)
    monkeypatch.setattr(os, "urandom", lambda n: key * (n // 4))
    keys = MaskKeys()
    conn = _C()
    send_binary(conn, data, keys)
    assert conn.transport.out == expected
    assert binary_header(size, MASK_BIT) + key == expected[: len(expected) - size]


def test_keys_are_fresh_and_refilled() -> None:
    keys = MaskKeys()
    got = [keys.next() for _ in range(3 * KEYS_PER_REFILL + 5)]
    assert all(len(k) == 4 for k in got)
    # 4-byte random keys: a handful of repeats at most, never a constant or a cycle
    assert len(set(got)) > len(got) - 5
    assert got[:KEYS_PER_REFILL] != got[KEYS_PER_REFILL : 2 * KEYS_PER_REFILL]


def test_a_real_server_reads_every_message_in_order() -> None:
    asyncio.run(_real_server())


async def _real_server() -> None:
    got: list[bytes] = []
    expected = [os.urandom(n) for n in SIZES] * 3
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            assert isinstance(msg, bytes)
            got.append(msg)
            if len(got) == len(expected):
                done.set()
            if len(got) == len(SIZES):
                await ws.ping()  # websockets' own frames (our pong) among ours

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
            assert isinstance(ws, ClientConnection)
            keys = MaskKeys()
            for i, msg in enumerate(expected):
                send_binary(ws, msg, keys)
                if i % 4 == 0:
                    await asyncio.sleep(0)  # let the ping in between our frames
            await asyncio.wait_for(done.wait(), TIMEOUT)
            await ws.close()
            with pytest.raises(InvalidState):
                send_binary(ws, b"after close", keys)  # websockets' own error
    assert got == expected
