"""Wire additions for loss-free resume: the cumulative reader ack (`HotlinkProgress`, type 16) and
the optional `seq` of `HotlinkAccept`, in test_wire_properties.py's style."""

from __future__ import annotations

import json

import pytest
from hotlink.wire import envelope
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import BY_TYP, HotlinkAccept, HotlinkProgress, message_from_dat
from hypothesis import given
from hypothesis import strategies as st

text = st.text(max_size=40)
u64 = st.integers(min_value=0, max_value=2**64 - 1)

acks = st.one_of(
    st.builds(HotlinkProgress, text, u64, text),
    st.builds(HotlinkAccept, text, text, st.none() | u64),
)


@given(acks, text)
def test_binary_round_trip(msg, mid) -> None:
    env = envelope.decode(envelope.encode(msg, id=mid))
    assert (env.msg, env.id) == (msg, mid)


@given(acks, text)
def test_json_round_trip(msg, mid) -> None:
    env = envelope.decode(envelope.encode_json(msg, id=mid))
    assert (env.msg, env.id) == (msg, mid)


def test_type_numbers_beyond_the_reference() -> None:
    assert HotlinkProgress.TYP == 16 and BY_TYP[16] is HotlinkProgress
    assert HotlinkAccept.TYP == 10


def test_keys_are_short_and_optional() -> None:
    assert HotlinkProgress("s", 7).to_dat() == {"sid": "s", "seq": 7}
    assert HotlinkProgress("s", 7, "b@x").to_dat() == {"sid": "s", "seq": 7, "frm": "b@x"}
    # a reference accept has no seq: nothing is known about the reader's position
    assert HotlinkAccept("s").to_dat() == {"sid": "s"}
    assert HotlinkAccept("s", seq=0).to_dat() == {"sid": "s", "seq": 0}
    assert message_from_dat(10, {"sid": "s"}) == HotlinkAccept("s", "", None)
    assert message_from_dat(10, {"sid": "s", "seq": 3, "zzz": 1}) == HotlinkAccept("s", "", 3)
    assert message_from_dat(16, {"sid": "s", "seq": 3}) == HotlinkProgress("s", 3, "")


@pytest.mark.parametrize("seq", [-1, "3", 2**64, True, 1.5])
@pytest.mark.parametrize("typ", [10, 16])
def test_bad_seq_is_a_protocol_error(typ, seq) -> None:
    with pytest.raises(ProtocolError):
        message_from_dat(typ, {"sid": "s", "seq": seq})


def test_progress_needs_seq() -> None:
    with pytest.raises(ProtocolError):
        message_from_dat(16, {"sid": "s"})


def test_reference_json_peer_sees_an_unknown_key_only() -> None:
    """The JSON a reference decoder gets for our accept: a known type with one more key."""
    doc = json.loads(envelope.encode_json(HotlinkAccept("s", "b@x", 5), id="1"))
    assert doc["typ"] == 10 and doc["dat"]["seq"] == 5
