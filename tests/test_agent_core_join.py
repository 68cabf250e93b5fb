"""A reader joining a running stream (agent/core/join.py, reader.py) and its gap reports
(agent/core/gap_report.py), without sockets or sleeps.

The stored files a new reader's catch-up brings are not the whole history (TEE copies
are skipped when the sender's file worker falls behind; ON_FAILURE stores only the
periods off the hotlink): the reader starts where they run without a hole up to the live
stream, or at the live point. Frames before its start are not owed: not delivered, not
drops, not WARNINGs. Skipped seqs of its own stream are drops, logged in a few lines.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hotlink.agent.core.effects import DeliverBacklog
from hotlink.agent.core.gap_report import INTERVAL, GapReport
from hotlink.agent.core.join import JoinRun
from hotlink.agent.core.limits import StreamLimits, Totals
from hotlink.agent.core.reader import ReaderStream
from hotlink.agent.reorder import ReorderBuffer
from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import FrameDecoder
from test_agent_core_reader import delivered

ALICE = "alice@x.org"
PATH = f"{ALICE}/_mpc/0_to_1"
WARN = "never arrived"


def data(seq: int, sid: str = "s1") -> m.HotlinkData:
    return m.HotlinkData(sid, seq, f"{PATH}/{seq:08d}.request", b"p%d" % seq)


def file(seq: int, sid: str = "s1") -> FallbackFrame:
    return FallbackFrame(sid, seq, f"{seq:08d}.request", "", b"p%d" % seq)


def seqs(effects: list[Any]) -> list[int]:
    """The seqs handed to the app, in order: delivered, or kept for the first app."""
    out = []
    for e in effects:
        if isinstance(e, DeliverBacklog):
            out += [f.seq for h, p in e.frames for f in FrameDecoder(1 << 20).feed(h + p)]
        else:
            out += delivered([e])
    return out


class Reader:
    """A new reader of sid s1: catch-up pages of stored files, then live frames."""

    def __init__(self, *, answers: bool = False, app: bool = True, **lim: Any) -> None:
        """`answers`: the offer says the sender answers our Accept (`stream.start`);
        `app`: an app is connected from the start."""
        lim.setdefault("reorder_timeout", 2.0)
        self.st = ReaderStream(
            PATH, sender=ALICE, limits=StreamLimits(**lim), totals=Totals(), link_up=True
        )
        self.got: list[int] = []
        self.now = 0.0
        self.run(self.st.start(m.HotlinkOpen("s1", PATH, ALICE, answers=answers), 0.0))
        if app:
            self.st.app_connected(0.0)

    def run(self, effects: list[Any]) -> list[Any]:
        self.got += seqs(effects)
        for e in effects:
            if hasattr(e, "msg") and isinstance(e.msg, m.HotlinkAccept):
                self.st.sent(e.msg)
                self.st.on_acked()
        return effects

    def files(self, it: Any) -> None:
        for s in it:
            self.run(self.st.on_file_frame(file(s), self.now))

    def caught_up(self) -> None:
        """The last catch-up page: the reader accepts."""
        self.run(self.st.on_file_sync(m.FileSync(PATH, 9, "z", sid="s1"), self.now))

    def answer(self, nxt: int) -> None:
        """The sender's `hotlink.stream.start`: it sends us every seq from `nxt` on."""
        self.run(self.st.stream_start(nxt, self.now))

    def live(self, it: Any) -> None:
        for s in it:
            self.run(self.st.on_data(data(s), self.now))

    def wait(self, dt: float) -> None:
        """Time passes; every timer due meanwhile fires. A catch-up a timer starts (a
        gap looks in the store before it is skipped) finds nothing more stored."""
        end = self.now + dt
        while (dl := self.st.next_deadline()) is not None and dl <= end:
            self.now = max(self.now, dl)
            for e in self.run(self.st.handle_timer(self.now)):
                if isinstance(getattr(e, "msg", None), m.FileSync):
                    last = m.FileSync(PATH, 9, "z", sid=e.msg.sid)
                    self.run(self.st.on_file_sync(last, self.now))
        self.now = end


# --- the joiner's start ----------------------------------------------------------


def test_a_joiner_starts_at_the_live_point_when_the_stored_files_stop_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The QA case: TEE files 1..50 stored, then copies skipped, a few later runs; the
    reader joins at 6000. Before: it delivered 1..50 and declared 51..6000 lost, one
    WARNING per seq, counted as drops."""
    caplog.set_level(logging.INFO, "hotlink.agent.sessions")
    r = Reader(reorder_window=64)
    r.files([*range(1, 51), *range(300, 340), *range(2000, 2030)])
    r.caught_up()
    assert r.got == [] and r.st.state.name == "OPEN"
    r.live(range(6001, 6101))
    # the TEE worker's late copies come by broadcast, some skipped: before our start
    r.files(x for x in range(2030, 6001) if x % 7)
    r.live(range(6101, 6201))
    r.wait(10.0)
    assert r.got == list(range(6001, 6201))
    assert r.st.drops == 0 and r.st.totals.drops == 0
    assert WARN not in caplog.text
    joined = [x for x in caplog.messages if "joined the stream at seq 6001" in x]
    assert len(joined) == 1 and "120 older stored frames" in joined[0]


def test_a_joiner_gets_the_stored_history_that_runs_up_to_the_live_stream() -> None:
    """ON_FAILURE: the sender wrote files while no reader had accepted, then the hotlink
    continues from the next seq: the first reader gets it all, from seq 1."""
    r = Reader(reorder_window=64)
    r.files(range(1, 41))
    r.caught_up()
    r.files(range(41, 46))  # broadcast after the catch-up, before the switch
    r.live(range(46, 60))
    assert r.got == list(range(1, 60)) and r.st.drops == 0


def test_a_hole_in_the_stored_history_leaves_out_what_precedes_it() -> None:
    r = Reader(reorder_window=64)
    r.files([*range(1, 11), *range(20, 31)])
    r.caught_up()
    r.live(range(31, 35))
    assert r.got == list(range(20, 35)) and r.st.drops == 0


def test_without_a_live_frame_the_held_files_are_delivered_after_the_timeout() -> None:
    """An idle sender: the stored files are the stream; they wait at most the reorder
    timeout for a live frame to decide."""
    r = Reader(reorder_window=64, reorder_timeout=0.5)
    r.files(range(5, 11))
    r.caught_up()
    assert r.got == [] and r.st.next_deadline() == pytest.approx(0.5)
    r.wait(0.5)
    assert r.got == list(range(5, 11))
    r.live([11, 12])
    assert r.got == list(range(5, 13)) and r.st.drops == 0


def test_the_senders_answer_starts_a_run_that_reaches_it_at_once() -> None:
    """A tunnel's first connection: its first frames went by files (no reader had
    accepted yet) and its peer waits for an answer, so no live frame comes. The
    sender's answer to the accept (next seq 3) says the run 1..2 reaches the live
    stream: delivered at once, no timer (the reorder timeout was longer than the
    tunnel's connect timeout)."""
    r = Reader(reorder_window=64, reorder_timeout=2.0)
    r.files([1, 2])
    r.caught_up()
    assert r.got == [] and r.st.next_deadline() == pytest.approx(2.0)
    r.answer(3)
    assert r.got == [1, 2]
    r.files([3])  # still on files: a broadcast copy follows the run
    r.live([4])
    assert r.got == [1, 2, 3, 4] and r.st.drops == 0


def test_the_senders_answer_skips_a_run_that_stops_short_however_late() -> None:
    """A running TEE stream on a loaded machine: the stored copies stop at 53 (the file
    worker fell behind), the sender is at 6000, and its answer and live frames come
    1.7 s after the catch-up. However late, the answer decides: the joiner starts at
    6001, never at 1 with a jump to the live stream."""
    r = Reader(reorder_window=4096, reorder_timeout=2.0)
    r.files(range(1, 54))
    r.caught_up()
    r.wait(1.7)
    assert r.got == []
    r.answer(6001)
    r.files([54, 55])  # the file worker's late copies: before the start
    r.live(range(6001, 6004))
    assert r.got == [6001, 6002, 6003] and r.st.drops == 0


def test_the_senders_answer_below_the_run_is_the_start() -> None:
    """The sender re-sends from 8 (frames it holds for a new reader while its links
    skipped the relay): the stored run 10..12 follows them."""
    r = Reader(reorder_window=64)
    r.files([10, 11, 12])
    r.caught_up()
    r.answer(8)
    r.live([8, 9, 13])
    assert r.got == list(range(8, 14)) and r.st.drops == 0


def test_the_senders_answer_without_stored_files_sets_the_start() -> None:
    """Nothing stored: the answer is the start, and a stale stored copy that comes
    later (below it) is not delivered."""
    r = Reader(reorder_window=64)
    r.caught_up()
    r.answer(5)
    r.files([3])
    r.live([5, 6])
    assert r.got == [5, 6] and r.st.drops == 0


def test_a_live_frame_before_the_answer_decides_and_the_answer_is_moot() -> None:
    """Frames the relay carried to us before the sender saw our accept come first:
    the first decides, as on the relay path; the answer after it changes nothing."""
    r = Reader(reorder_window=64)
    r.files([1, 2])
    r.caught_up()
    r.live([3])
    r.answer(4)
    r.live([4])
    assert r.got == [1, 2, 3, 4] and r.st.drops == 0


def test_without_an_answer_a_run_from_seq_1_waits_for_the_live_frame() -> None:
    """A sender that does not answer (an older agent), TEE copies still coming by
    broadcast: the live frame decides, not the files' pace."""
    r = Reader(reorder_window=64, reorder_timeout=2.0)
    r.files([1, 2, 3])
    r.caught_up()
    for s in range(4, 10):
        r.wait(0.08)
        r.files([s])
    assert r.got == []
    r.live([6001])
    assert r.got == [6001] and r.st.drops == 0


def test_a_run_that_moves_off_seq_1_waits_the_full_timeout() -> None:
    """TEE files by broadcast after the catch-up: 1..3, then a hole (copies skipped).
    The run from 40 is history unless it reaches the live stream, so it waits the
    reorder timeout for a live frame, not the short wait of a run from seq 1."""
    r = Reader(reorder_window=64, reorder_timeout=2.0)
    r.files([1, 2, 3])
    r.caught_up()
    r.files(range(40, 45))
    r.wait(1.0)
    assert r.got == []
    r.live([6001])  # the live stream, far ahead: it is the start
    assert r.got == [6001] and r.st.drops == 0


def test_a_run_as_long_as_the_window_is_delivered_during_the_catch_up() -> None:
    """Memory stays bounded: a stream stored whole is not held until the catch-up ends."""
    r = Reader(reorder_window=16)
    r.files(range(1, 16))
    assert r.got == []
    r.files(range(16, 40))
    assert r.got == list(range(1, 40))
    r.caught_up()
    r.live(range(40, 45))
    assert r.got == list(range(1, 45)) and r.st.drops == 0


def test_a_live_frame_older_than_the_held_run_starts_the_stream() -> None:
    """A sender re-sends what it holds unconfirmed to a new reader (direct path): the
    re-send reaches back before the stored run and fills up to it."""
    r = Reader(reorder_window=64)
    r.files(range(20, 30))
    r.caught_up()
    r.live(range(15, 35))
    assert r.got == list(range(15, 35)) and r.st.drops == 0


def test_held_files_keep_the_persisted_cursor_back() -> None:
    r = Reader(reorder_window=64)
    r.files(range(1, 5))
    r.caught_up()
    assert r.st.persist_cursor() == (0, "")


def test_a_new_stream_forgets_held_files() -> None:
    r = Reader(reorder_window=64)
    r.files(range(1, 5))
    r.run(r.st.offer(m.HotlinkOpen("s2", PATH, ALICE), 0.0))
    assert not r.st.join and r.st.join.due is None


def test_join_run_rules() -> None:
    jr: JoinRun[str] = JoinRun(limit=5, wait=1.0)
    for s in (3, 4, 2, 4):  # one older neighbour joins, a copy is ignored
        assert not jr.add(s, str(s))
    assert (jr.first, jr.items) == (2, ["2", "3", "4"])
    assert not jr.add(9, "9") and jr.skipped == 3  # a hole: the run starts again
    assert not jr.add(1, "1") and jr.skipped == 4  # older history beyond the hole
    assert jr.settle(11, "s") == (11, []) and jr.skipped == 0  # live point: 9 left out
    for s in range(20, 24):
        assert not jr.add(s, str(s))
    assert jr.add(24, "24")  # as long as the limit: it is the start
    assert jr.settle(None, "s") == (20, [(s, str(s)) for s in range(20, 25)])


# --- gap reports and drops -----------------------------------------------------------


def test_frames_far_ahead_are_reported_in_a_few_lines_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A frame too far ahead moves the reorder window by one seq: that was a WARNING per
    frame. Now the skipped ranges are merged and logged at most once a second."""
    caplog.set_level(logging.WARNING, "hotlink.agent.sessions")
    r = Reader(reorder_window=8)
    r.caught_up()
    r.live([1])
    r.live(range(3, 2003))  # 2 never comes
    r.live(range(5000, 5100))  # 2003..4999 never come
    assert r.st.drops == 1 + (4999 - 2003 + 1)
    assert len(caplog.records) == 1  # the first at once, the rest wait for the interval
    r.wait(INTERVAL)
    lines = [x.getMessage() for x in caplog.records]
    assert len(lines) == 2, lines
    assert "seq 2..2 (1 frame)" in lines[0]
    assert "seq 2003..4999 (2997 frames)" in lines[1]
    r.wait(5.0)
    assert r.got == [1, *range(3, 2003), *range(5000, 5100)]
    assert r.st.drops == 2998 and len(caplog.records) == 2


def test_drops_are_not_counted_again_after_a_new_stream() -> None:
    r = Reader(reorder_window=8)
    r.caught_up()
    r.live([1, 3])
    r.wait(5.0)
    assert r.st.drops == 1
    r.run(r.st.offer(m.HotlinkOpen("s2", PATH, ALICE), r.now))
    r.run(r.st.on_file_sync(m.FileSync(PATH, 9, "z", sid="s2"), r.now))
    r.run(r.st.on_data(data(1, "s2"), r.now))
    r.run(r.st.on_data(data(2, "s2"), r.now))
    assert r.st.drops == 1 and r.st.totals.drops == 1


def test_gap_report_merges_touching_ranges_and_names_a_few() -> None:
    gr = GapReport(2.0)
    ro: ReorderBuffer[str] = ReorderBuffer(window=2, start=1)
    assert gr.take(ro, 0, "s", 0.0) == 0
    for s in range(3, 10):
        ro.push(s, "", 0.0)
    assert gr.take(ro, 0, "s", 0.0) == ro.lost == 2  # seqs 1 and 2, one step each
    assert gr.due is None  # logged at once (the first report)
    lost = gr.lost
    for a, b in [(20, 20), (21, 25), (30, 30), (31, 31), (40, 40), (50, 50), (60, 60)]:
        lost.add(a, b)
    assert not lost.ready(0.5) and gr.due == INTERVAL
    assert lost.line(1.0) == "seq 20..25, 30..31, 40..40, 50..50 and 1 more ranges (11 frames)"
    assert lost.due is None and lost.ranges == []


def test_gap_report_counts_only_owed_seqs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "hotlink.agent.sessions")
    gr = GapReport(2.0)
    ro: ReorderBuffer[str] = ReorderBuffer(window=4, start=1)
    ro.push(20, "", 0.0)  # 1..16 skipped
    assert gr.take(ro, 10, "s", 0.0) == 7  # 10..16 owed, 1..9 history
    assert [(r.levelname, r.getMessage()[:22].strip()) for r in caplog.records] == [
        ("WARNING", "s: seq 10..16 (7 frame"),
        ("INFO", "s: seq 1..9 (9 frames)"),
    ]


def test_a_hole_after_window_long_stored_history_is_not_a_drop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TEE with a lagging file worker: the store holds a long run from seq 1 (longer than
    the reorder window, so it is the start: it cannot be held) and the live stream is
    far ahead. The hole between them is history the store did not have: one INFO line,
    not drops, no WARNING. Gaps after the live point are drops as ever."""
    caplog.set_level(logging.INFO, "hotlink.agent.sessions")
    r = Reader(reorder_window=16)
    r.files(range(1, 41))
    r.caught_up()
    r.files(range(41, 60))  # the lagging worker's copies, by broadcast
    r.live(range(6001, 6100))
    r.files(range(60, 70))  # late: before the live stream now
    r.wait(5.0)
    assert r.got == [*range(1, 60), *range(6001, 6100)]
    assert r.st.drops == 0 and WARN not in caplog.text
    info = [x for x in caplog.messages if "before the live stream" in x]
    assert 1 <= len(info) <= 3 and "seq 60.." in info[0]
    r.live([6101])  # 6100 never comes: owed
    r.wait(5.0)
    assert r.st.drops == 1 and caplog.text.count(WARN) == 1
