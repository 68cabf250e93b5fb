"""SenderStream (agent/core/sender.py) without sockets or sleeps: events in, effects
out, time passed as an argument. `Pipe` plays the adapter: it carries `Transmit`
by sending from the front of `pending` while its `writable` flag allows."""

from __future__ import annotations

from typing import Any

import pytest
from hotlink.agent.core.effects import (
    FALLBACK,
    TEE,
    Emit,
    EventType,
    FailApps,
    NewVerdict,
    PauseApps,
    ResumeApps,
    Send,
    Settle,
    Shutdown,
    Transmit,
    WriteFile,
)
from hotlink.agent.core.limits import StreamLimits, Totals
from hotlink.agent.core.paths import ActivePath, FallbackMode
from hotlink.agent.core.sender import RETRY_OPEN_INITIAL, SenderStream
from hotlink.agent.core.state import SessionState
from hotlink.wire import messages as m
from hotlink.wire.frames import Frame

PATH = "alice@x.org/_mpc/0_to_1"
BOB = "bob@x.org"


def frames(n: int, size: int = 10, name: str = "") -> list[Frame]:
    return [Frame(b"x" * size, 0, name) for _ in range(n)]


class Pipe:
    """The adapter's part, in memory: the 'link' is a list of sent messages."""

    def __init__(self, st: SenderStream) -> None:
        self.st = st
        self.writable = True
        self.fail = False
        self.sent: list[m.HotlinkData] = []
        self.files: list[WriteFile] = []
        self.paused = False
        self.events: list[Emit] = []
        self.control: list[Any] = []

    def run(self, effects: list[Any]) -> list[Any]:
        for e in effects:
            if isinstance(e, Transmit):
                self.transmit(e.fail_over, e.force)
            elif isinstance(e, WriteFile):
                self.files.append(e)
                if e.kind == TEE:
                    self.st.tee_queued(e.seq)
            elif isinstance(e, PauseApps):
                self.paused = True
            elif isinstance(e, ResumeApps):
                self.paused = False
            elif isinstance(e, Emit):
                self.events.append(e)
            elif isinstance(e, Shutdown):
                self.st.shutdown()
                self.control.append(e)
            else:
                self.control.append(e)
        return effects

    def transmit(self, fail_over: bool, force: bool = False) -> None:
        st = self.st
        failed = False
        if force or st.can_transmit:
            while st.pending and self.writable:
                if self.fail:
                    failed = True
                    break
                self.sent.append(st.pending[0])
                tee = st.frame_sent()
                if tee is not None:
                    self.run([tee])
        self.run(st.transmit_done(failed, fail_over))


def open_stream(mode: FallbackMode = FallbackMode.OFF, **lim: Any) -> tuple[SenderStream, Pipe]:
    st = SenderStream(
        PATH, sid="s1", mode=mode, limits=StreamLimits(**lim), totals=Totals(), link_up=True
    )
    p = Pipe(st)
    out = p.run(st.start())
    assert isinstance(out[0], NewVerdict)
    assert isinstance(out[1], Send) and out[1].track
    assert out[1].msg == m.HotlinkOpen("s1", PATH, "", "")
    p.run(st.on_acked())
    p.run(st.on_accept(BOB, None))
    assert st.state is SessionState.OPEN and st.readers == {BOB}
    return st, p


def test_open_accept_send() -> None:
    st, p = open_stream()
    assert [e.type for e in p.events] == [EventType.OPENED, EventType.ACCEPTED]
    assert Settle(None) in p.control
    p.run(st.app_frames(frames(3, name="a.request") + frames(1)))
    assert [x.seq for x in p.sent] == [1, 2, 3, 4]
    assert p.sent[0].path == PATH + "/a.request"
    assert p.sent[3].path == PATH + "/00000004.request"
    assert st.frames_sent == 4 and st.totals.frames_out == 4 and st.last_seq == 4


def test_nothing_sent_before_a_reader() -> None:
    st = SenderStream(PATH, sid="s1", mode=FallbackMode.OFF, limits=StreamLimits(), link_up=True)
    p = Pipe(st)
    p.run(st.start())
    p.run(st.on_acked())
    p.run(st.app_frames(frames(2)))
    assert p.sent == [] and len(st.pending) == 2
    p.run(st.on_accept(BOB, None))
    assert [x.seq for x in p.sent] == [1, 2]


def test_reject_then_close() -> None:
    st = SenderStream(PATH, sid="s1", limits=StreamLimits(), link_up=True)
    p = Pipe(st)
    p.run(st.start())
    p.run(st.app_frames(frames(1)))  # on files: nothing accepted yet
    out = p.run(st.on_reject("", "permission denied", 0.0))
    assert st.state is SessionState.REJECTED and st.machine.reason == "permission denied"
    assert Settle("permission denied") in out and Shutdown(graceful=False) in out
    assert p.events[-1] == Emit(EventType.REJECTED, "", "permission denied")
    assert st.closed
    out = p.run(st.close("bye"))
    assert st.state is SessionState.CLOSED
    assert Settle("session closed") in out


@pytest.mark.parametrize(
    ("sender", "to", "says"),
    [
        # the owner always has write access: the named reader is what is missing
        (
            "alice@x.org",
            BOB,
            f"{BOB} has no read access to {PATH} "
            f"(grant it: hotlinkctl acl grant _mpc/0_to_1 {BOB} --read)",
        ),
        # a co-writer: it lacks write access, and with --to maybe the reader read access
        (
            "carol@x.org",
            "",
            f"carol@x.org has no write access to {PATH} (on alice@x.org's agent: "
            "hotlinkctl acl grant _mpc/0_to_1 carol@x.org --write)",
        ),
        ("carol@x.org", BOB, "needs write access for carol@x.org and read access for bob@x.org"),
        # a co-writer sending to the owner: only its own write access can be missing
        ("carol@x.org", "alice@x.org", "carol@x.org has no write access to"),
        # nothing to add: the owner's own open without a reader, or no sender known
        ("alice@x.org", "", None),
        ("alice@x.org", "alice@x.org", None),
        ("", BOB, None),
    ],
)
def test_permission_denied_says_whose_access_is_missing(sender: str, to: str, says: Any) -> None:
    """The relay's Reject says only "permission denied"; the session's reason (what
    `ls`, `status` and the open's error show) says who lacks which access, when it
    can be known from who sends and to whom."""
    st = SenderStream(PATH, sid="s1", to=to, limits=StreamLimits(), link_up=True, sender=sender)
    p = Pipe(st)
    p.run(st.start())
    out = p.run(st.on_reject("", m.REASON_PERMISSION_DENIED, 0.0))
    why = st.machine.reason
    assert st.state is SessionState.REJECTED and why.startswith("permission denied")
    assert Settle(why) in out and p.events[-1] == Emit(EventType.REJECTED, "", why)
    if says is None:
        assert why == "permission denied"
    else:
        assert says in why


def test_a_co_writer_that_lost_write_access_is_told_so() -> None:
    """The relay closes the session (no `frm`) when its sender lost write access."""
    st = SenderStream(
        PATH, sid="s1", to=BOB, limits=StreamLimits(), link_up=True, sender="carol@x.org"
    )
    p = Pipe(st)
    p.run(st.start())
    p.run(st.on_accept(BOB, None))
    p.run(st.on_close("", m.REASON_PERMISSION_DENIED))
    assert st.state is SessionState.REJECTED
    assert st.machine.reason.startswith(
        f"permission denied: carol@x.org has no write access to {PATH}"
    )


def test_other_rejects_keep_the_relays_words() -> None:
    st = SenderStream(
        PATH, sid="s1", to=BOB, limits=StreamLimits(), link_up=True, sender="alice@x.org"
    )
    p = Pipe(st)
    p.run(st.start())
    p.run(st.on_reject("", "bad request: invalid path", 0.0))
    assert st.machine.reason == "bad request: invalid path"


def test_close_flushes_then_sends_close() -> None:
    st, p = open_stream()
    p.writable = False
    p.run(st.app_frames(frames(2)))
    p.writable = True
    out = st.close("done")
    assert isinstance(out[0], Transmit)
    assert out[1] == Send(m.HotlinkClose("s1", "done"))
    p.run(out)
    assert [x.seq for x in p.sent] == [1, 2] and st.state is SessionState.CLOSED


def test_close_counts_unsent_frames_as_drops() -> None:
    st, p = open_stream()
    p.writable = False
    p.run(st.app_frames(frames(3)))
    st.link_up = False
    p.run(st.close("x"))
    assert st.drops == 3 and st.totals.drops == 3 and not st.pending


def test_refused_frame_fails_the_app_after_the_good_ones() -> None:
    st, p = open_stream()
    out = p.run(st.app_frames(frames(2) + frames(1, name="stream.sock") + frames(1)))
    assert [x.seq for x in p.sent] == [1, 2]
    assert any(isinstance(e, FailApps) for e in out)
    too_big = st.app_frames([Frame(b"x" * (st.wire_room + 1))])
    assert isinstance(too_big[-1], FailApps)


def test_resume_after_reconnect_with_acks() -> None:
    st, p = open_stream()
    p.run(st.app_frames(frames(5)))
    p.run(st.on_progress(BOB, 3))
    assert st.confirmed == 3 and [x.seq for x in st.recent] == [4, 5]
    st.on_link_down()
    assert st.state is SessionState.PENDING and st.machine.reason == "link down"
    assert not st.readers and [x.seq for x in st.pending] == [4, 5]
    out = p.run(st.on_link_up())
    assert any(isinstance(e, Send) and isinstance(e.msg, m.HotlinkOpen) for e in out)
    p.run(st.on_acked())
    p.run(st.app_frames(frames(1)))  # seq 6 waits behind the replays
    p.run(st.on_accept(BOB, 3))
    assert [x.seq for x in p.sent] == [1, 2, 3, 4, 5, 4, 5, 6]
    assert st.resent == 2 and st.frames_sent == 6


def test_reader_resumes_from_its_seq_and_gap_is_counted() -> None:
    st, p = open_stream(resend_frames=2)
    p.run(st.app_frames(frames(5)))  # no progress from bob: oldest frames evicted
    assert [x.seq for x in st.recent] == [4, 5]
    p.run(st.on_accept("carol@x.org", 1))
    assert [x.seq for x in p.sent][-2:] == [4, 5]
    assert st.resend_gaps == 2  # seqs 2 and 3 are no longer held


def test_back_pressure_on_the_send_queue() -> None:
    st, p = open_stream(send_queue_frames=4, send_queue_bytes=1 << 20)
    p.writable = False
    p.run(st.app_frames(frames(3)))
    assert not p.paused
    p.run(st.app_frames(frames(2)))
    assert p.paused and st.reading_paused
    p.writable = True
    p.transmit(False)
    assert not p.paused and [x.seq for x in p.sent] == [1, 2, 3, 4, 5]


def test_back_pressure_on_a_full_resend_window() -> None:
    st, p = open_stream(resend_frames=2, send_queue_frames=100)
    p.run(st.app_frames(frames(1)))
    p.run(st.on_progress(BOB, 1))  # bob reports progress: the window must not forget
    assert not st.recent
    p.run(st.app_frames(frames(3)))
    assert p.paused and [x.seq for x in st.recent] == [2, 3, 4]
    p.run(st.on_progress(BOB, 3))
    assert not p.paused and [x.seq for x in st.recent] == [4]


def test_spill_to_files_and_back() -> None:
    st = SenderStream(PATH, sid="s1", limits=StreamLimits(), link_up=True)
    p = Pipe(st)
    assert st.active_path is ActivePath.FILES  # nothing accepted yet
    p.run(st.start())
    p.run(st.app_frames(frames(2)))
    assert [(f.seq, f.kind) for f in p.files] == [(1, FALLBACK), (2, FALLBACK)]
    assert st.file_backlog == 2 and st.disk_frames == 2
    for f in p.files:
        p.run(st.file_written(f.kind, len(f.payload), None))
    assert st.disk_frames == 0
    p.run(st.on_acked())
    p.run(st.on_accept(BOB, None))
    assert st.active_path is ActivePath.FILES  # the file backlog goes first
    p.run(st.file_acked(FALLBACK, 1, 10))
    assert st.active_path is ActivePath.FILES
    p.run(st.file_acked(FALLBACK, 2, 10))
    assert st.active_path is ActivePath.HOTLINK and st.files_acked_seq == 2
    assert p.events[-1].type is EventType.PATH_SWITCHED
    p.run(st.app_frames(frames(2)))
    assert [x.seq for x in p.sent] == [3, 4]
    # the link goes: unconfirmed and queued frames become files, in seq order
    p.writable = False
    p.run(st.app_frames(frames(1)))
    st.on_link_down()
    p.run(st.reevaluate("relay link down"))
    assert st.active_path is ActivePath.FILES
    assert [f.seq for f in p.files[2:]] == [3, 4, 5] and not st.pending
    assert st.policy.switches == 2  # the start on files is not a switch
    for seq in (3, 4, 5):
        p.run(st.file_acked(FALLBACK, seq, 10))
    # seq 3 and 4 went by the hotlink first: sent twice, counted once
    assert st.files_sent == 5 and st.frames_sent == 5 and st.bytes_sent == 50


def test_send_failure_leaves_the_hotlink_at_once() -> None:
    st, p = open_stream(mode=FallbackMode.ON_FAILURE)
    p.fail = True
    p.run(st.app_frames(frames(2)))
    assert st.active_path is ActivePath.FILES and [f.seq for f in p.files] == [1, 2]


def test_file_failures_are_counted_drops() -> None:
    st = SenderStream(PATH, sid="s1", limits=StreamLimits(), link_up=True)
    p = Pipe(st)
    p.run(st.app_frames(frames(1)))
    p.run(st.file_written(FALLBACK, 10, "disk full"))
    assert st.drops == 1 and st.file_backlog == 0


def test_tee_copies_hotlink_frames() -> None:
    st, p = open_stream(mode=FallbackMode.TEE)
    # files allowed: the policy starts on files until the hotlink is ready
    assert st.active_path is ActivePath.HOTLINK
    p.run(st.app_frames(frames(2)))
    assert [x.seq for x in p.sent] == [1, 2]
    assert [(f.seq, f.kind) for f in p.files] == [(1, TEE), (2, TEE)]
    assert st.file_backlog == 2 and st.file_seq_high == 2
    p.run(st.file_acked(TEE, 1, 10))
    assert st.files_sent == 1 and st.frames_sent == 2  # a TEE copy is not a frame


def test_transient_reject_retries_on_a_timer() -> None:
    st = SenderStream(PATH, sid="s1", limits=StreamLimits(), link_up=True)
    p = Pipe(st)
    p.run(st.start())
    out = p.run(st.on_reject("", "too many sessions", 100.0))
    assert st.state is SessionState.PENDING and Settle(None) in out
    assert st.next_deadline() == 100.0 + RETRY_OPEN_INITIAL
    assert st.handle_timer(100.1) == []
    out = st.handle_timer(100.0 + RETRY_OPEN_INITIAL)
    assert isinstance(out[1], Send) and isinstance(out[1].msg, m.HotlinkOpen)
    assert st.next_deadline() is None
    p.run(st.on_reject("", "rate limited", 200.0))
    assert st.next_deadline() == 200.0 + 2 * RETRY_OPEN_INITIAL  # doubling
    p.run(st.on_acked())
    assert st.retry_delay == RETRY_OPEN_INITIAL


def test_transient_reject_is_final_without_files() -> None:
    st = SenderStream(PATH, sid="s1", mode=FallbackMode.OFF, limits=StreamLimits(), link_up=True)
    st.start()
    st.on_reject("", "too many sessions", 0.0)
    assert st.state is SessionState.REJECTED


def test_idle_close_reopens_and_reader_leaving() -> None:
    st, p = open_stream()
    out = p.run(st.on_close(BOB, "reader disconnected"))
    assert not st.readers and Emit(EventType.CLOSED, BOB, "reader disconnected") in out
    out = p.run(st.on_close("", "idle timeout"))
    assert st.state is SessionState.PENDING
    assert any(isinstance(e, Send) and isinstance(e.msg, m.HotlinkOpen) for e in out)
    p.run(st.on_close("", "write access lost"))
    assert st.state is SessionState.REJECTED


def test_unknown_session_reopens() -> None:
    st, p = open_stream()
    out = p.run(st.on_reject("", m.REASON_UNKNOWN_SESSION, 0.0))
    assert st.state is SessionState.PENDING and not st.readers
    assert any(isinstance(e, Send) and isinstance(e.msg, m.HotlinkOpen) for e in out)


def test_resume_after_clean_restart() -> None:
    st = SenderStream(PATH, sid="s1", limits=StreamLimits(), link_up=True)
    st.resume(41, 40)
    assert st.next_seq() == 42 and st.files_acked_seq == 40


@pytest.mark.parametrize("mode", list(FallbackMode))
def test_set_mode(mode: FallbackMode) -> None:
    st, p = open_stream()
    p.run(st.set_mode(mode))
    assert st.policy.mode is mode and st.active_path is ActivePath.HOTLINK
