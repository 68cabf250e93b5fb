"""AES-256-GCM records of an established direct link (sans-I/O).

Wire format of one record: u32 big-endian length of the ciphertext, then the
ciphertext (payload + 16-byte tag). The nonce is 4 zero bytes followed by a u64
counter per direction that is never sent: both ends count, so a replayed, dropped,
reordered or truncated record fails authentication instead of being accepted. The
length header is authenticated as associated data.

Why not TLS: through asyncio it added ~45 us per 1 KB message one-way on the machines
we measured, AES-GCM records cost ~2 us (docs/design.md "Direct path: handshake and
records").
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER_BYTES = 4
TAG_BYTES = 16
KEY_BYTES = 32
# Largest payload one record carries: a 16 MiB frame plus room for the caller's header.
MAX_PAYLOAD = 16 * 1024 * 1024 + 64 * 1024
MAX_CIPHERTEXT = MAX_PAYLOAD + TAG_BYTES
# The nonce's counter is 64 bits; a counter is never reused, so a direction that has
# sealed this many records refuses to seal more (the owner negotiates a new link).
MAX_RECORDS = 2**64 - 1
# Plaintext bytes one direction's key may seal. AES-GCM's confidentiality bound grows
# with the square of the blocks encrypted under one key: 2^39 bytes (2^35 blocks)
# keeps it near 2^-58, the margin TLS 1.3 keeps (RFC 8446, 5.5). A direction past it
# refuses to seal more and the owner replaces the link: a fresh handshake, fresh keys.
MAX_KEY_BYTES = 2**39
_NONCE_PREFIX = b"\x00\x00\x00\x00"


class RecordError(Exception):
    """A record that cannot be accepted (auth failure, oversize, exhausted counter).

    After a RecordError on receive the codec refuses all further input: the stream
    position is lost, so the link must be closed.
    """


class CounterExhausted(RecordError):
    """A direction has used every nonce, or every byte, its key allows: the link must
    be replaced."""


class RecordCodec:
    """Seal records for one direction, open the records of the other.

    One AESGCM object per direction, reused for every record; `feed` slices a
    memoryview of its buffer instead of copying each record out.
    """

    __slots__ = (
        "_broken",
        "_buf",
        "_open",
        "_recv_count",
        "_recv_limit",
        "_seal",
        "_send_byte_limit",
        "_send_bytes",
        "_send_count",
        "_send_limit",
    )

    def __init__(self, send_key: bytes, recv_key: bytes, *, max_records: int = MAX_RECORDS) -> None:
        if len(send_key) != KEY_BYTES or len(recv_key) != KEY_BYTES:
            raise ValueError(f"record keys must be {KEY_BYTES} bytes")
        if send_key == recv_key:
            raise ValueError("send and receive keys must differ (a reflected record would pass)")
        self._seal = AESGCM(send_key)
        self._open = AESGCM(recv_key)
        self._send_count = 0
        self._recv_count = 0
        self._send_limit = max_records
        self._recv_limit = max_records
        self._send_bytes = 0
        self._send_byte_limit = MAX_KEY_BYTES  # lowered through `send_byte_limit`
        self._buf = bytearray()
        self._broken: str | None = None

    @property
    def sent(self) -> int:
        """Records sealed so far (the next send counter)."""
        return self._send_count

    @property
    def send_byte_limit(self) -> int:
        """Plaintext bytes this direction's key seals before it refuses (MAX_KEY_BYTES)."""
        return self._send_byte_limit

    @send_byte_limit.setter
    def send_byte_limit(self, n: int) -> None:
        if n <= 0:
            raise ValueError("the key's byte budget must be positive")
        self._send_byte_limit = n

    @property
    def received(self) -> int:
        """Records opened so far (the next receive counter)."""
        return self._recv_count

    def buffered(self) -> int:
        """Bytes of an incomplete record held until the rest arrives."""
        return len(self._buf)

    def seal(self, payload: bytes | bytearray | memoryview) -> bytes:
        """One record for `payload`, ready to write."""
        header, ciphertext = self.seal_parts(payload)
        return header + ciphertext

    def seal_parts(self, payload: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """The record as (header, ciphertext), for `writelines` without joining them."""
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise RecordError(f"record payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        count = self._send_count
        if count >= self._send_limit:
            raise CounterExhausted("send counter exhausted: this link must be replaced")
        sealed = self._send_bytes + n
        if sealed > self._send_byte_limit:
            raise CounterExhausted(
                f"the key sealed its {self._send_byte_limit}-byte budget: this link must be "
                "replaced (fresh keys)"
            )
        self._send_bytes = sealed
        self._send_count = count + 1
        header = (n + TAG_BYTES).to_bytes(HEADER_BYTES, "big")
        nonce = _NONCE_PREFIX + count.to_bytes(8, "big")
        return header, self._seal.encrypt(nonce, payload, header)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Payloads of every record completed by `data`, in order; RecordError if any fails."""
        if self._broken is not None:
            raise RecordError(f"record stream already failed: {self._broken}")
        buf = self._buf
        if buf:
            buf += data
            view = memoryview(buf)
        else:
            view = memoryview(data)
        out: list[bytes] = []
        pos = 0
        end = len(view)
        try:
            while end - pos >= HEADER_BYTES:
                header = bytes(view[pos : pos + HEADER_BYTES])
                size = int.from_bytes(header, "big")
                if size < TAG_BYTES or size > MAX_CIPHERTEXT:
                    self._fail(f"record length {size} outside {TAG_BYTES}..{MAX_CIPHERTEXT}")
                stop = pos + HEADER_BYTES + size
                if stop > end:
                    break
                count = self._recv_count
                if count >= self._recv_limit:
                    self._fail("receive counter exhausted")
                try:
                    out.append(
                        self._open.decrypt(
                            _NONCE_PREFIX + count.to_bytes(8, "big"),
                            view[pos + HEADER_BYTES : stop],
                            header,
                        )
                    )
                except InvalidTag:
                    self._fail(
                        f"record {count} failed authentication "
                        "(tampered, replayed, reordered or from another key)"
                    )
                self._recv_count = count + 1
                pos = stop
        finally:
            view.release()
        if buf:
            del buf[:pos]
        elif pos < end:
            self._buf = bytearray(data[pos:])
        return out

    def _fail(self, reason: str) -> None:
        self._broken = reason
        self._buf = bytearray()
        raise RecordError(reason)
