"""HLNK IPC frames: the framing apps use on `stream.sock` / `stream.tcp`.

Layout (big-endian, reference §6):
    magic "HLNK" | version u8 = 1 | path_len u16 | etag_len u16 | payload_len u32 | seq u64
    then path (UTF-8), etag (UTF-8), payload.

`FrameDecoder` is sans-I/O: feed it bytes as they arrive, get whole frames back. It checks
the declared lengths against its limit *before* buffering, so a hostile length prefix
never makes it allocate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import FrameTooLarge, ProtocolError

MAGIC = b"HLNK"
VERSION = 1
HEADER = struct.Struct(">4sBHHIQ")
HEADER_SIZE = HEADER.size  # 21
MAX_SEQ = 2**64 - 1
#: Default payload limit; the reference's whole WS message limit is 8 MiB, ours 16 MiB.
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class Frame:
    """One HLNK frame. `path` is the `.request` name the message would have on disk."""

    payload: bytes
    seq: int = 0
    path: str = ""
    etag: str = ""


def encode_header(path: bytes, etag: bytes, payload_len: int, seq: int) -> bytes:
    """Header plus path and etag, so a writer can send the payload without concatenating."""
    if len(path) > 0xFFFF or len(etag) > 0xFFFF:
        raise ProtocolError("path or etag longer than 65535 bytes")
    if not 0 <= payload_len <= 0xFFFFFFFF:
        raise FrameTooLarge(f"payload of {payload_len} bytes does not fit a u32 length")
    if not 0 <= seq <= MAX_SEQ:
        raise ProtocolError(f"seq {seq} outside u64")
    return HEADER.pack(MAGIC, VERSION, len(path), len(etag), payload_len, seq) + path + etag


_SEQ = struct.Struct(">Q")
#: where the seq sits in the header: after magic, version and the three lengths
SEQ_OFFSET = HEADER_SIZE - _SEQ.size  # 13


def header_seq(header: bytes | bytearray | memoryview) -> int:
    """The seq of an encoded frame (its header, or the whole frame), read in place:
    senders and writers that hold frames as encoded bytes need no decode to know
    which seq a buffered frame carries."""
    return _SEQ.unpack_from(header, SEQ_OFFSET)[0]


def encode_frame(frame: Frame) -> bytes:
    return (
        encode_header(frame.path.encode(), frame.etag.encode(), len(frame.payload), frame.seq)
        + frame.payload
    )


class FrameDecoder:
    """Incremental HLNK decoder.

    `feed()` returns every complete frame in the bytes so far; a partial frame stays
    buffered. `close()` at EOF raises if a partial frame is left. After an error the
    decoder is unusable: the stream has lost its framing, so the connection must go.
    """

    __slots__ = ("_buf", "_failed", "max_payload")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._failed:
            raise ProtocolError("decoder already failed; the connection must be closed")
        if self._buf:
            self._buf += data
            src: bytes | bytearray = self._buf
        else:
            # Common case: nothing buffered, parse straight from the chunk so a payload
            # is copied once (into its Frame), not into the buffer first.
            src = data
        try:
            frames, pos = self._parse(src)
        except ProtocolError:
            self._failed = True
            raise
        if src is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < len(data):
            self._buf += memoryview(data)[pos:]
        return frames

    def _parse(self, buf: bytes | bytearray) -> tuple[list[Frame], int]:
        frames: list[Frame] = []
        pos = 0
        n = len(buf)
        mv = memoryview(buf)
        try:
            while n - pos >= HEADER_SIZE:
                magic, version, plen, elen, paylen, seq = HEADER.unpack_from(buf, pos)
                if magic != MAGIC:
                    raise ProtocolError(f"bad magic {bytes(magic)!r}, expected b'HLNK'")
                if version != VERSION:
                    raise ProtocolError(f"unsupported version {version}, expected {VERSION}")
                if paylen > self.max_payload:
                    raise FrameTooLarge(
                        f"payload of {paylen} bytes over the configured maximum "
                        f"of {self.max_payload}"
                    )
                end = pos + HEADER_SIZE + plen + elen + paylen
                if end > n:
                    break
                p0 = pos + HEADER_SIZE
                e0 = p0 + plen
                d0 = e0 + elen
                try:
                    path = str(mv[p0:e0], "utf-8") if plen else ""
                    etag = str(mv[e0:d0], "utf-8") if elen else ""
                except UnicodeDecodeError as exc:
                    raise ProtocolError(f"path or etag is not UTF-8: {exc}") from None
                frames.append(Frame(mv[d0:end].tobytes(), seq, path, etag))
                pos = end
        finally:
            mv.release()
        return frames, pos

    def close(self) -> None:
        """Signal EOF: a partial frame left over is an error."""
        if self._buf and not self._failed:
            self._failed = True
            raise ProtocolError(f"connection closed inside a frame ({len(self._buf)} bytes left)")
