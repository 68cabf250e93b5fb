"""The state of a reader session's stream and the queries on it (the adapter's
`delivered()`, `next_deadline()`, `persist_cursor()`); `reader.ReaderStream` builds on
it with the events. Compiled with it (`common/hot_modules.py`): a compiled class can
only subclass a compiled one.
"""

from __future__ import annotations

from collections.abc import Callable

from hotlink.wire import messages as m

from ..budget import ByteBudget
from ..reorder import StreamMerge
from .backlog import NoAppBacklog
from .catch_up import CatchUp
from .file_data import FileData
from .gap_report import GapReport
from .join import AnswerWait, JoinRun
from .limits import StreamLimits, Totals
from .paths import ActivePath, FallbackMode, FallbackPolicy
from .refetch import Refetch
from .state import Role, SessionMachine, SessionState


class ReaderState:
    """What a reader stream keeps, and what the adapter may read of it (`ReaderStream`
    adds the events). Split from it by idea: state and queries here, decisions there."""

    def __init__(
        self,
        path: str,
        *,
        sender: str,
        mode: FallbackMode = FallbackMode.ON_FAILURE,
        limits: StreamLimits,
        totals: Totals | None = None,
        link_up: bool = False,
        app_flushed: Callable[[int], int | None] = lambda last: None,
        budget: ByteBudget | None = None,
    ) -> None:
        self.path = path
        self.prefix = path + "/"
        self.sid = ""
        self.app_flushed = app_flushed
        self.sender = sender
        self.lim = limits
        self.totals = totals if totals is not None else Totals()
        self.machine = SessionMachine(Role.READER)
        self.link_up = link_up
        self.closed = False
        self.leg_ended = False
        #: a reader takes whatever path the sender uses; the mode is only reported
        self.policy = FallbackPolicy(mode)
        self.reorder: StreamMerge[m.HotlinkData] = StreamMerge(
            limits.reorder_window, limits.reorder_timeout
        )
        #: which path the frames delivered last came by
        self.reader_path = ActivePath.HOTLINK
        self.last_seq = 0
        self.frames_received = self.bytes_received = 0
        #: frames up to this seq were counted in `frames_received` (and those that came
        #: as files in `files_received`) when an app that was dropped for slowness lost
        #: them; the refetch delivers them again, and they are not counted twice (0:
        #: nothing was lost so)
        self.counted_through = 0
        self.files_received = 0
        self.drops = 0
        self.apps = 0
        self.backlog = NoAppBacklog(
            limits.reader_queue,
            limits.reader_queue_bytes,
            budget if budget is not None else ByteBudget(),
        )
        self.catch_up = CatchUp(path, max(1, limits.max_message - 4096))
        #: the sender's open, accepted once the catch-up ends
        self.deferred_offer: m.HotlinkOpen | None = None
        #: fallback files being mirrored before their frame is replayed
        self.ingest_pending = 0
        self.progress_sent = 0
        #: the sid whose seqs `delivered()` counts; our Accept of that sid tells the
        #: sender where we are (`seq`) so it re-sends the rest
        self.resume_sid = ""
        self.gap_due: float | None = None
        self.progress_due: float | None = None
        self.refetch = Refetch()
        #: the next seq expected when a catch-up last began (`_look_in_store`)
        self.store_looked = 0
        #: a new reader's stored files, held until its start is known (join.py)
        self.join: JoinRun[FileData] = JoinRun(limits.reorder_window, limits.reorder_timeout)
        #: a new reader's live frames, held until the sender's answer says its start
        self.answer: AnswerWait[m.HotlinkData] = AnswerWait(
            limits.reorder_window, limits.reorder_timeout, limits.reader_queue_bytes
        )
        self.gaps = GapReport(limits.reorder_timeout)

    def restore(self, sid: str, delivered: int, cursor: tuple[int, str]) -> None:
        """Back after a restart: the same stream, from the recorded seq and cursor."""
        self.sid = self.resume_sid = sid
        self.last_seq = delivered
        if delivered:
            self.reorder.reset(delivered + 1)
        self.catch_up.cursor = self.catch_up.safe_cursor = cursor

    def _count_received(self, seq: int, size: int) -> None:
        """Frame `seq` (`size` payload bytes) went to the apps: counted, unless a
        dropped app lost it after it was counted (`counted_through`)."""
        if seq > self.counted_through:
            self.frames_received += 1
            self.bytes_received += size

    # --- queries ----------------------------------------------------------------

    @property
    def who(self) -> str:
        return f"session {self.path} ({self.sid})"

    @property
    def state(self) -> SessionState:
        return self.machine.state

    def next_deadline(self) -> float | None:
        due = [self.progress_due, self.gap_due, self.catch_up.due, self.refetch.due]
        due += [self.join.due, self.gaps.due, self.answer.due]
        return min([d for d in due if d is not None], default=None)

    def delivered(self) -> int:
        """Last seq handed to an app (frames still in the no-app backlog, or in an
        app connection's user-space buffers, which die with the agent, are not)."""
        if self.backlog:
            return self.backlog.first_seq() - 1
        if self.apps:
            flushed = self.app_flushed(self.last_seq)
            if flushed is not None:
                return flushed
        return self.last_seq

    def persist_cursor(self) -> tuple[int, str]:
        """The catch-up cursor to record: only advanced while nothing is buffered or
        refused (a refetch catches up from it)."""
        held = len(self.reorder) or self.join or self.answer.frames
        idle = not (held or self.backlog or self.ingest_pending)
        return self.catch_up.persist(idle and not self.refetch.from_seq)
