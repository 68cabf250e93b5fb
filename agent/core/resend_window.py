"""The sender's re-send window, sans-I/O: what is kept for a re-send, and re-sent.

Why (docs/design.md, "Loss-free resume"): sent frames not yet confirmed by every
reader (`HotlinkProgress`) are kept in `recent`, at most `resend_frames` /
`resend_bytes`; when it is full and every reader reports progress the apps are paused
instead of forgetting a frame. When the link drops the window goes back in front of the
queue and is re-sent after the re-open; a reader's Accept with `seq` re-queues what
follows it (readers drop copies by seq). Re-sent frames wait in `pending` like new
ones; those up to `replay_until` are re-sends.

`ResendWindow` is a part of `SenderStream` (the state is the stream's); the direct
path's sender (`sender_direct.py`) decides which path each re-send takes.
"""

from __future__ import annotations

import logging

from hotlink.wire import messages as m

from ..acks import plan_resend
from .effects import Effect
from .sender_fields import SenderFields

log = logging.getLogger("hotlink.agent.sessions")


def seq_of(msg: m.HotlinkData) -> int:
    """A queued frame's seq (the key `plan_resend` and sorts take)."""
    return msg.seq


class ResendWindow(SenderFields):
    """The re-send window of a sender stream (see the module docstring)."""

    def _maybe_resume(self, out: list[Effect]) -> None: ...

    def on_progress(self, reader: str, seq: int) -> list[Effect]:
        """A reader confirmed seqs up to `seq`: they need no re-send any more."""
        if reader not in self.readers:
            return []
        acks = self.reader_acks
        if seq <= acks.get(reader, 0):
            return []
        acks[reader] = seq
        out: list[Effect] = []
        self._trim_confirmed(out)
        return out

    def _trim_confirmed(self, out: list[Effect]) -> None:
        """Forget the frames every current reader confirmed; resume paused apps when
        the window has room again (after progress, or a reader that left)."""
        if self.readers:
            low = min(self.reader_acks.get(r, 0) for r in self.readers)
            if low > self.confirmed:
                self.confirmed = low
                ring = self.recent
                while ring and ring[0].seq <= low:
                    self.recent_bytes -= len(ring.popleft().payload)
        if self.reading_paused:
            self._maybe_resume(out)

    def _resume_reader(self, reader: str, ack: int) -> None:
        """`reader` (re-)accepted having delivered up to `ack`: the frames we still
        hold after it go to the front of the queue again (readers drop copies by seq).
        Seqs after it we no longer hold are a gap: logged and counted here; the ones
        that went by fallback files reach the reader by its catch-up."""
        self.reader_acks[reader] = ack
        pend = self.pending
        plan = plan_resend(self.recent, ack, pend[0].seq - 1 if pend else self.seq, seq_of)
        if plan.frames:
            self._requeue(plan.frames)
            log.info(
                "session %s: %s resumes after seq %d: re-sending seq %d..%d",
                self.path,
                reader,
                ack,
                plan.frames[0].seq,
                plan.frames[-1].seq,
            )
        if plan.gap is not None:
            first, last = plan.gap
            if last <= self.file_seq_high:  # the reader's catch-up brings them
                log.info(
                    "session %s: %s resumes after seq %d; seq %d..%d went by fallback files",
                    self.path,
                    reader,
                    ack,
                    first,
                    last,
                )
                return
            self.resend_gaps += last - first + 1
            log.warning(
                "session %s: %s resumes after seq %d but seq %d..%d are no longer held for "
                "a re-send (lost for that reader unless they went by fallback files)",
                self.path,
                reader,
                ack,
                first,
                last,
            )

    def _requeue(self, frames: list[m.HotlinkData]) -> None:
        """Put `frames` (taken from `recent` by `plan_resend`) back in front of the
        queue, as re-sends."""
        n = sum(len(x.payload) for x in frames)
        self.recent_bytes -= n
        self.pending_bytes += n
        self.pending.extendleft(reversed(frames))
        self.replay_until = max(self.replay_until, frames[-1].seq)

    def requeue_recent(self) -> None:
        """The link dropped: frames written shortly before may not have reached the
        relay. Put the recent ones back in front of the queue; they are re-sent after
        the re-open and readers drop the ones they already have (dedupe by seq)."""
        ring = self.recent
        if not ring:
            return
        log.info(
            "session %s: %d recently sent frames (seq %d..%d) will be re-sent after the re-open",
            self.path,
            len(ring),
            ring[0].seq,
            ring[-1].seq,
        )
        frames = list(ring)
        ring.clear()
        self._requeue(frames)

    def _remember(self, msg: m.HotlinkData, size: int) -> None:
        """Keep a sent frame (`size` payload bytes) in the re-send window, forgetting
        the oldest beyond its bounds unless a reader has yet to confirm them."""
        ring = self.recent
        ring.append(msg)
        self.recent_bytes += size
        lim = self.lim
        if len(ring) <= lim.resend_frames and self.recent_bytes <= lim.resend_bytes:
            return  # within bounds: the common case
        while ring and (len(ring) > lim.resend_frames or self.recent_bytes > lim.resend_bytes):
            if ring[0].seq > self.confirmed and self._acking():
                # never forget a frame a reader has not confirmed; stop reading the
                # apps instead until the readers catch up (on_progress)
                if not self.reading_paused:
                    self.reading_paused = True
                    self._pause_due = True  # carried out by `transmit_done`
                break
            self.recent_bytes -= len(ring.popleft().payload)

    def _acking(self) -> bool:
        """Every reader reports its progress (so a full window frees up again), and
        the window is not disabled (`--resend-frames 0` / `--resend-bytes 0`)."""
        lim = self.lim
        acks = self.reader_acks
        return (
            lim.resend_frames > 0
            and lim.resend_bytes > 0
            and bool(self.readers)
            and all(r in acks for r in self.readers)
        )

    def _window_full(self) -> bool:
        lim = self.lim
        return (
            len(self.recent) > lim.resend_frames or self.recent_bytes > lim.resend_bytes
        ) and self._acking()
