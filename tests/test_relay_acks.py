"""Loss-free resume in the relay's Router: one reader leg per user, the reader's
`seq` passed on with its Accept, cumulative acks (HotlinkProgress) routed to the
sender only from accepted readers, and a re-bound sender told who still reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotlink.wire.messages import (
    REASON_READER_GONE,
    Ack,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
)
from test_relay_router import CA, CB, CC, CS, PATH, A, B, C, Harness, to

B2 = 7  # a second connection of bob (his agent reconnected)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    for cid, user in ((CA, A), (CB, B), (CC, C), (CS, "stranger@example.org")):
        h.connect(cid, user)
    h.open_session()
    return h


def test_accept_passes_the_readers_seq_on(h: Harness) -> None:
    out = h.send(CB, HotlinkAccept("s1", seq=41))
    assert to(out, CA) == [HotlinkAccept("s1", B, 41)]
    out = h.send(CC, HotlinkAccept("s1", frm="forged@x"))  # frm is never trusted
    assert to(out, CA) == [HotlinkAccept("s1", C, None)]


def test_reader_reconnects_before_old_leg_noticed(h: Harness) -> None:
    h.send(CB, HotlinkAccept("s1"))
    h.connect(B2, B)
    out = h.send(B2, HotlinkAccept("s1", seq=10))
    assert to(out, B2) == [Ack(f"m{h.n}")]
    assert to(out, CA) == [HotlinkAccept("s1", B, 10)]
    d = HotlinkData("s1", 11)
    assert to(h.send(CA, d), CB) == []  # the old leg is replaced, not fed
    assert to(h.send(CA, d), B2) == [d]
    # the old connection finally goes: bob still reads, alice hears nothing
    assert h.router.disconnect(CB) == []
    assert to(h.send(CA, d), B2) == [d]
    # the new leg goes too: now bob is gone
    assert h.router.disconnect(B2) == [(CA, HotlinkClose("s1", REASON_READER_GONE, B), "")]


def test_close_or_reject_of_a_stale_leg_is_not_announced(h: Harness) -> None:
    h.connect(B2, B)
    h.send(CB, HotlinkAccept("s1"))
    h.send(B2, HotlinkAccept("s1"))
    # CB's leg was replaced: a late reject/close from it must not end bob's new leg
    assert to(h.send(CB, HotlinkReject("s1", "bye")), CA) == []
    assert to(h.send(CB, HotlinkClose("s1", "bye")), CA) == []
    assert h.router.sessions["s1"].readers == {B2: B}
    # from the live leg it is announced
    assert to(h.send(B2, HotlinkClose("s1", "bye")), CA) == [HotlinkClose("s1", "bye", B)]


def test_progress_only_from_accepted_readers_frm_set_by_relay(h: Harness) -> None:
    assert h.send(CB, HotlinkProgress("s1", 5)) == []  # not accepted yet
    h.send(CB, HotlinkAccept("s1"))
    out = h.send(CB, HotlinkProgress("s1", 5, frm="forged@x"))
    assert out and to(out, CA) == [HotlinkProgress("s1", 5, B)]
    assert h.send(CS, HotlinkProgress("s1", 6)) == []  # a stranger
    assert h.send(CA, HotlinkProgress("s1", 6)) == []  # the sender itself
    assert h.send(CB, HotlinkProgress("nope", 6)) == []


def test_rebound_sender_is_told_who_still_reads(h: Harness) -> None:
    """The sender reconnects before the relay notices its old connection:
    after the Ack it gets an Accept per reader, with the last seq each confirmed."""
    h.send(CB, HotlinkAccept("s1", seq=0))
    h.send(CC, HotlinkAccept("s1"))
    h.send(CB, HotlinkProgress("s1", 30))
    h.connect(9, A)
    out = h.send(9, HotlinkOpen("s1", PATH))
    assert to(out, 9) == [Ack(f"m{h.n}"), HotlinkAccept("s1", B, 30), HotlinkAccept("s1", C)]
    assert to(out, CB) == [] and to(out, CC) == []  # legs kept, no new offer
