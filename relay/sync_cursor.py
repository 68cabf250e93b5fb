"""Sealed catch-up cursors: a position in the store a caller may hold but not read.

A `FileSync` page ends with a cursor, the `(mtime_ns, path)` of the last file the
relay looked at. When that file is one the caller may not read (it was skipped), a
plain cursor would hand over its name and mtime: how mallory learned of
`alice@example.org/private/medical/...pdf` by syncing a datasite she cannot read.
Such a cursor is sealed instead: AES-GCM under a key derived from the relay secret,
bound to the caller and the folder (a cursor of another user or folder does not
open), sent as `aft = "~" + base64url`. A path never starts with `~` (its first
segment is an email), so both kinds share the wire field and reference peers, which
only echo the cursor back, keep working. The `snc` beside a sealed cursor is the
mtime of the last file the caller could read (never the hidden one).

A cursor that does not open (relay secret rotated, tampered) falls back to
`(snc, "")`: the catch-up repeats from the last readable mtime, and the reader drops
what it already has by seq.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .sync_index import Key

SEALED_PREFIX = "~"
_NONCE = 12


class CursorSeal:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_secret(cls, secret: bytes) -> CursorSeal:
        """The relay's key (stable across restarts, shared by cluster nodes)."""
        return cls(hmac.new(secret, b"hotlink sync cursor v1", hashlib.sha256).digest()[:16])

    @classmethod
    def ephemeral(cls) -> CursorSeal:
        return cls(os.urandom(16))

    @staticmethod
    def _aad(user: str, folder: str) -> bytes:
        return f"{user}\0{folder}".encode()

    def seal(self, key: Key, user: str, folder: str) -> str:
        nonce = os.urandom(_NONCE)
        plain = struct.pack(">q", key[0]) + key[1].encode()
        blob = nonce + self._aead.encrypt(nonce, plain, self._aad(user, folder))
        return SEALED_PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode()

    def open(self, since: int, after: str, user: str, folder: str) -> Key:
        """The position a request's `(snc, aft)` stands for."""
        if not after.startswith(SEALED_PREFIX):
            return since, after
        try:
            raw = after[1:].encode()
            blob = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
            plain = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(user, folder))
            return struct.unpack(">q", plain[:8])[0], plain[8:].decode()
        except (ValueError, InvalidTag, struct.error, UnicodeDecodeError):
            return since, ""
