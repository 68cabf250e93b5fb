"""Decoding bounds: a message cannot make the decoder build millions of objects.

A FileWrite whose `dat` was an array of 15 M empty arrays (14 MiB) once cost the relay
~1 GiB and seconds of CPU before its type check ran. These check the refusals happen
before anything large is built, for msgpack and JSON frames.
"""

from __future__ import annotations

import json
import tracemalloc

import msgpack
import pytest
from hotlink.wire.envelope import MAX_ARRAY_LEN, PREFIX, decode, encode
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import FileWrite, HotlinkSignal


def _frame(typ: int, dat: bytes) -> bytes:
    return PREFIX + msgpack.packb({"id": "x1", "typ": typ, "dat": dat})


def _peak_kib(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak // 1024


def test_non_map_dat_refused_from_its_first_byte() -> None:
    bomb = b"\xdd" + (2_000_000).to_bytes(4, "big") + b"\x90" * 2_000_000  # array32
    with pytest.raises(ProtocolError, match="must be a msgpack map"):
        decode(_frame(FileWrite.TYP, bomb))
    frame = _frame(FileWrite.TYP, bomb)

    def attempt() -> None:
        with pytest.raises(ProtocolError):
            decode(frame)

    assert _peak_kib(attempt) < 4096  # the 2 M-element array was never built


def test_array_bomb_inside_a_map_refused() -> None:
    inner = b"\xdd" + (2_000_000).to_bytes(4, "big") + b"\x90" * 2_000_000
    dat = b"\x81\xa3pth" + inner  # {pth: [[], [], ...]}
    with pytest.raises(ProtocolError, match="invalid msgpack"):
        decode(_frame(FileWrite.TYP, dat))


def test_nested_arrays_refused_after_a_bounded_number_of_objects() -> None:
    level = b"\xdc" + (1000).to_bytes(2, "big")  # array16 of 1000
    # 1000 arrays of 1000 empty arrays: a million lists (~60 MB) if it were built
    dat = b"\x81\xa3adr" + level + (level + b"\x90" * 1000) * 1000
    frame = _frame(HotlinkSignal.TYP, dat)

    def attempt() -> None:
        with pytest.raises(ProtocolError):
            decode(frame)

    assert _peak_kib(attempt) < 4096


def test_legitimate_string_lists_still_decode() -> None:
    sig = HotlinkSignal("sid1", "direct-offer", addrs=["127.0.0.1:1", "[::1]:2"])
    got = decode(encode(sig)).msg
    assert isinstance(got, HotlinkSignal) and list(got.addrs or []) == sig.addrs


def test_json_array_bomb_refused_before_parsing() -> None:
    text = json.dumps({"id": "x", "typ": 7, "dat": {"pth": [[]] * (MAX_ARRAY_LEN + 1)}})
    with pytest.raises(ProtocolError, match="arrays in one message"):
        decode(text)
