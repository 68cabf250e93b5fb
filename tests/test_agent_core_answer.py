"""A new reader holds its live frames for the sender's answer (`hotlink.stream.start`)
when the offer says the sender answers (`HotlinkOpen.answers`), sans-I/O.

Why (join.py, `AnswerWait`): the first frame a joiner sees may be a re-send meant for
another reader; taken as the start, the frames that went only to the other readers'
direct links between it and the answer would be a hole after its start."""

from __future__ import annotations

import logging

import pytest
from hotlink.agent.core.join import HOLD_AT_LEAST
from test_agent_core_join import Reader


def test_live_frames_wait_for_the_answer_and_a_hole_before_it_cuts_them_off() -> None:
    """5..7 were a re-send for another reader; 8..11 went over its link only."""
    r = Reader(answers=True)
    r.caught_up()
    r.live([5, 6, 7])
    assert r.got == [] and r.st.reorder.expected is None  # held, nothing decided
    r.answer(12)
    r.live([12, 13])
    assert r.got == [12, 13] and r.st.drops == 0


def test_held_frames_that_lead_up_to_the_answer_are_the_start() -> None:
    """Frames the relay forwarded to us before the sender saw our Accept are ours."""
    r = Reader(answers=True)
    r.caught_up()
    r.live([3, 4, 5])
    r.answer(6)
    assert r.got == [3, 4, 5]
    r.live([6, 7])
    assert r.got == [3, 4, 5, 6, 7] and r.st.drops == 0


def test_a_reader_that_joined_before_the_first_frame_gets_it() -> None:
    r = Reader(answers=True)
    r.caught_up()
    r.live([1, 2])
    r.answer(3)
    r.live([3])
    assert r.got == [1, 2, 3]


def test_frames_past_the_answer_that_overtook_it_wait_for_the_ones_before() -> None:
    """A direct link's frames can overtake the answer on the relay."""
    r = Reader(answers=True)
    r.caught_up()
    r.live([10, 11])
    r.answer(8)
    assert r.got == []
    r.live([8, 9])
    assert r.got == [8, 9, 10, 11] and r.st.drops == 0


def test_held_frames_a_window_past_the_start_are_left_to_the_re_send() -> None:
    """The answer is 1 (the sender re-sends all it holds); 59..61 came by the relay
    before it saw our Accept. Pushed, they would skip 1..45 (window 16)."""
    r = Reader(answers=True, reorder_window=16)
    r.caught_up()
    r.live([59, 60, 61])
    r.answer(1)
    r.live(range(1, 62))
    assert r.got == list(range(1, 62)) and r.st.drops == 0


def test_without_an_app_only_what_the_no_app_queue_keeps_is_taken_before_the_answer() -> None:
    """The sender no longer holds frames below its answer for us: with room for two,
    the start is 4 (taking 1..5 would refuse 3..5 and leave a hole after the start)."""
    r = Reader(answers=True, app=False, reader_queue=2)
    r.caught_up()
    r.live([1, 2, 3, 4, 5])
    r.answer(6)
    assert r.st.refetch.from_seq == 0
    r.run(r.st.app_connected(r.now))
    assert r.got == [4, 5] and r.st.drops == 0


def test_no_answer_in_the_reorder_timeout_the_first_held_frame_decides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The answer was lost (our link went down): the frames go on as without one."""
    caplog.set_level(logging.INFO, "hotlink.agent.sessions")
    r = Reader(answers=True, reorder_timeout=0.5)
    r.caught_up()
    r.live([5, 6])
    r.wait(0.4)
    assert r.got == []
    r.wait(0.2)
    assert r.got == [5, 6]
    assert "no answer from the sender" in caplog.text and "seq 5" in caplog.text
    r.answer(9)  # a late answer changes nothing
    r.live([7])
    assert r.got == [5, 6, 7]


def test_a_full_hold_lets_the_frames_go_without_the_answer() -> None:
    r = Reader(answers=True, reorder_window=HOLD_AT_LEAST)
    r.caught_up()
    r.live(range(1, HOLD_AT_LEAST))
    assert r.got == []
    r.live([HOLD_AT_LEAST])
    assert r.got == list(range(1, HOLD_AT_LEAST + 1))


def test_without_the_offer_saying_so_the_first_frame_decides_at_once() -> None:
    """A sender that does not answer (an older agent) is not waited for."""
    r = Reader(answers=False)
    r.caught_up()
    r.live([5])
    assert r.got == [5]


def test_held_frames_keep_the_persisted_cursor_back() -> None:
    r = Reader(answers=True)
    r.caught_up()
    before = r.st.persist_cursor()
    r.live([5])
    assert r.st.answer.frames and r.st.persist_cursor() == before


def test_the_hold_is_bounded_by_the_no_app_queues_bytes() -> None:
    """Payloads of 2 bytes, `--reader-queue-bytes` 10: the fifth frame lets them go."""
    r = Reader(answers=True, reader_queue_bytes=10)
    r.caught_up()
    r.live([3, 4, 5, 6])
    assert r.got == []
    r.live([7])
    assert r.got == [3, 4, 5, 6, 7]
