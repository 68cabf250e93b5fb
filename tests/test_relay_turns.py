"""The relay's turns: a connection that floods it with costly messages (fallback file
writes) is read again only at the next event-loop iteration once its turn is used up,
so the other connections are served meanwhile, and its own messages keep their order.

In-process relay on loopback sockets. The measure is an order, not a time: bob's
socket carries both the copies of alice's files and the answer to his own request, in
the order the relay handled them, so the number of copies before his answer is how
many of alice's files the relay handled before it got to him.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hotlink.relay import server as relay_server
from hotlink.relay.auth import mint_token
from hotlink.relay.server import RelayServer
from hotlink.wire.envelope import HDR_ENCODINGS, decode, encode
from hotlink.wire.extensions import ALL, HDR_EXTENSIONS, header_value
from hotlink.wire.messages import Ack, FileSync, FileWrite, System
from websockets.asyncio.client import ClientConnection, connect

A = "alice@example.org"
B = "bob@example.org"
FOLDER = f"{A}/_mpc/0_to_1"
ACL = f'rules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]\n'
FILES = 300
SIZE = 8 * 1024


async def _client(srv: RelayServer, url: str, user: str) -> ClientConnection:
    headers = {
        "Authorization": f"Bearer {mint_token(srv.secret, user)}",
        HDR_ENCODINGS: "msgpack",
        HDR_EXTENSIONS: header_value(ALL),
    }
    ws = await connect(url, additional_headers=headers, max_size=None)
    assert isinstance(decode(await ws.recv()).msg, System)
    return ws


async def _flood(tmp_path: Path) -> tuple[int, list[str], int]:
    """Alice sends FILES file writes at once; once the relay is busy with them, bob asks
    for a catch-up page. Returns how many of alice's files bob got before his answer,
    the ids alice's Acks named (in order) and how many files bob got in all."""
    data = tmp_path / "data"
    (data / "datasites" / A).mkdir(parents=True)
    (data / "datasites" / A / "syft.pub.yaml").write_text(ACL)
    srv = RelayServer(data, port=0)
    host, port = await srv.start()
    url = f"ws://{host}:{port}/api/v1/events"
    alice = await _client(srv, url, A)
    bob = await _client(srv, url, B)
    try:
        content = b"x" * SIZE
        burst = [
            encode(FileWrite(f"{FOLDER}/{i:08d}.request", "", SIZE, content), f"w{i}")
            for i in range(FILES)
        ]
        await alice.send(burst[0])
        first = decode(await alice.recv()).msg
        assert first == Ack("w0")
        for frame in burst[1:]:
            await alice.send(frame)
        acks = ["w0"]
        acks.append(decode(await alice.recv()).msg.original_id)  # the relay is at it
        await bob.send(encode(FileSync(f"{B}/nothing", 0, ""), "sync"))
        before = total = 0
        answered = False
        while total < FILES or not answered:
            msg = decode(await asyncio.wait_for(bob.recv(), 30)).msg
            if isinstance(msg, FileSync):
                answered = True
            elif isinstance(msg, FileWrite):
                total += 1
                before += not answered
        while len(acks) < FILES:
            acks.append(decode(await asyncio.wait_for(alice.recv(), 30)).msg.original_id)
        return before, acks, total
    finally:
        await alice.close()
        await bob.close()
        await srv.close()


@pytest.mark.parametrize("turn", ["short", "unbounded"])
def test_a_flood_of_file_writes_takes_turns_with_other_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turn: str
) -> None:
    # "short": every costly message ends the connection's turn; "unbounded" shows what
    # the same flood does without turns, so the test proves it measures something.
    monkeypatch.setattr(relay_server, "SLICE", 0.0 if turn == "short" else 1e9)
    before, acks, total = asyncio.run(_flood(tmp_path))
    assert acks == [f"w{i}" for i in range(FILES)]  # every file, in the order sent
    assert total == FILES
    stored = sorted((tmp_path / "data" / "datasites" / A / "_mpc" / "0_to_1").iterdir())
    assert [p.name for p in stored] == [f"{i:08d}.request" for i in range(FILES)]
    if turn == "short":
        assert before < 20, f"bob waited for {before} of alice's files"
    else:
        assert before >= 20, f"without turns bob still waited for only {before} files"
