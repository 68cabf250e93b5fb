"""The SyftBox WS envelope (reference §1).

Binary frames: `b"SB" | version 0x01 | encoding (0x01 msgpack, 0x00 JSON)` then a map
`{id, typ, dat}` where, for msgpack, `dat` is `bin` holding the msgpack of the payload
map. Text frames are the legacy JSON form `{"id", "typ", "dat": {...}}` (bytes base64).

The optional `tpc` key carries a W3C `traceparent`; the reference's decoders ignore
unknown keys, so it stays wire compatible.

`encode()` writes the HotlinkData payload once (one copy, in the final join) since it
is the only message on the latency path.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import FrameTooLarge, ProtocolError
from .messages import HotlinkData, Message, message_from_dat

MAGIC = b"SB"
VERSION = 1
ENC_JSON = 0
ENC_MSGPACK = 1
PREFIX = MAGIC + bytes([VERSION, ENC_MSGPACK])
#: Default maximum WS message (reference: 8 MiB; ours is configurable, 16 MiB default).
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
#: Header values negotiated on the WS upgrade (reference §1).
HDR_ENCODINGS = "X-Syft-WS-Encodings"
HDR_ENCODING = "X-Syft-WS-Encoding"

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


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


_K_ID = _packb("id")
_K_TYP = _packb("typ")
_K_DAT = _packb("dat")
_K_TPC = _packb("tpc")
_K_SID = _packb("sid")
_K_SEQ = _packb("seq")
_K_PTH = _packb("pth")
_K_ETG = _packb("etg")
_K_PAY = _packb("pay")


def _data_dat_head(m: HotlinkData) -> bytes:
    n = 3 + (1 if m.etag else 0) + (1 if m.payload else 0)
    head = [bytes([0x80 | n]), _K_SID, _packb(m.sid), _K_SEQ, _packb(m.seq), _K_PTH, _packb(m.path)]
    if m.etag:
        head += (_K_ETG, _packb(m.etag))
    if m.payload:
        head += (_K_PAY, _bin_header(len(m.payload)))
    return b"".join(head)


def encode(msg: Message, id: str | None = None, traceparent: str = "") -> bytes:
    """Encode one message as an `SB`/msgpack binary WS frame."""
    mid = id if id is not None else new_id()
    if type(msg) is HotlinkData:
        if not 0 <= msg.seq < 2**64:
            raise ProtocolError(f"seq {msg.seq} outside u64")
        head = _data_dat_head(msg)
        dat_len = len(head) + len(msg.payload)
        parts = [
            PREFIX,
            b"\x84" if traceparent else b"\x83",
            _K_ID,
            _packb(mid),
            _K_TYP,
            _packb(msg.TYP),
        ]
        if traceparent:
            parts += (_K_TPC, _packb(traceparent))
        parts += (_K_DAT, _bin_header(dat_len), head, msg.payload)
        return b"".join(parts)
    outer: dict[str, Any] = {"id": mid, "typ": msg.TYP, "dat": _packb(msg.to_dat())}
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
        dat = _unpack(dat)
    elif dat is None:
        dat = {}
    tpc = outer.get("tpc", "")
    if not isinstance(tpc, str):
        tpc = ""
    return Envelope(mid, message_from_dat(typ, dat, text), tpc)


def _unpack(data: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
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
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None


def decode(frame: bytes | str, max_size: int = DEFAULT_MAX_MESSAGE) -> Envelope:
    """Decode one WS message: `bytes` for a binary frame, `str` for a text frame."""
    if len(frame) > max_size:
        raise FrameTooLarge(f"message of {len(frame)} bytes over the maximum of {max_size}")
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
