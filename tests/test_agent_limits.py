"""Agent-side limits (agent/config.py), each exercised on real processes.

Covered elsewhere: `--reader-queue` + `--reader-buffer-bytes` for a connected slow app
(test_agent_control.py::test_slow_reader_app_is_disconnected_not_others); the reorder
window/timeout (sans-I/O, test_agent_reorder.py); an IPC frame header claiming 1 GiB
and a frame over `--max-message` (test_agent_e2e.py::
test_malformed_frames_close_only_that_connection). Here: the reader backlog while no
app is connected, the sender queue bounds (frames and bytes) with back-pressure, the
resend ring bounds, `--max-payload`, and a reader whose `--max-message` is smaller
than what the sender may send.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fixtures_agent import AppClient, wait_for
from fixtures_relay import relay_client
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import Frame, encode_frame
from hotlink.wire.messages import HotlinkAccept, HotlinkData, HotlinkOpen

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
PATH = f"{A}/_mpc/limits"
#: uvloop reads at most 256 KiB per recv: the send queue may overshoot by one read
READ_CHUNK = 256 * 1024


def _pair(alice, bob):
    assert alice.open("_mpc/limits").state == pb.SESSION_STATE_OPEN
    bob.open(PATH)
    alice.wait_session(PATH, lambda s: B in s.readers)


def test_reader_backlog_without_app_refetches_the_rest(agent_factory):
    """No app connected on the reader: at most --reader-queue frames are kept; later
    ones are refused (counted, logged, not confirmed, so the sender keeps them). The
    first app gets the kept ones, then the rest, re-sent: all 120 in order."""
    alice = agent_factory(A)
    bob = agent_factory(B, args=["--reader-queue", "50"])
    _pair(alice, bob)
    writer = AppClient(alice.session_dir(PATH))
    writer.send_raw(b"".join(encode_frame(Frame(b"%d" % i)) for i in range(120)))
    bob.wait_session(PATH, lambda s: s.last_seq == 50 and s.counters.refetched == 70)
    assert "no reader app connected" in bob.log_text()
    assert alice.session(PATH).counters.confirmed_seq == 0  # nothing reached an app
    reader = AppClient(bob.session_dir(PATH))
    got = reader.recv_n(120)
    assert [f.seq for f in got] == list(range(1, 121))
    assert [f.payload for f in got] == [b"%d" % i for i in range(120)]
    writer.send(b"live")
    assert reader.recv().seq == 121
    s = bob.session(PATH)
    assert s.counters.drops == 0 and s.counters.frames_received == 121
    # through the relay: the 120, the 70 refused ones again, the live one
    assert s.counters.frames_relay == 191 and s.counters.frames_direct == 0
    alice.wait_session(PATH, lambda s: s.counters.confirmed_seq == 121)


def test_reader_backlog_without_app_bounded_in_bytes(agent_factory):
    """--reader-queue-bytes bounds the no-app backlog too: of 20 frames of ~1 KiB a
    10 KiB bound keeps the first 9 (frame count alone would keep all 20); the first
    app gets them, then the 11 others, re-sent."""
    alice = agent_factory(A)
    bob = agent_factory(B, args=["--reader-queue-bytes", "10240"])
    _pair(alice, bob)
    writer = AppClient(alice.session_dir(PATH))
    payload = b"k" * 1000
    writer.send_raw(b"".join(encode_frame(Frame(payload)) for _ in range(20)))
    kept = 10240 // len(encode_frame(Frame(payload, 1, f"{A}/_mpc/limits/00000001.request")))
    bob.wait_session(PATH, lambda s: s.last_seq == kept and s.counters.refetched == 20 - kept)
    reader = AppClient(bob.session_dir(PATH))
    assert [f.seq for f in reader.recv_n(20)] == list(range(1, 21))
    assert bob.session(PATH).counters.drops == 0


def test_slow_reader_app_bounded_in_bytes(agent_factory):
    """A reader app that does not read is disconnected once its queued bytes pass
    --reader-queue-bytes, long before --reader-queue frames; a fast app gets all."""
    # 8 MiB = 1024 frames of 8 KiB, a quarter of the default 4096-frame bound: only the
    # byte bound can trip for 3000 frames (24 MiB) that the slow app never reads.
    args = ["--reader-queue-bytes", "8388608", "--reader-buffer-bytes", "262144"]
    alice = agent_factory(A)
    bob = agent_factory(B, args=args)
    _pair(alice, bob)
    slow = AppClient(bob.session_dir(PATH))  # never reads
    fast = AppClient(bob.session_dir(PATH), timeout=60)
    bob.wait_session(PATH, lambda s: s.ipc_clients == 2)
    writer = AppClient(alice.session_dir(PATH))
    n, batch = 3000, 250
    got: list[int] = []

    def read_all() -> None:
        for _ in range(n):
            got.append(fast.recv().seq)

    t = threading.Thread(target=read_all, daemon=True)
    t.start()
    # Lock-step batches: the fast app is never more than one batch (2 MiB) behind,
    # however slowly this machine runs its thread, so only the app that never reads
    # can pass the 8 MiB bound (a free-running writer let a starved "fast" reader fall
    # 8 MiB behind on a loaded machine, and the agent rightly dropped it too).
    for sent in range(batch, n + 1, batch):
        for _ in range(batch):
            writer.send(b"b" * 8192)
        wait_for(lambda sent=sent: len(got) >= sent or not t.is_alive(), 120, f"{sent} frames")
    t.join(120)
    assert got == list(range(1, n + 1))
    bob.wait_session(PATH, lambda s: s.ipc_clients == 1)
    assert bob.session(PATH).counters.drops > 0
    log = bob.log_text()
    assert "too slow" in log and "limits 4096 frames, 8388608 bytes" in log
    assert slow.is_closed(timeout=10)


def _fill_until_paused(
    alice, writer, frame: bytes, total: int, bound: int
) -> tuple[int, threading.Thread]:
    """Write `total` frames from a thread; return the most frames the session held
    while its app was blocked by back-pressure."""
    done = threading.Event()

    def write() -> None:
        for _ in range(total):
            writer.send_raw(frame)
        done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    # Wait for the condition (the queue reached its bound), not for the queue to look
    # still for a while: on a loaded machine the writer thread can stall longer than
    # any quiet period while the queue is still short of the bound.
    wait_for(lambda: alice.session(PATH).counters.queued >= bound, 120, "queue at its bound")
    peak = 0
    for _ in range(20):  # then it must stay within the bound (+ one read)
        peak = max(peak, alice.session(PATH).counters.queued)
        time.sleep(0.05)
    # `total` is 20 bounds: a writer that got through it all met no back-pressure
    assert not done.is_set(), "the app was never blocked: no back-pressure"
    return peak, t


@pytest.mark.parametrize(
    ("args", "payload", "bound"),
    [
        # frames bound: 200 frames of 1 KiB
        (["--send-queue-frames", "200"], 1024, 200),
        # bytes bound: 256 KiB of 16 KiB frames = 16 frames
        (["--send-queue-bytes", str(256 * 1024)], 16 * 1024, 16),
    ],
    ids=["frames", "bytes"],
)
def test_send_queue_bound_applies_back_pressure(agent_factory, args, payload, bound):
    """While a sender session cannot send (no reader yet), its queue stops at the bound
    (plus at most one socket read) and the app is blocked instead; once a reader
    accepts, everything arrives in order and nothing was dropped."""
    alice = agent_factory(A, args=[*args, "--resend-frames", "0"])
    # hotlink only: no .request file fallback while nobody reads
    s = alice.open("_mpc/limits", fallback_mode=pb.FALLBACK_MODE_OFF)
    assert s.state == pb.SESSION_STATE_OPEN
    writer = AppClient(alice.session_dir(PATH), timeout=60)
    total = bound * 20 + READ_CHUNK // payload * 4
    frame = encode_frame(Frame(b"p" * payload))
    peak, t = _fill_until_paused(alice, writer, frame, total, bound)
    overshoot = READ_CHUNK // payload + 1
    print(f"\nqueue peak {peak} frames for a bound of {bound} (+ {overshoot} one read)")
    assert bound <= peak <= bound + overshoot
    bob = agent_factory(B)
    bob.open(PATH)
    reader = AppClient(bob.session_dir(PATH), timeout=60)
    got = reader.recv_n(total)
    t.join(30)
    assert [f.seq for f in got] == list(range(1, total + 1))
    assert alice.session(PATH).counters.drops == 0
    assert bob.session(PATH).counters.drops == 0


@pytest.mark.parametrize(
    ("args", "payload", "kept"),
    [
        (["--resend-frames", "10"], 100, 10),
        (["--resend-bytes", "4096"], 1024, 4),
        (["--resend-frames", "0"], 100, 0),
    ],
    ids=["frames", "bytes", "disabled"],
)
def test_resend_ring_bound(agent_factory, relay, args, payload, kept):
    """A reader that never acks (a reference peer, here a raw WS client) leaves every
    sent frame unconfirmed: after a relay restart the sender re-sends at most
    --resend-frames / --resend-bytes of its most recent ones (0 disables). Readers that
    ack trim the window instead (tests/test_agent_acks.py, tests/test_chaos*.py)."""
    alice = agent_factory(A, args=args)
    assert alice.open("_mpc/limits", fallback_mode=pb.FALLBACK_MODE_OFF).state == (
        pb.SESSION_STATE_OPEN
    )
    writer = AppClient(alice.session_dir(PATH))

    async def accept(bob) -> str:
        offer = await bob.recv_type(HotlinkOpen)
        assert offer.path == PATH
        await bob.send(HotlinkAccept(offer.sid))
        return offer.sid

    async def data(bob, n: int) -> list[HotlinkData]:
        return [await bob.recv_type(HotlinkData) for _ in range(n)]

    async def scenario() -> tuple[list[int], list[int]]:
        async with relay_client(relay, B) as bob:
            await accept(bob)
            await asyncio.to_thread(alice.wait_session, PATH, lambda s: B in s.readers)
            writer.send_raw(b"".join(encode_frame(Frame(b"r" * payload)) for _ in range(100)))
            first = [m.seq for m in await data(bob, 100)]
            relay.kill()
        await asyncio.to_thread(alice.wait_link, pb.LINK_STATE_DOWN)
        relay.start()
        await asyncio.to_thread(alice.wait_link, pb.LINK_STATE_UP)
        async with relay_client(relay, B) as bob:
            await accept(bob)
            writer.send(b"after")
            again = [m.seq for m in await data(bob, kept + 1)]
        return first, again

    first, again = asyncio.run(scenario())
    assert first == list(range(1, 101))
    # the kept copies first, oldest first, then the new frame: nothing older, no gap
    assert again == [*range(101 - kept, 101), 101]
    if kept:
        assert f"{kept} recently sent frames (seq {101 - kept}..100) will be re-sent" in (
            alice.log_text()
        )


def test_max_payload_flag(agent_factory):
    """--max-payload bounds one IPC frame: a bigger one closes only that app's
    connection (logged); frames at the limit pass."""
    alice = agent_factory(A, args=["--max-payload", "1024"])
    bob = agent_factory(B)
    _pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH))
    bad = AppClient(alice.session_dir(PATH))
    good = AppClient(alice.session_dir(PATH))
    bad.send(b"x" * 1025)
    assert bad.is_closed()
    good.send(b"y" * 1024)
    f = reader.recv()
    assert (f.seq, len(f.payload)) == (1, 1024)
    assert "over the configured maximum" in alice.log_text()
    assert alice.status().counters.reconnects == 0


def test_reader_max_message_smaller_than_the_senders(agent_factory):
    """bob accepts WS messages up to 64 KiB, alice may send 16 MiB: a 100 KiB frame
    makes the relay->bob message too big. Today: bob's link is closed and
    reconnects, the big frame is lost for bob (a gap skipped after the reorder
    timeout, counted as a drop), the stream goes on. The sender is not told: the
    limit is per agent and not negotiated (a known gap)."""
    alice = agent_factory(A)
    bob = agent_factory(B, args=["--max-message", "65536"])
    _pair(alice, bob)
    reader = AppClient(bob.session_dir(PATH), timeout=30)
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"small-1")
    assert reader.recv().seq == 1
    writer.send(b"B" * 100_000)
    wait_for(lambda: bob.status().counters.reconnects >= 1, 15, "bob reconnects")
    alice.wait_session(PATH, lambda s: B in s.readers, 15)
    writer.send(b"small-3")
    f = reader.recv()
    assert (f.seq, f.payload) == (3, b"small-3")
    assert bob.session(PATH).counters.drops == 1
    assert "link down" in bob.log_text()  # logged as code 1006, not 1009/"too big"
