"""ReaderStream (agent/core/reader.py) without sockets or sleeps: frames from both
paths in, app writes and relay messages out; the clock is a plain float."""

from __future__ import annotations

from typing import Any

from hotlink.agent.core.catch_up import SYNC_TIMEOUT
from hotlink.agent.core.effects import (
    Deliver,
    DeliverBacklog,
    Emit,
    EventType,
    NewVerdict,
    Send,
    Settle,
    Shutdown,
    SidChanged,
)
from hotlink.agent.core.limits import StreamLimits, Totals
from hotlink.agent.core.paths import ActivePath
from hotlink.agent.core.reader import PROGRESS_DELAY, ReaderStream
from hotlink.agent.core.refetch import REFETCH_INTERVAL, RESEND_WAIT
from hotlink.agent.core.state import SessionState
from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import FrameDecoder

ALICE = "alice@x.org"
PATH = f"{ALICE}/_mpc/0_to_1"
OFFER = m.HotlinkOpen("s1", PATH, ALICE)


def data(seq: int, sid: str = "s1") -> m.HotlinkData:
    return m.HotlinkData(sid, seq, f"{PATH}/{seq:08d}.request", b"p%d" % seq)


def delivered(effects: list[Any]) -> list[int]:
    out = []
    for e in effects:
        if isinstance(e, Deliver):
            (f,) = FrameDecoder(1 << 20).feed(e.header + e.payload)
            out.append(f.seq)
    return out


def sends(effects: list[Any], t: type) -> list[Any]:
    return [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, t)]


def accepted(flushed: int | None = None, **lim: Any) -> ReaderStream:
    """A reader that caught up (empty store) and was accepted, one app connected."""
    st = ReaderStream(
        PATH,
        sender=ALICE,
        limits=StreamLimits(**lim),
        totals=Totals(),
        link_up=True,
        app_flushed=lambda last: last if flushed is None else flushed,
    )
    out = st.start(OFFER, 0.0)
    assert SidChanged("", "s1") in out and NewVerdict() in out
    (sync,) = sends(out, m.FileSync)
    assert (sync.path, sync.since, sync.after, sync.sid) == (PATH, 0, "", "s1")
    assert st.catch_up.running and st.state is SessionState.PENDING
    out = st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 0.0)
    (acc,) = sends(out, m.HotlinkAccept)
    assert acc == m.HotlinkAccept("s1", seq=None)  # new to this stream
    st.sent(acc)
    out = st.on_acked()
    assert st.state is SessionState.OPEN and Settle(None) in out
    assert Emit(EventType.ACCEPTED, ALICE) in out
    st.app_connected(0.0)
    return st


def test_catch_up_pages_before_accept() -> None:
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits(), link_up=True)
    st.offer(OFFER, 1.0)
    assert st.next_deadline() == 1.0 + SYNC_TIMEOUT
    out = st.on_file_sync(m.FileSync(PATH, 7, "x", sid="s1", more=True), 1.5)
    (page,) = sends(out, m.FileSync)
    assert (page.since, page.after) == (7, "x") and not sends(out, m.HotlinkAccept)
    out = st.on_file_sync(m.FileSync(PATH, 9, "y", sid="s1"), 2.0)
    assert (
        sends(out, m.HotlinkAccept) and not st.catch_up.running and st.catch_up.cursor == (9, "y")
    )


def test_catch_up_timeout_asks_again_then_goes_on_without() -> None:
    """A busy relay answers late: the page is asked again (waits 5, 10, 20 s) before
    the stream goes on without it."""
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits(), link_up=True)
    st.offer(OFFER, 0.0)
    assert st.handle_timer(SYNC_TIMEOUT - 0.1) == []
    t = 0.0
    for wait in (SYNC_TIMEOUT, 2 * SYNC_TIMEOUT):
        t += wait
        out = st.handle_timer(t)
        (again,) = sends(out, m.FileSync)
        assert (again.since, again.after) == st.catch_up.cursor and not sends(out, m.HotlinkAccept)
        assert st.catch_up.running and st.next_deadline() == t + 2 * wait
    out = st.handle_timer(t + 4 * SYNC_TIMEOUT)
    assert sends(out, m.HotlinkAccept) and not st.catch_up.running and not sends(out, m.FileSync)


def test_a_late_answer_after_asking_again_completes_the_catch_up() -> None:
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits(), link_up=True)
    st.offer(OFFER, 0.0)
    st.handle_timer(SYNC_TIMEOUT)  # asked again
    out = st.on_file_sync(m.FileSync(PATH, 9, "y", sid="s1"), 6.0)  # the first answer
    assert sends(out, m.HotlinkAccept) and not st.catch_up.running
    assert st.on_file_sync(m.FileSync(PATH, 9, "y", sid="s1"), 6.1) == []  # the second


def test_in_order_duplicate_and_out_of_order() -> None:
    st = accepted()
    assert delivered(st.on_data(data(1), 0.0)) == [1]
    assert delivered(st.on_data(data(3), 0.0)) == []
    assert delivered(st.on_data(data(2), 0.0)) == [2, 3]
    assert delivered(st.on_data(data(2), 0.0)) == []
    assert st.reorder.duplicates == 1 and st.frames_received == 3 and st.last_seq == 3


def test_gap_timer_skips_what_never_came() -> None:
    """Before skipping, the reader looks in the relay's store once (a catch-up): the
    seq may be a stored file no broadcast brought."""
    st = accepted(reorder_timeout=0.5)
    st.on_data(data(1), 10.0)
    st.on_data(data(3), 10.0)
    assert st.gap_due == 10.5 and st.next_deadline() == 10.0 + PROGRESS_DELAY
    st.handle_timer(10.0 + PROGRESS_DELAY)
    assert st.next_deadline() == 10.5
    assert delivered(st.handle_timer(10.49)) == []
    out = st.handle_timer(10.5)
    assert delivered(out) == [] and sends(out, m.FileSync) and st.catch_up.running
    st.on_file_sync(m.FileSync(PATH, 0, "", sid="s1"), 10.51)  # nothing there
    assert st.next_deadline() == 10.625
    assert delivered(st.handle_timer(10.625)) == [3]
    assert st.drops == 1 and st.totals.drops == 1 and st.gap_due is None


def test_a_gap_is_filled_from_the_store_before_it_is_skipped() -> None:
    """A cluster node that died before announcing its writes: seq 2 is a file in the
    store that no broadcast brought, and the live stream goes on after it. The gap
    timer's catch-up finds it: nothing skipped, nothing lost."""
    st = accepted(reorder_timeout=0.5)
    st.on_data(data(1), 0.0)
    st.on_data(data(3), 0.0)
    (sync,) = sends(st.handle_timer(0.5), m.FileSync)
    assert (sync.since, sync.after) == st.catch_up.cursor  # files after the last page
    out = st.on_file_frame(FallbackFrame("s1", 2, "00000002.request", "", b"f2"), 0.6)
    assert delivered(out) == [2, 3]
    st.on_file_sync(m.FileSync(PATH, 0, "", sid="s1"), 0.6)
    st.handle_timer(5.0)
    assert st.drops == 0 and st.gap_due is None


def test_gap_timer_waits_while_a_catch_up_runs() -> None:
    st = accepted(reorder_timeout=0.5)
    st.on_data(data(1), 0.0)
    st.on_data(data(3), 0.0)
    st.on_link_down()
    st.on_link_up(0.1)  # catch-up again
    assert st.catch_up.running
    assert delivered(st.handle_timer(0.5)) == [] and st.gap_due == 1.0
    st.on_file_sync(m.FileSync(PATH, 0, "", sid="s1"), 0.6)
    assert delivered(st.handle_timer(1.0)) == [3]


def test_files_and_hotlink_merge_by_seq() -> None:
    st = accepted()
    st.on_data(data(1), 0.0)
    out = st.on_file_frame(FallbackFrame("s1", 2, "00000002.request", "", b"f2"), 0.0)
    assert delivered(out) == [2]
    assert Emit(EventType.PATH_SWITCHED, ALICE, "frames arrive by fallback files") in out
    assert st.reader_path is ActivePath.FILES and st.files_received == 1
    assert delivered(st.on_data(data(2), 0.0)) == []  # the hotlink copy is a duplicate
    out = st.on_data(data(3), 0.0)
    assert delivered(out) == [3] and st.reader_path is ActivePath.HOTLINK
    assert st.on_file_frame(FallbackFrame("other", 4, "x", "", b""), 0.0) == []
    assert st.take_file(FallbackFrame("other", 4, "x", "", b"")) is None


def test_first_file_tells_the_sid() -> None:
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits())
    assert st.take_file(FallbackFrame("s9", 1, "a", "", b"")) == [SidChanged("", "s9")]
    assert st.sid == "s9"


def test_no_app_backlog_is_bounded_and_handed_to_the_first_app() -> None:
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits(reader_queue=2))
    st.sid = "s1"
    for i in (1, 2, 3, 4):
        assert delivered(st.on_data(data(i), 0.0)) == []
    # seq 3 and 4 are refused, not dropped: nothing is confirmed (the sender keeps them)
    assert st.drops == 0 and st.refetch.refused == 2 and st.delivered() == 0 and st.last_seq == 2
    (bl, *rest) = st.app_connected(0.0)
    assert isinstance(bl, DeliverBacklog) and len(bl.frames) == 2
    assert rest == []  # link down: the accept on link up says where we are
    assert st.frames_received == 2 and st.delivered() == 2 and not st.refetch.from_seq
    assert delivered(st.on_data(data(3), 0.0)) == [3]  # the stream goes on from seq 3


def test_refused_frames_are_asked_for_again_when_an_app_connects() -> None:
    """No app and the backlog full: later frames are refused and left unconfirmed;
    the first app gets the backlog, then a catch-up from the safe cursor (files) and a
    re-Accept with the delivered seq make the sender re-send the rest."""
    st = accepted(reader_queue=3)
    st.app_disconnected()
    st.persist_cursor()  # nothing buffered: the catch-up cursor (5, "a") is safe
    for i in range(1, 9):
        st.on_data(data(i), 0.0)
    assert st.last_seq == 3 and st.refetch.refused == 5 and st.refetch.from_seq == 4
    assert not sends(st.handle_timer(1.0), m.HotlinkProgress)  # nothing reached an app
    out = st.app_connected(2.0)
    assert [len(e.frames) for e in out if isinstance(e, DeliverBacklog)] == [3]
    (sync,) = sends(out, m.FileSync)
    assert (sync.since, sync.after) == (5, "a") and not sends(out, m.HotlinkAccept)
    out = st.on_file_sync(m.FileSync(PATH, 6, "b", sid="s1"), 2.1)
    (acc,) = sends(out, m.HotlinkAccept)
    assert acc == m.HotlinkAccept("s1", seq=3)
    got = delivered(st.on_data(data(9), 2.2))  # in flight before the re-send: held
    for i in range(4, 10):  # the re-send
        got += delivered(st.on_data(data(i), 2.2))
    assert got == [4, 5, 6, 7, 8, 9] and st.drops == 0

    # a second refetch within REFETCH_INTERVAL waits for it before asking
    st.app_disconnected()
    for i in range(10, 14):
        st.on_data(data(i), 2.3)
    out = st.app_connected(2.4)
    st.on_file_sync(m.FileSync(PATH, 6, "b", sid="s1"), 2.5)
    assert not sends(out, m.HotlinkAccept) and st.refetch.due == 2.1 + REFETCH_INTERVAL
    (acc,) = sends(st.handle_timer(3.1), m.HotlinkAccept)
    assert acc.seq == 12


def test_in_flight_frames_do_not_overflow_the_reorder_window_while_a_re_send_comes() -> None:
    """After a refetch's re-Accept, frames that were in flight before the re-send
    (far ahead of the refetched seq) are dropped, not buffered: beyond the reorder
    window they would skip the seqs being re-sent. If no re-send begins, it is asked
    for again and the stream goes back to reordering."""
    st = accepted(reader_queue=2, reorder_window=8)
    st.app_disconnected()
    for i in range(1, 5):
        st.on_data(data(i), 0.0)  # 1, 2 kept; 3, 4 refused
    st.app_connected(2.0)
    (acc,) = sends(st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 2.0), m.HotlinkAccept)
    assert acc.seq == 2 and st.refetch.awaiting_from == 3
    for i in range(5, 40):  # in flight before the re-send: far past the window
        assert delivered(st.on_data(data(i), 2.1)) == []
    assert st.drops == 0 and not len(st.reorder)
    got: list[int] = []
    for i in range(3, 41):  # the re-send, then new frames
        got += delivered(st.on_data(data(i), 2.2))
    assert got == list(range(3, 41)) and st.drops == 0
    assert not sends(st.handle_timer(2.0 + RESEND_WAIT), m.HotlinkAccept)  # it came
    assert st.refetch.awaiting_from == 0

    # no re-send within RESEND_WAIT: asked again, and frames ahead are buffered again
    st.app_disconnected()
    for i in range(41, 45):
        st.on_data(data(i), 3.0)  # 41, 42 kept; 43, 44 refused
    st.app_connected(4.0)
    st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 4.0)
    assert st.refetch.awaiting_from == 43 and st.refetch.due == 4.0 + RESEND_WAIT
    (again,) = sends(st.handle_timer(4.0 + RESEND_WAIT), m.HotlinkAccept)
    assert again.seq == 42 and st.refetch.awaiting_from == 0
    st.on_data(data(45), 6.1)
    assert len(st.reorder) == 1  # buffered: the gap timer decides from here


def test_a_stalled_frame_before_the_re_accept_does_not_end_the_wait_for_the_re_send() -> None:
    """A relay stall delays refused frames 3..4 until after the app is back, while the
    refetch's catch-up still runs (no re-Accept yet): they are delivered, but frames
    far ahead (fresh ones over a direct link) are still copies the re-send brings, not
    frames to reorder. Taken as the re-send, the first of them skipped 5..12 (model
    seed 5603). Frames in flight after the re-Accept are dropped the same way."""
    st = accepted(reader_queue=2, reorder_window=8)
    st.app_disconnected()
    for i in range(1, 5):
        st.on_data(data(i), 0.0)  # 1, 2 kept; 3, 4 refused
    st.app_connected(2.0)
    assert st.catch_up.running and st.refetch.pending
    got = delivered(st.on_data(data(3), 2.0)) + delivered(st.on_data(data(4), 2.0))
    assert got == [3, 4]  # the stalled relay brings them: in order, delivered
    for i in range(20, 30):  # far past the window: copies of what the re-send brings
        assert delivered(st.on_data(data(i), 2.0)) == []
    assert st.drops == 0 and not len(st.reorder)
    (acc,) = sends(st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 2.1), m.HotlinkAccept)
    assert acc.seq == 4 and st.refetch.awaiting_from == 5
    assert delivered(st.on_data(data(30), 2.1)) == []  # sent before the re-Accept came
    for i in range(5, 31):  # the re-send
        got += delivered(st.on_data(data(i), 2.2))
    assert got == list(range(3, 31)) and st.drops == 0


def test_frames_released_by_the_gap_timer_are_reported() -> None:
    """A gap skipped by the timer releases frames no later frame may follow (the
    sender's window can be full): their progress goes out without waiting for one."""
    st = accepted()
    st.on_data(data(1), 0.0)
    st.sent(m.HotlinkProgress("s1", 1))
    st.on_data(data(3), 0.0)  # 2 never comes
    assert not sends(st.handle_timer(0.05), m.HotlinkProgress)  # nothing new delivered
    assert sends(st.handle_timer(10.0), m.FileSync)  # looks in the store first
    st.on_file_sync(m.FileSync(PATH, 0, "", sid="s1"), 10.0)
    out = st.handle_timer(11.0)
    assert delivered(out) == [3]
    (prog,) = sends(out, m.HotlinkProgress)
    assert prog.seq == 3


def test_a_slow_app_lost_alone_is_refetched_with_others_it_is_dropped() -> None:
    st = accepted()
    for i in range(1, 6):
        st.on_data(data(i), 0.0)
    assert st.persist_cursor() == (5, "a")
    assert st.app_lost(3) is True  # its only app lost seq 3..5 with its queue
    assert st.last_seq == 2 and st.refetch.from_seq == 3
    # nothing buffered, but refused: the safe cursor stays where the refetch starts
    st.catch_up.cursor = (9, "z")
    assert st.persist_cursor() == (5, "a")
    assert delivered(st.on_data(data(6), 0.0)) == [] and st.refetch.refused == 4
    st.app_disconnected()
    out = st.app_connected(5.0)
    assert sends(out, m.FileSync) and not sends(out, m.HotlinkAccept)
    (acc,) = sends(st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 5.1), m.HotlinkAccept)
    assert acc.seq == 2
    st.app_connected(5.2)  # a second app
    assert st.app_lost(7) is False and not st.refetch.from_seq


def test_frames_a_dropped_app_lost_are_counted_once_when_the_refetch_brings_them() -> None:
    """`frames_received` / `bytes_received` count each seq delivered once: the frames
    a slow app lost when it was dropped were counted as they were written to it, and
    the refetch delivers them again, to the next app or to its no-app queue."""
    for app_stays in (True, False):
        st = accepted()
        for i in range(1, 6):
            st.on_data(data(i), 0.0)
        assert (st.frames_received, st.bytes_received) == (5, 10)
        st.app_lost(3)  # its only app lost 3..5
        st.on_data(data(6), 0.0)  # refused: not counted
        st.app_disconnected()
        st.app_connected(5.0)
        (acc,) = sends(st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 5.1), m.HotlinkAccept)
        assert acc.seq == 2
        if not app_stays:
            st.app_disconnected()  # gone again before the re-send: it waits for the next
        got = []
        for i in range(3, 8):  # the re-send, then a new frame
            got += delivered(st.on_data(data(i), 5.2))
        if not app_stays:
            (backlog,) = [e for e in st.app_connected(5.3) if isinstance(e, DeliverBacklog)]
            got = [FrameDecoder(1 << 20).feed(h + p)[0].seq for h, p in backlog.frames]
        assert got == [3, 4, 5, 6, 7]
        assert (st.frames_received, st.bytes_received) == (7, 14), app_stays
    st.reset_stream()  # a new stream: its seqs are counted from the start
    assert st.counted_through == 0


def test_files_a_dropped_app_lost_are_counted_once_when_fetched_again() -> None:
    """`files_received` counts a seq that came by fallback file once, like
    `frames_received`: the files a dropped app lost come again with the refetch."""
    st = accepted()
    st.on_data(data(1), 0.0)  # the stream's start is known: files go straight on
    for i in range(2, 6):
        st.on_file_frame(FallbackFrame("s1", i, f"{i:08d}.request", "", b"f%d" % i), 0.0)
    assert (st.files_received, st.frames_received) == (4, 5)
    st.app_lost(3)  # its only app lost 3..5
    st.app_disconnected()
    st.app_connected(5.0)
    st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 5.1)
    got = []
    for i in range(3, 7):  # the store's copies again, then a new file
        frame = FallbackFrame("s1", i, f"{i:08d}.request", "", b"f%d" % i)
        got += delivered(st.on_file_frame(frame, 5.2))
    assert got == [3, 4, 5, 6]
    assert (st.files_received, st.frames_received) == (5, 6)


def test_progress_reports_what_the_apps_got() -> None:
    flushed = {"seq": 1}
    st = accepted()
    st.app_flushed = lambda last: flushed["seq"]
    st.on_data(data(1), 0.0)
    st.on_data(data(2), 0.0)
    out = st.handle_timer(PROGRESS_DELAY)
    (prog,) = sends(out, m.HotlinkProgress)
    assert prog == m.HotlinkProgress("s1", 1)
    st.sent(prog)
    # seq 2 still sits in a socket buffer: look again later, without new frames
    assert st.next_deadline() == PROGRESS_DELAY + PROGRESS_DELAY * 5
    flushed["seq"] = 2
    (prog,) = sends(st.handle_timer(PROGRESS_DELAY + PROGRESS_DELAY * 5), m.HotlinkProgress)
    assert prog.seq == 2


def test_reader_restart_from_a_recorded_seq() -> None:
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits(), link_up=True)
    st.restore("s1", 5, (100, "f"))
    out = st.start(None, 0.0)  # no offer yet: catch up from the recorded cursor
    (sync,) = sends(out, m.FileSync)
    assert (sync.since, sync.after, sync.sid) == (100, "f", "s1")
    st.offer(OFFER, 0.1)
    out = st.on_file_sync(m.FileSync(PATH, 100, "f", sid="s1"), 0.2)
    (acc,) = sends(out, m.HotlinkAccept)
    assert acc.seq == 5  # the sender re-sends after what we delivered
    st.on_acked()
    st.app_connected(0.3)
    assert delivered(st.on_data(data(5), 0.3)) == []
    assert delivered(st.on_data(data(6), 0.3)) == [6]


def test_new_sid_resets_the_stream() -> None:
    st = accepted()
    st.on_data(data(1), 0.0)
    out = st.offer(m.HotlinkOpen("s2", PATH, ALICE), 1.0)
    assert SidChanged("s1", "s2") in out and st.last_seq == 0 and st.catch_up.cursor == (0, "")
    assert st.state is SessionState.PENDING and sends(out, m.FileSync)


def test_sender_gone_link_down_close_reject() -> None:
    st = accepted()
    out = st.on_close(m.REASON_SENDER_GONE)
    assert out == [Emit(EventType.CLOSED, ALICE, m.REASON_SENDER_GONE)]
    assert st.state is SessionState.PENDING
    assert st.offer(OFFER, 0.0)  # the re-open: accepted again after a catch-up
    assert st.on_close("closed by alice") is None  # for good: the adapter closes it
    st.on_link_down()
    assert not st.catch_up.running and st.deferred_offer is None
    out = st.on_reject("", m.REASON_UNKNOWN_SESSION)
    assert out == [] and st.machine.reason == m.REASON_UNKNOWN_SESSION
    out = st.on_reject("", "permission denied")
    assert st.state is SessionState.REJECTED and Shutdown(graceful=False) in out
    st.shutdown()
    assert st.next_deadline() is None


def test_close_leaves_only_our_leg() -> None:
    st = accepted()
    out = st.close("bye")
    assert sends(out, m.HotlinkClose) == [m.HotlinkClose("s1", "bye")]
    assert st.state is SessionState.CLOSED and Settle("session closed") in out


def test_a_leg_the_relay_ended_is_closed_without_a_close_message() -> None:
    """The sender closed for good, or the relay dropped us ("reader stalled"): the
    relay has no leg of ours any more, and a Close from us would come back as an
    error."""
    for reason in ("closed by alice", "reader stalled"):
        st = accepted()
        assert st.on_close(reason) is None
        out = st.close(reason)
        assert sends(out, m.HotlinkClose) == [] and st.state is SessionState.CLOSED


def test_sender_gone_then_back_catches_up_before_accepting_again() -> None:
    """While the sender was gone its frames may have gone to fallback files only (in a
    relay cluster, a node cut from NATS drops the cross-node copies): its re-open of
    the same sid is accepted only after a catch-up from our cursor, though our own
    link stayed up, and the Accept resumes after what we delivered."""
    for gone in (
        lambda st: st.on_close(m.REASON_SENDER_GONE),
        lambda st: st.on_close(m.REASON_IDLE),
        lambda st: st.on_reject("", m.REASON_UNKNOWN_SESSION),
    ):
        st = accepted()
        st.on_data(data(1), 0.0)
        gone(st)
        assert st.state is SessionState.PENDING
        out = st.offer(OFFER, 1.0)
        (sync,) = sends(out, m.FileSync)
        assert (sync.since, sync.after, sync.sid) == (5, "a", "s1")
        assert not sends(out, m.HotlinkAccept)
        out = st.on_file_frame(FallbackFrame("s1", 2, f"{PATH}/00000002.request", "", b"f2"), 1.1)
        assert delivered(out) == [2]
        out = st.on_file_sync(m.FileSync(PATH, 6, "b", sid="s1"), 1.2)
        (acc,) = sends(out, m.HotlinkAccept)
        assert acc == m.HotlinkAccept("s1", seq=2)


def test_a_lost_app_that_got_more_than_counted_is_not_sent_copies() -> None:
    """uvloop wrote seq 3 and 4 to the dropped app after its abort: the refetch starts
    at 5 (`app_lost_revised`), unless an app already connected and it started."""
    st = accepted()
    for i in range(1, 6):
        st.on_data(data(i), 0.0)
    st.app_lost(3)
    st.app_lost_revised(3, 5)
    assert st.last_seq == 4 and st.refetch.from_seq == 5 and st.refetch.refused == 1
    st.app_disconnected()
    out = st.app_connected(1.0)
    (acc,) = sends(st.on_file_sync(m.FileSync(PATH, 5, "a", sid="s1"), 1.0), m.HotlinkAccept)
    assert sends(out, m.FileSync) and acc.seq == 4
    st.app_lost_revised(5, 6)  # too late: the refetch asked from 5
    assert st.last_seq == 4


def test_every_offer_catches_up_also_after_the_link_up_catch_up() -> None:
    """The link-up catch-up ended before the (re-)offer came: the offer catches up
    again, since files may have reached the store meanwhile through another relay
    node that ours could not hear (a cluster cut from NATS)."""
    st = accepted()
    st.on_close(m.REASON_SENDER_GONE)
    st.on_link_down()
    assert len(sends(st.on_link_up(1.0), m.FileSync)) == 1
    assert not sends(st.on_file_sync(m.FileSync(PATH, 6, "b", sid="s1"), 1.1), m.HotlinkAccept)
    out = st.offer(OFFER, 2.0)
    (again,) = sends(out, m.FileSync)
    assert (again.since, again.after) == (6, "b") and not sends(out, m.HotlinkAccept)
    assert sends(st.on_file_sync(m.FileSync(PATH, 7, "c", sid="s1"), 2.1), m.HotlinkAccept)


def test_a_refetch_timer_firing_exactly_at_due_asks() -> None:
    """`due` is asked_at + REFETCH_INTERVAL; a timer firing at exactly that instant
    must ask, even where `due - asked_at` rounds below the interval (it re-armed for the
    same instant, a spin, before)."""
    from hotlink.agent.core.refetch import REFETCH_INTERVAL, Refetch

    t = next(
        x / 7 for x in range(1, 10_000) if (x / 7 + REFETCH_INTERVAL) - x / 7 < REFETCH_INTERVAL
    )
    rf = Refetch()
    assert rf.may_ask(t)
    assert not rf.may_ask(t + 0.5) and rf.due == t + REFETCH_INTERVAL
    assert rf.may_ask(rf.due)
