"""Sans-I/O tests of the direct-link negotiation (agent/direct/negotiator.py).

Two negotiators (sender and reader) exchange signals through a tiny fake relay that
stamps `frm`/`obs` like the real one; no sockets, no crypto (fake keys)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace

import pytest
from hotlink.agent.direct import negotiator as n
from hotlink.agent.direct.negotiator import (
    CloseLink,
    Connect,
    Expect,
    Forget,
    KeyOps,
    LegState,
    Negotiator,
    PathNews,
    Role,
    SendSignal,
)
from hotlink.wire.envelope import decode, encode, encode_json
from hotlink.wire.messages import HotlinkSignal

A = "alice@example.org"
B = "bob@example.org"
C = "carol@example.org"
SID = "s1"


class FakeKey:
    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.pub = f"pub{next(self._ids)}"


def parse_public(b64: str) -> bytes:
    if not b64.startswith("pub"):
        raise ValueError("not a key")
    return b64.encode()


def fake_id(email: str) -> str:
    """A fake identity key per user (no dots: tokens are dot-separated)."""
    return "id" + hashlib.sha256(email.encode()).hexdigest()[:12]


def fake_sig(c: n.Claim, ident: str) -> str:
    return hashlib.sha256(f"{ident}|{c!r}".encode()).hexdigest()


def fake_keys(me: str, pins: dict[str, str] | None = None, ident: str = "") -> KeyOps:
    """Identity ops without crypto: `me` signs as `ident` (default: its own fake id);
    a peer's token is accepted when its signature matches the claim and its identity
    matches `pins` (when pinned)."""
    mine = ident or fake_id(me)

    def prove(c: n.Claim) -> tuple[str, str]:
        return mine, fake_sig(c, mine)

    def vouch(peer: str, c: n.Claim, tok: n.Token) -> str:
        if tok.signature != fake_sig(c, tok.identity):
            raise ValueError("identity signature does not verify")
        fp = "fp-" + tok.identity
        pinned = (pins or {}).get(peer)
        if pinned is not None and pinned != fp:
            raise ValueError(f"identity key of {peer} changed")
        return fp

    return KeyOps(FakeKey, lambda k: k.pub, parse_public, prove, vouch)


def make(
    role: n.Role,
    me: str,
    enabled: bool = True,
    cands: list[str] | None = None,
    keys: KeyOps | None = None,
    window: int = 0,
) -> Negotiator:
    legs = (f"leg{i}" for i in itertools.count(1))
    return Negotiator(
        role,
        sid=SID,
        me=me,
        sender=A,
        enabled=enabled,
        candidates=lambda: list(cands if cands is not None else ["127.0.0.1:7000"]),
        keys=keys or fake_keys(me),
        new_leg=lambda: next(legs),
        window=window,
    )


def relayed(effects: list[n.Effect], frm: str, obs: str = "10.0.0.9") -> list[HotlinkSignal]:
    """The signals among `effects` as the relay delivers them (frm/obs stamped)."""
    out = []
    for e in effects:
        if isinstance(e, SendSignal):
            out.append(replace(e.msg, frm=frm, obs=obs))  # as the relay does
    return out


def of(effects: list[n.Effect], t: type) -> list:
    return [e for e in effects if isinstance(e, t)]


def negotiate(s: Negotiator, r: Negotiator, now: float = 0.0) -> Connect:
    offer = s.reader_accepted(B, now)
    (sig,) = relayed(offer, A)
    assert sig.kind == n.OFFER and sig.to == B
    ans = r.on_signal(sig, now)
    (exp,) = of(ans, Expect)
    # the reader registers the expectation before its answer leaves
    assert ans.index(exp) < next(i for i, e in enumerate(ans) if isinstance(e, SendSignal))
    (asig,) = relayed(ans, B, obs="192.0.2.7")
    assert asig.kind == n.ANSWER
    (conn,) = of(s.on_signal(asig, now), Connect)
    assert (conn.sid, conn.sender, conn.reader, conn.leg) == (SID, A, B, exp.leg)
    assert exp.peer_public == s.legs[B].key.pub.encode()  # reader expects the sender's key
    assert conn.peer_public == r.legs[A].key.pub.encode()  # sender expects the reader's key
    return conn


def test_happy_path_both_sides_up() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r)
    assert conn.candidates == ("127.0.0.1:7000", "192.0.2.7:7000")  # + observed IP
    assert conn.timeout == n.CONNECT_TIMEOUT
    out = s.connected(B, conn.leg)
    assert of(out, PathNews) == [PathNews(B, True, "direct link up")]
    rout = r.connected(A, conn.leg)
    assert of(rout, Forget) and of(rout, PathNews)[0].up
    assert s.is_up(B) and r.is_up(A) and s.status(B) == "up"


def test_the_reader_s_reorder_window_reaches_the_sender_s_link_news() -> None:
    """The answer announces the reader's reorder window (`win`); the sender's core
    gets it with the link (it bounds how far the link may run ahead of the relay)."""
    s, r = make(Role.SENDER, A), make(Role.READER, B, window=64)
    conn = negotiate(s, r)
    assert of(s.connected(B, conn.leg), PathNews) == [PathNews(B, True, "direct link up", 64)]
    # through both codecs, as the relay passes it on
    sig = HotlinkSignal(SID, n.ANSWER, ["h:1"], "2.leg1.k.i.s", frm=B, win=64)
    assert decode(encode(sig)).msg == sig and decode(encode_json(sig)).msg == sig
    start = HotlinkSignal(SID, "hotlink.stream.start", frm=A, to=B, seq=0)
    assert decode(encode(start)).msg == start and decode(encode_json(start)).msg == start
    # an older reader says nothing: 0, the sender's own window applies
    legacy = make(Role.READER, B)
    conn = negotiate(s2 := make(Role.SENDER, A), legacy)
    assert of(s2.connected(B, conn.leg), PathNews)[0].window == 0


def test_observed_ipv6_combined() -> None:
    assert n.combine_observed("::1", ["[::1]:5", "10.0.0.1:6", "10.0.0.2:6"]) == [
        "[::1]:5",
        "[::1]:6",
    ]
    assert n.combine_observed("", ["h:1"]) == []


def test_connect_failure_stays_on_relay_and_retries_with_backoff() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r, now=0.0)
    out = s.connect_failed(B, conn.leg, "timed out", now=3.0)
    (news,) = of(out, PathNews)
    assert not news.up and "timed out" in news.reason
    assert "timed out" in s.status(B) and not s.is_up(B)
    assert s.next_deadline() == pytest.approx(3.0 + n.RETRY_INITIAL)
    assert s.handle_timer(3.5) == []
    again = s.handle_timer(4.0)
    (sig,) = relayed(again, A)
    assert sig.kind == n.OFFER and s.legs[B].leg != conn.leg  # a fresh leg
    # second failure doubles the wait
    s.legs[B].state = LegState.CONNECTING
    s.connect_failed(B, s.legs[B].leg, "refused", now=10.0)
    assert s.next_deadline() == pytest.approx(10.0 + 2 * n.RETRY_INITIAL)


def test_no_answer_times_out() -> None:
    s = make(Role.SENDER, A)
    s.reader_accepted(B, 0.0)
    assert s.next_deadline() == n.ANSWER_TIMEOUT
    out = s.handle_timer(n.ANSWER_TIMEOUT)
    assert "no answer" in of(out, PathNews)[0].reason
    assert s.legs[B].state is LegState.BACKOFF


def test_reader_with_direct_off_refuses_for_good() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B, enabled=False)
    (sig,) = relayed(s.reader_accepted(B, 0.0), A)
    rout = r.on_signal(sig, 0.0)
    assert not of(rout, Expect)
    (err,) = relayed(rout, B)
    assert err.kind == n.ERROR
    out = s.on_signal(err, 0.0)
    assert "off" in of(out, PathNews)[0].reason
    assert s.legs[B].state is LegState.GAVE_UP and s.next_deadline() is None
    assert s.reader_accepted(B, 1.0) == []  # no new offer on a re-accept


def test_sender_with_direct_off_never_offers() -> None:
    assert make(Role.SENDER, A, enabled=False).reader_accepted(B, 0.0) == []


def test_relay_refusal_gives_up() -> None:
    s = make(Role.SENDER, A)
    s.reader_accepted(B, 0.0)
    out = s.relay_error(B, "bob does not speak 'direct'")
    assert of(out, PathNews) and s.legs[B].state is LegState.GAVE_UP


def test_signals_from_others_ignored() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    (sig,) = relayed(s.reader_accepted(B, 0.0), A)
    # an offer that does not come from the session's sender
    forged = HotlinkSignal(SID, n.OFFER, sig.addrs, sig.token, frm=C)
    assert r.on_signal(forged, 0.0) == []
    # no frm at all (not relayed), or another session
    assert r.on_signal(HotlinkSignal(SID, n.OFFER, None, sig.token), 0.0) == []
    assert r.on_signal(HotlinkSignal("s2", n.OFFER, None, sig.token, frm=A), 0.0) == []
    # an answer from a user the sender did not offer to
    stranger = HotlinkSignal(SID, n.ANSWER, ["h:1"], "2.leg1.pub9.idx.sigx", frm=C)
    assert s.on_signal(stranger, 0.0) == []


def test_stale_answer_and_stale_link_ignored() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    (sig,) = relayed(s.reader_accepted(B, 0.0), A)
    (asig,) = relayed(r.on_signal(sig, 0.0), B)
    stale = HotlinkSignal(SID, n.ANSWER, asig.addrs, "2.old.pub1.idx.sigx", frm=B)
    assert s.on_signal(stale, 0.0) == []
    assert s.connected(B, "old") == [CloseLink(B, "old", "stale leg")]


def test_only_the_current_leg_may_bring_its_link_up() -> None:
    """A handshake of an older leg that completes after a retry began must not take
    the place of the current leg's link (the service closes it instead)."""
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    first = negotiate(s, r)
    assert s.is_current(B, first.leg) and r.is_current(A, first.leg)
    s.connected(B, first.leg)
    s.link_down(B, first.leg, "connection reset", now=100.0)
    (offer,) = relayed(s.handle_timer(100.0 + n.RETRY_AFTER_DROP), A)
    assert offer.kind == n.OFFER
    second = s.legs[B].leg
    assert second != first.leg
    assert s.is_current(B, second) and not s.is_current(B, first.leg)
    assert not s.is_current(C, second)
    s.close("done")
    assert not s.is_current(B, second)


def test_bad_offer_answered_with_error() -> None:
    r = make(Role.READER, B)
    out = r.on_signal(HotlinkSignal(SID, n.OFFER, None, "garbage", frm=A), 0.0)
    (err,) = relayed(out, B)
    assert err.kind == n.ERROR and not of(out, Expect)


def test_link_down_goes_back_to_relay_and_retries_soon() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r)
    s.connected(B, conn.leg)
    r.connected(A, conn.leg)
    out = s.link_down(B, conn.leg, "connection reset", now=100.0)
    assert of(out, PathNews) == [PathNews(B, False, "direct link down: connection reset")]
    (down,) = relayed(out, A)
    assert down.kind == n.DOWN
    assert s.next_deadline() == pytest.approx(100.0 + n.RETRY_AFTER_DROP)
    rout = r.on_signal(down, 100.0)
    assert of(rout, PathNews) and not r.is_up(A)
    # the sender's retry makes a fresh offer the reader takes
    (offer,) = relayed(s.handle_timer(101.0), A)
    assert of(r.on_signal(offer, 101.0), Expect)


def test_link_renewed_for_fresh_keys_is_offered_again_at_once() -> None:
    """A link closed because its key's byte budget was used is replaced without the
    drop's delay; a drop after that still waits RETRY_AFTER_DROP."""
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r)
    s.connected(B, conn.leg)
    s.link_down(B, conn.leg, "the key sealed its budget", now=100.0, renew=True)
    assert s.next_deadline() == pytest.approx(100.0)
    (offer,) = relayed(s.handle_timer(100.0), A)
    assert offer.kind == n.OFFER
    leg = s.legs[B]
    assert leg.retry_delay == n.RETRY_AFTER_DROP


def test_new_offer_replaces_an_up_leg_on_the_reader() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r)
    r.connected(A, conn.leg)
    s.legs.pop(B)  # the sender lost its state (e.g. restarted)
    (offer,) = relayed(s.reader_accepted(B, 5.0), A)
    out = r.on_signal(offer, 5.0)
    assert CloseLink(A, conn.leg, "replaced by a new offer") in out
    assert of(out, Expect)


def test_reader_expectation_expires() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    negotiate(s, r)
    assert r.next_deadline() == n.EXPECT_TIMEOUT
    out = r.handle_timer(n.EXPECT_TIMEOUT)
    assert of(out, Forget) and A not in r.legs


def test_multiple_readers_each_get_a_leg() -> None:
    s = make(Role.SENDER, A)
    rb, rc = make(Role.READER, B), make(Role.READER, C)
    sigs = relayed(s.reader_accepted(B, 0.0) + s.reader_accepted(C, 0.0), A)
    assert [x.to for x in sigs] == [B, C]
    (ab,) = relayed(rb.on_signal(sigs[0], 0.0), B)
    (ac,) = relayed(rc.on_signal(sigs[1], 0.0), C)
    (cb,) = of(s.on_signal(ab, 0.0), Connect)
    (cc,) = of(s.on_signal(ac, 0.0), Connect)
    assert cb.reader == B and cc.reader == C and cb.leg != cc.leg
    s.connected(B, cb.leg)
    assert s.is_up(B) and not s.is_up(C)
    gone = [CloseLink(B, cb.leg, "reader left"), PathNews(B, False, "reader left")]
    assert s.reader_left(B) == gone


def test_close_ends_every_leg() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r)
    s.connected(B, conn.leg)
    assert s.close("session closed") == [CloseLink(B, conn.leg, "session closed")]
    assert s.reader_accepted(B, 1.0) == [] and s.next_deadline() is None
    assert of(r.close("bye"), Forget)


def test_token_roundtrip() -> None:
    tok = n.Token("abc", "KEY+/=", "ID+/=", "SIG+/=")
    assert tok.encode() == "2.abc.KEY+/=.ID+/=.SIG+/="
    assert n.Token.decode(tok.encode()) == tok
    for bad in ("", "2.a.b", "2..b.c.d", "2.a.b.c", "2.a.b.c.d.e", "3.a.b.c.d"):
        with pytest.raises(ValueError, match="bad direct token"):
            n.Token.decode(bad)
    with pytest.raises(ValueError, match="does not sign"):
        n.Token.decode("1.leg.KEY=")


def test_pinned_peer_with_another_key_is_refused_both_ways() -> None:
    """A relay that swaps an offer's or an answer's keys for its own cannot sign them
    with the pinned identity: the reader refuses the offer, the sender the answer; the
    session stays on the relay and says why."""
    # the reader has pinned alice's real key; the offer comes signed by another one
    s = make(Role.SENDER, A, keys=fake_keys(A, ident="idmallory"))
    r = make(Role.READER, B, keys=fake_keys(B, pins={A: "fp-" + fake_id(A)}))
    (offer,) = relayed(s.reader_accepted(B, 0.0), A)
    out = r.on_signal(offer, 0.0)
    assert not of(out, Expect)
    (news,) = of(out, PathNews)
    assert not news.up and "identity key of alice@example.org changed" in news.reason
    (err,) = relayed(out, B)
    assert err.kind == n.ERROR and "offer refused" in err.error
    assert r.status(A).startswith("gave up") and "changed" in r.status(A)
    s.on_signal(err, 0.1)
    assert s.legs[B].state is LegState.BACKOFF and "offer refused" in s.status(B)
    # the sender has pinned bob's real key; the answer comes signed by another one
    s = make(Role.SENDER, A, keys=fake_keys(A, pins={B: "fp-" + fake_id(B)}))
    r = make(Role.READER, B, keys=fake_keys(B, ident="idmallory"))
    (offer,) = relayed(s.reader_accepted(B, 0.0), A)
    (answer,) = relayed(r.on_signal(offer, 0.0), B)
    out = s.on_signal(answer, 0.0)
    assert not of(out, Connect)
    assert s.legs[B].state is LegState.BACKOFF
    assert "answer of bob@example.org refused: identity key of bob@example.org changed" in (
        s.status(B)
    )


def test_signature_binds_kind_leg_and_key() -> None:
    """A token whose signature was made for another claim (an offer replayed as an
    answer, another leg, a swapped ephemeral key) does not verify."""
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    (offer,) = relayed(s.reader_accepted(B, 0.0), A)
    tok = n.Token.decode(offer.token)
    for forged in (
        n.Token(tok.leg, "pub999", tok.identity, tok.signature),  # another key
        n.Token("leg77", tok.ephemeral, tok.identity, tok.signature),  # another leg
    ):
        bad = HotlinkSignal(SID, n.OFFER, offer.addrs, forged.encode(), frm=A)
        out = r.on_signal(bad, 0.0)
        assert not of(out, Expect) and "does not verify" in of(out, PathNews)[0].reason
    # the reader's signed answer to that offer, sent back as if alice answered
    (answer,) = relayed(r.on_signal(offer, 0.0), B)
    as_offer = HotlinkSignal(SID, n.OFFER, answer.addrs, answer.token, frm=A)
    assert not of(r.on_signal(as_offer, 0.0), Expect)


def test_link_up_pins_the_peer() -> None:
    s, r = make(Role.SENDER, A), make(Role.READER, B)
    conn = negotiate(s, r)
    assert n.PinPeer(B, "fp-" + fake_id(B)) in s.connected(B, conn.leg)
    assert n.PinPeer(A, "fp-" + fake_id(A)) in r.connected(A, conn.leg)


def test_service_negotiates_afresh_when_the_session_id_changes(tmp_path) -> None:
    """A sender refused "session id in use" goes on under a new sid; the legs and keys
    of the old id must not be reused for it."""
    from types import SimpleNamespace

    from hotlink.agent.direct.service import DirectService

    sent: list[object] = []
    timers: list[object] = []

    def call_later(delay: float, cb: object) -> object:
        timers.append(cb)
        return SimpleNamespace(cancel=lambda: None)

    (tmp_path / ".hotlink").mkdir(mode=0o700)
    mgr = SimpleNamespace(
        cfg=SimpleNamespace(direct_listen=[], direct_advertise=[], root=tmp_path),
        emit=lambda *a: None,
        email=A,
        link=SimpleNamespace(send=sent.append),
        loop=SimpleNamespace(time=lambda: 0.0, call_later=call_later),
    )
    svc = DirectService(mgr)  # type: ignore[arg-type]
    svc._arm()
    assert not timers  # no session, no negotiation: the service does not tick
    s = SimpleNamespace(
        sid="old", is_sender=True, direct_mode=2, sender=A, closed=False, path="p",
        negotiator=None,
    )  # fmt: skip
    first = svc._negotiator(s)  # type: ignore[arg-type]
    assert first is not None and first.sid == "old"
    assert svc._negotiator(s) is first  # type: ignore[arg-type]
    assert len(timers) == 1  # ticking from the first negotiator on, armed once
    s.sid = "new"
    second = svc._negotiator(s)  # type: ignore[arg-type]
    assert second is not None and second is not first and second.sid == "new"
    assert s.negotiator is second
