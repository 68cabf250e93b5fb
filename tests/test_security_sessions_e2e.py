"""Session attacks end to end (docs/reliability.md, issue 17): a co-writer forging a
session's fallback files, a reader squatting a sender's session id, a reader that
accepts and never confirms. Real relay and agent processes; the attacker is a raw
WebSocket client authenticated as a permitted user."""

from __future__ import annotations

import asyncio
import struct

import pytest
from fixtures_agent import AppClient, acl_yaml, wait_for
from fixtures_relay import relay_client
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire import fallbackfile as ff
from hotlink.wire.frames import Frame, encode_frame
from hotlink.wire.messages import (
    REASON_SESSION_IN_USE,
    Ack,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkOpen,
    HotlinkReject,
    Nack,
)

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
C = "carol@example.org"
IDX = struct.Struct(">Q")


def forged(sid: str, seq: int) -> bytes:
    return ff.encode(sid, seq, f"{seq:08d}.request", "", b"FORGED-BY-CAROL")


async def file_write(client, path: str, content: bytes):
    """FileWrite as `client`; the relay's answer (Ack or Nack)."""
    mid = f"fw{abs(hash((path, content))) % 10**6}"
    await client.send(FileWrite(path, "", len(content), content), id=mid)
    while True:
        msg = await client.recv(timeout=10)
        if type(msg) in (Ack, Nack) and msg.original_id == mid:
            return msg


def test_co_writer_cannot_forge_fallback_frames(agent_factory, relay_factory, tmp_path):
    """carol may write into alice's `_mpc/shared/`; session `_mpc/shared/s1` is alice ->
    bob. Her fallback files carrying alice's sid are Nacked while the session is live;
    once alice's agent is gone and the sid is no longer reserved (`--sid-grace 0`) the
    relay stores them but stamps carol as writer, and bob's agent refuses to replay
    them. bob's app gets only alice's frames (the catch-up path carries the same stamp:
    tests/test_security_sessions.py)."""
    relay = relay_factory(extra_args=["--sid-grace", "0"])
    shared = tmp_path / "alice" / "datasites" / A / "_mpc" / "shared"
    shared.mkdir(parents=True)
    (shared / "syft.pub.yaml").write_text(acl_yaml([B], [C]))
    alice = agent_factory(A, relay_=relay)
    bob = agent_factory(B, relay_=relay)
    path = f"{A}/_mpc/shared/s1"
    wait_for(lambda: relay.wait_for_log(f"ACL {A}/_mpc/shared/syft.pub.yaml updated"), 15)
    alice.open("_mpc/shared/s1", to=B)
    bob.open(path)
    alice.wait_session(path, lambda s: B in s.readers)
    app = AppClient(bob.session_dir(path))
    writer = AppClient(alice.session_dir(path))
    sid = alice.session(path).session_id
    for i in range(3):
        writer.send(IDX.pack(i))
    assert [app.recv().seq for _ in range(3)] == [1, 2, 3]

    async def live_attack() -> list:
        async with relay_client(relay, C) as carol:
            return [
                await file_write(carol, f"{path}/00000004.request", forged(sid, 4)),
                await file_write(carol, f"{path}/00000005.request", forged(sid, 5)),
                await file_write(carol, f"{path}/x.request", b"plain"),
            ]

    answers = asyncio.run(live_attack())
    assert [type(a) for a in answers] == [Nack, Nack, Nack], answers
    assert "does not send" in answers[0].error
    for i in range(3, 5):
        writer.send(IDX.pack(i))
    got = [app.recv() for _ in range(2)]
    assert [(f.seq, IDX.unpack(f.payload)[0]) for f in got] == [(4, 3), (5, 4)]

    # alice's agent goes away cleanly: the session ends on the relay, bob waits
    writer.close()
    assert alice.stop() == 0
    bob.wait_session(path, lambda s: s.state == pb.SESSION_STATE_PENDING)

    async def offline_attack():
        async with relay_client(relay, C) as carol:
            return await file_write(carol, f"{path}/00000006.request", forged(sid, 6))

    assert type(asyncio.run(offline_attack())) is Ack  # nothing tells the relay it's forged
    wait_for(lambda: "not by its sender" in bob.log_text(), what="bob refusing carol's file")
    alice.start()  # restored: same sid, seq 6 next
    alice.wait_session(path, lambda s: B in s.readers)
    writer = AppClient(alice.session_dir(path))
    writer.send(IDX.pack(5))
    f = app.recv()
    assert (f.seq, f.payload) == (6, IDX.pack(5))  # alice's seq 6, not carol's
    log = bob.log_text()
    assert f"{path}/00000006.request of session {path} written by {C}" in log, log[-3000:]
    assert bob.session(path).counters.drops == 0


def test_squatted_session_id_recovered_with_a_new_one(agent_factory, relay):
    """bob (a reader of alice's session) opens his own session under alice's sid while
    her agent is down: refused while the relay reserves the sid for her. After a relay
    restart (the reservation is in memory) his squat succeeds; alice's restarted agent
    is refused "session id in use", goes on under a new sid, and bob's reader follows."""
    alice = agent_factory(A)
    bob = agent_factory(B)
    rel = "_mpc/0_to_1"
    path = f"{A}/{rel}"
    alice.open(rel)
    bob.open(path)
    alice.wait_session(path, lambda s: B in s.readers)
    sid = alice.session(path).session_id
    assert alice.stop() == 0

    async def squat(expect_ok: bool) -> None:
        async with relay_client(relay, B) as raw:
            await raw.send(HotlinkOpen(sid, f"{B}/_mpc/squat"), id="sq")
            msg = await raw.recv_type((Ack, HotlinkReject))
            if not expect_ok:
                assert msg == HotlinkReject(sid, REASON_SESSION_IN_USE)
                return
            assert type(msg) is Ack
            await asyncio.to_thread(alice.start)
            s = await asyncio.to_thread(
                alice.wait_session,
                path,
                lambda s: s.state == pb.SESSION_STATE_OPEN and B in s.readers,
            )
            assert s.session_id != sid
            writer = AppClient(alice.session_dir(path))
            app = AppClient(bob.session_dir(path))
            writer.send(b"after the squat")
            f = await asyncio.to_thread(app.recv)
            assert f.payload == b"after the squat"

    asyncio.run(squat(expect_ok=False))
    relay.restart()
    bob.wait_link(pb.LINK_STATE_UP)
    asyncio.run(squat(expect_ok=True))
    assert "is in use by someone else; going on as" in alice.log_text()


def test_stalled_reader_dropped_honest_reader_keeps_receiving(agent_factory, relay_factory):
    """carol (a permitted reader, raw WS) accepts with seq=0 and never confirms. alice's
    re-send window (200 frames) fills and her app is back-pressured, bob with it, until
    the relay drops carol (`--reader-stall-timeout 1`): she hears "reader stalled", alice
    forgets her (her window frees, the app is read again), and bob gets all 3000
    frames in order."""
    n = 3000
    relay = relay_factory(extra_args=["--reader-stall-timeout", "1"])
    alice = agent_factory(A, relay_=relay, args=["--resend-frames", "200"])
    bob = agent_factory(B, relay_=relay)
    rel = "_mpc/stall"
    path = f"{A}/{rel}"
    alice.open(rel, fallback_mode=pb.FALLBACK_MODE_OFF)
    bob.open(path)
    alice.wait_session(path, lambda s: B in s.readers)
    app = AppClient(bob.session_dir(path), timeout=60)

    async def scenario() -> tuple[HotlinkClose, list[int]]:
        async with relay_client(relay, C) as carol:
            offer = await carol.recv_type(HotlinkOpen)
            await carol.send(HotlinkAccept(offer.sid, seq=0))
            await asyncio.to_thread(alice.wait_session, path, lambda s: C in s.readers)
            writer = AppClient(alice.session_dir(path), timeout=60)
            # 3 MB: more than the socket buffers hold, so alice's pause really holds
            data = b"".join(encode_frame(Frame(IDX.pack(i) + b"p" * 1016)) for i in range(n))
            send = asyncio.create_task(asyncio.to_thread(writer.send_raw, data))
            reading = asyncio.create_task(asyncio.to_thread(app.recv_n, n))
            close = await carol.recv_type(HotlinkClose, timeout=30)
            # alice forgets carol while carol is still connected (she was told)
            await asyncio.to_thread(
                alice.wait_session, path, lambda s: C not in s.readers and B in s.readers
            )
            got = await reading
            await send
            return close, [IDX.unpack_from(f.payload)[0] for f in got]

    close, idx = asyncio.run(scenario())
    assert close.reason.startswith("reader stalled"), close
    assert idx == list(range(n))
    assert B in alice.session(path).readers
    assert f"reader {C} confirmed nothing past seq 0" in relay.log_text()
