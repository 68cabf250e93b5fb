"""Relay authentication: the relay's secret and its bearer tokens (design.md "Relay").

A token is `base64url(json claims) + "." + base64url(HMAC-SHA256)`, signed with a
per-relay secret kept in `DATA/relay.secret` (mode 0600). Claims: `sub` (the email,
lower case), `iat` and `exp` (unix seconds; a token is refused from `exp` on, and
one without `exp` is refused: tokens do not live forever), `jti` (a random token id,
what `hotlink-relay token revoke` names; see `revocation.py`). The user a connection
acts as is the token's `sub` and nothing a client sends later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import normalize_email

SECRET_FILE = "relay.secret"
_SECRET_BYTES = 32
#: Tokens longer than this are refused before any decoding work.
MAX_TOKEN_LEN = 2048
#: Lifetime of a token when `hotlink-relay token --ttl` is not given: 30 days.
DEFAULT_TTL = 30 * 86400


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    iat: int
    exp: int
    jti: str


class AuthError(Exception):
    """A token or secret that cannot be trusted; the message is safe to log (no token)."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AuthError("token is not base64url") from None


def load_or_create_secret(data_dir: str | os.PathLike[str]) -> bytes:
    """Read `DATA/relay.secret`, creating it (0600, O_EXCL against races) on first start.

    A secret readable by group or others is refused: anyone who can read it can mint
    tokens for every user.
    """
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(_SECRET_BYTES) + "\n")
    st = path.stat()
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        raise AuthError(f"{path} is accessible by group/others; chmod 600 it")
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise AuthError(f"{path} does not hold a hex secret") from None
    if len(secret) < 16:
        raise AuthError(f"{path} holds a secret shorter than 16 bytes")
    return secret


def _sign(secret: bytes, body: str) -> str:
    return _b64e(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


def mint_token(
    secret: bytes,
    email: str,
    iat: int | None = None,
    *,
    ttl: int = DEFAULT_TTL,
    jti: str | None = None,
) -> str:
    """A token naming `email` (case-normalised), valid from `iat` (default now) for
    `ttl` seconds, with a fresh random id unless `jti` is given."""
    try:
        email = normalize_email(email)
    except ProtocolError as exc:
        raise AuthError(str(exc)) from None
    if ttl <= 0:
        raise AuthError("token lifetime must be positive")
    now = int(time.time()) if iat is None else iat
    claims = {"sub": email, "iat": now, "exp": now + ttl, "jti": jti or secrets.token_hex(8)}
    body = _b64e(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_sign(secret, body)}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> str:
    """Return the email a valid, unexpired token names, or raise `AuthError`."""
    return verify_claims(secret, token, now).sub


def verify_claims(secret: bytes, token: str, now: float | None = None) -> TokenClaims:
    """The claims of a valid, unexpired token, or raise `AuthError`.

    The signature is checked (constant time) before the claims are parsed, so
    unauthenticated input never reaches the JSON decoder.
    """
    if not token or len(token) > MAX_TOKEN_LEN or not token.isascii():
        raise AuthError("malformed token")
    body, sep, sig = token.partition(".")
    if not sep or not body or not sig:
        raise AuthError("malformed token")
    if not hmac.compare_digest(_sign(secret, body), sig):
        raise AuthError("bad token signature")
    try:
        claims = json.loads(_b64d(body))
    except (ValueError, UnicodeDecodeError):
        raise AuthError("token claims are not JSON") from None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str):
        raise AuthError("token has no subject")
    try:
        sub = normalize_email(sub)
    except ProtocolError as exc:
        raise AuthError(str(exc)) from None
    exp, iat, jti = claims.get("exp"), claims.get("iat", 0), claims.get("jti", "")
    if type(exp) is not int:
        raise AuthError("token has no expiry (minted by an older relay); mint a new one")
    if type(iat) is not int or not isinstance(jti, str) or len(jti) > 64:
        raise AuthError("token claims are malformed")
    if exp <= (time.time() if now is None else now):
        raise AuthError(f"token expired at {_utc(exp)}; mint a new one")
    return TokenClaims(sub, iat, exp, jti)


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def bearer_token(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header value, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
