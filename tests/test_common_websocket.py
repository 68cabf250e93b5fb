"""`hotlink.common.websocket`: the `process_event` override still takes effect.

It overrides a private websockets method, so a websockets upgrade could silently stop
calling it; then data messages would pile up in websockets' receive queue and the
relay, the agent and the benchmark floor would stop receiving. These tests fail loudly
instead: over a real loopback socket, every data message must reach the handler.
"""

from __future__ import annotations

import asyncio

from hotlink.common.websocket import TESTED_MAJORS, DirectMessages, binary_header
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.version import version as websockets_version

TIMEOUT = 10.0


class _Server(DirectMessages, ServerConnection):
    pass


class _Client(DirectMessages, ClientConnection):
    pass


def test_installed_websockets_is_a_tested_version() -> None:
    assert int(websockets_version.split(".")[0]) in TESTED_MAJORS, websockets_version


def test_binary_header() -> None:
    assert binary_header(5) == b"\x82\x05"
    assert binary_header(300) == b"\x82\x7e\x01\x2c"
    assert binary_header(1 << 16) == b"\x82\x7f" + (1 << 16).to_bytes(8, "big")


def test_data_messages_reach_the_handler() -> None:
    asyncio.run(_data_messages_reach_the_handler())


def test_messages_before_set_handler_are_kept() -> None:
    asyncio.run(_messages_before_set_handler_are_kept())


async def _data_messages_reach_the_handler() -> None:
    got: list[bytes | str] = []
    done = asyncio.Event()
    expected = [b"one", "two", b"frag-mented", b"x" * 70_000]
    server_side: list[_Server] = []

    def on_message(msg: bytes | str) -> None:
        got.append(msg)
        if len(got) == len(expected):
            done.set()

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, _Server)
        server_side.append(ws)
        ws.set_handler(on_message)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=_Server) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", create_connection=_Client) as ws:
            replies: list[bytes | str] = []
            ws.set_handler(replies.append)
            await ws.send(b"one")
            await ws.send("two")
            await ws.send([b"frag-", b"mented"])  # a fragmented message: joined once
            await ws.send(b"x" * 70_000)
            await asyncio.wait_for(done.wait(), TIMEOUT)
            assert got == expected
            # Control frames still go through websockets: a ping gets its pong.
            await asyncio.wait_for(await ws.ping(), TIMEOUT)
            # The other direction, through the client-side override.
            await server_side[0].send(b"back")
            async with asyncio.timeout(TIMEOUT):
                while not replies:
                    await asyncio.sleep(0.01)
            assert replies == [b"back"]


async def _messages_before_set_handler_are_kept() -> None:
    early: list[bytes | str] = []
    ready = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, _Server)
        await asyncio.wait_for(ready.wait(), TIMEOUT)
        ws.set_handler(early.append)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=_Server) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.send(b"early")
            await asyncio.wait_for(await ws.ping(), TIMEOUT)  # "early" has arrived
            ready.set()
            async with asyncio.timeout(TIMEOUT):
                while not early:
                    await asyncio.sleep(0.01)
    assert early == [b"early"]
