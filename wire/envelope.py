"""The SyftBox WS envelope (reference §1).

Binary frames: `b"SB" | version 0x01 | encoding (0x01 msgpack, 0x00 JSON)` then a map
`{id, typ, dat}` where, for msgpack, `dat` is `bin` holding the msgpack of the payload
map (keys spelled per encoding as the reference does, see `keys`). Text frames are
the legacy JSON form `{"id", "typ", "dat": {...}}` (bytes base64).

The optional `tpc` key carries a W3C `traceparent`; the reference's decoders ignore
unknown keys, so it stays wire compatible.

`encode()` writes the HotlinkData payload once (one copy, in the final join) since it
is the only message on the latency path.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from .errors import FrameTooLarge, ProtocolError
from .keys import msgpack_keys
from .messages import HotlinkData, Message, message_from_dat

MAGIC = b"SB"
VERSION: Final = 1
ENC_JSON: Final = 0
ENC_MSGPACK: Final = 1
PREFIX = MAGIC + bytes([VERSION, ENC_MSGPACK])
#: Default maximum WS message (reference: 8 MiB; ours is configurable, 16 MiB default).
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
#: Header values negotiated on the WS upgrade (reference §1).
HDR_ENCODINGS = "X-Syft-WS-Encodings"
HDR_ENCODING = "X-Syft-WS-Encoding"
#: Hotlink addition: the relay names the user the token authenticated in its upgrade
#: response, so an agent learns who it is to the relay (and refuses a mismatch).
HDR_USER = "X-Hotlink-User"
#: The relay's WebSocket endpoint (reference §1): agents connect here, the relay serves it.
EVENTS_PATH = "/api/v1/events"

_packb = msgpack.Packer(use_bin_type=True).pack  # Packer reuse avoids per-call setup


def new_id() -> str:
    """A short random message id (the reference uses 3 characters; we use 8)."""
    return secrets.token_hex(4)


@dataclass(slots=True)
class Envelope:
    id: str
    msg: Message
    traceparent: str = ""

    @property
    def typ(self) -> int:
        return self.msg.TYP


_BIN8 = struct.Struct("!BB").pack
_BIN16 = struct.Struct("!BH").pack
_BIN32 = struct.Struct("!BI").pack


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return _BIN8(0xC4, n)
    if n < 0x10000:
        return _BIN16(0xC5, n)
    return _BIN32(0xC6, n)


_K_ID = _packb("id")
_K_TYP = _packb("typ")
_K_DAT = _packb("dat")
_K_TPC = _packb("tpc")
_K_SID = _packb("sid")
_K_SEQ = _packb("seq")
_K_PTH = _packb("pth")
_K_ETG = _packb("etg")
_K_PAY = _packb("pay")

# HotlinkData, the one message on the latency path, is written from constant pieces:
# the outer map's start (3 keys, 4 with `tpc`) up to the id, its `typ` entry, and the
# `dat` map's start up to the sid, by (has etag, has payload).
# (the decoder's fast path below reads the same pieces, byte by byte)
_OUTER3 = b"\x83" + _K_ID
_OUTER4 = b"\x84" + _K_ID
_K_TYP_DATA = _K_TYP + _packb(HotlinkData.TYP)
_DATA_OUTER3 = PREFIX + _OUTER3
_DATA_OUTER4 = PREFIX + _OUTER4
_DATA_MAP = {
    (False, False): b"\x83" + _K_SID,
    (True, False): b"\x84" + _K_SID,
    (False, True): b"\x84" + _K_SID,
    (True, True): b"\x85" + _K_SID,
}


def _encode_data(msg: HotlinkData, mid: str, traceparent: str) -> bytes:
    """The HotlinkData frame; the payload is copied once, in the final join."""
    seq = msg.seq
    if not 0 <= seq < 2**64:
        raise ProtocolError(f"seq {seq} outside u64")
    etag = msg.etag
    pay = msg.payload
    head = [_DATA_MAP[bool(etag), bool(pay)], _packb(msg.sid), _K_SEQ, _packb(seq)]
    head += (_K_PTH, _packb(msg.path))
    if etag:
        head += (_K_ETG, _packb(etag))
    if pay:
        head += (_K_PAY, _bin_header(len(pay)))
    dat_head = b"".join(head)
    dat_len = _bin_header(len(dat_head) + len(pay))
    if traceparent:
        tpc = _packb(traceparent)
        return b"".join(
            (_DATA_OUTER4, _packb(mid), _K_TYP_DATA, _K_TPC, tpc, _K_DAT, dat_len, dat_head, pay)
        )
    return b"".join((_DATA_OUTER3, _packb(mid), _K_TYP_DATA, _K_DAT, dat_len, dat_head, pay))


def encode(msg: Message, id: str | None = None, traceparent: str = "") -> bytes:
    """Encode one message as an `SB`/msgpack binary WS frame."""
    mid = id if id is not None else new_id()
    if type(msg) is HotlinkData:
        return _encode_data(msg, mid, traceparent)
    dat = msgpack_keys(msg.TYP, msg.to_dat())
    outer: dict[str, Any] = {"id": mid, "typ": msg.TYP, "dat": _packb(dat)}
    if traceparent:
        outer["tpc"] = traceparent
    return PREFIX + _packb(outer)


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(o)).decode()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def encode_json(msg: Message, id: str | None = None, traceparent: str = "") -> str:
    """Encode one message as a legacy JSON text frame."""
    outer: dict[str, Any] = {
        "id": id if id is not None else new_id(),
        "typ": msg.TYP,
        "dat": msg.to_dat(),
    }
    if traceparent:
        outer["tpc"] = traceparent
    return json.dumps(outer, separators=(",", ":"), default=_json_default)


def _from_outer(outer: Any, text: bool, dat_is_packed: bool) -> Envelope:
    if not isinstance(outer, dict):
        raise ProtocolError("envelope must be a map")
    mid = outer.get("id", "")
    typ = outer.get("typ")
    if not isinstance(mid, str):
        raise ProtocolError("envelope 'id' must be a string")
    if not isinstance(typ, int) or isinstance(typ, bool) or not 0 <= typ < 2**16:
        raise ProtocolError(f"envelope 'typ' must be a small unsigned integer, got {typ!r}")
    dat = outer.get("dat")
    if dat_is_packed:
        if not isinstance(dat, bytes):
            raise ProtocolError("envelope 'dat' must be binary in a msgpack frame")
        if dat and dat[0] not in _MAP_FIRST:  # refused before anything is built
            raise ProtocolError("envelope 'dat' must be a msgpack map")
        dat = _unpack(dat)
    elif dat is None:
        dat = {}
    tpc = outer.get("tpc", "")
    if not isinstance(tpc, str):
        tpc = ""
    return Envelope(mid, message_from_dat(typ, dat, text), tpc)


#: Bounds on what one message may hold. No message type has more than a few dozen
#: keys, and its only arrays are short lists of strings (candidate addresses), so a
#: peer cannot make `unpackb` build millions of objects from a few MiB of `[[],[],…]`.
MAX_MAP_LEN = 256
MAX_ARRAY_LEN = 4096
_MAP_FIRST = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def _flat_list(items: list[Any]) -> list[Any]:
    """`list_hook`: arrays hold scalars only. Raised on the first nested array, so a
    tree of arrays is refused after at most `MAX_ARRAY_LEN` elements are built."""
    for x in items:
        if isinstance(x, list | dict):
            raise ValueError("nested array or map inside an array")
    return items


def _unpack(data: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_map_len=MAX_MAP_LEN,
            max_array_len=MAX_ARRAY_LEN,
            list_hook=_flat_list,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        RecursionError,
        UnicodeDecodeError,
    ) as exc:
        raise ProtocolError(f"invalid msgpack: {exc}") from None


def _loads(text: str | bytes) -> Any:
    # json.loads has no size hooks: count the arrays it would build first (a bracket
    # inside a string counts too, which only makes the bound stricter).
    opens = text.count("[") if isinstance(text, str) else text.count(b"[")
    if opens > MAX_ARRAY_LEN:
        raise ProtocolError(f"invalid JSON: more than {MAX_ARRAY_LEN} arrays in one message")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None


# --------------------------------------------------------------------- data fast path
#
# A HotlinkData frame in the layout `encode()` writes (and the reference's encoders:
# keys in struct order) is decoded by reading its msgpack bytes in place instead of
# `unpackb` twice (outer map, then `dat`) plus `_norm`/`from_dat`: no intermediate
# dicts, and the payload is copied once (or not at all with `view=True`). Anything
# else (other key order, extra keys, other value types, trailing bytes) returns None
# and takes the generic path, so the result, or the error, is always the generic
# decoder's.

_DATA_TYP: Final = HotlinkData.TYP


def _be(frame: bytes, pos: int, width: int) -> int:
    """The big-endian unsigned integer of `width` bytes at `pos` (IndexError past the
    end). Byte by byte: compiled, this is a few machine operations, where a slice and
    `int.from_bytes` allocate and call."""
    n = 0
    for i in range(pos, pos + width):
        n = (n << 8) | frame[i]
    return n


def _key(frame: bytes, pos: int, c1: int, c2: int, c3: int) -> bool:
    """Is the three-letter fixstr key `c1 c2 c3` at `pos`? (All our keys have three
    letters; comparing bytes in place allocates nothing, unlike a slice.)"""
    return (
        frame[pos] == 0xA3
        and frame[pos + 1] == c1
        and frame[pos + 2] == c2
        and frame[pos + 3] == c3
    )


def _sized_at(frame: bytes, pos: int, first: int) -> tuple[int, int]:
    """(start, end) of the msgpack value at `pos` whose header is `first`, `first + 1`
    or `first + 2` followed by a 1, 2 or 4-byte length (str8/16/32 from 0xD9, bin8/16/32
    from 0xC4); (-1, -1) if the header is none of them."""
    w = frame[pos] - first
    if w == 0:
        return pos + 2, pos + 2 + frame[pos + 1]
    if w == 1:
        return pos + 3, pos + 3 + _be(frame, pos + 1, 2)
    if w == 2:
        return pos + 5, pos + 5 + _be(frame, pos + 1, 4)
    return -1, -1


def _str_at(frame: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the msgpack str whose header is at `pos`; (-1, -1) if none is."""
    b = frame[pos]
    if b & 0xE0 == 0xA0:
        return pos + 1, pos + 1 + (b & 0x1F)
    return _sized_at(frame, pos, 0xD9)


def _bin_at(frame: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the msgpack bin whose header is at `pos`; (-1, -1) if none is."""
    return _sized_at(frame, pos, 0xC4)


#: Where the fields of a HotlinkData frame lie: (mid, tpc, sid, pth, etg, pay) as
#: start/end offsets with `seq` after the sid's, in wire order. An absent optional
#: field (tpc, etg, pay) is (-1, -1); a frame `scan_data` does not take has mid -1.
DataSpans = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int]
NOT_DATA: Final = (-1, -1, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1, -1)


def scan_data(frame: bytes) -> DataSpans:
    """The spans of `{id, typ: 12, [tpc], dat: bin{sid, seq, pth, [etg], [pay]}}`, else
    `NOT_DATA`. Offsets only, no object: the relay matches a frame against its sessions
    from these without decoding it (compiled, the tuple is not even allocated), and
    `_fast_data` builds the message from them. Strings are not checked to be UTF-8."""
    n = len(frame)
    if n < 12 or frame[0] != 0x53 or frame[1] != 0x42 or frame[2] != VERSION:  # "SB"
        return NOT_DATA
    try:
        outer = frame[4]
        if frame[3] != ENC_MSGPACK or (outer != 0x83 and outer != 0x84):
            return NOT_DATA
        if frame[5] != 0xA2 or frame[6] != 0x69 or frame[7] != 0x64:  # "id"
            return NOT_DATA
        b = frame[8]  # its value: a fixstr (ours are 8-14 characters)
        if b & 0xE0 != 0xA0:
            return NOT_DATA
        pos = 9 + (b & 0x1F)
        m1 = pos
        if not _key(frame, pos, 0x74, 0x79, 0x70) or frame[pos + 4] != _DATA_TYP:  # typ
            return NOT_DATA
        pos += 5
        t0 = t1 = -1
        if outer == 0x84:
            if not _key(frame, pos, 0x74, 0x70, 0x63):  # tpc
                return NOT_DATA
            t0, pos = _str_at(frame, pos + 4)
            if t0 < 0:
                return NOT_DATA
            t1 = pos
        if not _key(frame, pos, 0x64, 0x61, 0x74):  # dat
            return NOT_DATA
        d0, end = _bin_at(frame, pos + 4)
        if end != n:
            return NOT_DATA
        b = frame[d0]
        if b & 0xF0 != 0x80 or not _key(frame, d0 + 1, 0x73, 0x69, 0x64):  # sid
            return NOT_DATA
        left = (b & 0x0F) - 3  # entries after sid, seq, pth
        s0, s1 = _str_at(frame, d0 + 5)
        if s0 < 0:
            return NOT_DATA
        pos = s1
        if not _key(frame, pos, 0x73, 0x65, 0x71):  # seq
            return NOT_DATA
        b = frame[pos + 4]
        if b < 0x80:
            seq = b
            pos += 5
        elif b == 0xCC:
            seq = frame[pos + 5]
            pos += 6
        elif b == 0xCD:
            seq = _be(frame, pos + 5, 2)
            pos += 7
        elif b == 0xCE:
            seq = _be(frame, pos + 5, 4)
            pos += 9
        elif b == 0xCF:
            seq = _be(frame, pos + 5, 8)
            pos += 13
        else:
            return NOT_DATA
        if not _key(frame, pos, 0x70, 0x74, 0x68):  # pth
            return NOT_DATA
        h0, h1 = _str_at(frame, pos + 4)
        if h0 < 0:
            return NOT_DATA
        pos = h1
        e0 = e1 = -1
        if left > 0 and _key(frame, pos, 0x65, 0x74, 0x67):  # etg
            e0, e1 = _str_at(frame, pos + 4)
            if e0 < 0:
                return NOT_DATA
            pos = e1
            left -= 1
        p0 = p1 = -1
        if left:
            if left != 1 or not _key(frame, pos, 0x70, 0x61, 0x79):  # pay
                return NOT_DATA
            p0, pos = _bin_at(frame, pos + 4)
            if p0 < 0:
                return NOT_DATA
            p1 = pos
        if pos != end:
            return NOT_DATA
    except IndexError:
        return NOT_DATA
    return (9, m1, t0, t1, s0, s1, seq, h0, h1, e0, e1, p0, p1)


def _fast_data(frame: bytes, view: bool) -> Envelope | None:
    """The message of a frame `scan_data` takes, else None. Its payload is a view into
    `frame` with `view`, else a copy."""
    m0, m1, t0, t1, s0, s1, seq, h0, h1, e0, e1, p0, p1 = scan_data(frame)
    if m0 < 0:
        return None
    try:
        mid = frame[m0:m1].decode()
        tpc = frame[t0:t1].decode() if t0 >= 0 else ""
        sid = frame[s0:s1].decode()
        pth = frame[h0:h1].decode()
        etg = frame[e0:e1].decode() if e0 >= 0 else ""
    except UnicodeDecodeError:
        return None
    payload: bytes | memoryview = b""
    if p0 >= 0:
        payload = memoryview(frame)[p0:p1] if view else frame[p0:p1]
    return Envelope(mid, HotlinkData(sid, seq, pth, payload, etg), tpc)  # type: ignore[arg-type]


def decode_data_view(frame: bytes, max_size: int = DEFAULT_MAX_MESSAGE) -> Envelope | None:
    """The relay's fast path: a HotlinkData msgpack frame decoded without copying its
    payload (`msg.payload` is a memoryview into `frame`), or None for anything the
    generic `decode` must handle. The frame itself can be forwarded unchanged."""
    if len(frame) > max_size:
        return None
    return _fast_data(frame, True)


def decode(frame: bytes | str, max_size: int = DEFAULT_MAX_MESSAGE) -> Envelope:
    """Decode one WS message: `bytes` for a binary frame, `str` for a text frame."""
    if len(frame) > max_size:
        raise FrameTooLarge(f"message of {len(frame)} bytes over the maximum of {max_size}")
    if type(frame) is bytes:
        env = _fast_data(frame, False)
        if env is not None:
            return env
    return _decode_generic(frame)


def _decode_generic(frame: bytes | str) -> Envelope:
    """Every message type: `unpackb` (or `json.loads`) and `message_from_dat`."""
    if isinstance(frame, str):
        return _from_outer(_loads(frame), text=True, dat_is_packed=False)
    if len(frame) < 4 or frame[:2] != MAGIC:
        raise ProtocolError("binary frame without the 'SB' envelope magic")
    if frame[2] != VERSION:
        raise ProtocolError(f"unsupported envelope version {frame[2]}")
    enc = frame[3]
    body = memoryview(frame)[4:]
    if enc == ENC_MSGPACK:
        return _from_outer(_unpack(body), text=False, dat_is_packed=True)
    if enc == ENC_JSON:
        return _from_outer(_loads(bytes(body)), text=True, dat_is_packed=False)
    raise ProtocolError(f"unknown envelope encoding {enc}")
