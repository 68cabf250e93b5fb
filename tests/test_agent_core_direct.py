"""DirectSenderStream (agent/core/sender_direct.py) without sockets: which path each
frame takes, and that switching between relay and direct links loses, duplicates or
reorders nothing at the readers (modelled as a merge by seq, like the reader core)."""

from __future__ import annotations

import random
from typing import Any

from hotlink.agent.core.effects import Emit, EventType, Transmit
from hotlink.agent.core.limits import StreamLimits, Totals
from hotlink.agent.core.paths import ActivePath, FallbackMode
from hotlink.agent.core.sender_direct import DirectSenderStream
from hotlink.agent.core.state import SessionState
from hotlink.wire import messages as m
from hotlink.wire.frames import Frame

PATH = "alice@x.org/_mpc/0_to_1"
BOB = "bob@x.org"
CAROL = "carol@x.org"


class Reader:
    """A reader's merge by seq: delivers in order, drops copies. With a `window`, a
    frame that far ahead of the next one expected makes it skip what it still waits
    for (the real reorder buffer's rule): the skipped seqs are lost even if they come
    later."""

    def __init__(self, window: int = 0) -> None:
        self.delivered: list[int] = []
        self.skipped: list[int] = []
        self.buf: set[int] = set()
        self.by: dict[str, int] = {"relay": 0, "direct": 0}
        self.window = window

    def take(self, seq: int, via: str) -> None:
        nxt = len(self.delivered) + len(self.skipped) + 1
        if seq < nxt or seq in self.buf:
            return
        self.by[via] += 1
        self.buf.add(seq)
        while self.window and seq - nxt >= self.window:  # the oldest is skipped
            if nxt in self.buf:
                self.buf.discard(nxt)
                self.delivered.append(nxt)
            else:
                self.skipped.append(nxt)
            nxt += 1
        while nxt in self.buf:
            self.buf.discard(nxt)
            self.delivered.append(nxt)
            nxt += 1

    @property
    def confirmed(self) -> int:
        return len(self.delivered) + len(self.skipped)


class Net:
    """The adapter: carries Transmit over the relay (fan-out to every reader it
    knows) and over direct links; `relay_up` / `direct` say what works."""

    def __init__(self, st: DirectSenderStream, readers: dict[str, Reader]) -> None:
        self.st = st
        self.readers = readers
        self.relay_up = True
        #: readers the relay delivers to (their accepted legs)
        self.relay_legs: set[str] = set()
        self.events: list[Emit] = []
        self.relay_frames = self.direct_frames = 0
        self.transmits: list[Transmit] = []

    def run(self, effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, Transmit):
                self.transmits.append(e)
                self.transmit()
            elif isinstance(e, Emit):
                self.events.append(e)

    def transmit(self) -> None:
        st = self.st
        if st.can_transmit:
            while st.pending:
                relay, direct = st.carriers()
                msg: m.HotlinkData = st.pending[0]
                if relay and not self.relay_up:
                    break
                for r in direct:  # the adapter writes to the direct links first
                    self.direct_frames += 1
                    self.readers[r].take(msg.seq, "direct")
                if relay:
                    self.relay_frames += 1
                    for r in self.relay_legs:
                        self.readers[r].take(msg.seq, "relay")
                st.frame_sent()
        self.run(st.transmit_done(False, True))

    def progress(self) -> None:
        for name, r in self.readers.items():
            if name in self.st.readers:
                self.run(self.st.on_progress(name, r.confirmed))


def frames(n: int) -> list[Frame]:
    return [Frame(b"x" * 10, 0, "") for _ in range(n)]


def setup(*names: str, mode: FallbackMode = FallbackMode.OFF) -> tuple[DirectSenderStream, Net]:
    st = DirectSenderStream(
        PATH, sid="s1", mode=mode, limits=StreamLimits(), totals=Totals(), link_up=True
    )
    net = Net(st, {n: Reader() for n in names})
    net.run(st.start())
    net.run(st.on_acked())
    for n in names:
        net.relay_legs.add(n)
        net.run(st.on_accept(n, None))
    return st, net


def test_all_readers_direct_skips_the_relay() -> None:
    st, net = setup(BOB)
    net.run(st.app_frames(frames(3)))
    assert st.active_path is ActivePath.HOTLINK and net.relay_frames == 3
    net.run(st.direct_link_up(BOB))
    # bob's start is known once he confirmed a seq (see the test below)
    assert st.active_path is ActivePath.HOTLINK and BOB in st.direct_held
    net.progress()
    assert st.active_path is ActivePath.DIRECT
    assert net.events[-1] == Emit(EventType.PATH_SWITCHED, BOB, f"direct link to {BOB} up")
    net.run(st.app_frames(frames(5)))
    assert (net.relay_frames, net.direct_frames) == (3, 5)
    assert net.readers[BOB].delivered == list(range(1, 9))
    assert st.carriers() == (False, (BOB,))


class JoiningReader(Reader):
    """A new reader: the first seq it sees starts its stream (the reorder buffer's
    `start=None`), so anything lower that comes later is dropped as old."""

    def __init__(self) -> None:
        super().__init__()
        self.start: int | None = None

    def take(self, seq: int, via: str) -> None:
        if self.start is None:
            self.start = seq
        if seq < self.start:
            self.by["dropped"] = self.by.get("dropped", 0) + 1
            return
        super().take(seq - self.start + 1, via)


def test_a_new_readers_direct_link_waits_until_its_start_is_known() -> None:
    """Frames the relay carries to a new reader are still in flight when its direct
    link comes up: a direct frame must not overtake them, or the reader would take it
    as the start of its stream and drop them."""
    st, net = setup()
    bob = net.readers[BOB] = JoiningReader()
    in_flight: list[int] = []
    net.relay_legs.add(BOB)
    net.run(st.on_accept(BOB, None))
    net.readers[BOB].take = lambda seq, via: (  # type: ignore[method-assign]
        in_flight.append(seq) if via == "relay" else JoiningReader.take(bob, seq, via)
    )
    net.run(st.app_frames(frames(3)))
    net.run(st.direct_link_up(BOB))
    assert st.carriers() == (True, ()) and st.active_path is ActivePath.HOTLINK
    net.run(st.app_frames(frames(2)))  # still by the relay
    assert in_flight == [1, 2, 3, 4, 5] and net.direct_frames == 0
    for seq in in_flight:  # the relay delivers
        JoiningReader.take(bob, seq, "relay")
    net.run(st.on_progress(BOB, bob.confirmed))
    assert st.carriers() == (False, (BOB,)) and st.active_path is ActivePath.DIRECT
    net.run(st.app_frames(frames(2)))
    assert bob.delivered == list(range(1, 8)) and "dropped" not in bob.by
    assert net.direct_frames == 2


def test_a_held_link_is_used_once_the_reader_re_accepts_with_its_seq() -> None:
    """The relay drops while bob's link waits for his first confirmation: he leaves
    `readers` (the relay was his only carrier) and comes back by a re-accept with his
    seq, which says where he is: the link carries his frames from then on."""
    st, net = setup(BOB)
    net.run(st.app_frames(frames(3)))
    net.run(st.direct_link_up(BOB))
    assert BOB in st.direct_held
    net.relay_up = False
    st.on_link_down()
    net.run(st.reevaluate("link down"))
    assert st.readers == set()
    net.relay_up = True
    net.run(st.on_link_up())
    net.run(st.on_acked())
    net.run(st.on_accept(BOB, net.readers[BOB].confirmed))
    assert st.carriers() == (False, (BOB,)) and st.active_path is ActivePath.DIRECT
    net.run(st.app_frames(frames(2)))
    assert net.readers[BOB].delivered == [1, 2, 3, 4, 5] and net.relay_frames == 3


def test_a_held_link_is_used_once_a_re_accept_says_where_the_reader_is() -> None:
    """A new reader whose app was absent confirms nothing; its refetch re-Accept
    carries its delivered seq: its start is known, so the held link carries frames."""
    st, net = setup(BOB)
    net.run(st.app_frames(frames(3)))
    net.run(st.direct_link_up(BOB))
    assert BOB in st.direct_held
    net.run(st.on_accept(BOB, 3))
    assert st.carriers() == (False, (BOB,)) and not st.direct_held


def test_an_accept_with_seq_0_waits_for_a_confirmation() -> None:
    """A reader restarted before it delivered anything accepts with seq 0 and, like a
    new reader, takes the first seq it sees as its start: its link waits too."""
    st, net = setup(BOB)
    net.run(st.app_frames(frames(3)))
    net.run(st.on_close(BOB, "reader gone"))
    net.run(st.on_accept(BOB, 0))
    net.run(st.direct_link_up(BOB))
    assert st.carriers() == (True, ()) and BOB in st.direct_held
    net.progress()
    assert st.carriers() == (False, (BOB,))


def test_a_reader_joining_while_the_relay_is_skipped_gets_what_it_missed() -> None:
    """The relay adds carol's leg and fans frame 4 out to her (her start); bob's link
    comes up, so frames 5 and 6 skip the relay; then the sender sees carol's accept:
    it re-sends what it holds unconfirmed, so carol's stream has no hole."""
    st, net = setup(BOB)
    net.run(st.app_frames(frames(3)))
    net.progress()  # bob confirmed 3: his start is known
    carol = net.readers[CAROL] = JoiningReader()
    net.relay_legs.add(CAROL)  # the relay has her leg; the sender has no accept yet
    net.run(st.app_frames(frames(1)))
    assert carol.start == 4
    net.run(st.direct_link_up(BOB))
    assert st.carriers() == (False, (BOB,))  # every reader it knows has a link
    net.run(st.app_frames(frames(2)))
    net.run(st.on_accept(CAROL, None))
    net.run(st.app_frames(frames(2)))
    assert [carol.start + i - 1 for i in carol.delivered] == [4, 5, 6, 7, 8]
    assert net.readers[BOB].delivered == list(range(1, 9))


def test_a_direct_link_up_before_the_first_frame_is_used_at_once() -> None:
    st, net = setup(BOB)
    net.run(st.direct_link_up(BOB))
    assert st.carriers() == (False, (BOB,))
    net.run(st.app_frames(frames(2)))
    assert (net.relay_frames, net.direct_frames) == (0, 2)


def test_mixed_readers_relay_for_all_direct_for_some() -> None:
    st, net = setup(BOB, CAROL)
    net.run(st.direct_link_up(BOB))
    assert st.active_path is ActivePath.HOTLINK  # carol still needs the relay
    assert st.carriers() == (True, (BOB,))
    net.run(st.app_frames(frames(4)))
    assert net.readers[BOB].delivered == [1, 2, 3, 4] == net.readers[CAROL].delivered
    assert net.readers[BOB].by == {"relay": 0, "direct": 4}  # relay copies dropped


def test_direct_drop_resends_unconfirmed_by_relay() -> None:
    st, net = setup(BOB)
    net.run(st.direct_link_up(BOB))
    net.run(st.app_frames(frames(10)))
    net.progress()  # bob confirmed 10
    # frames 11..15 go direct but are "lost" on the link (it is dying)
    net.readers[BOB].take = lambda seq, via, r=net.readers[BOB], t=Reader.take: (  # type: ignore[method-assign]
        None if via == "direct" else t(r, seq, via)
    )
    net.run(st.app_frames(frames(5)))
    assert net.readers[BOB].delivered == list(range(1, 11))
    net.run(st.direct_link_down(BOB, "connection reset"))
    assert st.active_path is ActivePath.HOTLINK
    assert net.readers[BOB].delivered == list(range(1, 16))
    assert net.events[-1].reason == f"direct link to {BOB} down: connection reset"


def test_relay_down_while_direct_keeps_sending() -> None:
    st, net = setup(BOB)
    net.run(st.direct_link_up(BOB))
    net.run(st.app_frames(frames(5)))
    net.relay_up = False
    st.on_link_down()
    net.run(st.reevaluate("link down"))
    assert st.readers == {BOB} and st.state is SessionState.PENDING
    assert st.can_transmit and st.active_path is ActivePath.DIRECT
    before = len(st.pending)
    for _ in range(20):
        net.run(st.app_frames(frames(100)))
        net.progress()
    assert before == 0 and not st.pending
    assert net.readers[BOB].delivered == list(range(1, 2006))
    assert net.relay_frames == 0
    # the relay returns: the Open is re-sent; the re-accept with the relay's stale seq
    # re-sends nothing bob confirmed over the link
    net.relay_up = True
    net.run(st.on_link_up())
    net.run(st.on_acked())
    net.run(st.on_accept(BOB, 0))
    assert not st.pending and net.direct_frames == 2005


def test_relay_down_then_direct_down_reader_unreachable_until_reaccept() -> None:
    st, net = setup(BOB, mode=FallbackMode.OFF)
    net.run(st.direct_link_up(BOB))
    net.run(st.app_frames(frames(3)))
    net.relay_up = False
    st.on_link_down()
    net.run(st.direct_link_down(BOB, "eof"))
    assert st.readers == set() and not st.can_transmit
    net.run(st.app_frames(frames(2)))
    assert len(st.pending) >= 2  # held (mode OFF): nothing dropped
    net.relay_up = True
    net.run(st.on_link_up())
    net.run(st.on_acked())
    net.run(st.on_accept(BOB, net.readers[BOB].confirmed))
    assert net.readers[BOB].delivered == [1, 2, 3, 4, 5]


def test_files_mode_not_entered_while_direct_carries() -> None:
    st, net = setup(BOB, mode=FallbackMode.ON_FAILURE)
    net.run(st.direct_link_up(BOB))
    st.on_link_down()
    net.run(st.reevaluate("link down"))
    assert st.policy.active is ActivePath.HOTLINK and st.active_path is ActivePath.DIRECT


def test_link_flapping_fifty_times_exactly_once_in_order() -> None:
    rng = random.Random(12)
    st, net = setup(BOB, CAROL)
    for _ in range(50):
        who = rng.choice([BOB, CAROL])
        net.run(st.direct_link_up(who))
        net.run(st.app_frames(frames(rng.randint(1, 30))))
        if rng.random() < 0.5:
            net.progress()
        net.run(st.direct_link_down(who, "killed"))
        net.run(st.app_frames(frames(rng.randint(0, 5))))
    net.progress()
    n = st.seq
    for r in net.readers.values():
        assert r.delivered == list(range(1, n + 1))


def test_reader_leaving_drops_its_link() -> None:
    st, net = setup(BOB, CAROL)
    net.run(st.direct_link_up(BOB))
    net.run(st.direct_link_up(CAROL))
    assert st.active_path is ActivePath.DIRECT
    net.run(st.on_close(CAROL, "reader disconnected"))
    assert st.direct_up == {BOB} and st.active_path is ActivePath.DIRECT
