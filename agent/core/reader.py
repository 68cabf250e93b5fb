"""The reader's half of a session, sans-I/O: frames from any path in, app writes out.

Frames arrive by the hotlink (`on_data`) and by fallback files (`on_file_frame`);
one `reorder.StreamMerge` puts both in one seq space, so each seq reaches the apps
once, in order, whichever path brought it first (the second copy is a counted
duplicate). Delivered frames become `Deliver` effects (the adapter writes them to
every connected app); while no app is connected at most `reader_queue` frames /
`reader_queue_bytes` are kept for the first app (`DeliverBacklog`).

A frame no app can take is refused, not dropped, and asked for again once an app
connects (`refetch.py`). Before accepting a (new) sid, and on every link up, the stream
pages through the relay's store and accepts the sender's open only after the last page
(`catch_up.py`); a reader new to the stream starts as `join.py` decides. What the
stream keeps, and the queries on it, are `reader_state.ReaderState`.

Timers (`next_deadline` / `handle_timer(now)`): gaps skipped, progress reported (at
most every `PROGRESS_DELAY`), late catch-up pages and refetch re-Accepts asked again.

"Delivered" means handed to the kernel for every connected app: the adapter injects
`app_flushed(last_seq)`, the lowest seq its app connections flushed (None: no app);
frames still in user-space buffers or in the no-app backlog are not confirmed.
"""

from __future__ import annotations

import logging

from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import encode_header, header_seq
from hotlink.wire.paths import AUTO_NAME

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
from .paths import ActivePath
from .reader_state import ReaderState
from .refetch import RESEND_WAIT
from .state import SessionState, Trigger

log = logging.getLogger("hotlink.agent.sessions")

#: how long a reader waits before reporting its delivered seq to the sender
PROGRESS_DELAY = 0.01


def _seq(msg: m.HotlinkData) -> int:
    return msg.seq


class ReaderStream(ReaderState):
    """One reader session's decisions. Every event method returns effects."""

    # --- apps -------------------------------------------------------------------

    def app_connected(self, now: float) -> list[Effect]:
        """An app connected: it gets the no-app backlog first (`DeliverBacklog`), then
        what was refused is asked for again."""
        self.apps += 1
        out: list[Effect] = []
        if self.backlog:
            frames = self.backlog.take_all()
            for h, p in frames:
                self._count_received(header_seq(h), len(p))
            if self.progress_due is None:
                self.progress_due = now + PROGRESS_DELAY
            out.append(DeliverBacklog(frames))
        if self.refetch.from_seq:
            self._refetch(now, out)
        return out

    def app_disconnected(self) -> None:
        self.apps -= 1

    def app_lost(self, first: int) -> bool:
        """An app was disconnected for reading too slowly: the frames from `first` on
        that were queued for it are gone. With no other app they were delivered to
        nobody: refused (refetched when an app connects; True). Other apps have them:
        only that app lost them (False)."""
        if self.apps > 1 or self.closed:
            return False
        rf = self.refetch
        if not rf.from_seq or first < rf.from_seq:
            self._refuse_from(first, "the reader app was disconnected for reading too slowly")
            if self.last_seq >= first:
                self.counted_through = max(self.counted_through, self.last_seq)
                rf.refused += self.last_seq - first  # the rest of its queue
                self.last_seq = first - 1
        return True

    def app_lost_revised(self, was: int, first: int) -> None:
        """The lost app got more than `app_lost` was told: up to `first` - 1."""
        if self.refetch.revise(was, first):
            self.last_seq = first - 1

    # --- frames from the paths ----------------------------------------------------

    def on_data(self, msg: m.HotlinkData, now: float) -> list[Effect]:
        header = self.in_order(msg, now)
        if header is not None:
            return [Deliver(header, msg.payload)]
        out: list[Effect] = []
        if self.answer.due is not None and self.reorder.expected is None:
            if self.answer.hold(msg, len(msg.payload)):  # as much as it holds: go on
                self._unanswered(now, out)
            return out
        rf = self.refetch
        if self.join.live(msg.seq, self.reorder.expected):
            self._begin(msg.seq, now, out)  # the first live frame decides
        if rf.awaiting_from and rf.in_flight_copy(msg.seq, self.reorder.expected):
            return out
        for seq, item in self.reorder.push(msg.seq, msg, now):
            self._deliver(seq, item, out)
        if self.progress_due is None:
            self.progress_due = now + PROGRESS_DELAY
        self._after_push(now)
        return out

    def in_order(self, msg: m.HotlinkData, now: float) -> bytes | None:
        """The common case of `on_data` (in order, nothing buffered, an app connected,
        frames already coming by hotlink): what `_deliver` and `_after_push` would do,
        without an effect list; returns the HLNK header for the adapter to write with
        the payload to every app. None: not taken, `on_data` decides."""
        seq = msg.seq
        if not (
            self.apps
            and not self.refetch.from_seq
            and self.reader_path is ActivePath.HOTLINK
            and self.reorder.take_next(seq)
        ):
            return None
        self.last_seq = seq
        self._count_received(seq, len(msg.payload))
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
        if self.reorder.expected is None:  # no start yet: held until it is known
            if self.join.hold(frame.seq, item, self.catch_up.running, now):
                self._begin(None, now, out)
            return out
        self._files([(frame.seq, item)], now, out)
        return out

    def _files(self, files: list[tuple[int, FileData]], now: float, out: list[Effect]) -> None:
        for seq, item in files:
            for s, it in self.reorder.push_file(seq, item, now):
                self._deliver(s, it, out)
        if self.progress_due is None:
            self.progress_due = now + PROGRESS_DELAY
        self._after_push(now)

    def stream_start(self, nxt: int, now: float) -> list[Effect]:
        """The sender's answer to our Accept as a new reader: it sends us every seq from
        `nxt` on. Without a start yet, that decides it, with no live frame or timer to
        wait for: the live frames held for it if they lead up to `nxt`, else `nxt`; the
        held stored run if it reaches that (join.py)."""
        out: list[Effect] = []
        if self.reorder.expected is None and not self.closed:
            self._begin(self._answered_start(nxt), now, out)
        elif self.answer.due is not None:
            self._unanswered(now, out)
        return out

    def _answered_start(self, nxt: int) -> int:
        """Where the answer `nxt` starts us: lower while the live frames held lead up
        to it, but with no app connected only as low as the no-app backlog can keep
        them. Frames before `nxt` are not held for us by the sender: refused, they would
        be a hole right after our start."""
        held = {msg.seq: msg for msg in self.answer.frames}
        start = self.answer.reach(nxt, held)
        if start < nxt and not self.apps:
            below = [held[s] for s in range(nxt - 1, start - 1, -1)]
            start = nxt - self.backlog.room(
                [len(self._header(x.seq, x)) + len(x.payload) for x in below]
            )
        return start

    def _begin(self, live: int | None, now: float, out: list[Effect]) -> None:
        """Our start is known (`live`: the sender's answer or the first live frame;
        None: the held stored run): the run's files from it, then the live frames held
        for the answer, in seq order. Those before the start were not meant for us.
        One a reorder window or more past the frames owed before it would make the
        reorder buffer skip them: it was sent before the sender saw our Accept (its
        re-send from the start brings it again, in order), or it is as far ahead as
        the window allows no frame to be."""
        start, run = self.join.settle(live, self.who)
        self.reorder.reset(start)
        self._files(run, now, out)
        window = self.lim.reorder_window
        for msg in sorted(self.answer.take(), key=_seq):
            exp = self.reorder.expected
            if msg.seq >= start and (exp is None or msg.seq < exp + window):
                out.extend(self.on_data(msg, now))

    def _unanswered(self, now: float, out: list[Effect]) -> None:
        """No answer to wait for any longer: the held live frames go on as they came
        (the first of them decides the start, as from a sender that does not answer)."""
        frames = self.answer.take()
        if frames and self.reorder.expected is None:
            log.info(
                "%s: no answer from the sender on where our stream starts; %d live frames "
                "arrived meanwhile, starting at the first (seq %d)",
                self.who,
                len(frames),
                frames[0].seq,
            )
        for msg in frames:
            out.extend(self.on_data(msg, now))

    def _after_push(self, now: float) -> None:
        ro = self.reorder
        if ro.lost != self.gaps.seen:
            self._report_gaps(now)
        if len(ro):
            if self.gap_due is None:
                self.gap_due = ro.deadline
        else:
            self.gap_due = None

    def _report_gaps(self, now: float) -> None:
        """Count skipped seqs we were owed as drops; logged coalesced (`gap_report.py`)."""
        n = self.gaps.take(self.reorder, self.join.owed_from, self.who, now)
        self.drops += n
        self.totals.drops += n

    def _header(self, seq: int, msg: m.HotlinkData) -> bytes:
        """The app frame's HLNK header (with path and etag) for frame `seq`."""
        path = msg.path  # apps see the full datasite path, as from the reference
        if not path.startswith(self.prefix):
            path = self.prefix + AUTO_NAME % seq
        etag = msg.etag
        return encode_header(path.encode(), etag.encode() if etag else b"", len(msg.payload), seq)

    def _deliver(self, seq: int, msg: m.HotlinkData, out: list[Effect]) -> None:
        if self.refetch.from_seq:
            self.refetch.refused += 1
            return
        payload = msg.payload
        header = self._header(seq, msg)
        if not self.apps and not self._keep(seq, header, payload):
            return
        self.last_seq = seq
        if type(msg) is FileData:
            if seq > self.counted_through:  # not a file a dropped app lost, fetched again
                self.files_received += 1
            if self.reader_path is not ActivePath.FILES:
                self._switch(ActivePath.FILES, out)
        elif self.reader_path is not ActivePath.HOTLINK:
            self._switch(ActivePath.HOTLINK, out)
        if self.apps:
            out.append(Deliver(header, payload))
            self._count_received(seq, len(payload))

    def _keep(self, seq: int, header: bytes, payload: bytes) -> bool:
        """No app connected: keep the frame for the first one, or refuse it (see
        "Refetch")."""
        why = self.backlog.keep(header, payload)
        if why:
            self._refuse_from(seq, "no reader app connected and " + why)
        return not why

    def _refuse_from(self, seq: int, why: str) -> None:
        self.refetch.refuse(seq, self.path, why)
        self.gap_due = None  # what is buffered waits for the refetch

    def _refetch(self, now: float, out: list[Effect]) -> None:
        """Ask again for what was refused: the stream restarts after the last frame
        delivered, stored files come again from the last safe cursor, and after that
        catch-up a re-Accept makes the sender re-send what it holds (`_sync_done`).
        Copies of frames already delivered are dropped by seq."""
        log.info(
            "session %s: an app is connected; asking again for seq %d and later (%d refused)",
            self.path,
            self.last_seq + 1,
            self.refetch.refused,
        )
        self.refetch.from_seq = 0
        self.reorder.reset(self.last_seq + 1)
        self.catch_up.cursor = self.catch_up.safe_cursor
        if not self.link_up or self.machine.state is not SessionState.OPEN:
            return  # the next accept on link up carries the delivered seq
        self.refetch.start(self.last_seq + 1)
        self._start_sync(now, out)

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
        self.last_seq = self.counted_through = 0
        self.gap_due = None
        self.join.clear()
        self.answer.take()

    # --- timers -------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        rf = self.refetch
        if rf.due is not None and now >= rf.due:
            rf.due = None
            if rf.pending:
                self._reask(now, out)
            elif rf.awaiting_from and rf.overdue(self.reorder.expected) and not self.closed:
                log.info("session %s: no re-send came in %gs; asking again", self.path, RESEND_WAIT)
                self._reask(now, out)
        cu = self.catch_up
        if cu.due is not None and now >= cu.due:
            again = cu.late(self.link_up, self.closed)
            if again:
                self._start_sync(now, out, again=True)
            elif again is not None:
                self._sync_done(out, now)
        if self.gap_due is not None and now >= self.gap_due:
            self.gap_due = None
            ro = self.reorder
            if cu.running:  # the missing seqs are most likely in the catch-up still coming
                self.gap_due = now + ro.gap_timeout
            elif self._look_in_store(now, out):
                self.gap_due = now + ro.gap_timeout / 4
            else:
                for seq, item in ro.expire(now):
                    self._deliver(seq, item, out)
                    self.progress_due = now  # no later frame may come to report them
                self._report_gaps(now)
                self.gap_due = ro.deadline
        jr = self.join
        if jr.due is not None and now >= jr.due:
            if cu.running:
                jr.disarm()  # armed again when this catch-up ends
            else:  # no live frame came: the held run is the start
                self._begin(None, now, out)
        if self.answer.due is not None and now >= self.answer.due:
            self._unanswered(now, out)
        if self.gaps.due is not None and now >= self.gaps.due:
            self.gaps.flush(self.who, now)
        if self.progress_due is not None and now >= self.progress_due:
            self.progress_due = None
            self._progress(now, out)
        return out

    def _look_in_store(self, now: float, out: list[Effect]) -> bool:
        """Before a gap is skipped, one catch-up: its seqs may be fallback files in the
        relay's store that no broadcast brought (written through a cluster node that
        died before announcing them). True if one was asked for."""
        exp = self.reorder.expected
        if exp == self.store_looked or not self.link_up or not self.sid or self.closed:
            return False
        log.info("session %s: seq %s missing; looking in the relay's store", self.path, exp)
        self._start_sync(now, out)
        return True

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
        stream first, then accept. Accepting only after the catch-up keeps hotlink
        frames behind the files they follow. Every (re-)offer catches up, also after a
        catch-up on this link connection: files may have reached the store since
        through another relay node that ours could not hear (a cluster cut from NATS)."""
        out: list[Effect] = []
        if self.machine.state is not SessionState.PENDING and self.sid == offer.sid:
            return out
        self.machine.fire(Trigger.OFFERED)
        if self.sid != offer.sid:
            self._set_sid(offer.sid, out)
            self.catch_up.forget()
        self.sender = offer.frm or self.sender
        self.deferred_offer = offer
        out.append(NewVerdict())
        if not self.catch_up.running:
            self._start_sync(now, out)
        return out

    def start(self, offer: m.HotlinkOpen | None, now: float) -> list[Effect]:
        """Opened locally: take a known offer, or catch up on a restored sid."""
        if offer is not None and self.link_up:
            return self.offer(offer, now)
        out: list[Effect] = []
        if self.sid and self.link_up:
            self._start_sync(now, out)
        return out

    def _start_sync(self, now: float, out: list[Effect], again: bool = False) -> None:
        """Ask for the first page (`again`: the same page, its answer is late)."""
        if self.link_up and self.sid and not self.closed:
            cu = self.catch_up
            self.store_looked = self.reorder.expected or 0  # it looks for what is missing
            out.append(Send(cu.ask(self.sid, now) if again else cu.begin(self.sid, now)))

    def on_file_sync(self, msg: m.FileSync, now: float) -> list[Effect]:
        """A catch-up page ended; its files came before this message."""
        out: list[Effect] = []
        if self.closed or not self.catch_up.running or msg.sid != self.sid:
            return out
        if self.catch_up.page_ended(msg):
            self._start_sync(now, out)
        else:
            self._sync_done(out, now)
        return out

    def sync_failed(self, why: str, now: float) -> list[Effect]:
        """The relay answered the catch-up with an Error: go on without it."""
        out: list[Effect] = []
        if self.catch_up.running:
            log.warning("session %s: catch-up failed: %s", self.path, why)
            self._sync_done(out, now)
        return out

    def _sync_done(self, out: list[Effect], now: float) -> None:
        self.catch_up.finish()
        self.join.caught_up(now)
        offer, self.deferred_offer = self.deferred_offer, None
        if offer is not None and offer.sid == self.sid and self.link_up:
            self.refetch.pending = False  # the Accept carries the delivered seq
            self._accept(offer, now, out)
        elif self.refetch.pending:
            self._reask(now, out)

    def _reask(self, now: float, out: list[Effect]) -> None:
        """A refetch's re-Accept: the sender re-sends what it holds after our
        delivered seq."""
        if self.closed or not self.link_up or self.machine.state is not SessionState.OPEN:
            self.refetch.pending = False
        elif self.refetch.may_ask(now, self.reorder.expected):
            out.append(Send(m.HotlinkAccept(self.sid, seq=self.delivered())))

    def _accept(self, offer: m.HotlinkOpen, now: float, out: list[Effect]) -> None:
        if self.sid != offer.sid:
            self._set_sid(offer.sid, out)
        self.sender = offer.frm or self.sender
        out.append(NewVerdict())
        # where we are in this stream, if we were in it before (re-accept, restart)
        seq = self.delivered() if self.resume_sid == self.sid else None
        if seq is None and offer.answers and self.reorder.expected is None:
            self.answer.expect(now)  # a new reader: the answer says where we start
        elif self.answer.due is not None:
            self._unanswered(now, out)  # asked again with a seq: no answer will come
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
        self.catch_up.finish()  # the next link connection catches up again
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
            return []
        return self.reject(reason)

    def on_close(self, reason: str) -> list[Effect] | None:
        """The sender's side ended. None: the sender closed the session for good (the
        adapter closes it as if by CloseSession)."""
        if reason in (m.REASON_SENDER_GONE, m.REASON_IDLE) and self.machine.live:
            self.machine.fire(Trigger.SENDER_GONE, reason)
            return [Emit(EventType.CLOSED, self.sender, reason)]
        self.leg_ended = True  # by the relay or the sender: our close says nothing more
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
        st = self.machine.state
        if self.sid and self.link_up and st is SessionState.OPEN and not self.leg_ended:
            out.append(Send(m.HotlinkClose(self.sid, reason or "closed")))
        self.machine.fire(Trigger.CLOSED, reason or "closed")
        out.append(Settle("session closed"))
        out.append(Shutdown(graceful=True))
        out.append(Emit(EventType.CLOSED, "", self.machine.reason))
        return out

    def shutdown(self) -> None:
        self.closed = True
        self.backlog.clear()
        self.gap_due = self.progress_due = self.catch_up.due = None
        self.join.disarm()
        self.answer.take()
        self.gaps.flush(self.who, float("inf"))
