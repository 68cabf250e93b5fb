"""The send side of a node onto NATS: `Publisher` (a synchronous PUB from the relay's
protocol callbacks) and `RemotePeer` (what the local Router sends to an agent on
another node, published to that node)."""

from __future__ import annotations

import logging
from typing import Any

from hotlink.wire.extensions import ALL

from . import codec

log = logging.getLogger(__name__)

#: bytes that may wait in the NATS socket's write buffer before frames are dropped
#: (the agents' ack/resend recovers them; an unbounded buffer would not)
MAX_NATS_BUFFER = 64 << 20


class Publisher:
    """Synchronous publish onto nats-py's connection, from the relay's protocol
    callbacks: one `writelines` of a PUB command, no task or await per message.
    nats-py's own `publish` is a coroutine with a queue and a flusher task (tens of
    microseconds more per message); this relies on its transport attribute, hence the
    upper bound on nats-py in pyproject.toml."""

    def __init__(self) -> None:
        self.nc: Any = None
        self.dropped = 0

    def send(self, subject: bytes, head: bytes, body: bytes) -> bool:
        nc = self.nc
        if nc is None or not nc.is_connected:
            self.dropped += 1
            return False
        t = nc._transport
        w = getattr(t, "_io_writer", None)
        if w is not None and w.transport.get_write_buffer_size() > MAX_NATS_BUFFER:
            self.dropped += 1
            return False
        try:
            t.writelines((b"PUB %s %d\r\n" % (subject, len(head) + len(body)), head, body, b"\r\n"))
        except Exception as exc:  # the connection is going away under us
            log.debug("publish failed: %s", exc)
            self.dropped += 1
            return False
        return True


class RemotePeer:
    """The send side of a virtual connection: what the Router sends to an agent on
    another node is published to that node, prefixed with the agent's connection id.
    Duck-types `peer.Peer` where the server uses it (`push`, `id`, `user`,
    `encoding`)."""

    __slots__ = ("_head", "_pub", "_subject", "bad_frames", "encoding", "ext", "id", "user")

    def __init__(
        self,
        vid: int,
        user: str,
        node: str,
        epoch: str,
        cid: int,
        me: str,
        pub: Publisher,
        ext: frozenset[str] = ALL,
    ) -> None:
        self.id = vid
        self.user = user
        #: what the agent announced to its node: the home encodes for it accordingly
        self.ext = ext
        self.encoding = "msgpack"  # between nodes: the compact encoding, never re-encoded
        self.bad_frames = 0
        self._pub = pub
        self._subject = codec.to_subject(node).encode()
        self._head = codec.routed_head(me.encode(), epoch.encode(), cid, False)

    def push(self, data: bytes | str) -> None:
        if type(data) is str:  # not produced for msgpack peers; kept total
            data = data.encode()
        self._pub.send(self._subject, self._head, data)  # type: ignore[arg-type]
