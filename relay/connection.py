"""One relay client connection as the router sees it, and what the router emits.

Kept apart from `router.py` so the router's mixins (`file_routes.py`) can use them
without importing the router.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from hotlink.wire.extensions import ALL
from hotlink.wire.messages import Message


class Outgoing(NamedTuple):
    conn: int
    msg: Message
    traceparent: str = ""


@dataclass(slots=True, eq=False)
class Conn:
    id: int
    user: str
    #: sessions this connection sends (it is their `sender_conn`)
    sending: set[str] = field(default_factory=set)
    #: sessions this connection accepted as a reader
    reading: set[str] = field(default_factory=set)
    #: sessions whose Open this connection was sent
    offered: set[str] = field(default_factory=set)
    #: open-rate token bucket: tokens left and when they were last refilled
    tokens: float = 0.0
    refilled: float = 0.0
    #: set when an open was rate limited: the adapter should not read this
    #: connection's next frame before this clock value (backpressure on the flooder)
    pause_until: float = 0.0
    #: protocol extensions it announced; the control Acks only go to `ACKS` peers
    ext: frozenset[str] = ALL
    #: IP address the relay saw this connection come from ("" when unknown, e.g. a
    #: connection of another cluster node); stamped on direct-path signals
    addr: str = ""
