"""The reader's half of a session, sans-I/O: frames from any path in, app writes out.

Frames arrive by the hotlink (`on_data`) and by fallback files (`on_file_frame`);
one `reorder.StreamMerge` puts both in one seq space, so each seq reaches the apps
once, in order, whichever path brought it first (the second copy is a counted
duplicate). Delivered frames become `Deliver` effects (the adapter writes them to
every connected app); while no app is connected at most `reader_queue` frames /
`reader_queue_bytes` are kept for the first app (`DeliverBacklog`), the oldest
dropped and counted beyond that.

Catch-up: before accepting a (new) sid, and on every link up, the stream pages
through the relay's store (`FileSync`) from its cursor; it accepts the sender's open
only after the last page, so hotlink frames never overtake the files they follow.

Timers (`next_deadline` / `handle_timer(now)`): the gap timer skips seqs that never
came (not while a catch-up runs), the progress timer reports the delivered seq to the
sender (`HotlinkProgress`, at most every `PROGRESS_DELAY`), and a catch-up page that
gets no answer within `SYNC_TIMEOUT` is asked again (`SYNC_RETRIES` times, the wait
doubling each time) before the stream goes on without it: a busy relay answers late,
and going on early would skip the files the page would have brought.

"Delivered" means handed to the kernel for every connected app: the adapter injects
`app_flushed(last_seq)`, the lowest seq its app connections flushed (None: no app);
frames still in user-space buffers or in the no-app backlog are not confirmed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import encode_header, header_seq

from ..budget import ByteBudget
from ..reorder import StreamMerge
from .effects import (
    Deliver,
    DeliverBacklog,
    Effect,
    Emit,
    EventType,
    NewVerdict,
    Send,
    Settle,
    Shutdown,
    SidChanged,
)
from .file_data import FileData
from .limits import StreamLimits, Totals
from .paths import ActivePath, FallbackMode, FallbackPolicy
from .state import Role, SessionMachine, SessionState, Trigger

log = logging.getLogger("hotlink.agent.sessions")

#: how long a reader waits before reporting its delivered seq to the sender
PROGRESS_DELAY = 0.01
#: a catch-up page that gets no answer in this time is asked again, the wait doubled,
#: `SYNC_RETRIES` times (5 + 10 + 20 s), then given up
SYNC_TIMEOUT = 5.0
SYNC_RETRIES = 2


class ReaderStream:
    """One reader session's decisions. Every event method returns effects."""

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
        #: a reader takes whatever path the sender uses; the mode is only reported
        self.policy = FallbackPolicy(mode)
        self.reorder: StreamMerge[m.HotlinkData] = StreamMerge(
            limits.reorder_window, limits.reorder_timeout
        )
        #: which path the frames delivered last came by
        self.reader_path = ActivePath.HOTLINK
        self.last_seq = 0
        self.frames_received = self.bytes_received = 0
        self.files_received = 0
        self.drops = 0
        self.apps = 0
        self.backlog: deque[tuple[bytes, bytes]] = deque()
        self.backlog_bytes = 0
        #: agent-wide bound on bytes held for reader apps, shared by every session
        self.budget = budget if budget is not None else ByteBudget()
        #: catch-up cursor in the relay's store, and the last one safe to persist
        self.cursor: tuple[int, str] = (0, "")
        self.safe_cursor: tuple[int, str] = (0, "")
        self.syncing = False
        self.synced_sid = ""
        self.deferred_offer: m.HotlinkOpen | None = None
        #: fallback files being mirrored before their frame is replayed
        self.ingest_pending = 0
        self.progress_sent = 0
        self._lost_seen = 0
        #: the sid whose seqs `delivered()` counts; our Accept of that sid tells the
        #: sender where we are (`seq`) so it re-sends the rest
        self.resume_sid = ""
        self.gap_due: float | None = None
        self.progress_due: float | None = None
        self.sync_due: float | None = None
        #: the current page's wait and re-asks left
        self.sync_wait = SYNC_TIMEOUT
        self.sync_retries = SYNC_RETRIES

    def restore(self, sid: str, delivered: int, cursor: tuple[int, str]) -> None:
        """Back after a restart: the same stream, from the recorded seq and cursor."""
        self.sid = self.resume_sid = sid
        self.last_seq = delivered
        if delivered:
            self.reorder.reset(delivered + 1)
        self.cursor = self.safe_cursor = cursor

    # --- queries ----------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self.machine.state

    def next_deadline(self) -> float | None:
        d = self.progress_due
        g = self.gap_due
        if g is not None and (d is None or g < d):
            d = g
        g = self.sync_due
        if g is not None and (d is None or g < d):
            d = g
        return d

    def delivered(self) -> int:
        """Last seq handed to an app (frames still in the no-app backlog, or in an
        app connection's user-space buffers, which die with the agent, are not)."""
        if self.backlog:
            return header_seq(self.backlog[0][0]) - 1
        if self.apps:
            flushed = self.app_flushed(self.last_seq)
            if flushed is not None:
                return flushed
        return self.last_seq

    def persist_cursor(self) -> tuple[int, str]:
        """The catch-up cursor to record: only advanced while nothing is buffered."""
        if not len(self.reorder) and not self.backlog and not self.ingest_pending:
            self.safe_cursor = self.cursor
        return self.safe_cursor

    # --- apps -------------------------------------------------------------------

    def app_connected(self, now: float) -> list[Effect]:
        self.apps += 1
        if not self.backlog:
            return []
        frames = list(self.backlog)
        self.backlog.clear()
        self.budget.give(self.backlog_bytes)
        self.backlog_bytes = 0
        self.frames_received += len(frames)
        self.bytes_received += sum(len(p) for _, p in frames)
        if self.progress_due is None:
            self.progress_due = now + PROGRESS_DELAY
        return [DeliverBacklog(frames)]

    def app_disconnected(self) -> None:
        self.apps -= 1

    # --- frames from the paths ----------------------------------------------------

    def on_data(self, msg: m.HotlinkData, now: float) -> list[Effect]:
        header = self.in_order(msg, now)
        if header is not None:
            return [Deliver(header, msg.payload)]
        out: list[Effect] = []
        for seq, item in self.reorder.push(msg.seq, msg, now):
            self._deliver(seq, item, out)
        if self.progress_due is None:
            self.progress_due = now + PROGRESS_DELAY
        self._after_push()
        return out

    def in_order(self, msg: m.HotlinkData, now: float) -> bytes | None:
        """The common case of `on_data`, taken when it applies (in order, nothing
        buffered, an app connected, frames already coming by hotlink): the frame is
        delivered, and its HLNK header returned for the adapter to write with the
        payload to every app. What `_deliver` and `_after_push` would do for it,
        without an effect list, the path switch checks or the backlog. None: not
        taken, `on_data` decides."""
        seq = msg.seq
        if not (
            self.apps and self.reader_path is ActivePath.HOTLINK and self.reorder.take_next(seq)
        ):
            return None
        self.last_seq = seq
        self.frames_received += 1
        self.bytes_received += len(msg.payload)
        self.gap_due = None  # nothing buffered: no gap to wait for
        if self.progress_due is None:
            self.progress_due = now + PROGRESS_DELAY
        return self._header(seq, msg)

    def take_file(self, frame: FallbackFrame) -> list[Effect] | None:
        """Is this fallback file part of our current stream? None: no; else the
        effects of taking it (a first file tells a reader without an offer its sid)."""
        if frame.sid == self.sid:
            return []
        if not self.sid and not self.closed:
            self.sid = frame.sid
            return [SidChanged("", frame.sid)]
        return None

    def on_file_frame(self, frame: FallbackFrame, now: float) -> list[Effect]:
        """A fallback file of this stream: merged with hotlink frames by seq."""
        if self.closed or frame.sid != self.sid:
            return []
        item = FileData(self.sid, frame.seq, self.prefix + frame.name, frame.payload, frame.etag)
        out: list[Effect] = []
        for seq, it in self.reorder.push_file(frame.seq, item, now):
            self._deliver(seq, it, out)
        self._after_push()
        return out

    def _after_push(self) -> None:
        ro = self.reorder
        if ro.lost != self._lost_seen:
            self._report_gaps()
        if len(ro):
            if self.gap_due is None:
                self.gap_due = ro.deadline
        else:
            self.gap_due = None

    def _report_gaps(self) -> None:
        ro = self.reorder
        n = ro.lost - self._lost_seen
        self._lost_seen = ro.lost
        if n:
            self.drops += n
            self.totals.drops += n
            for first, last in ro.pop_gaps():
                log.warning(
                    "session %s (%s): seq %d..%d never arrived within %.1fs or the reorder "
                    "window; skipped",
                    self.path,
                    self.sid,
                    first,
                    last,
                    ro.gap_timeout,
                )

    def _header(self, seq: int, msg: m.HotlinkData) -> bytes:
        """The app frame's HLNK header (with path and etag) for frame `seq`."""
        path = msg.path  # apps see the full datasite path, as from the reference
        if not path.startswith(self.prefix):
            path = f"{self.prefix}{seq:08d}.request"
        etag = msg.etag
        return encode_header(path.encode(), etag.encode() if etag else b"", len(msg.payload), seq)

    def _deliver(self, seq: int, msg: m.HotlinkData, out: list[Effect]) -> None:
        payload = msg.payload
        header = self._header(seq, msg)
        self.last_seq = seq
        if type(msg) is FileData:
            self.files_received += 1
            if self.reader_path is not ActivePath.FILES:
                self._switch(ActivePath.FILES, out)
        elif self.reader_path is not ActivePath.HOTLINK:
            self._switch(ActivePath.HOTLINK, out)
        if self.apps:
            out.append(Deliver(header, payload))
            self.frames_received += 1
            self.bytes_received += len(payload)
            return
        bl = self.backlog
        lim = self.lim
        size = len(header) + len(payload)
        budget = self.budget
        while bl and (
            len(bl) >= lim.reader_queue
            or self.backlog_bytes + size > lim.reader_queue_bytes
            or budget.used + size > budget.limit
        ):
            h, p = bl.popleft()
            self.backlog_bytes -= len(h) + len(p)
            budget.give(len(h) + len(p))
            self.drops += 1
            self.totals.drops += 1
            if self.drops == 1 or self.drops % 1000 == 0:
                log.warning(
                    "session %s: no reader app connected and %d frames waiting; dropping the "
                    "oldest (%d dropped so far)",
                    self.path,
                    len(bl),
                    self.drops,
                )
        if not budget.take(size):  # the agent-wide bound, with nothing of ours to drop
            self.drops += 1
            self.totals.drops += 1
            if self.drops == 1 or self.drops % 1000 == 0:
                log.warning(
                    "session %s: no reader app connected and the agent-wide reader bound "
                    "(%d bytes) is reached; frame %d dropped (%d so far)",
                    self.path,
                    budget.limit,
                    header_seq(header),
                    self.drops,
                )
            return
        bl.append((header, payload))
        self.backlog_bytes += size

    def _switch(self, to: ActivePath, out: list[Effect]) -> None:
        self.reader_path = to
        self.policy.switches += 1
        why = "frames arrive by fallback files" if to is ActivePath.FILES else "frames by hotlink"
        log.info("session %s: %s", self.path, why)
        out.append(Emit(EventType.PATH_SWITCHED, self.sender, why))

    def reset_stream(self) -> None:
        self.reorder.reset()
        self.progress_sent = 0
        self.resume_sid = ""
        self.last_seq = 0
        self._lost_seen = 0
        self.gap_due = None

    # --- timers -------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self.sync_due is not None and now >= self.sync_due:
            self.sync_due = None
            if self.syncing and not self.closed and self.sync_retries > 0 and self.link_up:
                self.sync_retries -= 1
                self.sync_wait *= 2
                log.info(
                    "session %s: no catch-up answer from the relay yet; asking again (%gs)",
                    self.path,
                    self.sync_wait,
                )
                self._ask_page(now, out)
            elif self.syncing and not self.closed:
                log.warning(
                    "session %s: no catch-up answer from the relay; going on without",
                    self.path,
                )
                self._sync_done(out)
        if self.gap_due is not None and now >= self.gap_due:
            self.gap_due = None
            ro = self.reorder
            if self.syncing:  # the missing seqs are most likely in the catch-up still coming
                self.gap_due = now + ro.gap_timeout
            else:
                for seq, item in ro.expire(now):
                    self._deliver(seq, item, out)
                self._report_gaps()
                self.gap_due = ro.deadline
        if self.progress_due is not None and now >= self.progress_due:
            self.progress_due = None
            self._progress(now, out)
        return out

    def _progress(self, now: float, out: list[Effect]) -> None:
        """Confirm what reached an app (frames still in the no-app backlog are not
        confirmed: the sender keeps them for a re-send or a fallback file)."""
        seq = self.delivered()
        if seq < self.last_seq and self.apps and not self.closed:
            # a slow app: frames still in our socket buffers are confirmed once the
            # kernel has them, so look again even if no new frame comes
            self.progress_due = now + PROGRESS_DELAY * 5
        if seq <= self.progress_sent or self.closed or not self.sid:
            return
        if self.machine.state is SessionState.OPEN and self.link_up:
            out.append(Send(m.HotlinkProgress(self.sid, seq)))

    # --- catch-up and accept --------------------------------------------------------

    def _set_sid(self, sid: str, out: list[Effect]) -> None:
        old = self.sid
        if old:
            log.info("session %s: new stream %s (was %s)", self.path, sid, old)
            self.reset_stream()
        self.sid = sid
        out.append(SidChanged(old, sid))

    def offer(self, offer: m.HotlinkOpen, now: float) -> list[Effect]:
        """The sender's open is known: catch up on stored fallback files of this
        stream first (once per link connection), then accept. Accepting only after
        the catch-up keeps hotlink frames behind the files they follow."""
        out: list[Effect] = []
        if self.machine.state is not SessionState.PENDING and self.sid == offer.sid:
            return out
        self.machine.fire(Trigger.OFFERED)
        if self.sid != offer.sid:
            self._set_sid(offer.sid, out)
            self.cursor = self.safe_cursor = (0, "")
            self.synced_sid = ""
            self.syncing = False
        self.sender = offer.frm or self.sender
        if self.synced_sid != self.sid:
            self.deferred_offer = offer
            out.append(NewVerdict())
            if not self.syncing:
                self._start_sync(now, out)
            return out
        self._accept(offer, out)
        return out

    def start(self, offer: m.HotlinkOpen | None, now: float) -> list[Effect]:
        """Opened locally: take a known offer, or catch up on a restored sid."""
        if offer is not None and self.link_up:
            return self.offer(offer, now)
        out: list[Effect] = []
        if self.sid and self.link_up:
            self._start_sync(now, out)
        return out

    def _start_sync(self, now: float, out: list[Effect]) -> None:
        self.sync_wait = SYNC_TIMEOUT
        self.sync_retries = SYNC_RETRIES
        self._ask_page(now, out)

    def _ask_page(self, now: float, out: list[Effect]) -> None:
        """Ask for the page after the cursor (again, after a timeout: a late answer
        to the first ask is taken as well; its files are dropped by seq)."""
        if not self.link_up or not self.sid or self.closed:
            return
        out.append(
            Send(
                m.FileSync(
                    self.path,
                    self.cursor[0],
                    self.cursor[1],
                    sid=self.sid,
                    # a larger file would not fit one WS message to us (path, keys)
                    limit=max(1, self.lim.max_message - 4096),
                )
            )
        )
        self.syncing = True
        self.sync_due = now + self.sync_wait

    def on_file_sync(self, msg: m.FileSync, now: float) -> list[Effect]:
        """A catch-up page ended; its files came before this message."""
        out: list[Effect] = []
        if self.closed or not self.syncing or msg.sid != self.sid:
            return out
        self.cursor = (msg.since, msg.after)
        if msg.more:
            self._start_sync(now, out)
        else:
            self._sync_done(out)
        return out

    def sync_failed(self, why: str) -> list[Effect]:
        """The relay answered the catch-up with an Error: go on without it."""
        out: list[Effect] = []
        if self.syncing:
            log.warning("session %s: catch-up failed: %s", self.path, why)
            self._sync_done(out)
        return out

    def _sync_done(self, out: list[Effect]) -> None:
        self.syncing = False
        self.sync_due = None
        self.synced_sid = self.sid
        offer, self.deferred_offer = self.deferred_offer, None
        if offer is not None and offer.sid == self.sid and self.link_up:
            self._accept(offer, out)

    def _accept(self, offer: m.HotlinkOpen, out: list[Effect]) -> None:
        if self.sid != offer.sid:
            self._set_sid(offer.sid, out)
        self.sender = offer.frm or self.sender
        out.append(NewVerdict())
        # where we are in this stream, if we were in it before (re-accept, restart)
        seq = self.delivered() if self.resume_sid == self.sid else None
        out.append(Send(m.HotlinkAccept(self.sid, seq=seq), track=True))

    def sent(self, msg: m.Message) -> None:
        """A message of ours reached the link."""
        if isinstance(msg, m.HotlinkAccept):
            self.resume_sid = msg.sid
        elif isinstance(msg, m.HotlinkProgress):
            self.progress_sent = msg.seq

    # --- relay control messages -----------------------------------------------------

    def on_link_up(self, now: float) -> list[Effect]:
        self.link_up = True
        out: list[Effect] = []
        if self.sid and not self.closed:
            self._start_sync(now, out)
        return out

    def on_link_down(self) -> None:
        self.link_up = False
        if self.machine.state is SessionState.OPEN:
            self.machine.fire(Trigger.LINK_DOWN, "link down")
        self.syncing = False
        self.synced_sid = ""
        self.deferred_offer = None

    def on_acked(self) -> list[Effect]:
        """The relay acked our Accept."""
        if self.machine.state is not SessionState.PENDING or self.closed:
            return []
        self.machine.fire(Trigger.ACKED, "")
        log.info("session %s (%s) open on the relay as reader", self.path, self.sid)
        return [Settle(None), Emit(EventType.ACCEPTED, self.sender)]

    def on_reject(self, frm: str, reason: str) -> list[Effect]:
        if frm:
            return [Emit(EventType.REJECTED, frm, reason)]
        if reason == m.REASON_UNKNOWN_SESSION:
            # The relay lost the session (sender gone / relay restarted): wait for the
            # sender's re-open instead of failing for good.
            if self.machine.live:
                self.machine.fire(Trigger.SENDER_GONE, reason)
            self.synced_sid = ""
            return []
        return self.reject(reason)

    def on_close(self, reason: str) -> list[Effect] | None:
        """The sender's side ended. None: the sender closed the session for good (the
        adapter closes it as if by CloseSession)."""
        if reason in (m.REASON_SENDER_GONE, m.REASON_IDLE) and self.machine.live:
            self.machine.fire(Trigger.SENDER_GONE, reason)
            # The files the sender wrote while it was gone may never have been
            # broadcast to us (a relay cluster without NATS drops cross-node copies):
            # the re-offer must catch up from the store before accepting.
            self.synced_sid = ""
            return [Emit(EventType.CLOSED, self.sender, reason)]
        return None

    def reject(self, reason: str) -> list[Effect]:
        if not self.machine.can(Trigger.REJECTED):
            return []
        self.machine.fire(Trigger.REJECTED, reason or "rejected")
        why = self.machine.reason
        log.warning("session %s rejected by the relay: %s", self.path, why)
        return [Settle(why), Shutdown(graceful=False), Emit(EventType.REJECTED, "", why)]

    def close(self, reason: str) -> list[Effect]:
        """CloseSession (or the sender closed): leave our leg only."""
        if self.machine.state is SessionState.CLOSED:
            return []  # closing twice is a no-op
        out: list[Effect] = []
        if self.sid and self.link_up and self.machine.state is SessionState.OPEN:
            out.append(Send(m.HotlinkClose(self.sid, reason or "closed")))
        self.machine.fire(Trigger.CLOSED, reason or "closed")
        out.append(Settle("session closed"))
        out.append(Shutdown(graceful=True))
        out.append(Emit(EventType.CLOSED, "", self.machine.reason))
        return out

    def shutdown(self) -> None:
        self.closed = True
        self.budget.give(self.backlog_bytes)
        self.backlog.clear()
        self.backlog_bytes = 0
        self.gap_due = self.progress_due = self.sync_due = None
