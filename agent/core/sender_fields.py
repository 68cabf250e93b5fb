"""The fields of a sender stream, declared once for the classes it is made of.

`sender.SenderStream` is assembled from mixins, one idea each (`sender_files`,
`sender_sid`, `resend_window`); they work on the stream's state, which
`SenderStream.__init__` sets up. This class only declares that state's names and types,
so that each mixin is type-checked against the same declarations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from hotlink.wire import messages as m

from .limits import StreamLimits, Totals
from .paths import FallbackPolicy
from .state import SessionMachine


class SenderFields:
    """Declarations only (see the module docstring)."""

    path: str
    prefix: str
    sid: str
    new_sid: Callable[[], str] | None
    sid_changes: int
    lim: StreamLimits
    totals: Totals
    machine: SessionMachine
    policy: FallbackPolicy
    link_up: bool
    closed: bool
    readers: frozenset[str]
    #: highest seq each reader reported delivered (HotlinkProgress)
    reader_acks: dict[str, int]
    #: every current reader confirmed up to here
    confirmed: int
    seq: int
    #: the highest seq the hotlink carried
    last_seq: int
    pending: deque[m.HotlinkData]
    pending_bytes: int
    reading_paused: bool
    _pause_due: bool
    recent: deque[m.HotlinkData]
    recent_bytes: int
    replay_until: int
    resend_gaps: int
    file_backlog: int
    disk_frames: int
    disk_bytes: int
    file_seq_high: int
    files_acked_seq: int
    frames_sent: int
    bytes_sent: int
    files_sent: int
    drops: int
