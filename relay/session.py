"""A live session as the relay's router keeps it.

Its own module so that `lanes.py` (the undecoded data path) and the router share it
without importing each other. Compiled with the router (`common/hot_modules.py`): the
data path reads and writes its fields on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .reader_guard import ReaderGuard


@dataclass(slots=True, eq=False)
class Session:
    sid: str
    path: str
    sender: str
    sender_conn: int
    to: str
    #: accepted reader connections -> their user, in accept order
    readers: dict[int, str] = field(default_factory=dict)
    #: connections that were sent the Open (they learn about the session's end)
    offered: set[int] = field(default_factory=set)
    #: ACL generation the sender and readers were last checked against
    gen: int = 0
    #: `readers` as a tuple: iterated on every data frame
    deliver: tuple[int, ...] = ()
    #: `path + "/"`, precomputed for the data-path containment check
    prefix: str = ""
    #: `sid` and `prefix` in UTF-8: what an undecoded data frame is matched against
    sid_bytes: bytes = b""
    prefix_bytes: bytes = b""
    #: `Router.now` at the last data or control message of the session
    last_activity: float = 0.0
    #: last seq each reader confirmed (HotlinkProgress, or the seq of its Accept)
    acked: dict[str, int] = field(default_factory=dict)
    #: highest seq forwarded (stalled readers are judged against it)
    last_seq: int = 0
    #: per-reader accept rate, resume and stall bookkeeping
    guard: ReaderGuard = field(default_factory=ReaderGuard)

    def set_readers(self) -> None:
        self.deliver = tuple(self.readers)
