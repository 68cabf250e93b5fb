"""Session cookie for TCP app endpoints (`stream.tcp`): a secret an app proves it read.

A loopback TCP port is reachable by every local user, and an app in a container has
a uid the host cannot map, so the agent cannot always tell who connected. Next to the
`stream.tcp` marker the agent writes `stream.tcp.cookie` (mode 0600, hex of 32 random
bytes, new for every endpoint). An app that can read it proves it acts for the
agent's user by sending, before any HLNK frame, a preamble:

    offset size field
    0      4    magic "HLCK"
    4      1    version = 1
    5      32   the cookie's raw bytes

A connection whose owner the agent can see to be its own user may skip the preamble
(apps written for the reference protocol do); any other must send it first.

`CookieCheck` is the Sans-I/O reader of the preamble: bytes in, a verdict out.
"""

from __future__ import annotations

import enum
import hmac
import os
import secrets
from pathlib import Path

COOKIE_NAME = "stream.tcp.cookie"
MAGIC = b"HLCK"
VERSION = 1
COOKIE_BYTES = 32
PREAMBLE_LEN = len(MAGIC) + 1 + COOKIE_BYTES


def new_cookie() -> bytes:
    return secrets.token_bytes(COOKIE_BYTES)


def preamble(cookie: bytes) -> bytes:
    """What an app sends first on a TCP endpoint."""
    if len(cookie) != COOKIE_BYTES:
        raise ValueError(f"a session cookie has {COOKIE_BYTES} bytes, not {len(cookie)}")
    return MAGIC + bytes((VERSION,)) + cookie


def write_cookie_file(path: Path, cookie: bytes) -> None:
    """Create `path` 0600 holding the cookie in hex (temp file + rename: a reader never
    sees half a cookie, and the mode is set at creation, never widened)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, cookie.hex().encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_cookie_file(path: Path) -> bytes | None:
    """The cookie in `path`, or None when there is none (an agent without cookies) or
    we may not read it (another user's endpoint: then the agent decides by uid)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == COOKIE_BYTES else None


class Verdict(enum.Enum):
    NEED_MORE = 0
    #: the connection did not start with a preamble (its bytes are HLNK frames)
    ABSENT = 1
    VALID = 2
    INVALID = 3


class CookieCheck:
    """Reads an optional preamble off the start of a connection's byte stream."""

    __slots__ = ("buf", "cookie")

    def __init__(self, cookie: bytes) -> None:
        self.cookie = cookie
        self.buf = b""

    def feed(self, data: bytes) -> tuple[Verdict, bytes]:
        """`(verdict, bytes after the preamble)`; for ABSENT the bytes are everything
        received so far (none of it was a preamble)."""
        buf = self.buf + data
        n = min(len(buf), len(MAGIC))
        if buf[:n] != MAGIC[:n]:
            self.buf = b""
            return Verdict.ABSENT, buf
        if len(buf) < PREAMBLE_LEN:
            self.buf = buf
            return Verdict.NEED_MORE, b""
        self.buf = b""
        head, rest = buf[:PREAMBLE_LEN], buf[PREAMBLE_LEN:]
        ok = head[4] == VERSION and hmac.compare_digest(head[5:], self.cookie)
        return (Verdict.VALID if ok else Verdict.INVALID), rest
