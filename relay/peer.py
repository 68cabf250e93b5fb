"""A relay client connection on the server side: the websockets connection that hands
each complete message to the router from the protocol callback, and `Peer`, its
adapter state and send path.

Sending: a frame goes to the transport at once while the client's transport buffer
is below its high-water mark; past it, the connection's messages wait in its own
bounded queue, drained from `resume_writing`, so one slow client never blocks the
event loop or other clients. A client whose queue overflows is closed (1008, "send
queue overflow") instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

from hotlink.common.fd_limit import FdBudget
from hotlink.common.websocket import DirectMessages, binary_header
from hotlink.wire.extensions import ALL
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from .auth import TokenClaims

log = logging.getLogger("hotlink.relay.server")

#: seconds the close handshake with an overflowed (not reading) client may take
OVERFLOW_CLOSE_TIMEOUT = 0.5
#: WS close code for a policy violation (queue overflow, expired or revoked token).
CLOSE_POLICY = 1008


class RelayConnection(DirectMessages, ServerConnection):
    """Each complete message goes to `handler` from the protocol callback (see
    `hotlink.common.websocket.DirectMessages`); data frames never reach websockets'
    receive queue. Its socket counts in the server's descriptor budget from accept to
    close, handshake included."""

    #: the server's descriptor budget (set by its connection factory; None: uncounted)
    fds: FdBudget | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.fds is not None:
            self.fds.opened()
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fds is not None:
            self.fds.closed()
        super().connection_lost(exc)


@dataclass(slots=True, eq=False)
class Peer:
    """Per-connection adapter state and its send path."""

    id: int
    ws: RelayConnection
    user: str
    encoding: str
    max_queue_bytes: int
    #: messages waiting for the transport to drain (only while it is paused)
    queue: deque[bytes | str] = field(default_factory=deque)
    queued_bytes: int = 0
    overflowed: bool = False
    bad_frames: int = 0
    #: frames received while the connection is paused (open-rate limit, or its turn
    #: of costly work is used up), handled in order when it resumes
    held: deque[bytes | str] | None = None
    timer: asyncio.Handle | None = None
    #: seconds of costly (non-data) handling in this event-loop iteration
    busy: float = 0.0
    #: the task closing this connection after a queue overflow (kept referenced)
    closer: asyncio.Task[None] | None = None
    #: protocol extensions the client announced (`hotlink.wire.extensions`)
    ext: frozenset[str] = ALL
    #: the token it authenticated with (expiry and revocation are re-checked)
    claims: TokenClaims | None = None

    def push(self, data: bytes | str) -> None:
        """Send now if the transport takes it, else queue (bounded)."""
        if self.overflowed:
            return
        ws = self.ws
        if not ws.paused and not self.queue:
            self._write(data)
            return
        self.queued_bytes += len(data)
        if self.queued_bytes > self.max_queue_bytes:
            self.overflowed = True
            self.queue.clear()
            self.queued_bytes = 0
            log.warning("conn %d (%s): send queue overflow, closing", self.id, self.user)
            # A client that stopped reading will not read the close frame either: give
            # the handshake a moment, then abort, so the connection's sessions (and the
            # senders waiting on them) hear of it now, not after the usual 10 s.
            self.closer = ws.loop.create_task(
                close_connection(ws, CLOSE_POLICY, "send queue overflow", OVERFLOW_CLOSE_TIMEOUT)
            )
        else:
            self.queue.append(data)

    def flush(self) -> None:
        """`resume_writing`: send what waited, until the transport pauses again."""
        ws = self.ws
        q = self.queue
        while q and not ws.paused and not self.overflowed:
            data = q.popleft()
            self.queued_bytes -= len(data)
            self._write(data)

    def _write(self, data: bytes | str) -> None:
        ws = self.ws
        proto = ws.protocol
        if proto.state is not State.OPEN:
            return  # closing: what is still queued for it is dropped, as before
        try:
            if type(data) is bytes and not proto.extensions:
                # A server frame is unmasked: its header and the message go to the
                # transport as they are, without `Frame.serialize` copying the message
                # into a new buffer. What websockets itself queued (a pong) goes first.
                if proto.writes:
                    ws.send_data()
                ws.transport.writelines((binary_header(len(data)), data))
                return
            if type(data) is str:
                proto.send_text(data.encode())
            else:
                proto.send_binary(data)
            ws.send_data()
        except Exception as exc:  # the transport is going away under us
            log.debug("conn %d: write failed: %s", self.id, exc)


async def close_connection(
    ws: ServerConnection, code: int, reason: str, timeout: float | None = None
) -> None:
    """Close with `code`; past `timeout` (a client that does not read cannot even take
    the close frame) the transport is aborted."""
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code, reason)
    except TimeoutError:
        with contextlib.suppress(Exception):
            ws.transport.abort()
    except Exception:
        pass
