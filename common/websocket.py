"""Whole WebSocket messages straight from websockets' sans-I/O protocol callback.

The relay, the agent's link and the benchmark floor all skip websockets' receive queue
(one task wake-up and one await per message) by delivering each complete data message
to a handler from `process_event`, and write unmasked server frames as header + message
without `Frame.serialize` copying the message. One implementation serves all three so
the floor measures exactly the I/O pattern the product uses.

`process_event` is a private method of `websockets.asyncio.connection.Connection`
(it is called for every event the sans-I/O protocol yields), so this module relies on
websockets' internals: pyproject pins the major versions it was tested with
(`websockets>=15,<18`), the import below fails at once if the method is gone, and
`tests/test_common_websocket.py` checks over a real socket that data messages still
arrive through the override and never through websockets' receive queue. It lives
here, beside the other adapter helpers, not in `hotlink.wire`: the codec does no I/O
and imports no network library.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.frames import Frame, Opcode
from websockets.version import version as websockets_version

#: websockets major versions this override was tested with (pyproject pins the same)
TESTED_MAJORS = range(15, 18)

for _name in ("process_event", "resume_writing", "data_received"):
    if not callable(getattr(Connection, _name, None)):  # an upgrade removed the hook
        raise ImportError(
            f"websockets {websockets_version}: Connection.{_name} is gone; "
            "hotlink.common.websocket overrides it (tested with websockets>=15,<18)"
        )

Handler = Callable[[bytes | str], None]

_HEAD16 = struct.Struct("!BBH").pack
_HEAD64 = struct.Struct("!BBQ").pack


#: the MASK bit of a frame's second byte (RFC 6455 §5.2): set on every client frame
MASK_BIT = 0x80


def binary_header(n: int, mask: int = 0) -> bytes:
    """RFC 6455 header of an unfragmented binary frame of `n` bytes: unmasked (a
    server's), or with `mask=MASK_BIT` a client's, whose 4-byte key follows it."""
    if n < 126:
        return bytes((0x82, mask | n))
    if n < 0x10000:
        return _HEAD16(0x82, mask | 126, n)
    return _HEAD64(0x82, mask | 127, n)


class DirectMessages:
    """Mixin for `websockets.asyncio` connections (put it first in the bases).

    Data messages (text decoded to `str`, binary as `bytes`, fragments joined) go to
    `handler` from the protocol callback; control frames (ping, pong, close) keep going
    through websockets. Messages that arrive before the first `set_handler` are kept and
    delivered by it; after `set_handler(None)` they are dropped (the connection is being
    torn down). `on_resume` is called when the transport drains below its low-water mark.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handler: Handler | None = None
        self.on_resume: Callable[[], None] | None = None
        self._early: list[bytes | str] | None = []
        self._frag_op: Opcode | None = None
        self._frag: list[bytes] = []

    def set_handler(self, handler: Handler | None) -> None:
        self.handler = handler
        early, self._early = self._early, None
        if handler is not None and early:
            for m in early:
                handler(m)

    def process_event(self, event: Any) -> None:
        if type(event) is not Frame:  # the handshake request / response
            super().process_event(event)  # type: ignore[misc]
            return
        op = event.opcode
        if op is Opcode.BINARY or op is Opcode.TEXT:
            data = event.data
            if event.fin:
                self._deliver(op, data if type(data) is bytes else bytes(data))
            else:
                self._frag_op = op
                self._frag = [bytes(data)]
        elif op is Opcode.CONT:
            self._frag.append(bytes(event.data))
            if event.fin and self._frag_op is not None:
                data, op = b"".join(self._frag), self._frag_op
                self._frag, self._frag_op = [], None
                self._deliver(op, data)
        else:
            super().process_event(event)  # type: ignore[misc]

    def _deliver(self, op: Opcode, data: bytes) -> None:
        msg: bytes | str = data
        if op is Opcode.TEXT:
            try:
                msg = data.decode()
            except UnicodeDecodeError:
                return  # the protocol layer already fails invalid UTF-8 text frames
        h = self.handler
        if h is not None:
            h(msg)
        elif self._early is not None:
            self._early.append(msg)

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        cb = self.on_resume
        if cb is not None:
            cb()
