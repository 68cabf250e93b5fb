"""Where a reader new to a stream starts, when its catch-up brings stored files, sans-I/O.

Why (design.md, "Reader: joining a running stream"): a reader new to a sid has no
start; on the relay path it takes the first frame it sees. Its catch-up, though, brings
the stream's stored fallback files first, and those are not the whole history: TEE
copies are skipped when the sender's file worker falls behind, and with ON_FAILURE
only the periods off the hotlink are stored. Taking the oldest file as the start
would give the app that old history, then a hole up to the live point, which the
reorder buffer would skip and count as drops: frames the reader was never owed.

So the files are held here, as one contiguous run, until the start is known:

- a file after a hole ends the run before it: that history is not part of this
  reader's stream (`skipped`, reported once, not a drop);
- the sender's answer to our Accept (`hotlink.stream.start`: the first seq it sends us
  from then on; live frames wait for it when the offer says it comes, `AnswerWait`)
  or, from a sender that does not answer, the first live frame decides: the run is
  the start if it reaches that seq, else the seq is (the live point, as on the relay
  path). The answer needs no timing: the run cannot be taken as the start on a loaded
  machine where the first live frame is late;
- neither within the reorder timeout after the catch-up (a sender that does not
  answer, e.g. an older agent, idle or still on files): the run is the start;
- a run as long as the reorder window is the start at once (memory stays bounded as in
  the reorder buffer; a stream stored whole, e.g. written to files before any reader
  accepted, is delivered as it comes).

Once the start is known the run goes through the reorder buffer like any frames. When
it was stored history that started the stream (no live frame decided), a hole between
it and the live stream is not owed either: seqs skipped below the first live frame
(`owed_from`) are reported as history, not drops (`gap_report.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Generic, TypeVar

log = logging.getLogger("hotlink.agent.sessions")

T = TypeVar("T")

#: live frames a new reader holds for the sender's answer, at the least (`AnswerWait`)
HOLD_AT_LEAST = 4096
#: `owed_from` while the stream started from stored history and no live frame came
HISTORY = 1 << 62


class JoinRun(Generic[T]):
    __slots__ = ("first", "items", "limit", "owed_from", "since", "skipped", "wait")

    def __init__(self, limit: int, wait: float) -> None:
        #: a run this long is the start at once (the reorder window)
        self.limit = limit
        #: how long after the catch-up a live frame may still decide (reorder timeout)
        self.wait = wait
        #: the run: contiguous seqs from `first`
        self.first = 0
        self.items: list[T] = []
        #: stored frames left out: history before a hole, not owed to this reader
        self.skipped = 0
        #: when the catch-up ended (`due` counts from it)
        self.since: float | None = None
        #: seqs skipped from here on were owed to this reader (below: stored history)
        self.owed_from = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, seq: int, item: T) -> bool:
        """A stored file's frame; True when the run is long enough to be the start."""
        items = self.items
        nxt = self.first + len(items)
        if not items or seq > nxt:
            self.skipped += len(items)  # a hole: what came before it is older history
            self.first = seq
            self.items = [item]
        elif seq == nxt:
            items.append(item)
        elif seq == self.first - 1:  # store order is mtime order, nearly seq order
            items.insert(0, item)
            self.first = seq
        elif seq < self.first:
            self.skipped += 1  # older history, before a hole
        # else a copy of a frame the run holds
        return len(self.items) >= self.limit

    def hold(self, seq: int, item: T, syncing: bool, now: float) -> bool:
        """`add`, and after the catch-up (a broadcast file) arm `due`; True when the
        run is long enough to be the start."""
        if self.add(seq, item):
            return True
        if not syncing:
            self.caught_up(now)
        return False

    def caught_up(self, now: float) -> None:
        """The catch-up ended: the sender's answer or a live frame may decide for
        `wait`, then the run is the start."""
        if self.items and self.since is None:
            self.since = now

    def disarm(self) -> None:
        """Not due until the next `caught_up` (a catch-up runs again, or shutdown)."""
        self.since = None

    @property
    def due(self) -> float | None:
        """When the run is the start unless the sender's answer or a live frame
        decides first (None: the catch-up has not ended)."""
        if self.since is None:
            return None
        return self.since + self.wait

    def live(self, seq: int, expected: int | None) -> bool:
        """A live frame that the reader's fast path did not take; True if it decides
        the start of the held run (`settle`)."""
        if self.owed_from == HISTORY:
            self.owed_from = seq  # the live stream begins here, after stored history
        return bool(self.items) and expected is None

    def settle(self, live: int | None, who: str) -> tuple[int, list[tuple[int, T]]]:
        """The stream's start and the run's frames from it, in order; the run is
        emptied. `live`: the first live frame's seq (None: none came). `who` names the
        session in the log line saying what was left out."""
        first, items = self.first, self.items
        self.items, self.since = [], None
        if not items:
            assert live is not None
            return live, []
        self.owed_from = HISTORY if live is None else 0
        if live is None or first <= live <= first + len(items):
            start = first
        elif live < first:
            start = live  # an older frame re-sent live: the run follows it
        else:
            start = live  # the run stops short of the live point: history before a hole
            self.skipped += len(items)
        if self.skipped:
            log.info(
                "%s: joined the stream at seq %d; %d older stored frames, not contiguous "
                "with it, left out",
                who,
                start,
                self.skipped,
            )
            self.skipped = 0
        return start, [(first + i, it) for i, it in enumerate(items) if first + i >= start]

    def clear(self) -> None:
        """A new stream."""
        self.items, self.since, self.skipped, self.owed_from = [], None, 0, 0


class AnswerWait(Generic[T]):
    """A new reader's live frames that came before the sender's answer to its Accept
    (`hotlink.stream.start`), held so that the answer, not the first frame to arrive,
    decides the start.

    Why: the first frame a joiner sees may be a re-send meant for another reader, or a
    relay frame that a stall delayed; taken as the start, the frames sent only over the
    other readers' direct links between it and the answer never reach this reader.
    Held only when the offer says the sender answers (`HotlinkOpen.answers`, set by the
    relay): a sender that does not answer (an older agent) is not waited for. If the
    answer is lost (the link went down) the frames go on after `wait`, and at `limit`
    frames or `max_bytes` of payload they go on at once; then the first of them decides,
    as without an answer. `limit` is the reorder window but at least `HOLD_AT_LEAST`: a
    relay stall delays the answer while frames keep coming, and a small window would let
    them go too soon. `max_bytes` is the no-app queue's (`--reader-queue-bytes`): what
    the reader already holds for an app it does not have yet.
    """

    __slots__ = ("bytes", "due", "frames", "limit", "max_bytes", "wait")

    def __init__(self, window: int, wait: float, max_bytes: int) -> None:
        self.limit = max(window, HOLD_AT_LEAST)
        self.max_bytes = max_bytes
        self.wait = wait
        #: live frames in arrival order, and their payload bytes
        self.frames: list[T] = []
        self.bytes = 0
        #: when the frames go on without the answer (None: not waiting)
        self.due: float | None = None

    def expect(self, now: float) -> None:
        """Our Accept as a new reader went out: hold live frames until the answer."""
        self.due = now + self.wait

    def hold(self, item: T, size: int) -> bool:
        """A live frame (of `size` payload bytes) before the answer; True when as many
        frames or bytes are held as may be (let them go)."""
        self.frames.append(item)
        self.bytes += size
        return len(self.frames) >= self.limit or self.bytes >= self.max_bytes

    def reach(self, nxt: int, seqs: Container[int]) -> int:
        """Our start, given the answer `nxt` and the seqs of the frames held (`seqs`):
        `nxt`, or lower while held frames lead up to it without a hole. Frames the relay
        forwarded to us before the sender saw our Accept are ours too, but a run with a
        hole before `nxt` is not: the frames in the hole went only to the other readers'
        direct links, and what precedes it is a re-send meant for someone else."""
        start = nxt
        while start - 1 in seqs:
            start -= 1
        return start

    def take(self) -> list[T]:
        """Stop waiting; the frames held, in arrival order."""
        frames, self.frames, self.due, self.bytes = self.frames, [], None, 0
        return frames
