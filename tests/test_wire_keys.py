"""Payload keys per encoding (`wire.keys`): the reference's msgpack spells the payloads
without msgpack tags with Go field names, its JSON with the short keys; we write the
same and read both."""

from __future__ import annotations

import json

import msgpack
import pytest
from hotlink.wire import envelope
from hotlink.wire import messages as m
from hotlink.wire.errors import ProtocolError
from hotlink.wire.keys import GO_FIELDS, msgpack_keys, short_keys


def _frame(typ: int, dat: dict) -> bytes:
    """A msgpack frame as the reference's wsproto.Marshal lays it out."""
    inner = msgpack.packb(dat, use_bin_type=True)
    return b"SB\x01\x01" + msgpack.packb({"id": "a1b", "typ": typ, "dat": inner}, use_bin_type=True)


def _dat(frame: bytes) -> dict:
    return msgpack.unpackb(msgpack.unpackb(frame[4:])["dat"])


# (message, keys the reference's msgpack writes, keys its JSON writes)
CASES = [
    (m.System("v1", "ok"), {"SystemVersion", "Message"}, {"ver", "msg"}),
    (m.Error(403, "a@x.org/p", "no"), {"Code", "Path", "Message"}, {"cod", "pth", "msg"}),
    (
        m.FileWrite("a@x.org/f", "e", 2, b"hi"),
        {"Path", "ETag", "Length", "Content"},
        {"pth", "etg", "len", "con"},
    ),
    (
        m.FileNotify("a@x.org/f", "e", 2, b"hi"),
        {"Path", "ETag", "Length", "Content"},
        {"pth", "etg", "len", "con"},
    ),
    (m.FileDelete("a@x.org/f"), {"Path"}, {"pth"}),
    (m.Ack("abc"), {"OriginalId"}, {"oid"}),
    (m.Nack("abc", "boom"), {"OriginalId", "Error"}, {"oid", "err"}),
    (
        m.HotlinkOpen("s", "a@x.org/d", "a@x.org", "b@x.org"),
        {"sid", "pth", "frm", "to"},
        {"sid", "pth", "frm", "to"},
    ),
    (m.HotlinkAccept("s"), {"sid"}, {"sid"}),
    (m.HotlinkReject("s", "why"), {"sid", "rsn"}, {"sid", "rsn"}),
    (m.HotlinkClose("s", "done"), {"sid", "rsn"}, {"sid", "rsn"}),
    (
        m.HotlinkSignal("s", "sdp_offer", ["h:1"], "t", ""),
        {"sid", "knd", "adr", "tok"},  # omitempty, as the reference
        {"sid", "knd", "adr", "tok"},
    ),
    (
        m.HotlinkData("s", 1, "a@x.org/d/1.request", b"p", "e"),
        {"sid", "seq", "pth", "etg", "pay"},
        {"sid", "seq", "pth", "etg", "pay"},
    ),
]


@pytest.mark.parametrize("msg,mp_keys,json_keys", CASES, ids=lambda c: type(c).__name__)
def test_keys_written_per_encoding(msg: m.Message, mp_keys: set, json_keys: set) -> None:
    frame = envelope.encode(msg, id="x")
    assert set(_dat(frame)) == mp_keys
    assert set(json.loads(envelope.encode_json(msg, id="x"))["dat"]) == json_keys
    assert envelope.decode(frame).msg == msg
    assert envelope.decode(envelope.encode_json(msg, id="x")).msg == msg


@pytest.mark.parametrize("typ", sorted(GO_FIELDS))
def test_both_spellings_read_in_msgpack(typ: int) -> None:
    full = {
        "ver": "v",
        "msg": "m",
        "cod": 7,
        "pth": "a@x.org/f",
        "etg": "e",
        "len": 1,
        "con": b"x",
        "oid": "o",
        "err": "bad",
    }
    short = {k: v for k, v in full.items() if k in {s for s, _ in GO_FIELDS[typ]}}
    go = msgpack_keys(typ, short)
    assert set(go) == {g for _, g in GO_FIELDS[typ]}
    assert envelope.decode(_frame(typ, go)).msg == envelope.decode(_frame(typ, short)).msg
    assert short_keys(typ, go) == short


def test_reference_ack_error_and_system_decode() -> None:
    """Bytes laid out as the reference's Go msgpack writes them."""
    assert envelope.decode(_frame(4, {"OriginalId": "7b6"})).msg == m.Ack("7b6")
    err = envelope.decode(_frame(1, {"Code": 403, "Path": "a@x.org/p", "Message": "no"})).msg
    assert err == m.Error(403, "a@x.org/p", "no")
    sysm = envelope.decode(_frame(0, {"SystemVersion": "0.9.0", "Message": "ok"})).msg
    assert sysm == m.System("0.9.0", "ok")
    # the reference writes a nil Content for an empty file
    fw = _frame(2, {"Path": "a@x.org/f", "ETag": "e", "Length": 0, "Content": None})
    assert envelope.decode(fw).msg == m.FileWrite("a@x.org/f", "e", 0, b"")


def test_short_key_wins_and_types_are_still_checked() -> None:
    assert envelope.decode(_frame(4, {"oid": "short", "OriginalId": "go"})).msg == m.Ack("short")
    with pytest.raises(ProtocolError):
        envelope.decode(_frame(4, {"OriginalId": 5}))


def test_extension_fields_keep_their_short_names() -> None:
    """`mtm` has no Go field: it stays `mtm` in msgpack, which the reference skips."""
    dat = _dat(envelope.encode(m.FileWrite("a@x.org/f", "e", 1, b"x", mtime=9)))
    assert dat["mtm"] == 9 and "Path" in dat


def test_offer_ans_is_a_boolean_written_only_when_set() -> None:
    """`ans` (the sender answers a new reader's Accept): omitted when False, so an
    offer to a reference client is byte for byte the reference one."""
    plain = envelope.encode(m.HotlinkOpen("s", "a@x.org/d", "a@x.org"))
    assert "ans" not in _dat(plain)
    dat = _dat(envelope.encode(m.HotlinkOpen("s", "a@x.org/d", "a@x.org", answers=True)))
    assert dat["ans"] is True
    assert envelope.decode(_frame(9, {"sid": "s", "pth": "p", "ans": True})).msg.answers
    with pytest.raises(ProtocolError, match="'ans' must be a boolean"):
        envelope.decode(_frame(9, {"sid": "s", "pth": "p", "ans": 1}))
