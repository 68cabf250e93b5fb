"""The reference's test vectors (copied into tests/vectors from ../shared/reference/vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from hotlink.wire import envelope, frames, keys
from hotlink.wire.errors import FrameTooLarge, ProtocolError
from hotlink.wire.messages import FileWrite, HotlinkData

VECTORS = Path(__file__).parent / "vectors"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vectors"

WS = json.loads((VECTORS / "ws_envelope.json").read_text())["messages"]
HLNK = json.loads((VECTORS / "hlnk_frames.json").read_text())


def _expected_dat(m: dict) -> dict:
    dat = dict(m["dat"])
    for f in m["bytes_fields"]:
        dat[f] = bytes.fromhex(dat[f])
    return dat


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared not present")
@pytest.mark.parametrize("name", ["ws_envelope.json", "hlnk_frames.json"])
def test_copy_matches_shared(name: str) -> None:
    assert (VECTORS / name).read_bytes() == (SHARED / name).read_bytes()


@pytest.mark.parametrize("m", WS, ids=[m["name"] for m in WS])
def test_ws_binary_decodes_to_vector(m: dict) -> None:
    env = envelope.decode(bytes.fromhex(m["ws_binary_hex"]))
    assert env.id == m["id"]
    assert env.typ == m["typ"]
    assert env.msg.to_dat() == _expected_dat(m)


def _name(m: dict) -> str:
    return m["name"]


def _as_reference_writes(m: dict) -> bytes:
    """The vector's frame with the payload keys the reference's msgpack really writes.

    The vectors spell every payload with the short keys of the protocol table. For the
    payloads without msgpack tags (FileWrite, Ack, Nack, ...) the reference's Go code
    writes, and reads only, the Go field names instead (an Ack with `oid` decodes there
    with an empty id), so that is what we write (`wire.keys`); the rest of the frame,
    key order included, stays the vector's."""
    raw = bytes.fromhex(m["ws_binary_hex"])
    if m["typ"] not in keys.GO_FIELDS:
        return raw
    outer = msgpack.unpackb(raw[4:])
    dat = keys.msgpack_keys(m["typ"], msgpack.unpackb(outer["dat"]))
    outer["dat"] = msgpack.packb(dat, use_bin_type=True)
    return raw[:4] + msgpack.packb(outer, use_bin_type=True)


@pytest.mark.parametrize("m", [m for m in WS if not m.get("decode_only")], ids=lambda m: m["name"])
def test_ws_binary_encode_is_byte_exact(m: dict) -> None:
    env = envelope.decode(bytes.fromhex(m["ws_binary_hex"]))
    assert envelope.encode(env.msg, id=m["id"]) == _as_reference_writes(m)


@pytest.mark.parametrize("m", [m for m in WS if m["typ"] in keys.GO_FIELDS], ids=_name)
def test_untagged_payloads_are_written_with_go_field_names(m: dict) -> None:
    env = envelope.decode(bytes.fromhex(m["ws_binary_hex"]))
    dat = msgpack.unpackb(msgpack.unpackb(envelope.encode(env.msg)[4:])["dat"])
    assert set(dat) == {go for short, go in keys.GO_FIELDS[m["typ"]] if short in m["dat"]}
    # and they read back as the same message, as do the vector's short keys
    assert envelope.decode(envelope.encode(env.msg)).msg == env.msg


@pytest.mark.parametrize("m", [m for m in WS if "ws_text_json" in m], ids=lambda m: m["name"])
def test_ws_text_json_decodes_same_message(m: dict) -> None:
    text = envelope.decode(m["ws_text_json"])
    binary = envelope.decode(bytes.fromhex(m["ws_binary_hex"]))
    assert text.msg == binary.msg and text.id == binary.id
    # and our JSON encoder produces the reference text
    assert json.loads(envelope.encode_json(text.msg, id=m["id"])) == json.loads(m["ws_text_json"])


def test_go_file_write_field_names_are_mapped() -> None:
    (m,) = [m for m in WS if m["name"] == "reference_go_file_write"]
    msg = envelope.decode(bytes.fromhex(m["ws_binary_hex"])).msg
    assert msg == FileWrite(path="a/b", etag="e", length=2, content=b"hi")


def test_go_fixed_width_ints_decode() -> None:
    (m,) = [m for m in WS if m["name"] == "reference_go_hotlink_data"]
    msg = envelope.decode(bytes.fromhex(m["ws_binary_hex"])).msg
    assert isinstance(msg, HotlinkData) and msg.seq == 1 and msg.payload == b"hi"


@pytest.mark.parametrize("v", HLNK["valid"], ids=[v["name"] for v in HLNK["valid"]])
def test_hlnk_valid(v: dict) -> None:
    frame = frames.Frame(bytes.fromhex(v["payload_hex"]), v["seq"], v["path"], v["etag"])
    raw = bytes.fromhex(v["frame_hex"])
    assert frames.encode_frame(frame) == raw
    assert frames.FrameDecoder().feed(raw) == [frame]
    # byte at a time: the incremental decoder must give the same single frame
    dec = frames.FrameDecoder()
    got = [f for i in range(len(raw)) for f in dec.feed(raw[i : i + 1])]
    assert got == [frame]
    dec.close()


def test_hlnk_bad_magic() -> None:
    with pytest.raises(ProtocolError, match="bad magic"):
        frames.FrameDecoder().feed(bytes.fromhex(HLNK["invalid"][0]["frame_hex"]))


def test_hlnk_bad_version() -> None:
    with pytest.raises(ProtocolError, match="unsupported version"):
        frames.FrameDecoder().feed(bytes.fromhex(HLNK["invalid"][1]["frame_hex"]))


def test_hlnk_truncated_is_incomplete_until_eof() -> None:
    dec = frames.FrameDecoder()
    assert dec.feed(bytes.fromhex(HLNK["invalid"][2]["frame_hex"])) == []
    with pytest.raises(ProtocolError, match="closed inside a frame"):
        dec.close()


def test_hlnk_huge_length_rejected_before_buffering() -> None:
    dec = frames.FrameDecoder(max_payload=1024)
    with pytest.raises(FrameTooLarge, match="over the configured maximum"):
        dec.feed(bytes.fromhex(HLNK["invalid"][3]["frame_hex"]))
    assert dec.buffered < 64
    with pytest.raises(ProtocolError):  # a failed decoder stays failed
        dec.feed(b"")
