"""The sender's half of a session, sans-I/O: app frames in, frames on a path out.

Data path: the stream assigns seq 1, 2, ... as frames arrive from apps and asks the
path policy (`paths.FallbackPolicy`) where they go. Hotlink frames wait, in order, in
`pending`; the stream emits `Transmit(HOTLINK)` and the adapter sends from the front
of `pending` while the link is writable, reporting each with `frame_sent()`. Frames
are sent only while the session is OPEN with at least one reader (the relay drops
frames nobody reads). The queue is bounded by `send_queue_frames` /
`send_queue_bytes`: at the bound the stream emits `PauseApps` (the overshoot is at
most one socket read) and `ResumeApps` below half. File-path frames become
`WriteFile` effects. Nothing is dropped silently: frames leave the queue by being
sent, by becoming files, or, when the session ends, as counted drops.

Re-send window (loss-free resume): `resend_window.ResendWindow`.

Control plane: the session state changes only through `state.SessionMachine`; the
Open is (re-)sent on link up, after an idle-timeout close, after the relay lost the
session, and (timer, 0.25 s doubling to 5 s) after a transient reject in a mode that
allows files. Time enters only as `now` arguments (`handle_timer`, `on_reject`).

Session id taken: `sender_sid.SidRecovery`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from hotlink.wire import messages as m
from hotlink.wire.errors import FrameTooLarge, ProtocolError
from hotlink.wire.frames import Frame
from hotlink.wire.paths import AUTO_NAME

from .denied import sender_denied
from .effects import (
    PAUSE,
    RESUME,
    TEE,
    Effect,
    Emit,
    EventType,
    FailApps,
    NewVerdict,
    Send,
    Settle,
    Shutdown,
    Transmit,
    WriteFile,
)
from .limits import ENVELOPE_SLACK, StreamLimits, Totals
from .names import validate_frame_name
from .paths import ActivePath, FallbackMode, FallbackPolicy, Switch
from .resend_window import ResendWindow
from .sender_files import SenderFiles
from .sender_sid import MAX_SID_CHANGES, SidRecovery
from .state import Role, SessionMachine, SessionState, Trigger

log = logging.getLogger("hotlink.agent.sessions")

#: first wait before a sender retries an open the relay refused for a limit
#: (`m.TRANSIENT_REJECTS`), doubled up to `RETRY_OPEN_MAX`
RETRY_OPEN_INITIAL = 0.25
RETRY_OPEN_MAX = 5.0

HOTLINK = ActivePath.HOTLINK
_TRANSMIT = Transmit(ActivePath.HOTLINK)
_TRANSMIT_FAIL_OVER = Transmit(ActivePath.HOTLINK, fail_over=True)


class SenderStream(SenderFiles, SidRecovery, ResendWindow):
    """One sender session's decisions. Every event method returns effects."""

    def __init__(
        self,
        path: str,
        *,
        sid: str,
        to: str = "",
        mode: FallbackMode = FallbackMode.ON_FAILURE,
        limits: StreamLimits,
        totals: Totals | None = None,
        link_up: bool = False,
        new_sid: Callable[[], str] | None = None,
        sender: str = "",
    ) -> None:
        self.path = path
        #: this agent's user (explains a "permission denied", `denied.sender_denied`)
        self.sender = sender
        self.prefix = path + "/"
        self.sid = sid
        #: a fresh random sid (from the adapter); None: a taken sid is final
        self.new_sid = new_sid
        self.sid_changes = 0
        self.to = to
        self.lim = limits
        self.totals = totals if totals is not None else Totals()
        self.machine = SessionMachine(Role.SENDER)
        self.link_up = link_up
        self.closed = False
        self.policy = FallbackPolicy(mode)
        #: every hotlink frame is also written as a file (FallbackMode.TEE)
        self.tee = self.policy.tee
        if self.policy.files_allowed:
            self.policy.active = ActivePath.FILES  # nothing accepted yet
        self.readers: frozenset[str] = frozenset()  # rebound, never changed: see sender_direct
        #: highest seq each reader reported delivered (HotlinkProgress)
        self.reader_acks: dict[str, int] = {}
        self.confirmed = 0
        self.seq = self.last_seq = 0
        self.pending: deque[m.HotlinkData] = deque()
        self.pending_bytes = 0
        self.reading_paused = False
        self._pause_due = False
        self._last_name = ""
        #: frames sent most recently (bounded by resend_frames/resend_bytes), re-sent
        #: after a reconnect; frames up to `replay_until` in `pending` are such replays
        self.recent: deque[m.HotlinkData] = deque()
        self.recent_bytes = 0
        self.replay_until = 0
        self.resent = 0
        #: file path: frames handed to files and not yet acked by the relay, fallback
        #: frames waiting for the disk thread, highest seq handed to files, highest
        #: fallback seq the relay acked
        self.file_backlog = 0
        self.disk_frames = self.disk_bytes = 0
        self.file_seq_high = 0
        self.files_acked_seq = 0
        self.frames_sent = self.bytes_sent = 0
        self.files_sent = 0
        self.drops = 0
        #: seqs a reader resumed after that we no longer held
        self.resend_gaps = 0
        self.retry_at: float | None = None
        self.retry_delay = RETRY_OPEN_INITIAL
        #: payload + name + etag must fit one WS message with the envelope around it, so
        #: an oversized app frame fails that app connection, never the relay link
        self.wire_room = limits.max_message - len(self.prefix) - ENVELOPE_SLACK

    def resume(self, seq: int, files_acked: int) -> None:
        """Restored after a clean stop: the same stream goes on after `seq`."""
        self.seq = self.last_seq = self.file_seq_high = seq
        self.files_acked_seq = min(files_acked, seq)

    # --- queries ----------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self.machine.state

    @property
    def active_path(self) -> ActivePath:
        return self.policy.active

    def hotlink_ready(self) -> bool:
        return self.machine.state is SessionState.OPEN and bool(self.readers) and self.link_up

    def next_deadline(self) -> float | None:
        return self.retry_at

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # --- app frames -------------------------------------------------------------

    def app_frames(self, frames: list[Frame]) -> list[Effect]:
        """Frames read from an app: give them seqs and put them on the active path.
        A refused frame ends the batch with `FailApps` (the frames before it go on)."""
        if self.policy.active is ActivePath.FILES:
            return self._frames_to_files(frames)
        pending = self.pending
        prefix = self.prefix
        sid = self.sid
        out: list[Effect] = [_TRANSMIT_FAIL_OVER]
        n = 0
        try:
            for f in frames:
                seq = self._admit(f)
                name = f.path
                pending.append(
                    m.HotlinkData(
                        sid,
                        seq,
                        prefix + (name or AUTO_NAME % seq),
                        f.payload,
                        f.etag,
                    )
                )
                n += len(f.payload)
        except ProtocolError as exc:
            out.append(FailApps(exc))
        self.pending_bytes += n
        return out

    def _admit(self, f: Frame) -> int:
        """Check an app frame whichever path it takes (a safe `.request` name; it fits
        one relay message, so it can go by hotlink later) and give it the next seq."""
        name = f.path
        if name and name != self._last_name:
            validate_frame_name(name)
            self._last_name = name
        if len(f.payload) + len(name) + len(f.etag) > self.wire_room:
            raise FrameTooLarge(
                f"frame of {len(f.payload)} payload bytes does not fit the relay's "
                f"{self.lim.max_message}-byte message limit"
            )
        self.seq += 1
        return self.seq

    # --- transmitting on the hotlink ---------------------------------------------

    @property
    def can_transmit(self) -> bool:
        return self.machine.state is SessionState.OPEN and bool(self.readers)

    def frame_sent(self) -> WriteFile | None:
        """The adapter sent `pending[0]`; returns a TEE copy to write, if any."""
        msg = self.pending.popleft()
        n = len(msg.payload)
        self.pending_bytes -= n
        seq = msg.seq
        if seq <= self.replay_until:
            self.resent += 1
            self._remember(msg, n)
            return None
        self.frames_sent += 1
        self.bytes_sent += n
        t = self.totals
        t.frames_out += 1
        t.bytes_out += n
        self.last_seq = seq
        self._remember(msg, n)
        if self.tee and seq > self.file_seq_high:
            return WriteFile(msg.seq, msg.path[len(self.prefix) :], msg.etag, msg.payload, TEE)
        return None

    def transmit_done(self, failed: bool, fail_over: bool) -> list[Effect]:
        """The adapter stopped sending (queue empty, path not writable, or a send
        failed). A failed send of fresh app frames leaves the hotlink at once."""
        out: list[Effect] = []
        if failed and fail_over:
            sw = self.policy.send_failed("send to the relay failed (link closing)")
            if sw is not None:
                self._switched(sw, out)
        if self._pause_due:
            self._pause_due = False
            out.append(PAUSE)
        if self.reading_paused:
            self._maybe_resume(out)
        elif self.pending:
            lim = self.lim
            if (
                len(self.pending) >= lim.send_queue_frames
                or self.pending_bytes >= lim.send_queue_bytes
            ):
                self.reading_paused = True
                out.append(PAUSE)
        return out

    def _maybe_resume(self, out: list[Effect]) -> None:
        lim = self.lim
        if (
            len(self.pending) + self.disk_frames <= lim.send_queue_frames // 2
            and self.pending_bytes + self.disk_bytes <= lim.send_queue_bytes // 2
            and not self._window_full()
        ):
            self.reading_paused = False
            out.append(RESUME)

    def _check_pause(self, out: list[Effect]) -> None:
        if self.reading_paused:
            return
        lim = self.lim
        if (
            len(self.pending) + self.disk_frames >= lim.send_queue_frames
            or self.pending_bytes + self.disk_bytes >= lim.send_queue_bytes
        ):
            self.reading_paused = True
            out.append(PAUSE)

    # --- path selection ----------------------------------------------------------

    def reevaluate(self, why: str = "") -> list[Effect]:
        """Inputs of the path policy changed: maybe switch paths."""
        out: list[Effect] = []
        if not self.closed:
            sw = self.policy.update(self.hotlink_ready(), self.file_backlog, why)
            if sw is not None:
                self._switched(sw, out)
        return out

    def set_mode(self, mode: FallbackMode) -> list[Effect]:
        out: list[Effect] = []
        sw = self.policy.set_mode(mode, self.hotlink_ready(), self.file_backlog)
        self.tee = self.policy.tee
        if sw is not None:
            self._switched(sw, out)
        return out

    def _switched(self, sw: Switch, out: list[Effect]) -> None:
        log.info(
            "session %s: now on the %s path (%s)",
            self.path,
            "file" if sw.to is ActivePath.FILES else "hotlink",
            sw.reason,
        )
        if sw.to is ActivePath.FILES:
            self._spill(out)
        out.append(Emit(EventType.PATH_SWITCHED, "", sw.reason))
        if sw.to is ActivePath.HOTLINK:
            out.append(_TRANSMIT)

    # --- relay control messages -----------------------------------------------------

    def _open(self, out: list[Effect]) -> None:
        out.append(NewVerdict())
        out.append(Send(m.HotlinkOpen(self.sid, self.path, "", self.to), track=True))

    def start(self) -> list[Effect]:
        """Opened locally: send the Open if the link is up."""
        out: list[Effect] = []
        if self.link_up:
            self._open(out)
        return out

    def on_link_up(self) -> list[Effect]:
        self.link_up = True
        out: list[Effect] = []
        if self.machine.live:
            self.machine.fire(Trigger.REOPEN)
            self._open(out)
        return out

    def on_link_down(self) -> None:
        """Call `reevaluate` after every session saw the link go (events in order)."""
        self.link_up = False
        if self.machine.state is SessionState.OPEN:
            self.machine.fire(Trigger.LINK_DOWN, "link down")
        self.readers = frozenset()
        self.reader_acks.clear()
        self.requeue_recent()

    def on_acked(self) -> list[Effect]:
        """The relay acked our Open."""
        if self.machine.state is not SessionState.PENDING or self.closed:
            return []
        self.machine.fire(Trigger.ACKED, "")
        self.retry_delay = RETRY_OPEN_INITIAL
        self.sid_changes = 0
        log.info("session %s (%s) open on the relay as sender", self.path, self.sid)
        out: list[Effect] = [Settle(None), Emit(EventType.OPENED), _TRANSMIT]
        out += self.reevaluate("session open on the relay")
        return out

    def on_accept(self, peer: str, seq: int | None) -> list[Effect]:
        out: list[Effect] = []
        if peer not in self.readers:
            self.readers |= {peer}
            out.append(Emit(EventType.ACCEPTED, peer))
        if seq is not None:  # the reader says where it is: re-send after it
            self._resume_reader(peer, seq)
            self._trim_confirmed(out)  # its seq may be the last one holding frames back
        out.append(_TRANSMIT)
        out += self.reevaluate(f"{peer} accepted")
        return out

    def _reader_left(self, peer: str, ev: EventType, reason: str, why: str) -> list[Effect]:
        self.readers -= {peer}
        self.reader_acks.pop(peer, None)
        out: list[Effect] = [Emit(ev, peer, reason)]
        self._trim_confirmed(out)  # a reader that held the window back may be this one
        out += self.reevaluate(why)
        return out

    def on_reject(self, frm: str, reason: str, now: float) -> list[Effect]:
        if frm:  # a reader turned our open down
            return self._reader_left(frm, EventType.REJECTED, reason, f"{frm} rejected: {reason}")
        if reason == m.REASON_UNKNOWN_SESSION:
            # The relay lost the session (relay restarted): send the open again
            # instead of failing for good.
            out: list[Effect] = []
            if self.machine.state is SessionState.OPEN:
                self.machine.fire(Trigger.REOPEN)
                self.readers = frozenset()
                self._open(out)
                out += self.reevaluate("relay lost the session")
            return out
        if (
            reason == m.REASON_SESSION_IN_USE
            and self.machine.live
            and self.new_sid is not None
            and self.sid_changes < MAX_SID_CHANGES
        ):
            return self._change_sid()
        if reason in m.TRANSIENT_REJECTS and self.policy.files_allowed and self.machine.live:
            # Not accepted for now: frames travel by files; the open is retried.
            self.machine.fire(Trigger.REOPEN, reason)
            self.readers = frozenset()
            log.warning("session %s not accepted by the relay (%s); retrying", self.path, reason)
            out = [Settle(None), Emit(EventType.REJECTED, "", reason)]
            out += self.reevaluate(f"relay did not accept the session: {reason}")
            if self.retry_at is None and not self.closed:
                self.retry_at = now + self.retry_delay
                self.retry_delay = min(RETRY_OPEN_MAX, self.retry_delay * 2)
            return out
        if reason == m.REASON_PERMISSION_DENIED:
            reason = sender_denied(self.path, self.sender, self.to)
        return self.reject(reason)

    def on_close(self, frm: str, reason: str) -> list[Effect]:
        if frm:  # one reader's leg ended
            return self._reader_left(frm, EventType.CLOSED, reason, f"{frm}: {reason}")
        if reason == m.REASON_IDLE and self.machine.live:
            # Like a disconnect, not a verdict: open again (same sid, same seqs).
            self.machine.fire(Trigger.REOPEN, reason)
            self.readers = frozenset()
            self.reader_acks.clear()
            out: list[Effect] = [Emit(EventType.CLOSED, "", reason)]
            out += self.reevaluate("relay closed the idle session")
            if self.link_up:
                self._open(out)
            return out
        # the relay ended our session (e.g. we lost write access: a reader's access
        # ends only its leg, above, so `to` plays no part here)
        if reason == m.REASON_PERMISSION_DENIED:
            reason = sender_denied(self.path, self.sender, "")
        return self.reject(reason or "closed by the relay")

    def reject(self, reason: str) -> list[Effect]:
        """Turned down for good (Reject, a Nack of our Open, a terminal Close)."""
        if not self.machine.can(Trigger.REJECTED):
            return []
        self.machine.fire(Trigger.REJECTED, reason or "rejected")
        why = self.machine.reason
        out: list[Effect] = [Settle(why), Shutdown(graceful=False)]
        out.append(Emit(EventType.REJECTED, "", why))
        log.warning("session %s rejected by the relay: %s", self.path, why)
        return out

    def close(self, reason: str) -> list[Effect]:
        """CloseSession: send what is queued, end the session for every reader."""
        if self.machine.state is SessionState.CLOSED:
            return []  # closing twice is a no-op
        out: list[Effect] = []
        if self.sid and self.link_up:
            if self.can_transmit:
                out.append(Transmit(ActivePath.HOTLINK, force=True))
            out.append(Send(m.HotlinkClose(self.sid, reason or "closed")))
        self.machine.fire(Trigger.CLOSED, reason or "closed")
        out.append(Settle("session closed"))
        out.append(Shutdown(graceful=True))
        out.append(Emit(EventType.CLOSED, "", self.machine.reason))
        return out

    def shutdown(self) -> None:
        """The session ends (`Shutdown`): frames never sent are counted drops, timers
        stop."""
        self.closed = True
        self.retry_at = None
        if self.pending:
            n = len(self.pending)
            self.drops += n
            self.totals.drops += n
            log.warning("session %s closed with %d unsent frames (counted as drops)", self.path, n)
            self.pending.clear()
            self.pending_bytes = 0

    def handle_timer(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            if not self.closed and self.machine.state is SessionState.PENDING and self.link_up:
                self._open(out)
        return out
