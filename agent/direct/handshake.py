"""The direct link's 3-message handshake (sans-I/O, h11 / aioquic style).

    1. initiator -> responder  Hello:   b"HLDL" | version 1 | tag (16) | nonce_i (32)
    2. responder -> initiator  Reply:   nonce_r (32) | MAC_r (32)
    3. initiator -> responder  Confirm: MAC_i (32)

Each message is a u16 big-endian length followed by its body; every body has one fixed
size, so a handshake never buffers more than one small message and any other length
fails at once. Keys: shared = X25519(own private, peer public);
HKDF-SHA256(ikm=shared, salt=nonce_i | nonce_r, info=b"hotlink direct v1" | binding |
pub_i | pub_r) -> k_confirm, k_i2r, k_r2i. MAC_r = HMAC(k_confirm, b"responder" | Hello
body | nonce_r), MAC_i = HMAC(k_confirm, b"initiator" | Hello body | Reply body). Each
side's MAC proves it holds the private half of the key exchanged for *this* binding
through the relay; the fresh nonces make a recorded handshake useless later.

Feed bytes with `receive_data`, write what `data_to_send` returns, arm `get_timer()` and
call `handle_timer(now)`; `result` becomes `Established` or `Failed`. Bytes that arrived
after the last handshake message (the first records) are in `trailing_data`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .keys import PUBLIC_KEY_BYTES, TAG_BYTES, DirectBinding, LocalKey, link_tag
from .records import RecordCodec

MAGIC = b"HLDL"
VERSION = 1
NONCE_BYTES = 32
MAC_BYTES = 32
LENGTH_BYTES = 2
HELLO_BYTES = len(MAGIC) + 1 + TAG_BYTES + NONCE_BYTES
REPLY_BYTES = NONCE_BYTES + MAC_BYTES
CONFIRM_BYTES = MAC_BYTES
# Most a handshake ever holds unparsed: the largest message with its length prefix.
MAX_HANDSHAKE_BUFFER = LENGTH_BYTES + max(HELLO_BYTES, REPLY_BYTES, CONFIRM_BYTES)
DEFAULT_TIMEOUT = 5.0
_INFO_LABEL = b"hotlink direct v1"

Expected = tuple[LocalKey, bytes, DirectBinding]
"""What a listener expects for one tag: own key, the peer's public key, the binding."""


@dataclass(frozen=True, slots=True)
class Established:
    """Handshake done: `codec` seals this side's records and opens the peer's."""

    codec: RecordCodec
    binding: DirectBinding
    key: LocalKey
    peer_public: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """Handshake refused or broken; `reason` is for the log, never sent to the peer.

    `refused` is False when the peer merely went away (e.g. the losing candidate of a
    parallel connect), which a listener does not count as a refusal.
    """

    reason: str
    refused: bool = True


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def derive_keys(
    key: LocalKey,
    peer_public: bytes,
    binding: DirectBinding,
    nonce_i: bytes,
    nonce_r: bytes,
    *,
    initiator: bool,
) -> tuple[bytes, bytes, bytes]:
    """(k_confirm, k_i2r, k_r2i) for one handshake; ValueError for an unusable peer key."""
    shared = key.exchange(peer_public)
    pub_i, pub_r = (key.public, peer_public) if initiator else (peer_public, key.public)
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=96,
        salt=nonce_i + nonce_r,
        info=_INFO_LABEL + binding.encode() + pub_i + pub_r,
    ).derive(shared)
    return okm[:32], okm[32:64], okm[64:]


def _mac(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, label + transcript, hashlib.sha256).digest()


class _Handshake:
    """Shared plumbing: buffering, fixed-size message parsing, timer, result."""

    def __init__(self, now: float, timeout: float) -> None:
        self._in = bytearray()
        self._out = bytearray()
        self._deadline: float | None = now + timeout
        self.result: Established | Failed | None = None
        self.trailing_data = b""

    @property
    def done(self) -> bool:
        return self.result is not None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        """When `handle_timer` must be called (None once the handshake is over)."""
        return self._deadline if self.result is None else None

    def handle_timer(self, now: float) -> None:
        if self.result is None and self._deadline is not None and now >= self._deadline:
            self._fail("handshake not completed in time")

    def receive_data(self, data: bytes) -> None:
        if self.result is not None:
            if isinstance(self.result, Established):
                self.trailing_data += data
            return
        self._in += data
        while self.result is None:
            expected = self._expected_size()
            if len(self._in) < LENGTH_BYTES:
                return
            size = int.from_bytes(self._in[:LENGTH_BYTES], "big")
            if size != expected:
                self._fail(f"handshake message of {size} bytes where {expected} were expected")
                return
            if len(self._in) < LENGTH_BYTES + size:
                return
            body = bytes(self._in[LENGTH_BYTES : LENGTH_BYTES + size])
            del self._in[: LENGTH_BYTES + size]
            self._handle(body)
        if isinstance(self.result, Established):
            self.trailing_data = bytes(self._in)
            self._in.clear()

    def _fail(self, reason: str) -> None:
        self.result = Failed(reason)
        self._out.clear()
        self._in.clear()

    def _expected_size(self) -> int:
        raise NotImplementedError

    def _handle(self, body: bytes) -> None:
        raise NotImplementedError


class InitiatorHandshake(_Handshake):
    """The connecting side: sends Hello at once, verifies the Reply, sends Confirm.

    The Confirm is only queued in `data_to_send`; a caller racing several candidates
    writes it on the one it keeps and simply closes the others, so the responder never
    completes a link the initiator is about to drop.
    """

    def __init__(
        self,
        key: LocalKey,
        peer_public: bytes,
        binding: DirectBinding,
        *,
        now: float,
        timeout: float = DEFAULT_TIMEOUT,
        nonce: bytes | None = None,
    ) -> None:
        super().__init__(now, timeout)
        if len(peer_public) != PUBLIC_KEY_BYTES:
            raise ValueError(f"peer public key must be {PUBLIC_KEY_BYTES} bytes")
        self._key = key
        self._peer = peer_public
        self._binding = binding
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        if len(self._nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
        tag = link_tag(peer_public, key.public)
        self._hello = MAGIC + bytes([VERSION]) + tag + self._nonce
        self._out += _frame(self._hello)

    def _expected_size(self) -> int:
        return REPLY_BYTES

    def _handle(self, body: bytes) -> None:
        nonce_r, mac_r = body[:NONCE_BYTES], body[NONCE_BYTES:]
        try:
            k_confirm, k_i2r, k_r2i = derive_keys(
                self._key, self._peer, self._binding, self._nonce, nonce_r, initiator=True
            )
        except ValueError as exc:
            self._fail(str(exc))
            return
        transcript = self._hello + nonce_r
        if not hmac.compare_digest(mac_r, _mac(k_confirm, b"responder", transcript)):
            self._fail("responder MAC does not verify (wrong key or another session's)")
            return
        self._out += _frame(_mac(k_confirm, b"initiator", self._hello + body))
        self.result = Established(RecordCodec(k_i2r, k_r2i), self._binding, self._key, self._peer)


class ResponderHandshake(_Handshake):
    """The listening side: finds the expected link by the Hello's tag, then proves itself.

    `expected(tag)` returns what the owner registered for that tag, or None: a stranger
    learns nothing but a closed connection.
    """

    def __init__(
        self,
        expected: Callable[[bytes], Expected | None],
        *,
        now: float,
        timeout: float = DEFAULT_TIMEOUT,
        nonce: bytes | None = None,
    ) -> None:
        super().__init__(now, timeout)
        self._expected = expected
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        self._hello: bytes | None = None
        self._reply = b""
        self._match: Expected | None = None
        self._keys: tuple[bytes, bytes, bytes] | None = None
        self.tag: bytes | None = None

    @property
    def binding(self) -> DirectBinding | None:
        """The binding the Hello's tag matched (None before a matching Hello)."""
        return self._match[2] if self._match else None

    def _expected_size(self) -> int:
        return HELLO_BYTES if self._hello is None else CONFIRM_BYTES

    def _handle(self, body: bytes) -> None:
        if self._hello is None:
            self._on_hello(body)
        else:
            self._on_confirm(body)

    def _on_hello(self, body: bytes) -> None:
        if body[: len(MAGIC)] != MAGIC:
            self._fail("not a direct-link Hello (bad magic)")
            return
        version = body[len(MAGIC)]
        if version != VERSION:
            self._fail(f"unsupported direct-link version {version}")
            return
        tag = body[len(MAGIC) + 1 : len(MAGIC) + 1 + TAG_BYTES]
        nonce_i = body[len(MAGIC) + 1 + TAG_BYTES :]
        match = self._expected(tag)
        if match is None:
            self._fail(f"no link expected for tag {tag.hex()}")
            return
        key, peer_public, binding = match
        try:
            self._keys = derive_keys(
                key, peer_public, binding, nonce_i, self._nonce, initiator=False
            )
        except ValueError as exc:
            self._fail(str(exc))
            return
        self.tag = tag
        self._match = match
        self._hello = body
        self._reply = self._nonce + _mac(self._keys[0], b"responder", body + self._nonce)
        self._out += _frame(self._reply)

    def _on_confirm(self, body: bytes) -> None:
        assert self._keys is not None and self._match is not None and self._hello is not None
        k_confirm, k_i2r, k_r2i = self._keys
        if not hmac.compare_digest(body, _mac(k_confirm, b"initiator", self._hello + self._reply)):
            self._fail("initiator MAC does not verify (wrong key or another session's)")
            return
        key, peer_public, binding = self._match
        self.result = Established(RecordCodec(k_r2i, k_i2r), binding, key, peer_public)
