"""The established direct link (`DirectLink`) and the per-connection handshake protocol.

A `_HandshakeProtocol` runs the sans-I/O handshake with a deadline; once established
the transport is handed to a `DirectLink` (`transport.set_protocol`), which from then
on only seals and opens records. Plain TCP with TCP_NODELAY and an asyncio Protocol
(no streams, no TLS layer) because latency is the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import cast

from hotlink.common.hostport import join_hostport

from .handshake import Established, Failed, InitiatorHandshake, ResponderHandshake
from .keys import DirectBinding
from .records import CounterExhausted, RecordCodec, RecordError

log = logging.getLogger("hotlink.agent.direct")

# How long close() lets queued records drain before the socket is aborted, so a
# peer that stopped reading cannot hold a closing link (and its socket) forever.
CLOSE_GRACE = 2.0
# A link's socket write buffer may hold this much before `writable()` turns False: the
# relay link's limit, so a 64 KiB frame does not stall the sender on every send.
WRITE_LIMIT = 1 << 20
# Records smaller than this are joined into one write (cheaper than a writev).
_JOIN_BELOW = 16 * 1024


class DirectLinkClosed(Exception):
    """The link is closed (or closing); the message carries the reason."""


def _peer_name(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return join_hostport(str(peer[0]), int(peer[1]))
    return str(peer)


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DirectLink(asyncio.Protocol):
    """One established, authenticated link. Owned by whoever got it from connect/expect.

    `on_message` is called once per record, in order; records that arrive before the
    owner sets it are held (reading paused) and delivered when it is set.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        codec: RecordCodec,
        binding: DirectBinding,
        role: str,
        *,
        write_paused: bool = False,
    ) -> None:
        self.binding = binding
        self.role = role
        self.peer = _peer_name(transport)
        self._transport = transport
        self._codec = codec
        self._on_message: Callable[[bytes], None] | None = None
        self._held: list[bytes] = []
        self._write_paused = write_paused
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._reason: str | None = None
        self._closed_locally = False
        self._abort_handle: asyncio.TimerHandle | None = None
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.records_in = 0
        self.records_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        #: closed because its key's budget was used: replace it at once (fresh keys)
        self.renew = False

    def __repr__(self) -> str:
        state = "open" if self._reason is None else f"closed ({self._reason})"
        return f"DirectLink({self.role} {self.peer} sid={self.binding.sid} {state})"

    @property
    def on_message(self) -> Callable[[bytes], None] | None:
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[[bytes], None] | None) -> None:
        self._on_message = callback
        if callback is not None and self._held:
            held, self._held = self._held, []
            self._deliver(held)
            if self._reason is None and not self._held:
                self._transport.resume_reading()

    @property
    def counters(self) -> dict[str, int]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }

    def set_key_budget(self, nbytes: int) -> None:
        """Lower the bytes this link seals before it closes to be replaced (fresh keys;
        `records.MAX_KEY_BYTES` by default)."""
        self._codec.send_byte_limit = nbytes

    # -- sending ---------------------------------------------------------------
    def send(self, payload: bytes) -> None:
        """Seal and write one record (never blocks; check `writable()` for back-pressure)."""
        if self._reason is not None:
            raise DirectLinkClosed(self._reason)
        try:
            header, ciphertext = self._codec.seal_parts(payload)
        except CounterExhausted as exc:
            self.renew = True
            self.close(str(exc))
            raise DirectLinkClosed(str(exc)) from None
        except RecordError as exc:  # an oversize payload: the link itself is fine
            raise DirectLinkClosed(str(exc)) from None
        if len(ciphertext) < _JOIN_BELOW:
            self._transport.write(header + ciphertext)
        else:  # uvloop writes the two buffers with one writev, no 100 KB copy
            self._transport.writelines((header, ciphertext))
        self.records_out += 1
        self.bytes_out += len(header) + len(ciphertext)

    def writable(self) -> bool:
        """False while closed or while the socket's write buffer is over its high mark."""
        return self._reason is None and not self._write_paused

    async def drain(self) -> None:
        """Wait until writable again; DirectLinkClosed if the link ends meanwhile."""
        if self._reason is None and self._write_paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._reason is not None:
            raise DirectLinkClosed(self._reason)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- receiving -------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._reason is not None:
            return
        self.bytes_in += len(data)
        try:
            messages = self._codec.feed(data)
        except RecordError as exc:
            log.warning("direct link %s from %s: %s; closing", self.binding.sid, self.peer, exc)
            self.close(f"bad record: {exc}", abort=True)
            return
        if not messages:
            return
        self.records_in += len(messages)
        if self._on_message is None or self._held:
            self._held.extend(messages)
            self._transport.pause_reading()
            return
        self._deliver(messages)

    def _deliver(self, messages: list[bytes]) -> None:
        for index, message in enumerate(messages):
            if self._closed_locally:
                return
            callback = self._on_message
            if callback is None:  # the owner cleared it mid-batch: hold the rest
                self._held.extend(messages[index:])
                self._transport.pause_reading()
                return
            try:
                callback(message)
            except Exception as exc:
                log.exception("direct link %s: on_message failed", self.binding.sid)
                self.close(f"on_message failed: {exc!r}", abort=True)
                return

    def eof_received(self) -> bool:
        return False  # close our side too: a half-open link carries nothing useful

    # -- closing ---------------------------------------------------------------
    def close(self, reason: str = "closed", *, abort: bool = False) -> None:
        """End the link: queued records are flushed (up to CLOSE_GRACE), then the socket."""
        if self._reason is not None:
            return
        self._reason = reason
        self._closed_locally = True
        self._held.clear()
        self._wake_drainers()
        if abort:
            self._transport.abort()
            return
        self._transport.close()
        self._abort_handle = asyncio.get_running_loop().call_later(
            CLOSE_GRACE, self._transport.abort
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reason is None:
            self._reason = f"connection lost: {exc}" if exc else "closed by peer"
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        # Records already opened but held (no on_message yet) stay deliverable: the
        # peer sent them before it went away.
        self._wake_drainers()
        if not self.closed.done():
            self.closed.set_result(self._reason)


class _HandshakeProtocol(asyncio.Protocol):
    """Runs one handshake on a fresh connection, then reports to `on_done` once."""

    def __init__(
        self,
        handshake: InitiatorHandshake | ResponderHandshake,
        on_done: Callable[[_HandshakeProtocol, Established | Failed], None],
    ) -> None:
        self.handshake = handshake
        self._on_done = on_done
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        self.reported = False
        self._timer: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.handed_over = False
        # Resolves when the handshake is over (either way), for whoever awaits it.
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _peer_name(transport)
        _set_nodelay(transport)
        self._flush()
        deadline = self.handshake.get_timer()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer, deadline)

    def _on_timer(self, deadline: float) -> None:
        # The handshake was created with loop.time(); a loop may fire a timer a rounding
        # error early, and the deadline has passed once it fires.
        self.handshake.handle_timer(max(asyncio.get_running_loop().time(), deadline))
        self._check()

    def data_received(self, data: bytes) -> None:
        self.handshake.receive_data(data)
        if isinstance(self.handshake, ResponderHandshake):
            self._flush()  # the Reply; an initiator's Confirm waits for `on_done`
        self._check()

    def _flush(self) -> None:
        out = self.handshake.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def _check(self) -> None:
        result = self.handshake.result
        if result is not None:
            self._report(result)

    def _report(self, result: Established | Failed) -> None:
        if self.reported:
            return
        self.reported = True
        if self._timer is not None:
            self._timer.cancel()
        if not self.finished.done():
            self.finished.set_result(None)
        self._on_done(self, result)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.reported:
            why = f"connection lost during handshake: {exc}" if exc else "closed during handshake"
            self._report(Failed(why, refused=False))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def to_link(self, result: Established, role: str) -> DirectLink:
        """Hand the transport to a DirectLink (and flush the initiator's Confirm first).

        Records that arrived with the last handshake message are fed to the link at
        once; it holds them until its owner sets `on_message`.
        """
        assert self.transport is not None
        self._flush()
        self.handed_over = True
        link = DirectLink(
            self.transport, result.codec, result.binding, role, write_paused=self.write_paused
        )
        self.transport.set_protocol(link)
        self.transport.set_write_buffer_limits(high=WRITE_LIMIT)
        if self.handshake.trailing_data:  # first records, held until on_message is set
            link.data_received(self.handshake.trailing_data)
        return link
