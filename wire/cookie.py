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

`CookieCheck` is the Sans-I/O reader of the preamble: bytes in, a verdict out. The
agent writes the file (`agent/ipc.py`, atomic, 0600), the client library reads it
(`ctl/stream.py`); this module only defines its content.
"""

from __future__ import annotations

import enum
import hmac
import secrets

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


def cookie_text(cookie: bytes) -> str:
    """The cookie file's content: hex and a newline."""
    return cookie.hex() + "\n"


def parse_cookie_text(text: str) -> bytes | None:
    """The cookie in a cookie file's content, or None if it holds none."""
    try:
        raw = bytes.fromhex(text.strip())
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
