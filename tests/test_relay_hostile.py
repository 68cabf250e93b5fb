"""Hostile clients against the real relay process while two honest peers stream.

Each attack is a coroutine that performs the attack once and checks the relay's
refusal; `tests/attack_latency.py` runs the same coroutines in a loop to measure the
honest peers' latency under attack. Here we only check correctness: every attack is
refused with a clear error and the honest stream arrives complete and in order.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from fixtures_relay import RelayClient, RelayProcess, relay_client
from hotlink.wire.messages import (
    REASON_IDLE,
    REASON_PERMISSION_DENIED,
    REASON_RATE_LIMITED,
    REASON_TOO_MANY_SESSIONS,
    Ack,
    Error,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkReject,
    Nack,
)
from test_relay_e2e import READERS_ACL, A, B, accept, alive, open_session, set_acl
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

M = "mallory@evil.example"
HONEST_SID = "honest"
HONEST_PATH = f"{A}/_mpc/honest"


# ------------------------------------------------------------------ honest stream


async def honest_setup(relay: RelayProcess, a: RelayClient, b: RelayClient) -> None:
    """alice opens HONEST_SID, bob (a reader by the ACL) accepts it."""
    await set_acl(a, A, READERS_ACL)
    await open_session(a, HONEST_SID, HONEST_PATH)
    await b.recv_type(HotlinkOpen)
    await accept(b, a, HONEST_SID)


async def honest_stream(
    a: RelayClient,
    b: RelayClient,
    n: int,
    interval: float = 0.0,
    size: int = 256,
    others: list[object] | None = None,
) -> list[float]:
    """alice sends `n` frames (paced by `interval`), bob reads them; returns one-way
    latencies in seconds. Checks the stream is complete and in order; whatever else
    bob receives meanwhile is appended to `others`."""
    lat: list[float] = []

    async def reader() -> None:
        want = 1
        while want <= n:
            msg = await b.recv(timeout=30)
            if not isinstance(msg, HotlinkData):
                if others is not None:  # e.g. opens offered by the attacker
                    others.append(msg)
                continue
            now = time.perf_counter_ns()
            assert msg.sid == HONEST_SID and msg.seq == want, (msg.sid, msg.seq, want)
            lat.append((now - int.from_bytes(msg.payload[:8], "little")) / 1e9)
            want += 1

    task = asyncio.create_task(reader())
    pad = b"\0" * (size - 8)
    start = time.perf_counter()
    for seq in range(1, n + 1):
        if interval:
            delay = start + seq * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        ts = time.perf_counter_ns().to_bytes(8, "little")
        await a.send(HotlinkData(HONEST_SID, seq, "", ts + pad))
    await asyncio.wait_for(task, 60)
    return lat


# ------------------------------------------------------------------------ attacks


async def attack_forged_frm(relay: RelayProcess, m: RelayClient, tag: str) -> None:
    """Open with `frm` claiming alice and `to` bob: readers see the real sender;
    Accept with `frm` claiming bob: still mallory's accept, refused."""
    await m.send(HotlinkOpen(f"f{tag}", f"{M}/pub/f{tag}", frm=A, to=B), id=f"fo{tag}")
    msg = await m.recv_type((Ack, HotlinkReject))
    assert msg == Ack(f"fo{tag}") or msg.reason in (REASON_TOO_MANY_SESSIONS, REASON_RATE_LIMITED)
    await m.send(HotlinkAccept(HONEST_SID, frm=B))
    assert await m.recv_type(HotlinkReject) == HotlinkReject(HONEST_SID, REASON_PERMISSION_DENIED)


async def attack_foreign_data(relay: RelayProcess, m: RelayClient, tag: str) -> None:
    """Data for a session mallory does not send: 403, frame dropped."""
    await m.send(HotlinkData(HONEST_SID, 1, "", b"\xff" * 64))
    err = await m.recv_type(Error)
    assert err.code == 403 and "not the sender" in err.message


async def attack_accept_without_read(relay: RelayProcess, m: RelayClient, tag: str) -> None:
    await m.send(HotlinkAccept(HONEST_SID))
    assert await m.recv_type(HotlinkReject) == HotlinkReject(HONEST_SID, REASON_PERMISSION_DENIED)


async def attack_open_flood(relay: RelayProcess, m: RelayClient, tag: str, n: int = 400) -> None:
    """More opens than the burst: the excess is rejected 'rate limited'; the
    connection stays usable."""
    for i in range(n):
        await m.send(HotlinkOpen(f"o{tag}-{i}", f"{M}/flood/{tag}-{i}"), id=f"o{tag}-{i}")
    reasons: dict[str, int] = {}
    for _ in range(n):
        msg = await m.recv_type((Ack, HotlinkReject))
        key = "ack" if isinstance(msg, Ack) else msg.reason
        reasons[key] = reasons.get(key, 0) + 1
    assert reasons.get(REASON_RATE_LIMITED, 0) > 0, reasons
    assert set(reasons) <= {"ack", REASON_RATE_LIMITED, REASON_TOO_MANY_SESSIONS}, reasons
    await alive(m)


async def attack_huge_frame(relay: RelayProcess, claimed: int = 1 << 30) -> tuple[int, str]:
    """A raw WS frame header claiming `claimed` payload bytes, then a few bytes: the
    relay must close with 1009 right after the header, without allocating it."""
    u = urlsplit(relay.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {relay.token(M)}\r\n"
                "X-Syft-WS-Encodings: msgpack\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            # FIN|binary, MASK|127, u64 length, mask key, the start of a payload
            hdr = bytes([0x82, 0x80 | 127]) + claimed.to_bytes(8, "big") + os.urandom(4)
            writer.write(hdr + b"SB\x01\x01")
            await writer.drain()
            while True:  # server frames are unmasked: skip the greeting, find the close
                b0, b1 = await reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                elif n == 127:
                    n = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(n)
                if b0 & 0x0F == 0x8:
                    return int.from_bytes(payload[:2], "big"), payload[2:].decode()
    finally:
        writer.close()


async def attack_no_token(relay: RelayProcess) -> int:
    with pytest.raises(InvalidStatus) as ei:
        async with connect(relay.events_url):
            pass
    return ei.value.response.status_code


async def mallory_setup(m: RelayClient) -> None:
    """Mallory's own datasite: `pub/` readable by everyone (so forged opens reach
    honest users, who must see mallory as the sender)."""
    await set_acl(m, M, 'rules: [{pattern: "pub/**", access: {read: ["*"]}}]')


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -------------------------------------------------------------------------- tests


def test_hostile_clients_while_honest_peers_stream(relay: RelayProcess) -> None:
    async def main() -> None:
        async with (
            relay_client(relay, A) as a,
            relay_client(relay, B) as b,
            relay_client(relay, M) as m,
            relay_client(relay, M) as m2,
        ):
            await honest_setup(relay, a, b)
            await mallory_setup(m)
            assert relay.proc is not None
            rss0 = rss_kib(relay.proc.pid)

            async def attacks() -> None:
                await attack_forged_frm(relay, m, "1")
                await attack_foreign_data(relay, m, "1")
                await attack_accept_without_read(relay, m, "1")
                for _ in range(2):
                    code, reason = await attack_huge_frame(relay)
                    assert code == 1009 and reason
                assert await attack_no_token(relay) == 401
                await attack_open_flood(relay, m2, "1")

            seen: list[object] = []
            results = await asyncio.gather(honest_stream(a, b, 2000, others=seen), attacks())
            assert len(results[0]) == 2000
            # the forged open reached bob with mallory, not alice, as the sender (the
            # relay forwards a whole read of alice's frames per callback, so the open
            # may come after the last of them)
            forged = HotlinkOpen("f1", f"{M}/pub/f1", frm=M, to=B, answers=True)
            while forged not in seen:
                seen.append(await b.recv(timeout=5))
            # 1 GiB claimed twice: the relay did not allocate it
            assert rss_kib(relay.proc.pid) - rss0 < 64 * 1024
            await alive(a)
            await alive(b)

    asyncio.run(main())
    relay.wait_for_log("closed, message too big")


def test_huge_length_prefix_closes_1009(relay: RelayProcess) -> None:
    async def main() -> None:
        assert relay.proc is not None
        rss0 = rss_kib(relay.proc.pid)
        for claimed in (1 << 30, (1 << 63) - 1, relay_max_plus_one(relay)):
            code, reason = await attack_huge_frame(relay, claimed)
            assert code == 1009 and reason, (claimed, code, reason)
        assert rss_kib(relay.proc.pid) - rss0 < 64 * 1024
        async with relay_client(relay, A) as a:
            await alive(a)

    asyncio.run(main())


def relay_max_plus_one(relay: RelayProcess) -> int:
    return (relay.max_message or 16 * 1024 * 1024) + 1


# ------------------------------------------------------------------- limits (e2e)


def test_e2e_sessions_per_user(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(extra_args=["--max-sessions-per-user", "2"])

    async def main() -> None:
        async with relay_client(relay, A) as a:
            await open_session(a, "s1", f"{A}/x/1")
            await open_session(a, "s2", f"{A}/x/2")
            await a.send(HotlinkOpen("s3", f"{A}/x/3"))
            assert await a.recv() == HotlinkReject("s3", REASON_TOO_MANY_SESSIONS)
            await alive(a)

    asyncio.run(main())


def test_e2e_open_rate_limited(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(extra_args=["--open-rate", "20", "--open-burst", "5"])

    async def main() -> None:
        async with relay_client(relay, M) as m:
            await attack_open_flood(relay, m, "x", n=30)

    asyncio.run(main())


def test_e2e_idle_timeout(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(extra_args=["--idle-timeout", "0.5"])

    async def main() -> None:
        async with relay_client(relay, A) as a, relay_client(relay, B) as b:
            await set_acl(a, A, READERS_ACL)
            await open_session(a, HONEST_SID, HONEST_PATH)
            await b.recv_type(HotlinkOpen)
            # before the accept, the session's last activity: the relay's idle clock
            # starts no earlier (a t0 taken after the accept's round trip came up to a
            # loaded machine's scheduling delay late, making 0.5 s look like < 0.4 s)
            t0 = time.monotonic()
            await accept(b, a, HONEST_SID)
            close_a = await a.recv_type(HotlinkClose, timeout=5)
            close_b = await b.recv_type(HotlinkClose, timeout=5)
            assert close_a == close_b == HotlinkClose(HONEST_SID, REASON_IDLE)
            assert 0.4 < time.monotonic() - t0 < 3
            await a.send(HotlinkData(HONEST_SID, 1))
            assert await a.recv() == HotlinkReject(HONEST_SID, "unknown session")

    asyncio.run(main())


def test_e2e_send_queue_bound(relay_factory: Callable[..., RelayProcess]) -> None:
    """A reader that stops reading: its queue hits --max-queue and only it is closed
    (1008); the sender is unaffected."""
    relay = relay_factory(extra_args=["--max-queue", "256KiB"])

    async def main() -> None:
        async with (
            relay_client(relay, A) as a,
            relay_client(relay, B, max_queue=1) as b,
        ):
            await honest_setup(relay, a, b)
            b.ws.transport.pause_reading()  # a stuck client: TCP backpressure builds
            chunk = b"x" * 60_000
            for seq in range(1, 400):
                await a.send(HotlinkData(HONEST_SID, seq, "", chunk))
            relay.wait_for_log("send queue overflow, closing", timeout=20)
            await alive(a)
            b.ws.transport.abort()  # no close handshake with a client that cannot read

    asyncio.run(main())


def test_repeated_bad_messages_drop_the_connection(relay: RelayProcess) -> None:
    """Each undecodable message gets an Error; after `--max-bad-messages` (32) the
    connection is dropped, so a flood of bad frames cannot keep the relay decoding."""
    from websockets.exceptions import ConnectionClosed

    async def main() -> None:
        async with relay_client(relay, A) as honest, relay_client(relay, B) as bad:
            closed = False
            for _ in range(200):
                try:
                    await bad.send_raw(b"SB\x01\x01\x93\x01\x02\x03")  # an array, not a map
                    await asyncio.sleep(0)
                except ConnectionClosed:
                    closed = True
                    break
            if not closed:
                with pytest.raises(ConnectionClosed):
                    for _ in range(200):
                        await bad.ws.recv()
            relay.wait_for_log("undecodable messages; closing the connection")
            await alive(honest)

    asyncio.run(main())


@pytest.mark.parametrize(
    "name", ["stream.sock/x.txt", "stream.tcp", "sub/stream.pipe/y.request", "stream.tcp.cookie"]
)
def test_endpoint_names_refused_in_every_segment(relay: RelayProcess, name: str) -> None:
    """A user with write access to a folder cannot create `s3/stream.sock/…` there: the
    folder's future session endpoint would then be taken by a file or folder."""

    async def main() -> None:
        async with relay_client(relay, A) as a:
            await a.send(FileWrite(f"{A}/_mpc/s3/{name}", content=b"x"), id="squat")
            nack = await a.recv_type(Nack)
            assert nack.original_id == "squat" and "reserved name" in nack.error, nack
            await alive(a)
        assert not (relay.data_dir / "datasites" / A / "_mpc" / "s3" / name).exists()

    asyncio.run(main())


def test_sender_told_when_a_reader_is_cut_for_overflow(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    """The relay drops a reader that stopped reading: the sender hears "reader
    disconnected" when that is decided, not after a close handshake the stuck client
    can never complete (10 s: longer than this test waits)."""
    relay = relay_factory(extra_args=["--max-queue", "256KiB"])

    async def main() -> None:
        async with (
            relay_client(relay, A) as a,
            relay_client(relay, B, max_queue=1) as b,
        ):
            await honest_setup(relay, a, b)
            b.ws.transport.pause_reading()
            chunk = b"x" * 60_000
            for seq in range(1, 400):
                await a.send(HotlinkData(HONEST_SID, seq, "", chunk))
            relay.wait_for_log("send queue overflow, closing", timeout=20)
            close = await a.recv_type(HotlinkClose, timeout=5.0)
            assert close.sid == HONEST_SID and close.reason == "reader disconnected", close
            b.ws.transport.abort()

    asyncio.run(main())
