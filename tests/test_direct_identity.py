"""The direct path's identity keys and pins (agent/direct/identity.py, pins.py), and the
real key ops the negotiator uses (service.key_ops), without sockets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hotlink.agent.direct import negotiator as n
from hotlink.agent.direct.identity import Identity, fingerprint, statement, verify
from hotlink.agent.direct.keys import LocalKey
from hotlink.agent.direct.pins import BY_HAND, FIRST_USE, PinStore, check_fingerprint
from hotlink.agent.direct.service import key_ops
from hotlink.wire.messages import HotlinkSignal

A = "alice@example.org"
B = "bob@example.org"


def test_identity_is_created_owner_only_and_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Identity.load_or_create(path)
    assert again.fingerprint == first.fingerprint == fingerprint(first.public)
    assert first.fingerprint.startswith("SHA256:") and len(first.fingerprint) == 7 + 43
    assert check_fingerprint(first.fingerprint) == first.fingerprint


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_damaged_identity_file_is_an_error_not_a_new_identity(
    tmp_path: Path, content: bytes
) -> None:
    """A silently new key would make every peer that pinned the old one refuse us."""
    path = tmp_path / "identity.key"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"identity\.key"):
        Identity.load_or_create(path)
    assert path.read_bytes() == content


def test_signature_verifies_only_its_own_statement() -> None:
    me = Identity.generate()
    claim = n.Claim(n.OFFER, "sid", A, B, "leg1", LocalKey.generate().public_b64())
    sig = me.sign(statement(claim))
    assert verify(me.public_b64, sig, statement(claim)) == me.public
    for other in (
        n.Claim(n.ANSWER, "sid", A, B, "leg1", claim.ephemeral),  # another kind
        n.Claim(n.OFFER, "sid2", A, B, "leg1", claim.ephemeral),  # another session
        n.Claim(n.OFFER, "sid", A, "carol@example.org", "leg1", claim.ephemeral),
        n.Claim(n.OFFER, "sid", A, B, "leg2", claim.ephemeral),
        n.Claim(n.OFFER, "sid", A, B, "leg1", LocalKey.generate().public_b64()),
    ):
        with pytest.raises(ValueError, match="does not verify"):
            verify(me.public_b64, sig, statement(other))
    with pytest.raises(ValueError, match="does not verify"):
        verify(Identity.generate().public_b64, sig, statement(claim))
    for bad_key, bad_sig in (("!!", sig), (me.public_b64[:-4], sig), (me.public_b64, "AAAA")):
        with pytest.raises(ValueError):
            verify(bad_key, bad_sig, statement(claim))


def test_pins_first_use_mismatch_forget_and_by_hand(tmp_path: Path) -> None:
    store = PinStore(tmp_path / "peers.json")
    fp1, fp2 = Identity.generate().fingerprint, Identity.generate().fingerprint
    assert store.refusal(B, fp1) == ""  # nobody pinned yet
    assert store.pin_first_use(B, fp1) is True
    assert store.pin_first_use(B, fp2) is False  # first use only
    assert store.refusal(B, fp1) == ""
    why = store.refusal(B, fp2)
    assert "identity key of bob@example.org changed" in why and fp1 in why and fp2 in why
    assert "hotlinkctl peers forget bob@example.org" in why
    assert stat.S_IMODE((tmp_path / "peers.json").stat().st_mode) == 0o600
    # another process (hotlinkctl) edits the file: the store sees it at once
    other = PinStore(tmp_path / "peers.json")
    assert other.forget(B) is not None and other.forget(B) is None
    assert store.refusal(B, fp2) == ""
    old = other.pin(B, fp2)
    assert old is None and store.pins()[B].how == BY_HAND
    assert store.pin(B, fp1).fingerprint == fp2  # type: ignore[union-attr]
    doc = json.loads((tmp_path / "peers.json").read_text())
    assert doc["version"] == 1 and doc["peers"][B]["fingerprint"] == fp1
    store.pin_first_use(A, fp2)
    assert store.pins()[A].how == FIRST_USE
    with pytest.raises(ValueError):
        store.pin(B, "SHA256:short")


def test_unreadable_pins_file_counts_as_none_and_is_logged(tmp_path: Path, caplog) -> None:
    path = tmp_path / "peers.json"
    path.write_text("{not json")
    with caplog.at_level("WARNING"):
        assert PinStore(path).pins() == {}
    assert "ignoring unreadable peer pins" in caplog.text


def test_real_key_ops_between_two_negotiators(tmp_path: Path) -> None:
    """The service's key ops: an offer and answer signed by real Ed25519 identities
    verify; a pin of another key refuses them; the link-up pins the real fingerprint."""
    ida, idb = Identity.generate(), Identity.generate()
    pins_a, pins_b = PinStore(tmp_path / "a.json"), PinStore(tmp_path / "b.json")

    def make(role: n.Role, me: str, keys: n.KeyOps) -> n.Negotiator:
        return n.Negotiator(
            role, sid="s1", me=me, sender=A, enabled=True,
            candidates=lambda: ["127.0.0.1:7000"], keys=keys, new_leg=lambda: "leg1",
        )  # fmt: skip

    s = make(n.Role.SENDER, A, key_ops(ida, pins_a))
    r = make(n.Role.READER, B, key_ops(idb, pins_b))
    (offer,) = [e.msg for e in s.reader_accepted(B, 0.0) if isinstance(e, n.SendSignal)]
    offer = HotlinkSignal(offer.sid, offer.kind, offer.addrs, offer.token, frm=A)
    out = r.on_signal(offer, 0.0)
    assert [e for e in out if isinstance(e, n.Expect)]
    (answer,) = [e.msg for e in out if isinstance(e, n.SendSignal)]
    answer = HotlinkSignal(answer.sid, answer.kind, answer.addrs, answer.token, frm=B)
    (conn,) = [e for e in s.on_signal(answer, 0.0) if isinstance(e, n.Connect)]
    assert n.PinPeer(B, idb.fingerprint) in s.connected(B, conn.leg)
    assert n.PinPeer(A, ida.fingerprint) in r.connected(A, conn.leg)
    # bob pinned another key for alice: her (real) offer is refused
    pins_b.pin(A, Identity.generate().fingerprint)
    r2 = make(n.Role.READER, B, key_ops(idb, pins_b))
    out = r2.on_signal(offer, 0.0)
    assert not [e for e in out if isinstance(e, n.Expect)]
    assert "identity key of alice@example.org changed" in r2.status(A)
