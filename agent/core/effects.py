"""What the stream cores ask their adapters to do (effects out).

The cores (`sender.SenderStream`, `reader.ReaderStream`) never touch a socket, a file
or the event loop: every event method returns a list of these, and the session
adapter (`agent/session.py`) carries them out in order. Dataclasses with slots: the
hot path creates at most one per batch of app frames (sender) or per delivered frame
(reader).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hotlink.wire import messages as m
from hotlink.wire.errors import ProtocolError

from .paths import PathId

#: kinds of a frame written as a file (values shared with `agent/filepath.py`)
FALLBACK = 1  # a frame on the file path (counts as the frame being sent)
TEE = 2  # an audit copy of a frame that also went by the hotlink
APP = 3  # a .request file an app wrote itself (seq assigned by the agent)


class EventType(enum.IntEnum):
    """Control-API events (values match `hotlink.v1.EventType`)."""

    OPENED = 1
    ACCEPTED = 2
    REJECTED = 3
    CLOSED = 4
    LINK_UP = 5
    LINK_DOWN = 6
    PATH_SWITCHED = 7


@dataclass(slots=True)
class Transmit:
    """Frames wait in the stream's queue for `path`: send them while the path is
    writable (`SenderStream.pending`, then `frame_sent()` per frame)."""

    path: PathId
    #: a send that fails leaves the path at once (True for frames fresh from an app)
    fail_over: bool = False
    #: send even though the session no longer takes new frames (closing: flush)
    force: bool = False


@dataclass(slots=True)
class WriteFile:
    """Write one frame as a fallback (or TEE) file and upload it."""

    seq: int
    name: str
    etag: str
    payload: bytes
    kind: int


@dataclass(slots=True)
class PauseApps:
    """Stop reading the sender apps' sockets (back-pressure)."""


@dataclass(slots=True)
class ResumeApps:
    """Read the sender apps' sockets again."""


@dataclass(slots=True)
class FailApps:
    """An app sent a frame the agent refuses: fail that app's connection with `error`
    (the frames before it were handled)."""

    error: ProtocolError


@dataclass(slots=True)
class Deliver:
    """Write one frame (HLNK header + payload) to every connected reader app."""

    header: bytes
    payload: bytes


@dataclass(slots=True)
class DeliverBacklog:
    """The first app connected: hand it the frames kept while none was."""

    frames: list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Send:
    """Send a control message to the relay; `track` = the session waits for its Ack."""

    msg: m.Message
    track: bool = False


@dataclass(slots=True)
class Emit:
    """A control-API event for WatchEvents."""

    type: EventType
    peer: str = ""
    reason: str = ""


@dataclass(slots=True)
class Settle:
    """The relay's verdict on the open: None = accepted, else the reject reason."""

    rejected: str | None


@dataclass(slots=True)
class NewVerdict:
    """A verdict is awaited again (an Open / Accept went out, or will)."""


@dataclass(slots=True)
class Shutdown:
    """The session ends: call the core's `shutdown()` (unsent frames become counted
    drops, timers stop), remove the endpoint and close the apps (gracefully: flush
    first)."""

    graceful: bool = True


@dataclass(slots=True)
class SidChanged:
    """The stream's sid changed from `old` ("" = none): re-index the session."""

    old: str
    new: str


Effect = (
    Transmit
    | WriteFile
    | PauseApps
    | ResumeApps
    | FailApps
    | Deliver
    | DeliverBacklog
    | Send
    | Emit
    | Settle
    | NewVerdict
    | Shutdown
    | SidChanged
)
PAUSE = PauseApps()
RESUME = ResumeApps()
