"""Rules for a frame's name (its `.request` file name inside the session directory)."""

from __future__ import annotations

from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import ENDPOINT_NAMES, reserved_segment, validate_relpath

#: names a fallback or mirror file may never take (they are the session's endpoint)
RESERVED_NAMES = ENDPOINT_NAMES


def validate_frame_name(name: str) -> str:
    """A frame's `path`: the `.request` file name relative to the session dir. It may
    become a file there, so endpoint names and hidden temp names are refused."""
    validate_relpath(name)
    last = name.rsplit("/", 1)[-1]
    if reserved_segment(name) or last.startswith(".hotlink"):
        raise ProtocolError(f"frame path {name!r} is reserved")
    return name
