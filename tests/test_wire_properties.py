"""Property tests of the shared codec: round trips are identity, garbage raises only
ProtocolError (never another exception, never a hang)."""

from __future__ import annotations

import contextlib
import json

from hotlink.wire import envelope, frames, paths
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import (
    Ack,
    Error,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkReject,
    HotlinkSignal,
    Nack,
    System,
)
from hypothesis import given, settings
from hypothesis import strategies as st

text = st.text(max_size=40)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
blob = st.binary(max_size=300)

messages = st.one_of(
    st.builds(System, text, text),
    st.builds(Error, st.integers(-(2**31), 2**31), text, text),
    st.builds(FileWrite, text, text, st.integers(0, 2**40), blob),
    st.builds(Ack, text),
    st.builds(Nack, text, text),
    st.builds(HotlinkOpen, text, text, text, text, st.booleans()),
    st.builds(HotlinkAccept, text, text),
    st.builds(HotlinkReject, text, text, text),
    st.builds(HotlinkData, text, u64, text, blob, text),
    st.builds(HotlinkClose, text, text, text),
    st.builds(HotlinkSignal, text, text, st.none() | st.lists(text, min_size=1), text, text),
)


@given(messages, text, st.sampled_from(["", "00-" + "a" * 32 + "-" + "b" * 16 + "-01"]))
def test_envelope_binary_round_trip(msg, mid, tp) -> None:
    env = envelope.decode(envelope.encode(msg, id=mid, traceparent=tp))
    assert (env.msg, env.id, env.traceparent) == (msg, mid, tp)


@given(messages, text)
def test_envelope_json_round_trip(msg, mid) -> None:
    env = envelope.decode(envelope.encode_json(msg, id=mid))
    assert (env.msg, env.id) == (msg, mid)


@given(st.binary(max_size=512))
@settings(max_examples=500)
def test_envelope_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    for candidate in (data, envelope.PREFIX + data):
        with contextlib.suppress(ProtocolError):
            envelope.decode(candidate)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(text, c, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["id", "typ", "dat", "tpc", "x"]), json_values))
def test_envelope_json_of_wrong_shapes_raises_only_protocol_error(outer) -> None:
    with contextlib.suppress(ProtocolError):
        envelope.decode(json.dumps(outer))


@given(blob, u64, text, text)
def test_hlnk_round_trip(payload, seq, path, etag) -> None:
    frame = frames.Frame(payload, seq, path, etag)
    assert frames.FrameDecoder().feed(frames.encode_frame(frame)) == [frame]


@given(st.lists(st.tuples(blob, u64, text, text), max_size=5), st.integers(1, 64))
def test_hlnk_any_chunking_gives_same_frames(items, chunk) -> None:
    want = [frames.Frame(*i) for i in items]
    raw = b"".join(frames.encode_frame(f) for f in want)
    dec = frames.FrameDecoder()
    got = [f for i in range(0, len(raw), chunk) for f in dec.feed(raw[i : i + chunk])]
    assert got == want


@given(st.binary(max_size=512))
@settings(max_examples=500)
def test_hlnk_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    dec = frames.FrameDecoder(max_payload=4096)
    try:
        dec.feed(frames.MAGIC + bytes([frames.VERSION]) + data)
        dec.close()
    except ProtocolError:
        pass


@given(st.text(max_size=80))
def test_path_validation_raises_only_protocol_error(p: str) -> None:
    try:
        out = paths.validate_path(p)
    except ProtocolError:
        return
    segs = out.split("/")
    assert ".." not in segs and "" not in segs and not out.startswith("/")
