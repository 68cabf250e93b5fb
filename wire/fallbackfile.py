"""The fallback file format: one HLNK frame behind a small header naming its session.

A frame that travels by the file path (fallback) is stored as `<session dir>/<name>`
(`<seq:08d>.request` unless the app named it). The file name alone cannot carry the
seq (apps may choose names) nor tell two streams on the same path apart, so the
content carries both:

    offset size  field
    0      4     magic "HLFB"
    4      1     version = 1
    5      1     sid_len (1..255)
    6      n     sid (ASCII): the hotlink session id the frame belongs to
    6+n    ...   one HLNK frame (`hotlink.wire.frames`): seq, name, etag, payload

The same bytes are on the sender's disk, in the relay's store and in readers' mirrors,
so any copy can be replayed. A file without the magic is an ordinary file.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError
from .frames import HEADER, HEADER_SIZE, encode_header
from .frames import MAGIC as HLNK_MAGIC
from .frames import VERSION as HLNK_VERSION

MAGIC = b"HLFB"
VERSION = 1
PREFIX_MIN = 6


@dataclass(slots=True, frozen=True)
class FallbackFrame:
    sid: str
    seq: int
    name: str
    etag: str
    payload: bytes


def encode_prefix(sid: str) -> bytes:
    raw = sid.encode("ascii")
    if not 0 < len(raw) < 256:
        raise ProtocolError(f"session id of {len(raw)} bytes does not fit a fallback file")
    return MAGIC + bytes((VERSION, len(raw))) + raw


def encode_parts(sid: str, seq: int, name: str, etag: str, payload_len: int) -> bytes:
    """Everything before the payload (so a writer can `writelines` without a join)."""
    return encode_prefix(sid) + encode_header(name.encode(), etag.encode(), payload_len, seq)


def encode(sid: str, seq: int, name: str, etag: str, payload: bytes) -> bytes:
    return encode_parts(sid, seq, name, etag, len(payload)) + payload


def is_fallback(data: bytes | memoryview) -> bool:
    return bytes(data[:4]) == MAGIC


def peek_sid(data: bytes | memoryview) -> str | None:
    """The session id of a fallback file, or None for any other content."""
    if len(data) < PREFIX_MIN or bytes(data[:4]) != MAGIC or data[4] != VERSION:
        return None
    n = data[5]
    if n == 0 or len(data) < PREFIX_MIN + n:
        return None
    try:
        return bytes(data[PREFIX_MIN : PREFIX_MIN + n]).decode("ascii")
    except UnicodeDecodeError:
        return None


def decode(data: bytes) -> FallbackFrame:
    """Parse a whole fallback file; `ProtocolError` if it is not exactly one."""
    sid = peek_sid(data)
    if sid is None:
        raise ProtocolError("not a fallback file (no HLFB header)")
    pos = PREFIX_MIN + len(sid)
    if len(data) < pos + HEADER_SIZE:
        raise ProtocolError("fallback file too short for its HLNK header")
    magic, version, plen, elen, paylen, seq = HEADER.unpack_from(data, pos)
    if magic != HLNK_MAGIC or version != HLNK_VERSION:
        raise ProtocolError("fallback file holds no HLNK frame")
    p0 = pos + HEADER_SIZE
    e0 = p0 + plen
    d0 = e0 + elen
    if d0 + paylen != len(data):
        raise ProtocolError(
            f"fallback file length {len(data)} does not match its frame ({d0 + paylen})"
        )
    try:
        name = data[p0:e0].decode()
        etag = data[e0:d0].decode()
    except UnicodeDecodeError:
        raise ProtocolError("fallback frame name or etag is not UTF-8") from None
    return FallbackFrame(sid, seq, name, etag, data[d0:])
