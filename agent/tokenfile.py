"""Checks on the agent's token file, done before the first connection.

A bearer token is a password: a file readable by other local users hands them this
peer's identity, so the agent says so loudly (with the fix) at every start. It warns
rather than refuses so that an agent set up before this check keeps running.

The token's subject (`sub`) is read here *without* verifying the signature (only the
relay has the secret) to catch the common mistake of a token minted for another user
before connecting; the relay's answer at connect time (`X-Hotlink-User`) is the
authoritative check (agent/link.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from pathlib import Path


def permission_problem(path: Path) -> str:
    """Why `path` is too open, or "" (always "" where POSIX modes do not apply)."""
    if os.name != "posix":
        return ""
    try:
        st = path.stat()
    except OSError:
        return ""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        who = (
            "group and others"
            if mode & 0o070 and mode & 0o007
            else ("group" if mode & 0o070 else "others")
        )
        return (
            f"token file {path} is accessible by {who} (mode {mode:04o}): anyone who can "
            f"read it can act as this peer; fix: chmod 600 {path}"
        )
    return ""


def unverified_subject(token: str) -> str:
    """The `sub` claim of a Hotlink token, or "" if it does not look like one."""
    body, sep, _ = token.partition(".")
    if not sep:
        return ""
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ""
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else ""


def foreign_subject(token: str, email: str) -> str:
    """The token's subject when it names another user than `email`, else "" (also for
    a token that does not say: the relay decides)."""
    sub = unverified_subject(token) if token else ""
    return sub if sub and sub != email else ""
