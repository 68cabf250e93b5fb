"""Masked (client) WebSocket binary frames written straight to the transport.

A client must mask every frame it sends (RFC 6455 §5.3) with a fresh key "derived
from a strong source of entropy". websockets does that in `Frame.serialize`: one
`secrets.token_bytes(4)` (a `getrandom` syscall) per frame, a `BytesIO` holding header,
key and masked payload (a second copy of the payload), then `Protocol.writes` and
`data_to_send` before `transport.write`. On the agent's send path that is about a
third of the per-frame cost of the write. Here the same bytes are produced with one
copy (the masking itself) and one transport write, and the keys are cut from a buffer
of `os.urandom` output refilled every `KEYS_PER_REFILL` frames: the same kernel CSPRNG,
so each key is as unpredictable as websockets' own, at one syscall per 1024 frames.

Only the common case takes this path: an OPEN connection, no extension negotiated
(compression is off on every hotlink link), no fragmented message in progress and no
control frame (ping/pong/close) waiting in websockets' own queue. Anything else goes
through websockets (`protocol.send_binary`), so ordering with websockets' frames and
its state checks are kept. The frames on the wire are byte-for-byte what
`Frame.serialize(mask=True)` writes for the same key.
"""

from __future__ import annotations

import os
from typing import Any

from websockets.protocol import State

from .websocket import MASK_BIT, binary_header

try:  # websockets' C masking (a pure-Python fallback otherwise, as websockets does)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

KEYS_PER_REFILL = 1024
#: frames smaller than this are written as one joined buffer (a copy of a few KB is
#: cheaper than a writev); larger ones as two buffers, no copy of the masked payload
JOIN_BELOW = 16 * 1024

_OPEN = State.OPEN


class MaskKeys:
    """Fresh 4-byte masking keys from a refilled `os.urandom` buffer."""

    __slots__ = ("_at", "_buf")

    def __init__(self) -> None:
        self._buf = b""
        self._at = 0

    def next(self) -> bytes:
        at = self._at
        if at >= len(self._buf):
            self._buf = os.urandom(4 * KEYS_PER_REFILL)
            at = 0
        self._at = at + 4
        return self._buf[at : at + 4]


def send_binary(conn: Any, data: bytes, keys: MaskKeys) -> None:
    """Send `data` as one binary message on the client connection `conn` (a
    `websockets.asyncio.client.ClientConnection`). Raises what websockets raises
    when the connection cannot send (not open)."""
    proto = conn.protocol
    if (
        proto._state is not _OPEN  # `state` is a property reading `_state`
        or proto.writes
        or proto.extensions
        or proto.expect_continuation_frame
    ):
        proto.send_binary(data)  # websockets' checks, errors and queue order
        conn.send_data()
        return
    key = keys.next()
    n = len(data)
    if n < JOIN_BELOW:
        conn.transport.write(binary_header(n, MASK_BIT) + key + apply_mask(data, key))
    else:
        conn.transport.writelines((binary_header(n, MASK_BIT) + key, apply_mask(data, key)))
