"""Loss-free resume, the sans-I/O pieces of the agent: the re-send plan after a reader's
(re-)accept and the reconnect backoff that resets only on a stable link."""

from __future__ import annotations

from collections import deque

import pytest
from hotlink.agent.acks import plan_resend
from hotlink.agent.link import STABLE_AFTER, Backoff


def ident(x: int) -> int:
    return x


def test_resend_after_ack_takes_what_is_held() -> None:
    held = deque([5, 6, 7, 8])
    plan = plan_resend(held, 6, 8, ident)
    assert plan.frames == [7, 8] and plan.gap is None
    assert list(held) == [5, 6]  # the caller queues 7, 8 again


def test_nothing_to_resend_when_up_to_date() -> None:
    held = deque([5, 6])
    plan = plan_resend(held, 6, 6, ident)
    assert plan.frames == [] and plan.gap is None and list(held) == [5, 6]
    assert plan_resend(deque(), 9, 6, ident).gap is None  # ack beyond what we sent


def test_gap_when_the_frames_are_no_longer_held() -> None:
    held = deque([10, 11, 12])
    plan = plan_resend(held, 3, 12, ident)
    assert plan.frames == [10, 11, 12] and plan.gap == (4, 9)
    # nothing held at all (e.g. all went by files): the whole range after the ack
    plan = plan_resend(deque(), 3, 12, ident)
    assert plan.frames == [] and plan.gap == (4, 12)


def test_fresh_reader_ack_zero() -> None:
    plan = plan_resend(deque([1, 2, 3]), 0, 3, ident)
    assert plan.frames == [1, 2, 3] and plan.gap is None


def test_backoff_resets_only_after_a_stable_link() -> None:
    b = Backoff(0.1, 5.0, rng=lambda: 1.0)
    delays = []
    for _ in range(5):  # connect succeeds, link dies at once (e.g. message too big)
        b.link_ended(0.01, STABLE_AFTER)
        delays.append(round(b.next_delay(), 3))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
    b.link_ended(STABLE_AFTER, STABLE_AFTER)  # stayed up long enough: start over
    assert b.next_delay() == 0.1


class FakeTransport:
    def __init__(self) -> None:
        self.buffered = 0

    def writelines(self, parts) -> None:
        self.buffered += sum(len(p) for p in parts)

    def get_write_buffer_size(self) -> int:
        return self.buffered


def test_reader_confirms_only_frames_handed_to_the_kernel() -> None:
    """Frames in the agent's socket buffer die with it: not delivered yet."""
    from hotlink.agent.ipc import AppConnection
    from hotlink.wire.frames import encode_header

    c = AppConnection(None, is_sender=False, max_payload=1 << 20, queue_limit=10,
                      buffer_bytes=1 << 20, queue_bytes=1 << 20)  # fmt: skip
    t = FakeTransport()
    c.transport = t  # type: ignore[assignment]
    for seq in (1, 2, 3):
        c.write(encode_header(b"f", b"", 4, seq), b"pay!")
    assert c.flushed_seq(3) == 0  # all three still in user space
    t.buffered -= len(encode_header(b"f", b"", 4, 1)) + 4 + 3  # frame 1 and a bit of 2
    assert c.flushed_seq(3) == 1
    t.buffered = 0
    assert c.flushed_seq(3) == 3 and not c.marks
    c.paused = True  # the transport is full: frames wait in our backlog
    c.write(encode_header(b"f", b"", 4, 4), b"pay!")
    assert c.flushed_seq(4) == 3


class Owner:
    path = "alice@x.org/_mpc/s"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def app_dropped(self, conn, frames: int, first: int) -> None:
        self.calls.append(("dropped", frames, first))

    def app_dropped_revised(self, conn, was: int, first: int) -> None:
        self.calls.append(("revised", was, first))

    def app_disconnected(self, conn) -> None:
        pass


class UvTransport(FakeTransport):
    """Like uvloop's: abort() leaves the buffer to be written until connection_lost."""

    def abort(self) -> None:
        pass


UvTransport.__module__ = "uvloop.loop"


@pytest.mark.parametrize("uv", [True, False])
def test_a_dropped_slow_app_is_told_what_it_really_got(uv: bool) -> None:
    """A too-slow app is aborted: the frames it has not got are refetched. uvloop
    writes on until connection_lost, so what the app got is counted again then (else
    the refetch would hand it copies); asyncio's abort drops the buffer at once."""
    from hotlink.agent.ipc import AppConnection
    from hotlink.wire.frames import encode_header

    owner = Owner()
    c = AppConnection(owner, is_sender=False, max_payload=1 << 20, queue_limit=2,
                      buffer_bytes=1 << 20, queue_bytes=1 << 20)  # fmt: skip
    t = UvTransport() if uv else FakeTransport()
    t.abort = lambda: None  # type: ignore[method-assign]
    c.transport = t  # type: ignore[assignment]
    frame = len(encode_header(b"f", b"", 4, 1)) + 4
    for seq in (1, 2, 3):
        c.write(encode_header(b"f", b"", 4, seq), b"pay!")
    t.buffered -= frame  # frame 1 reached the kernel
    c.paused = True
    for seq in (4, 5, 6):  # 4, 5 wait in the backlog; 6 is one too many
        c.write(encode_header(b"f", b"", 4, seq), b"pay!")
    assert owner.calls == [("dropped", 3, 2)]
    t.buffered -= frame  # ... and then frame 2 too, written after the abort
    c.connection_lost(None)
    assert owner.calls[1:] == ([("revised", 2, 3)] if uv else [])
