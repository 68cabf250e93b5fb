"""asyncio adapter for the TCP ends of a tunnel: one protocol per connection.

It only moves bytes between a socket and the owning `PeerLink` (which feeds the sans-I/O
`Mux`): reads go up as they arrive, writes come down, and the write-buffer callbacks
tell the mux when peer bytes have left user space (that is what returns credit to
the peer, so a slow TCP reader slows the remote writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Protocol

#: Linux only; 0 elsewhere (no quick-ACK there)
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)


class ConnOwner(Protocol):
    def on_tcp_data(self, cid: int, data: bytes) -> None: ...
    def on_tcp_eof(self, cid: int) -> None: ...
    def on_tcp_lost(self, cid: int, reason: str) -> None: ...
    def on_tcp_written(self, cid: int, n: int) -> None: ...


class TcpConn(asyncio.Protocol):
    def __init__(self, owner: ConnOwner, cid: int = 0) -> None:
        self.owner = owner
        self.cid = cid
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        #: bytes written while the transport buffer was over its high-water mark
        self.unreported = 0
        self.gone = False
        self.on_made: object = None
        #: reading paused by us; bytes (and EOF) that still arrive are held back.
        #: uvloop starts reading after `connection_made` even when it paused there, so
        #: the pause is enforced here rather than trusted to the transport.
        self.read_paused = False
        self.held = bytearray()
        self.held_eof = False
        self._release_scheduled = False
        self.quickack: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _TCP_QUICKACK:
                self.quickack = sock
        if callable(self.on_made):
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.quickack is not None:
            # Apps that do not set TCP_NODELAY (many blocking-socket programs; asyncio
            # ones, MPyC among them, do set it) hold their second small write until
            # the first is ACKed (Nagle); a delayed ACK (40 ms on Linux) would then
            # stall every round trip. ACK at once instead.
            with contextlib.suppress(OSError):
                self.quickack.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        if self.read_paused or self.held:
            self.held += data
            return
        self.owner.on_tcp_data(self.cid, data)

    def eof_received(self) -> bool:
        if self.read_paused or self.held:
            self.held_eof = True
        else:
            self.owner.on_tcp_eof(self.cid)
        return True  # keep our write side open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gone:
            return
        self.gone = True
        self.owner.on_tcp_lost(self.cid, f"tcp: {exc}" if exc else "tcp connection closed")

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        n, self.unreported = self.unreported, 0
        if n and not self.gone:
            self.owner.on_tcp_written(self.cid, n)

    # --- effects --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is None or self.gone or t.is_closing():
            return
        t.write(data)
        if self.write_paused:
            self.unreported += len(data)
        else:
            self.owner.on_tcp_written(self.cid, len(data))

    def shutdown_write(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing() and t.can_write_eof():
            t.write_eof()

    def close(self) -> None:
        self.gone = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Reset: SO_LINGER 0 makes the kernel send RST instead of FIN."""
        self.gone = True
        t = self.transport
        if t is None:
            return
        sock = t.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.abort()

    def pause_reading(self) -> None:
        self.read_paused = True
        t = self.transport
        if t is not None and not t.is_closing():
            with contextlib.suppress(RuntimeError):
                t.pause_reading()

    def resume_reading(self) -> None:
        self.read_paused = False
        if (self.held or self.held_eof) and not self._release_scheduled:
            # not from inside the caller's effect loop: on the next loop turn
            self._release_scheduled = True
            asyncio.get_running_loop().call_soon(self._release)
        t = self.transport
        if t is not None and not t.is_closing():
            with contextlib.suppress(RuntimeError):
                t.resume_reading()

    def _release(self) -> None:
        self._release_scheduled = False
        if self.read_paused or self.gone:
            return
        if self.held:
            data = bytes(self.held)
            self.held.clear()
            self.owner.on_tcp_data(self.cid, data)
        if self.held_eof and not self.read_paused and not self.held and not self.gone:
            self.held_eof = False
            self.owner.on_tcp_eof(self.cid)
