"""Unit tests of the sans-I/O reorder buffer."""

from __future__ import annotations

from hotlink.agent.reorder import ReorderBuffer
from hypothesis import given, settings
from hypothesis import strategies as st


def feed(rb: ReorderBuffer, seqs, now: float = 0.0) -> list[int]:
    out: list[int] = []
    for s in seqs:
        out += [x for x, _ in rb.push(s, f"p{s}", now)]
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_permutation_with_duplicates_comes_out_once_in_order(data):
    n = data.draw(st.integers(1, 200))
    seqs = list(range(1, n + 1))
    dups = data.draw(st.lists(st.sampled_from(seqs), max_size=50))
    order = data.draw(st.permutations(seqs + dups))
    rb: ReorderBuffer[str] = ReorderBuffer(window=n + 1, gap_timeout=1.0, start=1)
    out = feed(rb, order)
    assert out == seqs
    assert rb.duplicates == len(dups)
    assert len(rb) == 0 and rb.deadline is None and rb.lost == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_bounded_and_never_stalls(data):
    """Whatever arrives (with losses), memory stays within the window and expiring
    every gap releases everything that arrived, once, in increasing order."""
    window = data.draw(st.integers(1, 16))
    seqs = data.draw(st.lists(st.integers(1, 100), max_size=150))
    rb: ReorderBuffer[str] = ReorderBuffer(window=window, gap_timeout=1.0, start=1)
    out: list[int] = []
    now = 0.0
    for s in seqs:
        out += [x for x, _ in rb.push(s, "", now)]
        assert len(rb) <= window
    while rb.deadline is not None:
        now = rb.deadline
        out += [x for x, _ in rb.expire(now)]
    assert out == sorted(set(out))
    assert set(out) <= set(seqs)
    # every seq that arrived and was not released was a duplicate or arrived late
    lost = sum(b - a + 1 for a, b in rb.pop_gaps())
    assert lost == rb.lost


def test_gap_times_out_and_is_reported():
    rb: ReorderBuffer[str] = ReorderBuffer(window=100, gap_timeout=2.0, start=1)
    assert feed(rb, [1, 2]) == [1, 2]
    assert feed(rb, [4, 5], now=10.0) == []
    assert rb.deadline == 12.0
    assert rb.expire(11.9) == []
    assert [s for s, _ in rb.expire(12.0)] == [4, 5]
    assert rb.pop_gaps() == [(3, 3)] and rb.lost == 1
    assert rb.deadline is None
    assert feed(rb, [3]) == []  # late: dropped, not re-delivered
    assert rb.duplicates == 1
    assert feed(rb, [6]) == [6]


def test_frame_far_ahead_moves_the_window():
    rb: ReorderBuffer[str] = ReorderBuffer(window=4, gap_timeout=5.0, start=1)
    assert feed(rb, [1, 3]) == [1]
    assert feed(rb, [10]) == [3]  # 2 and 4..6 declared lost, 10 waits for 7..9
    assert rb.pop_gaps() == [(2, 2), (4, 6)]
    assert len(rb) == 1
    assert feed(rb, [7, 8, 9]) == [7, 8, 9, 10]


def test_identical_payloads_are_not_deduped():
    rb: ReorderBuffer[bytes] = ReorderBuffer(start=1)
    out = [item for s in (1, 2, 3) for _, item in rb.push(s, b"same", 0.0)]
    assert out == [b"same"] * 3


def test_baseline_from_first_frame_for_late_joiners():
    rb: ReorderBuffer[str] = ReorderBuffer(window=8)
    assert feed(rb, [500, 502, 501]) == [500, 501, 502]
    rb.reset()
    assert feed(rb, [7]) == [7]
