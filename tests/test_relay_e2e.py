"""End-to-end tests: the real relay process and real `websockets` clients."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import pytest
from fixtures_relay import RelayClient, RelayProcess, relay_client
from hotlink.wire.envelope import HDR_ENCODING, HDR_ENCODINGS, PREFIX
from hotlink.wire.messages import (
    REASON_PERMISSION_DENIED,
    REASON_READER_GONE,
    REASON_SENDER_GONE,
    REASON_SESSION_IN_USE,
    REASON_UNKNOWN_SESSION,
    Ack,
    Error,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkReject,
    Nack,
    System,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

A = "alice@example.org"
B = "bob@example.org"
C = "carol@example.org"
S = "stranger@example.org"
PATH = f"{A}/_mpc/0_to_1"
READERS_ACL = f'rules: [{{pattern: "**", access: {{read: ["{B}", "{C}"]}}}}]'


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro_fn())


async def set_acl(owner: RelayClient, folder: str, text: str) -> None:
    await owner.send(FileWrite(f"{folder}/syft.pub.yaml", content=text.encode()), id="acl")
    assert await owner.recv_type(Ack) == Ack("acl")


async def alive(c: RelayClient) -> None:
    """The connection still works: a write in its own datasite is acked."""
    await c.send(FileWrite(f"{c.email}/ping", content=b"p"), id="ping")
    assert await c.recv_type(Ack) == Ack("ping")


async def open_session(
    sender: RelayClient, sid: str = "s1", path: str = PATH, to: str = ""
) -> None:
    await sender.send(HotlinkOpen(sid, path, to=to), id=f"open-{sid}")
    assert await sender.recv() == Ack(f"open-{sid}")


async def accept(reader: RelayClient, sender: RelayClient, sid: str = "s1") -> None:
    await reader.send(HotlinkAccept(sid), id=f"acc-{sid}")
    assert await reader.recv() == Ack(f"acc-{sid}")
    assert await sender.recv() == HotlinkAccept(sid, frm=reader.email)


# --------------------------------------------------------------------------- HTTP


def test_healthz_and_404(relay: RelayProcess) -> None:
    with urllib.request.urlopen(relay.http_url + "/healthz", timeout=5) as r:
        assert r.status == 200 and r.read().strip() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(relay.http_url + "/nope", timeout=5)
    assert ei.value.code == 404
    ei.value.close()  # an open keep-alive connection holds up the relay's shutdown 10 s


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope.nope"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ],
    ids=["missing", "bad", "not-bearer"],
)
def test_auth_refused_401(relay: RelayProcess, headers: dict[str, str]) -> None:
    async def main() -> None:
        with pytest.raises(InvalidStatus) as ei:
            async with connect(relay.events_url, additional_headers=headers):
                pass
        assert ei.value.response.status_code == 401

    run(main)


def test_token_from_other_relay_refused(
    relay: RelayProcess, relay_factory: Callable[..., RelayProcess]
) -> None:
    other = relay_factory()

    async def main() -> None:
        hdr = {"Authorization": f"Bearer {other.token(A)}"}
        with pytest.raises(InvalidStatus) as ei:
            async with connect(relay.events_url, additional_headers=hdr):
                pass
        assert ei.value.response.status_code == 401

    run(main)


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_auth_accepted_and_encoding(relay: RelayProcess, encoding: str) -> None:
    async def main() -> None:
        async with relay_client(relay, A, encoding) as c:
            assert c.ws.response is not None
            assert c.ws.response.headers[HDR_ENCODING] == encoding
            await c.send(FileWrite(f"{A}/f", content=b"x"), id="w1")
            raw = await asyncio.wait_for(c.ws.recv(), 10)
            assert isinstance(raw, str if encoding == "json" else bytes)

    run(main)


def test_greeting_is_system_ok(relay: RelayProcess) -> None:
    async def main() -> None:
        hdr = {"Authorization": f"Bearer {relay.token(A)}", HDR_ENCODINGS: "msgpack, json"}
        async with connect(relay.events_url, additional_headers=hdr) as ws:
            c = RelayClient(ws, A, "msgpack")
            msg = await c.recv()
            assert isinstance(msg, System) and msg.message == "ok" and msg.version

    run(main)


# ------------------------------------------------------------------------ routing


def test_three_users_open_accept_data_close(relay: RelayProcess) -> None:
    async def main() -> None:
        async with (
            relay_client(relay, A) as a,
            relay_client(relay, B) as b,
            relay_client(relay, C, "json") as c,
            relay_client(relay, S) as s,
        ):
            await set_acl(a, A, READERS_ACL)
            await open_session(a)
            assert await b.recv_type(HotlinkOpen) == HotlinkOpen("s1", PATH, frm=A, answers=True)
            assert await c.recv_type(HotlinkOpen) == HotlinkOpen("s1", PATH, frm=A, answers=True)
            await accept(b, a)
            await accept(c, a)
            n = 50
            for seq in range(1, n + 1):
                pay = seq.to_bytes(8, "little") * 16
                await a.send(
                    HotlinkData("s1", seq, f"{PATH}/{seq:08d}.request", pay),
                    traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                )
            for r in (b, c):
                got = [await r.recv_env() for _ in range(n)]
                assert [e.msg.seq for e in got] == list(range(1, n + 1))  # type: ignore[union-attr]
                assert got[0].msg.payload == (1).to_bytes(8, "little") * 16  # type: ignore[union-attr]
                assert got[0].traceparent.startswith("00-111")
            await a.send(HotlinkClose("s1", "done"))
            assert await b.recv() == HotlinkClose("s1", "done")
            assert await c.recv() == HotlinkClose("s1", "done")
            # the stranger saw none of it
            await alive(s)

    run(main)


def test_late_joiner_gets_opens(relay: RelayProcess) -> None:
    async def main() -> None:
        async with relay_client(relay, A) as a:
            await set_acl(a, A, READERS_ACL)
            await open_session(a, "s1")
            await open_session(a, "s2", f"{A}/_mpc/1_to_0", to=C)
            async with relay_client(relay, B) as b, relay_client(relay, C) as c:
                assert await b.recv() == HotlinkOpen("s1", PATH, frm=A, answers=True)
                got = sorted([await c.recv(), await c.recv()], key=lambda m: m.sid)
                assert got == [
                    HotlinkOpen("s1", PATH, frm=A, answers=True),
                    HotlinkOpen("s2", f"{A}/_mpc/1_to_0", frm=A, to=C, answers=True),
                ]
                await accept(b, a)
                await a.send(HotlinkData("s1", 1, "", b"late"))
                assert await b.recv() == HotlinkData("s1", 1, "", b"late")

    run(main)


def test_reader_drop_and_sender_drop(relay: RelayProcess) -> None:
    async def main() -> None:
        async with relay_client(relay, A) as a, relay_client(relay, C) as c:
            await set_acl(a, A, READERS_ACL)
            async with relay_client(relay, B) as b:
                await open_session(a)
                assert await b.recv_type(HotlinkOpen) == HotlinkOpen(
                    "s1", PATH, frm=A, answers=True
                )
                assert await c.recv_type(HotlinkOpen) == HotlinkOpen(
                    "s1", PATH, frm=A, answers=True
                )
                await accept(b, a)
                await accept(c, a)
            # bob's connection dropped mid-session
            assert await a.recv() == HotlinkClose("s1", REASON_READER_GONE, frm=B)
            await a.send(HotlinkData("s1", 1, "", b"still"))
            assert await c.recv() == HotlinkData("s1", 1, "", b"still")
            # now the sender drops
            a.ws.transport.abort()  # vanish without a close handshake
            assert await c.recv() == HotlinkClose("s1", REASON_SENDER_GONE)
            # session state cleaned up: a new sender may not use the sid for data
            await c.send(HotlinkData("s1", 2))
            assert await c.recv() == HotlinkReject("s1", REASON_UNKNOWN_SESSION)

    run(main)


def test_acl_change_mid_session_e2e(relay: RelayProcess) -> None:
    async def main() -> None:
        async with (
            relay_client(relay, A) as a,
            relay_client(relay, B) as b,
            relay_client(relay, C) as c,
        ):
            await set_acl(a, A, READERS_ACL)
            await open_session(a)
            await b.recv_type(HotlinkOpen)
            await c.recv_type(HotlinkOpen)
            await accept(b, a)
            await accept(c, a)
            only_carol = f'rules: [{{pattern: "**", access: {{read: ["{C}"]}}}}]'
            await a.send(FileWrite(f"{A}/syft.pub.yaml", content=only_carol.encode()), id="acl2")
            assert await b.recv_type(HotlinkClose) == HotlinkClose("s1", REASON_PERMISSION_DENIED)
            await a.send(HotlinkData("s1", 1, "", b"after"))
            assert await c.recv_type(HotlinkData) == HotlinkData("s1", 1, "", b"after")
            # bob is no longer a reader; a malformed ACL keeps the current rules
            await a.send(FileWrite(f"{A}/syft.pub.yaml", content=b"rules: ["), id="bad")
            nack = await a.recv_type(Nack)
            assert nack.original_id == "bad" and "invalid YAML" in nack.error
            await a.send(HotlinkData("s1", 2, "", b"again"))
            assert await c.recv_type(HotlinkData) == HotlinkData("s1", 2, "", b"again")
            await alive(b)

    run(main)


def test_acl_persists_across_restart(relay: RelayProcess) -> None:
    async def main_before() -> None:
        async with relay_client(relay, A) as a:
            await set_acl(a, A, READERS_ACL)

    async def main_after() -> None:
        async with relay_client(relay, A) as a, relay_client(relay, B) as b:
            await open_session(a)
            assert await b.recv() == HotlinkOpen("s1", PATH, frm=A, answers=True)

    run(main_before)
    port = relay.port
    relay.restart()
    assert relay.port == port
    run(main_after)


# ---------------------------------------------------------------------- bad input


async def expect_error(c: RelayClient, code: int) -> Error:
    err = await c.recv_type(Error)
    assert err.code == code, err
    assert err.message
    return err


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x01garbage",
        b"XY\x01\x01" + msgpack.packb({"id": "x", "typ": 9, "dat": b""}),
        PREFIX + b"\xc1\xc1",
        b"SB\x09\x01\x80",
        '{"id": 1, "typ": "open", "dat": []}',
        '{"id": "x", "typ": 9, "dat": {"sid": 5, "pth": ["a"]}}',
        "not json",
    ],
    ids=["garbage", "wrong-magic", "bad-msgpack", "bad-version", "json-types", "json-dat", "text"],
)
def test_bad_frames_get_error(relay: RelayProcess, frame: bytes | str) -> None:
    async def main() -> None:
        async with relay_client(relay, A) as a, relay_client(relay, B) as b:
            await a.send_raw(frame)
            await expect_error(a, 400)
            await alive(a)
            await alive(b)

    run(main)


def test_oversized_message_closes_with_1009(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(max_message=4096)

    async def main() -> None:
        async with relay_client(relay, A) as a, relay_client(relay, B) as b:
            await a.send(FileWrite(f"{A}/big", content=b"x" * 10_000))
            with pytest.raises(ConnectionClosed):
                while True:
                    await a.recv()
            assert a.ws.close_code == 1009
            assert a.ws.close_reason
            await alive(b)

    run(main)
    relay.wait_for_log("hotlink.relay.server: conn 1 (alice@example.org): closed, message too big")


def test_dotdot_path_and_forged_frm(relay: RelayProcess) -> None:
    async def main() -> None:
        async with relay_client(relay, A) as a, relay_client(relay, B) as b:
            await set_acl(a, A, READERS_ACL)
            await a.send(HotlinkOpen("s1", f"{A}/../{B}/x"))
            rej = await a.recv()
            assert isinstance(rej, HotlinkReject) and "'..'" in rej.reason
            await a.send(FileWrite(f"{A}/../{B}/x", content=b"x"), id="w")
            nack = await a.recv()
            assert isinstance(nack, Nack) and "'..'" in nack.error
            # forged frm: the reader sees the authenticated sender
            await a.send(HotlinkOpen("s2", PATH, frm=S), id="o2")
            assert await a.recv() == Ack("o2")
            assert await b.recv_type(HotlinkOpen) == HotlinkOpen("s2", PATH, frm=A, answers=True)
            await alive(b)

    run(main)


def test_session_misuse(relay: RelayProcess) -> None:
    async def main() -> None:
        async with (
            relay_client(relay, A) as a,
            relay_client(relay, B) as b,
            relay_client(relay, S) as s,
        ):
            await set_acl(a, A, READERS_ACL)
            await open_session(a)
            await b.recv_type(HotlinkOpen)
            await accept(b, a)
            # data for a session you do not own
            await b.send(HotlinkData("s1", 1, "", b"mine?"))
            await expect_error(b, 403)
            # accept without read access
            await s.send(HotlinkAccept("s1"))
            assert await s.recv() == HotlinkReject("s1", REASON_PERMISSION_DENIED)
            # hijack: re-open another user's sid
            await s.send(HotlinkOpen("s1", f"{S}/x"))
            assert await s.recv() == HotlinkReject("s1", REASON_SESSION_IN_USE)
            # open without write access
            await b.send(HotlinkOpen("s3", PATH))
            assert await b.recv() == HotlinkReject("s3", REASON_PERMISSION_DENIED)
            # data path outside the session
            await a.send(HotlinkData("s1", 2, f"{A}/elsewhere/x", b"x"))
            await expect_error(a, 400)
            # unknown session
            await a.send(HotlinkData("zz", 1))
            assert await a.recv() == HotlinkReject("zz", REASON_UNKNOWN_SESSION)
            # the real session still works
            await a.send(HotlinkData("s1", 3, "", b"ok"))
            assert await b.recv() == HotlinkData("s1", 3, "", b"ok")

    run(main)
