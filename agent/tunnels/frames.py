"""Tunnel mux frames: what one HLNK frame payload on a tunnel session carries.

Layout (big endian): `kind u8 | conn u32 | body`. Conn ids are chosen by the forward
(listen) side, per peer, starting at 1; conn 0 is the mux itself (HELLO, PING).

| kind      | body                 | meaning                                                |
|-----------|----------------------|--------------------------------------------------------|
| HELLO 1   | epoch u64            | a mux started; a new epoch resets the peer's conns     |
| OPEN 2    | window u32           | forward side accepted a TCP connection (its window)    |
| OPEN_OK 3 | window u32           | expose side connected to its target                    |
| DATA 4    | bytes                | stream bytes, at most the credit the peer granted      |
| FIN 5     | -                    | no more bytes in this direction (TCP half-close)       |
| RST 6     | reason utf-8         | the connection is gone: abort the TCP end              |
| CREDIT 7  | bytes u32            | the receiver consumed that many bytes: send more       |
| PING 8    | -                    | liveness while connections are open                    |
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from hotlink.wire.errors import ProtocolError

_HDR = struct.Struct(">BI")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
HEADER_LEN = _HDR.size


class Kind(enum.IntEnum):
    HELLO = 1
    OPEN = 2
    OPEN_OK = 3
    DATA = 4
    FIN = 5
    RST = 6
    CREDIT = 7
    PING = 8


@dataclass(slots=True)
class MuxFrame:
    kind: Kind
    conn: int = 0
    #: HELLO: epoch; OPEN/OPEN_OK: window; CREDIT: bytes
    value: int = 0
    #: DATA: the bytes; RST: the reason (utf-8)
    data: bytes = b""


def encode(kind: Kind, conn: int = 0, value: int = 0, data: bytes = b"") -> bytes:
    head = _HDR.pack(kind, conn)
    if kind is Kind.HELLO:
        return head + _U64.pack(value)
    if kind in (Kind.OPEN, Kind.OPEN_OK, Kind.CREDIT):
        return head + _U32.pack(value)
    if kind in (Kind.DATA, Kind.RST):
        return head + data
    return head


def encode_data_header(conn: int) -> bytes:
    """DATA header alone, so a chunk is joined once without copying it twice."""
    return _HDR.pack(Kind.DATA, conn)


def decode(payload: bytes | memoryview) -> MuxFrame:
    """Parse one payload; anything malformed raises `ProtocolError`."""
    if len(payload) < HEADER_LEN:
        raise ProtocolError(f"tunnel frame of {len(payload)} bytes is too short")
    kind_b, conn = _HDR.unpack_from(payload)
    try:
        kind = Kind(kind_b)
    except ValueError:
        raise ProtocolError(f"unknown tunnel frame kind {kind_b}") from None
    body = payload[HEADER_LEN:]
    if kind is Kind.HELLO:
        if len(body) != 8:
            raise ProtocolError("HELLO needs an 8-byte epoch")
        return MuxFrame(kind, conn, _U64.unpack(body)[0])
    if kind in (Kind.OPEN, Kind.OPEN_OK, Kind.CREDIT):
        if len(body) != 4:
            raise ProtocolError(f"{kind.name} needs a 4-byte value")
        return MuxFrame(kind, conn, _U32.unpack(body)[0])
    if kind in (Kind.DATA, Kind.RST):
        return MuxFrame(kind, conn, data=bytes(body))
    if body:
        raise ProtocolError(f"{kind.name} carries no body")
    return MuxFrame(kind, conn)
