"""The reader's in-order fast path (`ReaderStream.on_data` with `ReorderBuffer.take_next`)
gives exactly what the general path gives, and every uncommon case falls through to it:
a gap, a duplicate, the first frame, no app, a switch back from fallback files."""

from __future__ import annotations

from typing import Any

from hotlink.agent.core.effects import Deliver, Emit, EventType
from hotlink.agent.core.limits import StreamLimits
from hotlink.agent.core.paths import ActivePath
from hotlink.agent.core.reader import PROGRESS_DELAY, ReaderStream
from hotlink.agent.reorder import ReorderBuffer
from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.frames import FrameDecoder, encode_header

ALICE = "alice@x.org"
PATH = f"{ALICE}/_mpc/0_to_1"


def stream(apps: int = 1, start: int | None = 1) -> ReaderStream:
    st = ReaderStream(PATH, sender=ALICE, limits=StreamLimits(reorder_timeout=0.5))
    st.sid = "s1"
    st.apps = apps
    if start is not None:
        st.reorder.reset(start)
    return st


def frames(effects: list[Any]) -> list[tuple[int, str, str, bytes]]:
    out = []
    for e in effects:
        if type(e) is Deliver:
            (f,) = FrameDecoder(1 << 20).feed(e.header + e.payload)
            out.append((f.seq, f.path, f.etag, f.payload))
    return out


def test_take_next_only_takes_the_next_seq_with_nothing_waiting() -> None:
    ro: ReorderBuffer[str] = ReorderBuffer(start=None)
    assert not ro.take_next(1) and ro.expected is None  # the first frame: push decides
    assert ro.push(1, "a", 0.0) == [(1, "a")]
    assert ro.take_next(2) and ro.expected == 3
    assert not ro.take_next(2) and ro.duplicates == 0  # a duplicate: push counts it
    assert ro.push(5, "e", 0.0) == [] and len(ro) == 1
    assert not ro.take_next(3) and ro.expected == 3  # something waits: push releases
    assert ro.push(3, "c", 0.0) == [(3, "c")] and len(ro) == 1


def test_fast_path_frames_are_the_general_paths_frames() -> None:
    st = stream()
    msgs = [
        m.HotlinkData("s1", 1, f"{PATH}/a.request", b"one"),
        m.HotlinkData("s1", 2, "elsewhere/b.request", b"two", "etag2"),  # path not ours
        m.HotlinkData("s1", 3, f"{PATH}/c.request", b""),
    ]
    got = [frames(st.on_data(x, 5.0)) for x in msgs]
    assert got == [
        [(1, f"{PATH}/a.request", "", b"one")],
        [(2, f"{PATH}/00000002.request", "etag2", b"two")],
        [(3, f"{PATH}/c.request", "", b"")],
    ]
    (d,) = st.on_data(m.HotlinkData("s1", 4, f"{PATH}/d", b"xy", "e"), 5.0)
    assert d == Deliver(encode_header(f"{PATH}/d".encode(), b"e", 2, 4), b"xy")
    assert (st.last_seq, st.frames_received, st.bytes_received) == (4, 4, 8)
    assert st.progress_due == 5.0 + PROGRESS_DELAY and st.gap_due is None
    assert st.delivered() == 4


def test_after_a_gap_the_general_path_releases_then_the_fast_path_resumes() -> None:
    st = stream()
    assert [f[0] for f in frames(st.on_data(m.HotlinkData("s1", 1, "", b"a"), 1.0))] == [1]
    assert frames(st.on_data(m.HotlinkData("s1", 3, "", b"c"), 1.0)) == []
    assert st.gap_due == 1.5
    assert [f[0] for f in frames(st.on_data(m.HotlinkData("s1", 2, "", b"b"), 1.1))] == [2, 3]
    assert st.gap_due is None
    assert [f[0] for f in frames(st.on_data(m.HotlinkData("s1", 4, "", b"d"), 1.2))] == [4]
    assert frames(st.on_data(m.HotlinkData("s1", 4, "", b"d"), 1.2)) == []
    assert st.reorder.duplicates == 1 and st.frames_received == 4


def test_gap_skipped_by_the_timer_then_fast_path() -> None:
    st = stream()
    st.on_data(m.HotlinkData("s1", 2, "", b"b"), 1.0)  # seq 1 missing
    assert [f[0] for f in frames(st.handle_timer(1.5))] == [2]
    assert st.drops == 1 and st.gap_due is None
    assert [f[0] for f in frames(st.on_data(m.HotlinkData("s1", 3, "", b"c"), 1.6))] == [3]
    assert st.drops == 1  # nothing reported twice


def test_first_frame_of_a_joined_stream_goes_the_general_way() -> None:
    st = stream(start=None)
    assert [f[0] for f in frames(st.on_data(m.HotlinkData("s1", 40, "", b"x"), 0.0))] == [40]
    assert [f[0] for f in frames(st.on_data(m.HotlinkData("s1", 41, "", b"y"), 0.0))] == [41]


def test_no_app_keeps_the_backlog() -> None:
    st = stream(apps=0)
    assert st.on_data(m.HotlinkData("s1", 1, "", b"a"), 0.0) == []
    assert len(st.backlog) == 1 and st.frames_received == 0 and st.delivered() == 0


def test_back_from_files_still_reports_the_switch() -> None:
    st = stream()
    st.on_file_frame(FallbackFrame("s1", 1, "00000001.request", "", b"f1"), 0.0)
    assert st.reader_path is ActivePath.FILES
    out = st.on_data(m.HotlinkData("s1", 2, "", b"h2"), 0.0)
    assert [f[0] for f in frames(out)] == [2]
    assert Emit(EventType.PATH_SWITCHED, ALICE, "frames by hotlink") in out
    assert st.reader_path is ActivePath.HOTLINK and st.policy.switches == 2


def test_in_order_is_the_fast_path_and_declines_everything_else() -> None:
    """The adapter calls `in_order` first (the header to write, no effect list) and
    `on_data` only when it declines; declining changes nothing."""
    st = stream()
    header = st.in_order(m.HotlinkData("s1", 1, f"{PATH}/a", b"one", "e"), 2.0)
    assert header == encode_header(f"{PATH}/a".encode(), b"e", 3, 1)
    assert (st.last_seq, st.frames_received, st.bytes_received) == (1, 1, 3)
    assert st.progress_due == 2.0 + PROGRESS_DELAY
    gap = m.HotlinkData("s1", 3, "", b"c")
    assert st.in_order(gap, 2.0) is None and st.reorder.expected == 2
    assert frames(st.on_data(gap, 2.0)) == [] and st.gap_due is not None
    assert st.in_order(m.HotlinkData("s1", 2, "", b"b"), 2.0) is None  # 3 waits: on_data
    assert stream(apps=0).in_order(m.HotlinkData("s1", 1, "", b"a"), 0.0) is None
    assert stream(start=None).in_order(m.HotlinkData("s1", 1, "", b"a"), 0.0) is None
