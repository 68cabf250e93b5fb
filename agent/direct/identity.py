"""The agent's long-term identity key, and what it signs for a direct leg.

Ephemeral X25519 halves travel through the relay (`keys.py`). On their own they are
only as trustworthy as the relay: a relay that swapped them could sit in the middle of
a direct link. So each agent also holds a long-term Ed25519 key
(`ROOT/.hotlink/identity.key`, created 0600 on first use) and signs, in every offer and
answer, the statement "this ephemeral key is mine for this leg of this session"
(`statement`). The peer checks the signature and the signing key against the
fingerprint it pinned for that user (`pins.py`): a relay can no longer substitute keys
for a peer seen before, only refuse to route.

Token v2, as it travels in the signal's `tok`:
`2.<leg>.<ephemeral public>.<identity public>.<signature>` (standard base64, padded).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from hotlink.common.atomic import write_atomic

from .keys import DirectBinding
from .negotiator import Claim

IDENTITY_FILE = "identity.key"
_PEM_HEADER = b"-----BEGIN PRIVATE KEY-----"
_STATEMENT_LABEL = b"hotlink direct identity v1\x00"
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str, size: int, what: str) -> bytes:
    """Decode `text` (standard base64) of exactly `size` bytes; ValueError says why not."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise ValueError(f"{what} is not valid base64: {exc}") from None
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def fingerprint(public: bytes) -> str:
    """`SHA256:<base64, unpadded>` of a raw identity public key (the form ssh uses)."""
    return "SHA256:" + b64(hashlib.sha256(public).digest()).rstrip("=")


def statement(c: Claim) -> bytes:
    """What an identity key signs for a claim: the signal kind (an offer cannot pass
    for an answer), the leg's binding and the ephemeral public key, canonically
    encoded (u16 length + bytes each, as `DirectBinding.encode`)."""
    k = c.kind.encode("utf-8")
    e = c.ephemeral.encode("ascii")
    binding = DirectBinding(c.sid, c.sender, c.reader, c.leg).encode()
    kind = len(k).to_bytes(2, "big") + k
    return _STATEMENT_LABEL + kind + binding + len(e).to_bytes(2, "big") + e


class Identity:
    """One agent's Ed25519 identity (the private half stays in this object)."""

    __slots__ = ("_private", "fingerprint", "public", "public_b64")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public: bytes = private.public_key().public_bytes_raw()
        self.public_b64 = b64(self.public)
        self.fingerprint = fingerprint(self.public)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """The key in `path` (PKCS#8 PEM), created 0600 when missing. A file that is
        not a usable key raises ValueError naming it: a silently new identity would
        look like an impostor to every peer that pinned the old one."""
        try:
            return cls.load(path)
        except FileNotFoundError:
            ident = cls.generate()
            pem = ident._private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            write_atomic(path, pem, mode=0o600, fsync=True)
            return ident

    @classmethod
    def load(cls, path: Path) -> Identity:
        """The key in `path`; FileNotFoundError when there is none, ValueError when the
        file is not an Ed25519 key."""
        data = path.read_bytes()
        try:
            if not data.startswith(_PEM_HEADER):
                raise ValueError("not a PEM private key")
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not an identity key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key")
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
        return cls(key)

    def sign(self, message: bytes) -> str:
        return b64(self._private.sign(message))

    def __repr__(self) -> str:
        return f"Identity({self.fingerprint})"


def verify(public_b64: str, signature_b64: str, message: bytes) -> bytes:
    """The raw identity public key that signed `message`; ValueError when the key or
    the signature is malformed or does not verify."""
    public = unb64(public_b64, PUBLIC_KEY_BYTES, "identity key")
    sig = unb64(signature_b64, SIGNATURE_BYTES, "identity signature")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
    except InvalidSignature:
        raise ValueError("identity signature does not verify") from None
    return public
