"""The frame names apps and the agent exchange on a session's endpoint.

Reader side: the agent writes every HLNK frame with the frame's full datasite path
(`alice@x/_mpc/0_to_1/00000001.request`), as the reference's reader does, so an app
written for the reference works unchanged (`Session._deliver`).

Sender side: an app may name a frame with its full datasite path (what a reference
app writes: the reference sender derives the session from it) or with a name
relative to the session folder (`00000001.request`, `x/y.request`), or leave it
empty (the agent names it `<seq:08d>.request`). `session_relative` turns the first
form into the second before the agent checks and uses the name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import Frame


def session_relative(prefix: str, frames: list[Frame]) -> Iterable[Frame]:
    """`frames` with names relative to the session folder (`prefix` = its datasite
    path + "/"). A datasite path (`<email>/...`) that is not inside this session is
    refused (`ProtocolError`, raised when iteration reaches that frame, so
    the frames before it are handled as usual): it names another session's file."""
    for f in frames:
        if "@" in f.path:
            return _convert(prefix, frames)
    return frames  # the common case: no full paths, nothing to copy


def _convert(prefix: str, frames: list[Frame]) -> Iterator[Frame]:
    n = len(prefix)
    for f in frames:
        p = f.path
        if p.startswith(prefix):
            yield Frame(f.payload, f.seq, p[n:], f.etag)
        elif "@" in p.partition("/")[0] and "/" in p:  # `a@b.request` is just a name
            raise ProtocolError(
                f"frame path {p!r} is outside this session ({prefix.rstrip('/')!r})"
            )
        else:
            yield f
