"""The frames a reader session keeps for its first app while none is connected.

Bounded three ways: frames and bytes per session (`--reader-queue`,
`--reader-queue-bytes`) and bytes agent-wide (the shared `ByteBudget`,
`--reader-total-bytes`). A frame beyond them is not kept: the reader refuses it and
asks the sender for it again later (`reader.py`, "Refetch"); nothing here drops a
frame it has kept.
"""

from __future__ import annotations

from collections import deque

from hotlink.wire.frames import header_seq

from ..budget import ByteBudget


class NoAppBacklog:
    __slots__ = ("budget", "bytes", "frames", "max_bytes", "max_frames")

    def __init__(self, max_frames: int, max_bytes: int, budget: ByteBudget) -> None:
        self.frames: deque[tuple[bytes, bytes]] = deque()
        self.bytes = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        #: agent-wide bound on bytes held for reader apps, shared by every session
        self.budget = budget

    def __len__(self) -> int:
        return len(self.frames)

    def first_seq(self) -> int:
        return header_seq(self.frames[0][0])

    def keep(self, header: bytes, payload: bytes) -> str:
        """Keep one app frame: "" if kept, else why not."""
        size = len(header) + len(payload)
        if not self._fits(len(self.frames) + 1, self.bytes + size):
            return f"{len(self.frames)} frames ({self.bytes} bytes) waiting"
        if not self.budget.take(size):
            return f"the agent-wide bound ({self.budget.limit} bytes) reached"
        self.frames.append((header, payload))
        self.bytes += size
        return ""

    def room(self, sizes: list[int]) -> int:
        """How many frames of these sizes (header and payload), in order, `keep` would
        take now (the agent-wide bound is not reserved: others may take it first)."""
        n, size = len(self.frames), self.bytes
        free = self.budget.limit - self.budget.used
        fit = 0
        for s in sizes:
            n, size = n + 1, size + s
            if not self._fits(n, size) or size - self.bytes > free:
                break
            fit += 1
        return fit

    def _fits(self, frames: int, size: int) -> bool:
        """Whether `frames` frames of `size` bytes in all are within this session's
        bounds (the agent-wide one is the budget's)."""
        return frames <= self.max_frames and size <= self.max_bytes

    def take_all(self) -> list[tuple[bytes, bytes]]:
        """Everything kept, for the first app; the backlog is empty after."""
        frames = list(self.frames)
        self.clear()
        return frames

    def clear(self) -> None:
        self.frames.clear()
        self.budget.give(self.bytes)
        self.bytes = 0
