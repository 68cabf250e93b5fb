"""Ephemeral X25519 keys and the binding that ties a direct link to one session leg.

A direct link has no certificates: the two agents exchange fresh X25519 public halves
through the relay's authenticated session (the relay has proved both identities and only
routes these signals between a session's sender and its accepted reader). Whoever later
proves, over TCP, that they hold the private half for *this* binding is the peer.
Keys live for one negotiation ("leg") only, so every link has its own secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

PUBLIC_KEY_BYTES = 32
TAG_BYTES = 16
_TAG_LABEL = b"hotlink-direct-tag"


@dataclass(frozen=True, slots=True)
class DirectBinding:
    """What a direct link is for: the relay session id, its two parties and the leg.

    `leg` is a random id the session's sender agent picks per negotiation, so two
    negotiations of the same session (after a drop) never share keys or transcripts.
    """

    sid: str
    sender: str
    reader: str
    leg: str

    def encode(self) -> bytes:
        """Canonical bytes (u16 length + UTF-8 per field) mixed into the key derivation."""
        out = bytearray()
        for value in (self.sid, self.sender, self.reader, self.leg):
            raw = value.encode("utf-8")
            if len(raw) > 0xFFFF:
                raise ValueError("direct binding field longer than 65535 bytes")
            out += len(raw).to_bytes(2, "big") + raw
        return bytes(out)


class LocalKey:
    """One ephemeral X25519 key pair (private half never leaves this object)."""

    __slots__ = ("_private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> LocalKey:
        return cls(X25519PrivateKey.generate())

    def public_b64(self) -> str:
        """The public half as it travels in a signal (standard base64, padded)."""
        return base64.b64encode(self.public).decode("ascii")

    @staticmethod
    def parse_public(text: str) -> bytes:
        """Decode a peer's base64 public key; ValueError says what is wrong with it."""
        if not isinstance(text, str):
            kind = type(text).__name__
            raise ValueError(f"direct public key must be a base64 string, got {kind}")
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"direct public key is not valid base64: {exc}") from None
        if len(raw) != PUBLIC_KEY_BYTES:
            raise ValueError(f"direct public key must be {PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
        return raw

    def exchange(self, peer_public: bytes) -> bytes:
        """X25519 shared secret; ValueError for a low-order (all-zero result) peer key."""
        if len(peer_public) != PUBLIC_KEY_BYTES:
            raise ValueError(f"peer public key must be {PUBLIC_KEY_BYTES} bytes")
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as exc:
            raise ValueError(f"unusable peer public key: {exc}") from None

    def __repr__(self) -> str:
        return f"LocalKey(public={self.public_b64()})"


def link_tag(responder_public: bytes, initiator_public: bytes) -> bytes:
    """What a Hello names: lets the listener find the expected link without the sid.

    Both halves went through the relay only, so a stranger cannot compute the tag of a
    live negotiation, and a tag reveals nothing about which session it belongs to.
    """
    digest = hashlib.sha256(_TAG_LABEL + responder_public + initiator_public).digest()
    return digest[:TAG_BYTES]
