"""The HotlinkData fast decode path and the relay's tail-path check are exact shortcuts:
for any input they give what the generic code gives (same message, or an error)."""

from __future__ import annotations

import random

import msgpack
from hotlink.relay.router import _TAIL
from hotlink.wire import envelope
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import HotlinkData, HotlinkOpen
from hotlink.wire.paths import MAX_PATH, validate_path
from hypothesis import given, settings
from hypothesis import strategies as st

text = st.text(max_size=300)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
data_messages = st.builds(HotlinkData, text, u64, text, st.binary(max_size=70_000), text)


def _generic(frame: bytes) -> object:
    try:
        return envelope._decode_generic(frame)
    except ProtocolError as exc:
        return type(exc)


def _decoded(frame: bytes) -> object:
    try:
        return envelope.decode(frame)
    except ProtocolError as exc:
        return type(exc)


@settings(max_examples=300)
@given(data_messages, st.text(max_size=40), st.sampled_from(["", "00-" + "a" * 52]))
def test_fast_path_takes_our_frames_and_matches_generic(m: HotlinkData, mid: str, tp: str) -> None:
    frame = envelope.encode(m, id=mid, traceparent=tp)
    fast = envelope._fast_data(frame, False)
    if len(mid.encode()) < 32:  # ids are fixstr in the fast layout (ours: 8-14 chars)
        assert fast is not None
    assert _decoded(frame) == _generic(frame)
    view = envelope.decode_data_view(frame)
    if view is not None:
        assert view == _generic(frame)
        assert bytes(view.msg.payload) == m.payload  # a view into the frame, no copy


@settings(max_examples=500)
@given(data_messages, st.data())
def test_mutated_frames_decode_like_generic(m: HotlinkData, data: st.DataObject) -> None:
    frame = bytearray(envelope.encode(m, id="ab-1"))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.integers(0, 3))
        pos = data.draw(st.integers(4, max(4, min(len(frame) - 1, 120))))
        if op == 0 and pos < len(frame):
            frame[pos] = data.draw(st.integers(0, 255))
        elif op == 1:
            del frame[pos:]
        elif op == 2:
            frame.insert(pos, data.draw(st.integers(0, 255)))
        else:
            frame += bytes([data.draw(st.integers(0, 255))])
    assert _decoded(bytes(frame)) == _generic(bytes(frame))


def test_other_layouts_take_the_generic_path() -> None:
    m = HotlinkData("s", 7, "a@b.c/x/1.request", b"pay", "e")
    dat = m.to_dat()
    reordered = dict(reversed(list(dat.items())))
    extra = {**dat, "new": 1}
    for d in (reordered, extra):
        packed = msgpack.packb(d, use_bin_type=True)
        frame = envelope.PREFIX + msgpack.packb({"id": "x", "typ": 12, "dat": packed})
        assert envelope._fast_data(frame, False) is None
        assert envelope.decode(frame).msg == m
    other = envelope.encode(HotlinkOpen("s", "a@b.c/x", "a@b.c", ""), id="x")
    assert envelope._fast_data(other, False) is None
    assert envelope.decode_data_view(other) is None


def test_tail_pattern_is_validate_path_below_a_session() -> None:
    rng = random.Random(7)
    alphabet = ["a", "é", ".", "..", "/", "\\", "\x00", "\x1f", "\x7f", " ", "\n", "_"]
    prefix = "alice@example.org/_mpc/s/"
    for _ in range(50_000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        path = prefix + tail
        try:
            validate_path(path)
            expected = True
        except ProtocolError:
            expected = False
        got = len(path) <= MAX_PATH and _TAIL.fullmatch(path, len(prefix)) is not None
        assert got == expected, repr(tail)
