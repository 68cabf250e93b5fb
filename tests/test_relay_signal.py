"""Sans-I/O tests of the relay's HotlinkSignal route (direct path negotiation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.router import Outgoing, Router
from hotlink.relay.store import Store
from hotlink.wire.envelope import Envelope
from hotlink.wire.extensions import ALL, DIRECT, NONE, STARTS, STREAM_START, for_peer
from hotlink.wire.messages import (
    Error,
    HotlinkAccept,
    HotlinkOpen,
    HotlinkSignal,
    Message,
)

A = "alice@example.org"  # sender
B = "bob@example.org"  # reader
C = "carol@example.org"  # may read, has not accepted
S = "stranger@example.org"
PATH = f"{A}/_mpc/0_to_1"
OTHER = f"{A}/_mpc/1_to_0"
ACL = f'rules: [{{pattern: "**", access: {{read: ["{B}", "{C}"]}}}}]'
CA, CB, CC, CS, CR = 1, 2, 3, 4, 5  # CR: a reference client of bob's (no extensions)
OFFER = "hotlink.direct.offer"


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.acl = AclIndex()
        self.acl.set_file(A, parse_acl(ACL))
        self.router = Router(self.acl, Store(tmp))
        self.n = 0
        for cid, user, ip in ((CA, A, "10.0.0.1"), (CB, B, "10.0.0.2"), (CC, C, "10.0.0.3")):
            self.router.connect(cid, user, ALL, ip)
        self.router.connect(CS, S, ALL, "10.0.0.4")

    def send(self, cid: int, msg: Message) -> list[Outgoing]:
        self.n += 1
        return self.router.handle(cid, Envelope(f"m{self.n}", msg, ""))

    def session(self, sid: str = "s1", path: str = PATH) -> None:
        self.send(CA, HotlinkOpen(sid, path))
        self.send(CB, HotlinkAccept(sid))


def only(out: list[Outgoing]) -> Outgoing:
    assert len(out) == 1, out
    return out[0]


def refused(out: list[Outgoing], cid: int, code: int) -> None:
    o = only(out)
    assert o.conn == cid and isinstance(o.msg, Error) and o.msg.code == code, o


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    hh = Harness(tmp_path)
    hh.session()
    return hh


def test_sender_to_accepted_reader_stamped(h: Harness) -> None:
    sig = HotlinkSignal("s1", OFFER, ["127.0.0.1:9"], "tok", to=B)
    o = only(h.send(CA, sig))
    assert o.conn == CB
    assert o.msg == HotlinkSignal("s1", OFFER, ["127.0.0.1:9"], "tok", frm=A, to=B, obs="10.0.0.1")


def test_reader_to_sender_stamped_and_forgeries_replaced(h: Harness) -> None:
    forged = HotlinkSignal("s1", "hotlink.direct.answer", None, "k", frm=C, to=S, obs="6.6.6.6")
    o = only(h.send(CB, forged))
    assert o.conn == CA
    assert o.msg == HotlinkSignal(
        "s1", "hotlink.direct.answer", None, "k", frm=B, to=A, obs="10.0.0.2"
    )


def test_sender_forged_frm_replaced(h: Harness) -> None:
    o = only(h.send(CA, HotlinkSignal("s1", OFFER, frm=S, obs="1.2.3.4", to=B)))
    assert isinstance(o.msg, HotlinkSignal) and (o.msg.frm, o.msg.obs) == (A, "10.0.0.1")


def test_stranger_cannot_signal(h: Harness) -> None:
    refused(h.send(CS, HotlinkSignal("s1", OFFER, to=A)), CS, 403)


def test_reader_that_did_not_accept_cannot_signal(h: Harness) -> None:
    # carol was offered the session (she may read) but never accepted it
    refused(h.send(CC, HotlinkSignal("s1", OFFER)), CC, 403)


def test_sender_cannot_signal_a_non_accepted_reader(h: Harness) -> None:
    refused(h.send(CA, HotlinkSignal("s1", OFFER, to=C)), CA, 404)
    refused(h.send(CA, HotlinkSignal("s1", OFFER, to=S)), CA, 404)
    refused(h.send(CA, HotlinkSignal("s1", OFFER)), CA, 404)


def test_member_of_other_session_cannot_signal(h: Harness) -> None:
    h.send(CA, HotlinkOpen("s2", OTHER))
    h.send(CC, HotlinkAccept("s2"))
    # carol reads s2, not s1: she cannot use s2's membership to reach s1's sender
    refused(h.send(CC, HotlinkSignal("s1", OFFER)), CC, 403)
    # and bob's leg of s1 is no way to s2
    refused(h.send(CB, HotlinkSignal("s2", OFFER)), CB, 403)


def test_unknown_session(h: Harness) -> None:
    refused(h.send(CB, HotlinkSignal("nope", OFFER)), CB, 404)


def test_ended_session_cannot_signal(h: Harness) -> None:
    h.router.disconnect(CA)
    refused(h.send(CB, HotlinkSignal("s1", OFFER)), CB, 404)


@pytest.mark.parametrize(
    "sig",
    [
        HotlinkSignal("s1", ""),
        HotlinkSignal("s1", "k" * 65),
        HotlinkSignal("s1", OFFER, [f"h:{i}" for i in range(17)]),
        HotlinkSignal("s1", OFFER, ["h" * 300]),
        HotlinkSignal("s1", OFFER, None, "t" * 2000),
        HotlinkSignal("", OFFER),
    ],
)
def test_malformed_signal_refused(h: Harness, sig: HotlinkSignal) -> None:
    refused(h.send(CB, sig), CB, 400)


def test_reader_that_lost_read_access_cannot_signal(h: Harness) -> None:
    h.acl.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{C}"]}}}}]'))
    out = h.send(CB, HotlinkSignal("s1", OFFER))
    assert not [o for o in out if isinstance(o.msg, HotlinkSignal)]
    assert any(o.conn == CB and isinstance(o.msg, Error) and o.msg.code == 403 for o in out)


def test_our_kinds_never_go_to_a_peer_without_direct(tmp_path: Path) -> None:
    hh = Harness(tmp_path)
    hh.router.connect(CR, B, NONE, "10.0.0.5")
    hh.send(CA, HotlinkOpen("s1", PATH))
    hh.send(CR, HotlinkAccept("s1"))  # bob's leg is now the reference client's
    refused(hh.send(CA, HotlinkSignal("s1", OFFER, to=B)), CA, 404)
    # a reference kind passes, without the fields that client does not know
    o = only(hh.send(CA, HotlinkSignal("s1", "sdp_offer", ["h:1"], to=B)))
    assert o.conn == CR
    assert for_peer(o.msg, NONE) == HotlinkSignal("s1", "sdp_offer", ["h:1"])


def test_for_peer_signal() -> None:
    ours = HotlinkSignal("s", OFFER, frm=A, to=B, obs="1.1.1.1")
    assert for_peer(ours, ALL) is ours
    assert for_peer(ours, frozenset({DIRECT})) is ours
    assert for_peer(ours, NONE) is None
    # a reference kind carrying our fields reaches a reference peer without them
    theirs = HotlinkSignal("s", "sdp_answer", ["h:1"], frm=A, to=B, obs="1.1.1.1", win=64)
    assert for_peer(theirs, NONE) == HotlinkSignal("s", "sdp_answer", ["h:1"])
    assert for_peer(theirs, frozenset({DIRECT})) is theirs
    # our own kinds outside the direct path never reach a reference peer
    start = HotlinkSignal("s", STREAM_START, frm=A, to=B, seq=7)
    assert for_peer(start, NONE) is None
    assert for_peer(start, frozenset({DIRECT})) is start


# --- the offer's `ans`: the sender answers a new reader's Accept (`stream.start`) ---


def offers_to(out: list[Outgoing], cid: int) -> list[HotlinkOpen]:
    return [o.msg for o in out if o.conn == cid and isinstance(o.msg, HotlinkOpen)]


@pytest.mark.parametrize("sender_ext", [ALL, ALL - {STARTS}])
def test_offer_says_whether_the_sender_answers(tmp_path: Path, sender_ext: frozenset[str]) -> None:
    """Set from what the sender's connection announced, on offers made at the open
    and to readers connecting later; never from the sender's own Open."""
    router = Router(AclIndex(), Store(tmp_path))
    router.acl.set_file(A, parse_acl(ACL))
    router.connect(CA, A, sender_ext)
    router.connect(CB, B, ALL)
    out = router.handle(CA, Envelope("m1", HotlinkOpen("s1", PATH, answers=False), ""))
    later = router.connect(CC, C, ALL)
    want = STARTS in sender_ext
    assert [o.answers for o in offers_to(out, CB) + offers_to(later, CC)] == [want, want]


def test_for_peer_offer() -> None:
    offer = HotlinkOpen("s", PATH, A, answers=True)
    assert for_peer(offer, ALL) is offer
    assert for_peer(offer, NONE) == HotlinkOpen("s", PATH, A)
    assert for_peer(offer, ALL - {STARTS}) == HotlinkOpen("s", PATH, A)
    plain = HotlinkOpen("s", PATH, A)
    assert for_peer(plain, NONE) is plain
