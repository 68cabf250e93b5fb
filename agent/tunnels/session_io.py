"""The tunnel's link to the agent's sessions: a client of their own endpoints.

A tunnel is an app of the agent it runs in: it writes mux frames to its sender
session's `stream.sock` and reads the peer's frames from its reader session's
`stream.sock`, exactly like any external app. So it gets everything a session gives
(ACL checks by the relay, seq/ack/re-send across relay restarts, file fallback,
ordering, tracing of frames, and any future path) without a second code path in the
session core. The cost is one in-process AF_UNIX hop each way (a few microseconds);
in exchange the tunnel code never reaches into session internals.

`SessionPipe` is a plain `asyncio.Protocol` (no per-frame task or queue): frames are
decoded in `data_received` and handed to a callback on the spot, and the transport's
pause/resume callbacks are passed on so the tunnel can stop reading its TCP ends while
the session pushes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import DEFAULT_MAX_PAYLOAD, FrameDecoder, encode_header


class SessionPipe(asyncio.Protocol):
    def __init__(
        self,
        on_payload: Callable[[bytes], None],
        on_lost: Callable[[str], None],
        on_pause: Callable[[], None] = lambda: None,
        on_resume: Callable[[], None] = lambda: None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.decoder = FrameDecoder(max_payload)
        self.on_payload = on_payload
        self.on_lost = on_lost
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closed = False

    @classmethod
    async def connect(cls, socket_path: str, **callbacks: Callable[..., None]) -> SessionPipe:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_unix_connection(lambda: cls(**callbacks), socket_path)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self._lose(f"bad frame from the session endpoint: {exc}")
            return
        for f in frames:
            if self.closed:
                return
            self.on_payload(f.payload)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(f"session endpoint closed{f': {exc}' if exc else ''}")

    def pause_writing(self) -> None:
        self.paused = True
        self.on_pause()

    def resume_writing(self) -> None:
        self.paused = False
        self.on_resume()

    def send(self, payload: bytes) -> None:
        """One frame; the agent assigns the seq. Dropped only if the pipe is closed,
        and then the caller has already been told by `on_lost`."""
        t = self.transport
        if t is None or self.closed:
            return
        t.write(encode_header(b"", b"", len(payload), 0) + payload)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _lose(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.on_lost(why)
