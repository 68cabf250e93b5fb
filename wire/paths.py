"""Datasite-relative path validation (reference §5 and §8 "Exposure").

Every path on the wire is `<owner email>/<rest>`. The owner is the first *segment*,
compared exactly — never a string prefix (`alice@x.org` must not own
`alice@x.org.evil/...`).
"""

from __future__ import annotations

import re

from .errors import ProtocolError

MAX_PATH = 4096
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*")


def validate_email(email: str) -> str:
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ProtocolError(f"invalid email {email!r}")
    return email


def validate_relpath(rel: str, *, allow_empty: bool = False) -> str:
    """A relative path inside a datasite or a session dir: no absolute, `..`, `.`, `//`,
    NUL, backslash or control characters."""
    if not isinstance(rel, str):
        raise ProtocolError("path must be a string")
    if not rel:
        if allow_empty:
            return rel
        raise ProtocolError("empty path")
    if len(rel) > MAX_PATH:
        raise ProtocolError(f"path longer than {MAX_PATH} characters")
    if rel.startswith("/"):
        raise ProtocolError(f"absolute path not allowed: {rel!r}")
    if "\\" in rel:
        raise ProtocolError(f"backslash in path: {rel!r}")
    if any(ord(c) < 0x20 or c == "\x7f" for c in rel):
        raise ProtocolError(f"NUL or control character in path: {rel!r}")
    for seg in rel.split("/"):
        if seg == "":
            raise ProtocolError(f"empty segment in path: {rel!r}")
        if seg in (".", ".."):
            raise ProtocolError(f"'{seg}' segment in path: {rel!r}")
    return rel


def validate_path(path: str) -> str:
    """A datasite-relative wire path: `<owner email>[/<rest>]`."""
    validate_relpath(path)
    validate_email(path.split("/", 1)[0])
    return path


def owner_of(path: str) -> str:
    return path.split("/", 1)[0]


def split_owner(path: str) -> tuple[str, str]:
    """`alice@x/_mpc/0_to_1` -> (`alice@x`, `_mpc/0_to_1`)."""
    owner, _, rest = path.partition("/")
    return owner, rest


def is_within(path: str, directory: str) -> bool:
    """Segment-wise containment: `a/b/c` is within `a/b`, `a/bc` is not."""
    return path == directory or path.startswith(directory + "/")


#: File names the reference sends on the hotlink (its sender's eligibility test).
SESSION_FILE_SUFFIXES = (".request", ".response")


def session_path(path: str) -> str:
    """The session folder a HotlinkOpen names.

    The reference's sender opens a session with the path of the first file it sends
    (`alice@x/_mpc/0_to_1/00000001.request`), and its reader takes the parent folder
    of such a path as the session; any other path is the folder itself. The relay and
    the agent read an Open the same way, so a reference sender's frames 2, 3, ...
    (`.../00000002.request`) fall inside the session."""
    if path.endswith(SESSION_FILE_SUFFIXES) and "/" in path:
        return path.rsplit("/", 1)[0]
    return path
