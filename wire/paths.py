"""Datasite-relative path validation (reference §5 and §8 "Exposure").

Every path on the wire is `<owner email>/<rest>`. The owner is the first *segment*,
compared exactly — never a string prefix (`alice@x.org` must not own
`alice@x.org.evil/...`). Emails are lower case: a mixed-case owner is refused.
"""

from __future__ import annotations

import re

from .cookie import COOKIE_NAME
from .errors import ProtocolError

#: a session folder's endpoint files: no stored file or folder may take these names in
#: any path segment, or a peer could squat the place of a session's endpoint
ENDPOINT_NAMES = frozenset({"stream.sock", "stream.tcp", "stream.pipe", COOKIE_NAME})

MAX_PATH = 4096
#: one file or folder name, in UTF-8 bytes (NAME_MAX of Linux, macOS and Windows'
#: 255 UTF-16 units): a longer one could never be stored or mirrored
MAX_SEGMENT = 255
#: NUL, the other C0 controls and DEL
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*")


def validate_email(email: str) -> str:
    """An email as it may appear on the wire and in paths: lower case only. Emails are
    case-normalised where users type them (`normalize_email`), so `Alice@Example.org`
    here would be a second spelling of a user, and on a case-insensitive filesystem
    the same directory as `alice@example.org`: refused, never mapped."""
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ProtocolError(f"invalid email {email!r}")
    if email != email.lower():
        raise ProtocolError(f"email {email!r} is not lower case (use {email.lower()!r})")
    return email


def normalize_email(email: str) -> str:
    """The canonical (lower-case) form of a user-typed email, validated."""
    if not isinstance(email, str):
        raise ProtocolError(f"invalid email {email!r}")
    return validate_email(email.strip().lower())


def validate_relpath(rel: str, *, allow_empty: bool = False) -> str:
    """A relative path inside a datasite or a session dir: no absolute, `..`, `.`, `//`,
    NUL, backslash or control characters, no name over `MAX_SEGMENT` bytes."""
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
    if _CONTROL.search(rel):
        raise ProtocolError(f"NUL or control character in path: {rel!r}")
    for seg in rel.split("/"):
        if seg == "":
            raise ProtocolError(f"empty segment in path: {rel!r}")
        if seg in (".", ".."):
            raise ProtocolError(f"'{seg}' segment in path: {rel!r}")
        if len(seg) > MAX_SEGMENT // 4 and len(seg.encode()) > MAX_SEGMENT:
            raise ProtocolError(f"a name in the path is over {MAX_SEGMENT} bytes: {seg[:40]!r}…")
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
#: the name of a frame an app sent without one (`AUTO_NAME % seq`): the reference's
#: `00000001.request`, `00000002.request`, ...
AUTO_NAME = "%08d.request"


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


def validate_session_path(path: str) -> str:
    """A session folder (after `session_path`): a folder inside the owner's datasite,
    never the datasite root (which holds the owner's ACL and every other folder)."""
    if "/" not in path:
        raise ProtocolError(f"a session path needs a folder inside the datasite: {path!r}")
    return path


def reserved_segment(path: str) -> str | None:
    """The first segment of `path` that is an endpoint name, or None."""
    for seg in path.split("/"):
        if seg in ENDPOINT_NAMES:
            return seg
    return None
