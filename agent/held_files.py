"""Fallback files a sender's relay copy is no longer needed for, per session.

Why: fallback and TEE files stayed in the relay's store forever (a closed session of
1000 frames left 1000 files). A session opened to one named reader (`to`) knows when
that reader has them: its HotlinkProgress confirms delivery up to a seq, and a reader
that restarts resumes after its delivered seq. Files that the relay acknowledged and
that reader confirmed are then deleted there (FileDelete). Sessions open to every
reader keep theirs: a later reader catches up from them (the relay's retention sweep
removes them in the end). Sans-I/O: tells the file worker which paths to delete.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class HeldFiles:
    def __init__(self) -> None:
        #: session -> (seq, wire path) of its files the relay holds, in seq order
        self.held: dict[Any, deque[tuple[int, str]]] = {}
        #: session -> highest seq its reader confirmed
        self.confirmed: dict[Any, int] = {}

    def acked(self, s: Any, seq: int, path: str) -> list[str]:
        """The relay stored `path` (seq `seq`) of session `s`; returns what to delete."""
        if not getattr(s, "to", ""):
            return []
        self.held.setdefault(s, deque()).append((seq, path))
        return self._due(s)

    def delivered(self, s: Any, reader: str, seq: int) -> list[str]:
        """`reader` confirmed seqs up to `seq`; only the session's named reader counts."""
        if not reader or reader != getattr(s, "to", "") or seq <= self.confirmed.get(s, 0):
            return []
        self.confirmed[s] = seq
        return self._due(s)

    def _due(self, s: Any) -> list[str]:
        q = self.held.get(s)
        upto = self.confirmed.get(s, 0)
        out = []
        while q and q[0][0] <= upto:
            out.append(q.popleft()[1])
        return out

    def forget(self, s: Any) -> None:
        self.held.pop(s, None)
        self.confirmed.pop(s, None)
