"""Loss-free resume over the hotlink: sans-I/O helper of the sender's
re-send window. (Readers' acks are batched by the session's progress timer: one
`HotlinkProgress` at most every `PROGRESS_DELAY`, 10 ms after the first undelivered
report, so also promptly when the stream goes idle.)

The sender keeps the frames it sent that not every reader has confirmed (readers
report the highest seq they delivered in order with `HotlinkProgress`, and put the
last one in their `HotlinkAccept` as `seq`). When a reader (re-)accepts with a `seq`,
the sender re-sends what it still holds after it; seqs it no longer holds are a gap,
reported to the caller (logged and counted by the session; frames that went by
fallback files reach the reader by its catch-up instead).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class ResendPlan(Generic[T]):
    #: frames to send again, oldest first (seq > the reader's ack)
    frames: list[T]
    #: (first, last) seqs after the ack that are no longer held, or None
    gap: tuple[int, int] | None


def plan_resend(
    held: deque[T], ack: int, last_sent: int, seq_of: Callable[[T], int]
) -> ResendPlan[T]:
    """Frames of `held` (sent frames, ascending seq) to re-send to a reader that has
    delivered up to `ack`; `last_sent` is the highest seq sent so far. The frames are
    removed from `held` (the caller queues them again and they come back on re-send)."""
    out: list[T] = []
    while held and seq_of(held[-1]) > ack:
        out.append(held.pop())
    out.reverse()
    first_held = seq_of(out[0]) if out else last_sent + 1
    gap = (ack + 1, first_held - 1) if first_held - 1 > ack and ack < last_sent else None
    return ResendPlan(out, gap)
