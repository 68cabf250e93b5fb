"""DirectSenderStream's re-send and window rules (agent/core/sender_direct.py) without
sockets: a link back during a refetch, a link a reorder window ahead of the relay, a
dying link's frames, re-sends to readers far behind, new readers' starts. The same
harness as test_agent_core_direct.py (readers modelled as a merge by seq)."""

from __future__ import annotations

from typing import Any

import pytest
from hotlink.agent.core.effects import Send
from hotlink.agent.core.limits import StreamLimits
from hotlink.agent.core.paths import ActivePath
from hotlink.agent.core.refetch import Refetch
from hotlink.agent.core.sender_direct import DirectSenderStream
from hotlink.wire import messages as m
from test_agent_core_direct import BOB, CAROL, Net, Reader, frames, setup


class RefetchingReader(Reader):
    """A reader whose refetch waits for its re-send: until the first seq it lacks
    comes, a frame ahead of it is taken for a copy the re-send brings again and
    dropped (the reader core's `Refetch.in_flight_copy`)."""

    def __init__(self) -> None:
        super().__init__()
        self.refetch = Refetch()

    def re_accept(self) -> int:
        """Its app connected: it asks for what follows what it delivered."""
        self.refetch.start(self.confirmed + 1)
        return self.confirmed

    def take(self, seq: int, via: str) -> None:
        rf = self.refetch
        if rf.awaiting_from and rf.in_flight_copy(seq, len(self.delivered) + 1):
            self.by["dropped"] = self.by.get("dropped", 0) + 1
            return
        super().take(seq, via)


def test_a_link_back_during_a_refetch_waits_for_the_re_send() -> None:
    """Bob's link is down when he asks again for what he refused (re-Accept with his
    seq): the sender re-sends by the relay. His link comes back while that re-send is
    on its way: frames sent direct only would overtake it and be dropped as copies it
    brings, but it does not bring them. The link waits until bob confirmed past what
    was sent at his re-Accept; then it carries his frames, and he misses nothing."""
    st, net = setup()
    bob = net.readers[BOB] = RefetchingReader()
    net.relay_legs.add(BOB)
    net.run(st.on_accept(BOB, None))
    net.run(st.app_frames(frames(3)))
    net.progress()  # bob confirmed 3: anchored
    net.run(st.direct_link_up(BOB))
    assert st.carriers() == (False, (BOB,))
    # bob's app is gone: 4..8 go direct and are refused (not confirmed)
    bob.take = lambda seq, via: None  # type: ignore[method-assign]
    net.run(st.app_frames(frames(5)))
    net.run(st.direct_link_down(BOB, "flap"))  # 4..8 re-sent by the relay: refused too
    del bob.take
    # his app connects; the relay's frames are on their way, not delivered yet
    in_flight: list[int] = []
    bob.take = lambda seq, via: (  # type: ignore[method-assign]
        in_flight.append(seq) if via == "relay" else RefetchingReader.take(bob, seq, via)
    )
    net.run(st.on_accept(BOB, bob.re_accept()))  # re-sends 4..8 by the relay
    assert in_flight == [4, 5, 6, 7, 8]
    net.run(st.direct_link_up(BOB))  # back while the re-send is on its way
    net.run(st.app_frames(frames(2)))
    assert "dropped" not in bob.by, "direct frames overtook the re-send"
    assert in_flight == [4, 5, 6, 7, 8, 9, 10] and st.carriers() == (True, ())
    for seq in in_flight:  # the relay delivers
        RefetchingReader.take(bob, seq, "relay")
    net.progress()  # bob confirmed 10: nothing is on its way, the link carries
    assert st.carriers() == (False, (BOB,)) and st.active_path is ActivePath.DIRECT
    net.run(st.app_frames(frames(2)))
    assert bob.delivered == list(range(1, 13)) and "dropped" not in bob.by
    assert not st.resend_asked and not st.direct_held


def test_a_link_never_outruns_the_relay_by_a_reorder_window() -> None:
    """Carol's relay lags (a relay busy with TEE copies): 100 frames are on their way
    to her when her link comes up. The link then carries the stream's next frames,
    faster than the relay; once they are a reorder window past what she confirmed,
    her buffer would skip the relay's 100 as lost. Frames that far ahead go by the
    relay to her instead, behind the ones on their way, until she confirmed them."""
    window = StreamLimits().reorder_window
    st, net = setup()
    carol = net.readers[CAROL] = Reader(window)
    net.readers[BOB] = Reader()
    for r in (BOB, CAROL):
        net.relay_legs.add(r)
        net.run(st.on_accept(r, None))
    net.run(st.direct_link_up(BOB))  # before the first frame: used at once
    net.run(st.app_frames(frames(10)))
    net.progress()  # carol confirmed 10 (by the relay)
    in_flight: list[int] = []
    carol.take = lambda seq, via: (  # type: ignore[method-assign]
        in_flight.append(seq) if via == "relay" else Reader.take(carol, seq, via)
    )
    net.run(st.app_frames(frames(100)))  # 11..110 on their way to carol
    net.run(st.direct_link_up(CAROL))
    assert st.carriers() == (False, (BOB, CAROL)) and st.relay_tail == {CAROL: 110}
    net.run(st.app_frames(frames(5000)))
    assert carol.skipped == [], "direct frames pushed her window past the relay's"
    first_by_relay = 10 + window
    # and ahead of the first of them, copies of what her link alone carried since the
    # relay's tail (`_relay_copies`): the link could die with some of them on it
    assert in_flight == [*range(11, 111), *range(111, first_by_relay), *range(first_by_relay, 5111)]
    # the relay brings 11..110 and the copies: carol confirms up to where the relay
    # took over, but the frames the relay took since are still on their way
    for seq in in_flight[: first_by_relay - 11]:
        Reader.take(carol, seq, "relay")
    net.progress()
    assert carol.confirmed == first_by_relay - 1 and st.relay_tail == {CAROL: 5110}
    del in_flight[: first_by_relay - 11]
    net.run(st.app_frames(frames(5000)))
    assert carol.skipped == [], "direct frames pushed her window past the relay's"
    for seq in list(in_flight):  # the relay delivers the rest
        Reader.take(carol, seq, "relay")
    net.progress()  # carol confirmed everything: the relay is skipped again
    assert not st.relay_tail and st.carriers() == (False, (BOB, CAROL))
    net.run(st.app_frames(frames(5)))
    assert carol.delivered == list(range(1, 10116)) and carol.skipped == []
    assert net.readers[BOB].delivered == list(range(1, 10116))


def _carol_joins(window: int, *others: str) -> tuple[DirectSenderStream, Net, Reader]:
    """`others` accepted (no links), then carol with a reorder window of `window`; she
    got 1..10 by the relay and confirmed them."""
    st, net = setup(*others)
    carol = net.readers[CAROL] = Reader(window)
    net.relay_legs.add(CAROL)
    net.run(st.on_accept(CAROL, None))
    net.run(st.app_frames(frames(10)))
    net.progress()
    return st, net, carol


def test_a_dying_link_s_frames_go_by_the_relay_ahead_of_frames_a_window_past_them() -> None:
    """Carol (reorder window 16) is linked while the relay still brings her 11..30; she
    confirmed 20 when her link carries 31..35, and 36.. are a window past that: they go
    by the relay. The link dies with 31..35 on it, and the sender learns of it after
    36..50 went. Re-sent only then, 31..35 came behind 36..50, and 47 made her skip
    them (model seed 117). The relay now carries copies of 31..35 ahead of 36."""
    st, net, carol = _carol_joins(16)
    by_relay: list[int] = []
    on_link: list[int] = []
    carol.take = lambda seq, via: (by_relay if via == "relay" else on_link).append(seq)  # type: ignore[method-assign]
    net.run(st.app_frames(frames(20)))  # 11..30 on their way by the relay
    net.run(st.direct_link_up(CAROL, 16))
    for seq in by_relay[:10]:  # the relay brought 11..20 so far
        Reader.take(carol, seq, "relay")
    del by_relay[:10]
    net.progress()
    net.run(st.app_frames(frames(20)))  # 31..35 by the link, 36..50 a window ahead
    assert on_link == [31, 32, 33, 34, 35]
    assert by_relay == [*range(21, 31), *range(31, 36), *range(36, 51)]
    on_link.clear()  # the link dies with them on it
    net.run(st.direct_link_down(CAROL, "reset"))  # 21..50 again, by the relay
    del carol.take
    for seq in by_relay:  # the relay delivers in order what it was given
        carol.take(seq, "relay")
    assert carol.skipped == [] and carol.delivered == list(range(1, 51))


def _carol_refused(bob_confirmed: int) -> tuple[DirectSenderStream, Net, Reader, list[int]]:
    """Bob has no link, carol (window 16) has one, so the relay carries every frame
    too. Carol's app refused 11..60 (both copies); the relay's 41..60 are still on
    their way to her (in the list returned, where the relay's next frames to her go).
    From here on, a frame on her link fails the test."""
    st, net, carol = _carol_joins(16, BOB)
    net.run(st.direct_link_up(CAROL, 16))
    assert st.carriers() == (True, (CAROL,))
    by_relay: list[int] = []
    carol.take = lambda seq, via: by_relay.append(seq) if via == "relay" else None  # type: ignore[method-assign]
    net.run(st.app_frames(frames(50)))
    net.run(st.on_progress(BOB, bob_confirmed))
    del by_relay[:30]  # 11..40 came and were refused too

    def take(seq: int, via: str) -> None:
        if via != "relay":
            pytest.fail(f"re-sent {seq} went by her link")
        by_relay.append(seq)

    carol.take = take  # type: ignore[method-assign]
    return st, net, carol, by_relay


def _deliver_waiting_for_re_send(carol: Reader, by_relay: list[int]) -> None:
    """The relay delivers in order; while carol waits for the re-send (from 11),
    frames ahead are copies it brings again (the reader core's `in_flight_copy`)."""
    del carol.take
    for seq in by_relay:
        if seq == 11 or carol.confirmed >= 11:
            carol.take(seq, "relay")


def test_a_re_send_to_a_linked_reader_far_behind_goes_behind_the_relay_s_frames() -> None:
    """Bob's re-Accept re-sends 11..60 while carol waits for her own re-send of them
    (`_carol_refused`). By her link, the re-send would end her wait (from then on she
    reorders), and the relay's 41.. a window past 11 would make her skip the rest of
    it (model seed 2719). So the re-send to her goes by the relay, behind them, and
    her link waits until she confirmed past what was sent. Split across the paths
    (the link carrying what is within her window), her wait dropped the link's part
    as copies (model seed 1230)."""
    st, net, carol, by_relay = _carol_refused(bob_confirmed=10)
    net.run(st.on_accept(BOB, 10))  # bob asks again after 10: 11..60 re-sent
    assert by_relay == [*range(41, 61), *range(11, 61)]
    assert CAROL in st.direct_held and st.carriers() == (True, ())
    net.run(st.app_frames(frames(5)))  # 61..65: by the relay too, behind the re-send
    assert by_relay[-5:] == list(range(61, 66))
    _deliver_waiting_for_re_send(carol, by_relay)
    net.progress()  # past what was sent at bob's re-Accept: her link carries again
    assert carol.skipped == [] and carol.delivered == list(range(1, 66))
    assert CAROL in st.direct_up and st.carriers() == (True, (CAROL,))


def test_a_linked_reader_s_own_re_send_goes_behind_the_relay_s_newer_frames() -> None:
    """The same for the re-send carol asks for herself (her app is back), her link
    up: over the link it came first, ended her wait, and the relay's frames sent
    before her re-Accept, a window ahead, made her skip the rest of it (model seeds
    20885, 33609). It goes by the relay, behind them; her link waits."""
    st, net, carol, by_relay = _carol_refused(bob_confirmed=60)
    net.run(st.on_accept(CAROL, 10))  # she asks again after 10
    assert by_relay == [*range(41, 61), *range(11, 61)] and CAROL in st.direct_held
    _deliver_waiting_for_re_send(carol, by_relay)
    net.progress()
    assert carol.skipped == [] and carol.delivered == list(range(1, 61))
    assert CAROL in st.direct_up


@pytest.mark.parametrize("announced", [True, False])
def test_a_reader_s_own_smaller_window_bounds_its_link(announced: bool) -> None:
    """Carol runs with a reorder window of 64, the sender with the default: the bound
    for her link is the window her answer announced. Unannounced (an older reader),
    the sender's larger window lets the link push hers past the relay's frames."""
    st, net, carol = _carol_joins(64)
    in_flight: list[int] = []
    carol.take = lambda seq, via: (  # type: ignore[method-assign]
        in_flight.append(seq) if via == "relay" else Reader.take(carol, seq, via)
    )
    net.run(st.app_frames(frames(100)))  # 11..110 on their way to carol by the relay
    net.run(st.direct_link_up(CAROL, 64 if announced else 0))
    net.run(st.app_frames(frames(200)))
    for seq in list(in_flight):
        Reader.take(carol, seq, "relay")
    net.progress()
    net.run(st.app_frames(frames(5)))
    if announced:
        assert in_flight[100] == 111  # already 101 past her ack: the relay takes it
        assert carol.skipped == [] and carol.delivered == list(range(1, 316))
    else:
        assert carol.skipped, "the sender's window let her link outrun the relay"


def test_a_re_send_skips_the_links_of_readers_that_confirmed_it() -> None:
    """Carol's link drops: what she did not confirm is re-sent by the relay. Bob
    confirmed all of it over his link, which therefore carries none of the copies
    (before: every re-sent frame also went to every link, to be dropped by seq)."""
    st, net = setup(BOB, CAROL)
    for r in (BOB, CAROL):
        net.run(st.direct_link_up(r))
    net.run(st.app_frames(frames(20)))
    net.run(st.on_progress(BOB, 20))
    net.run(st.on_progress(CAROL, 5))
    direct, relay = net.direct_frames, net.relay_frames
    net.run(st.direct_link_down(CAROL, "flap"))  # 6..20 again, by the relay
    assert net.relay_frames - relay == 15 and net.direct_frames == direct
    net.run(st.app_frames(frames(1)))  # a new frame: bob's link and the relay
    assert net.direct_frames == direct + 1 and net.relay_frames - relay == 16
    assert net.readers[CAROL].delivered == list(range(1, 22))
    assert net.readers[BOB].delivered == list(range(1, 22))


def _starts(effects: list[Any]) -> list[tuple[str, int | None]]:
    return [
        (e.msg.to, e.msg.seq)
        for e in effects
        if isinstance(e, Send) and isinstance(e.msg, m.HotlinkSignal)
    ]


def test_a_new_reader_is_told_where_its_frames_begin() -> None:
    """`hotlink.stream.start` answers a new reader's accept, ahead of every frame
    sent after it: the first seq it gets (join.py decides its start by it). On the
    relay path that is the next frame; while the links skip the relay, the first
    frame re-sent to it; a reader that says where it is (a seq) is not told."""
    st, net = setup(BOB)
    net.run(st.app_frames(frames(5)))
    out = st.on_accept(CAROL, None)
    assert _starts(out) == [(CAROL, 6)] and isinstance(out[0], Send)

    st, net = setup(BOB, CAROL)
    for r in (BOB, CAROL):
        net.run(st.direct_link_up(r))
    net.run(st.app_frames(frames(5)))
    assert net.relay_frames == 0  # over the links only
    net.run(st.on_progress(BOB, 3))
    net.run(st.on_progress(CAROL, 3))
    dave = "dave@x.org"
    out = st.on_accept(dave, None)
    assert _starts(out) == [(dave, 4)] and [f.seq for f in st.pending] == [4, 5]
    assert _starts(st.on_accept(dave, 5)) == []


def test_a_new_reader_is_not_credited_with_the_others_confirmation() -> None:
    """A new reader accepted while links skip the relay gets what the sender holds
    unconfirmed re-sent, but it confirmed nothing itself: its own (lower) progress
    counts. Credited with the session's seq, it had the frames it refused (no app
    yet) forgotten, and its re-Accept's seq raised past them (QA model)."""
    st, net = setup(BOB)
    net.run(st.direct_link_up(BOB))
    net.run(st.app_frames(frames(10)))
    net.run(st.on_progress(BOB, 10))
    net.run(st.on_accept(CAROL, None))
    assert CAROL not in st.reader_acks
    net.run(st.on_progress(CAROL, 7))
    assert st.reader_acks[CAROL] == 7


def test_a_re_accept_that_raises_the_last_ack_trims_the_window() -> None:
    """Every reader confirmed the last frame once carol's re-Accept says where she is:
    the re-send window is emptied then, not at some later progress (at a stream's
    end there is none, and a relay drop would re-send it all)."""
    st, net = setup(BOB, CAROL)
    net.run(st.app_frames(frames(10)))
    net.run(st.on_progress(BOB, 10))
    net.run(st.on_progress(CAROL, 2))
    assert [f.seq for f in st.recent] == list(range(3, 11))
    net.run(st.on_accept(CAROL, 10))
    assert not st.recent and st.confirmed == 10


def test_a_re_send_to_a_reader_the_relay_still_carries_frames_to_goes_whole_by_it() -> None:
    """Carol's link is up while the relay still carries her frames (`relay_tail`) when
    she asks for a re-send (a refetch): all of it goes by the relay, behind them, and
    her link waits until she confirmed past it. Split, the link's part ended her
    refetch's wait and the relay's older copies then pushed her window past the rest,
    or the link's part came first and was dropped as copies (QA model)."""
    st, net = setup(BOB)
    carol = net.readers[CAROL] = Reader()
    net.relay_legs.add(CAROL)
    net.run(st.on_accept(CAROL, None))
    net.run(st.app_frames(frames(5)))
    net.progress()
    in_flight: list[int] = []
    carol.take = lambda seq, via: in_flight.append(seq)  # type: ignore[method-assign]
    net.run(st.app_frames(frames(20)))  # 6..25 on their way to carol by the relay
    net.run(st.direct_link_up(CAROL))
    assert CAROL in st.direct_up and st.relay_tail[CAROL] == 25
    net.run(st.on_accept(CAROL, 5))  # her app refused 6..: she asks again
    assert CAROL not in st.direct_up and CAROL in st.direct_held
    assert all(not direct for relay, direct in [st.carriers()])
    del carol.take
    for seq in in_flight:
        carol.take(seq, "relay")
    net.progress()  # past what was sent at her Accept: the link carries again
    assert CAROL in st.direct_up
    net.run(st.app_frames(frames(3)))
    assert carol.delivered == list(range(1, 29))


def test_carriers_follow_every_change_of_readers_and_links() -> None:
    """`carriers()` keeps the linked readers (`readers & direct_up`, sorted) between
    calls, keyed on the two sets, which are rebound on every change: a link going down,
    a reader leaving, a link up before its reader's accept, a new reader, a relay drop
    and a link lost with the relay down each show in the very next call. The effects
    are not run: carriers() is asked after each event, for one queued fresh frame
    once the first readers' links are up (before any seq, a new reader's link
    carries frames at once; after, it waits for the reader's first confirmation)."""
    dave = "dave@x.org"
    st, _ = setup(BOB, CAROL)

    def carriers() -> tuple[bool, tuple[str, ...]]:
        # the sets the cache is keyed on are never changed in place
        assert type(st.readers) is frozenset and type(st.direct_up) is frozenset
        got = st.carriers()
        assert got[1] == tuple(sorted(st.readers & st.direct_up))  # what it computed
        return got

    assert carriers() == (True, ())
    st.direct_link_up(BOB)
    assert carriers() == (True, (BOB,))
    st.direct_link_up(CAROL)
    assert carriers() == (False, (BOB, CAROL))
    st.app_frames(frames(1))  # queued only: nothing is sent
    assert st.pending and carriers() == (False, (BOB, CAROL))
    st.direct_link_down(CAROL, "closed")  # a link down: carol by the relay again
    assert carriers() == (True, (BOB,))
    st.on_close(CAROL, "reader disconnected")  # she leaves: bob direct only
    assert carriers() == (False, (BOB,))
    st.direct_link_up(dave)  # his link before his accept: not a reader yet
    assert carriers() == (False, (BOB,))
    st.on_accept(dave, None)  # only `readers` changes
    assert carriers() == (False, (BOB, dave))
    st.on_accept(CAROL, None)  # back, without a link
    assert carriers() == (True, (BOB, dave))
    st.on_link_down()  # the relay drops: the linked readers stay
    assert st.readers == {BOB, dave} and carriers() == (False, (BOB, dave))
    st.direct_link_down(dave, "closed")  # unreachable with the relay down: he leaves
    assert st.readers == {BOB} and carriers() == (False, (BOB,))
