"""Sans-I/O reorder buffer for one session's data frames (by `seq`).

Guarantees, whatever order and duplication the frames arrive in:

- Every seq is released at most once, in increasing order. Duplicates (a seq already
  released or already buffered) are dropped and counted in `duplicates`. Dedupe is by
  seq only, never by content: two identical payloads with different seqs both pass.
- Memory is bounded: at most `window` frames are held. A frame whose seq is `window`
  or more ahead of the next expected seq forces the buffer forward: the missing seqs
  below it are declared lost, buffered frames before it are released, and the lost
  ranges are reported.
- A gap never stalls the stream forever: when the next expected seq has been missing
  for `gap_timeout` seconds while later frames wait, `expire(now)` declares it lost and
  releases what follows. `deadline` tells the adapter when to call `expire` (the
  adapter arms a timer; nothing polls). Lost ranges are recorded in `lost` (count) and
  handed out by `pop_gaps()` so the adapter can log/report them.
- Seqs that arrive after their gap was skipped are late: dropped and counted in
  `duplicates` like any seq below the next expected one.

`start=None` means "start at the first seq seen" (a reader that joins a running
stream); `start=1` means the stream is known to start at seq 1.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    __slots__ = (
        "_buf",
        "_gap_since",
        "_gaps",
        "duplicates",
        "expected",
        "gap_timeout",
        "lost",
        "window",
    )

    def __init__(self, window: int = 4096, gap_timeout: float = 2.0, start: int | None = None):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.gap_timeout = gap_timeout
        self.expected: int | None = start
        self._buf: dict[int, T] = {}
        self._gap_since = 0.0
        self._gaps: list[tuple[int, int]] = []
        self.duplicates = 0
        self.lost = 0

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def deadline(self) -> float | None:
        """When `expire` must be called, or None while nothing waits on a gap."""
        if not self._buf:
            return None
        return self._gap_since + self.gap_timeout

    def pop_gaps(self) -> list[tuple[int, int]]:
        """Inclusive `(first, last)` seq ranges declared lost since the last call."""
        gaps, self._gaps = self._gaps, []
        return gaps

    def take_next(self, seq: int) -> bool:
        """The common case, without building a release list: `seq` is the next one
        expected and nothing waits, so it is released now (True). Anything else (the
        first frame, a gap, a duplicate) returns False and changes nothing: `push` it."""
        if seq == self.expected and not self._buf:
            self.expected = seq + 1
            return True
        return False

    def push(self, seq: int, item: T, now: float) -> list[tuple[int, T]]:
        """Offer one frame; return the frames now releasable, in order."""
        exp = self.expected
        if exp is None or (seq == exp and not self._buf):
            # Fast path: in order with nothing waiting (or the very first frame).
            self.expected = seq + 1
            return [(seq, item)]
        if seq < exp:
            self.duplicates += 1  # released already, or late after its gap was skipped
            return []
        if seq in self._buf:
            self.duplicates += 1
            return []
        out: list[tuple[int, T]] = []
        if seq - exp >= self.window:
            # Too far ahead: move the window so `seq` fits, declaring the gap lost.
            self._advance_to(seq - self.window + 1, out)
            exp = self.expected
            assert exp is not None
        if seq == exp:
            out.append((seq, item))
            self.expected = seq + 1
            self._drain(out)
        else:
            if not self._buf:
                self._gap_since = now
            self._buf[seq] = item
        return out

    def expire(self, now: float) -> list[tuple[int, T]]:
        """Skip the gap at the head if it has been open for `gap_timeout`."""
        dl = self.deadline
        if dl is None or now < dl:
            return []
        out: list[tuple[int, T]] = []
        self._advance_to(min(self._buf), out)
        self._gap_since = now
        return out

    def reset(self, start: int | None = None) -> None:
        """Forget everything (a new stream, e.g. a new session id)."""
        self.expected = start
        self._buf.clear()
        self._gaps.clear()

    def _advance_to(self, new_expected: int, out: list[tuple[int, T]]) -> None:
        exp = self.expected
        assert exp is not None
        buf = self._buf
        for s in sorted(k for k in buf if k < new_expected):
            if s > exp:
                self._skip(exp, s - 1)
            out.append((s, buf.pop(s)))
            exp = s + 1
        if new_expected > exp:
            self._skip(exp, new_expected - 1)
            exp = new_expected
        self.expected = exp
        self._drain(out)

    def _skip(self, first: int, last: int) -> None:
        self.lost += last - first + 1
        self._gaps.append((first, last))

    def _drain(self, out: list[tuple[int, T]]) -> None:
        buf = self._buf
        exp = self.expected
        assert exp is not None
        while buf and exp in buf:
            out.append((exp, buf.pop(exp)))
            exp += 1
        self.expected = exp


class Source(enum.IntEnum):
    """Where a frame came from (with file fallback the same seq can arrive both ways)."""

    HOTLINK = 1
    FILE = 2


class StreamMerge(ReorderBuffer[T]):
    """The reader's merge of hotlink frames and replayed fallback files.

    One seq space per session, whatever the path: a frame is released once, in seq
    order, by whichever copy arrives first; the other copy is a duplicate. Hotlink
    frames use the inherited `push` (the hot path stays as it was); files use
    `push_file`, which also counts the file copies that were duplicates, so
    `duplicates - file_duplicates` are the hotlink ones.
    """

    __slots__ = ("file_duplicates",)

    def __init__(self, window: int = 4096, gap_timeout: float = 2.0, start: int | None = None):
        super().__init__(window, gap_timeout, start)
        self.file_duplicates = 0

    def push_file(self, seq: int, item: T, now: float) -> list[tuple[int, T]]:
        dup = self.duplicates
        out = self.push(seq, item, now)
        if self.duplicates != dup:
            self.file_duplicates += 1
        return out

    def is_new(self, seq: int) -> bool:
        """Not yet released nor buffered (so a file copy of it is still useful)."""
        exp = self.expected
        return (exp is None or seq >= exp) and seq not in self._buf

    @property
    def delivered(self) -> int:
        """Highest seq released in order (0 before the first)."""
        exp = self.expected
        return 0 if exp is None else exp - 1
