"""The benchmark's floor: the hotlink topology with plain forwarding and no protocol.

app → peer A (UNIX socket in, WebSocket out) → relay (forward each message to the other
client) → peer B (WebSocket in, UNIX socket out) → app. Three processes, the same
libraries as the real path (websockets, asyncio Protocols, uvloop when available) and
the cheapest I/O pattern they allow. On the sockets, messages are length-prefixed by the
HLNK header (only its length is used), so the app side is the same `client.Stream` as on
hotlink; over the WebSocket only the raw payload travels: no envelope, no msgpack, no
ACL, no sessions, no seq. A hotlink figure divided by the floor figure is therefore the
cost of the protocol and of the agent/relay implementation, nothing else.

Run as `python -m hotlink.ctl.floor relay|peer ...`; each process prints one readiness
line on stdout (`floor-relay listening on ws://HOST:PORT`, `floor-peer ready PATH`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence

from hotlink.common.loop import run_main
from hotlink.common.websocket import DirectMessages, binary_header
from hotlink.common.ws_masked import MaskKeys, send_binary
from hotlink.relay.tls import server_context
from hotlink.wire.frames import FrameDecoder, encode_header
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import State

MAX_MESSAGE = 64 * 1024 * 1024
#: First message the floor relay sends a client, once it forwards messages to it.
READY = b"floor-ready"


# --------------------------------------------------------------------------- processes


class _Direct(DirectMessages):
    """The product's own whole-message delivery (no receive queue, no task wake-up per
    message), so the floor uses the cheapest I/O pattern the library allows; writes are
    synchronous (`protocol.send_binary` + `send_data`) for the same reason."""

    def send_now(self, data: bytes) -> None:
        self.protocol.send_binary(data)  # type: ignore[attr-defined]
        self.send_data()  # type: ignore[attr-defined]


class _DirectServer(_Direct, ServerConnection):
    def send_now(self, data: bytes) -> None:
        """Server frames are unmasked: header and message go to the transport as they
        are, without `Frame.serialize` copying the message (the relay does the same)."""
        proto = self.protocol
        if proto.state is not State.OPEN:
            return
        if proto.writes:
            self.send_data()
        self.transport.writelines((binary_header(len(data)), data))


class _DirectClient(_Direct, ClientConnection):
    """Client side: masked frames written as the agent's relay link writes them
    (`common.ws_masked`: pooled masking keys, one transport write)."""

    keys = MaskKeys()

    def send_now(self, data: bytes) -> None:
        send_binary(self, data, self.keys)


async def run_relay(host: str, port: int, cert: str = "", key: str = "") -> None:
    """Forward every message from one client to every other client, in arrival order."""
    clients: set[_DirectServer] = set()

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, _DirectServer)

        def forward(msg: bytes) -> None:
            for other in tuple(clients):
                if other is not ws:
                    other.send_now(msg)

        clients.add(ws)
        ws.set_handler(forward)
        ws.send_now(READY)  # the peer reports ready only once we forward to it
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(
        handler,
        host,
        port,
        compression=None,
        max_size=MAX_MESSAGE,
        create_connection=_DirectServer,
        ssl=server_context(cert, key) if cert else None,
    ) as server:
        sock = next(iter(server.sockets))
        h, p = sock.getsockname()[:2]
        print(f"floor-relay listening on {'wss' if cert else 'ws'}://{h}:{p}", flush=True)
        await _until_signalled()


class _PeerIpc(asyncio.Protocol):
    """An app connection to a floor peer: each frame's payload goes straight to the
    WebSocket. The HLNK header is used only as the length prefix (path, etag and seq are
    ignored), so the app side runs the very same `Stream` code as on hotlink."""

    def __init__(self, peer: _Peer) -> None:
        self.peer = peer
        self.decoder = FrameDecoder(MAX_MESSAGE)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer.apps.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.apps.discard(self)

    def data_received(self, data: bytes) -> None:
        ws = self.peer.ws
        for frame in self.decoder.feed(data):
            if ws is not None:
                ws.send_now(frame.payload)


class _Peer:
    def __init__(self) -> None:
        self.apps: set[_PeerIpc] = set()
        self.ws: _DirectClient | None = None

    def from_ws(self, msg: bytes) -> None:
        header = encode_header(b"", b"", len(msg), 0)
        for app in tuple(self.apps):
            if app.transport is not None:
                app.transport.writelines((header, msg))


async def run_peer(server: str, sock_path: str, ca_file: str = "") -> None:
    """UNIX socket <-> WebSocket forwarder (one per side)."""
    loop = asyncio.get_running_loop()
    peer = _Peer()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    tls = {"ssl": ssl.create_default_context(cafile=ca_file)} if ca_file else {}
    async with connect(
        server, compression=None, max_size=MAX_MESSAGE, create_connection=_DirectClient, **tls
    ) as ws:
        assert isinstance(ws, _DirectClient)
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        registered: asyncio.Future[bytes] = loop.create_future()
        ws.set_handler(lambda m: registered.done() or registered.set_result(m))
        if await asyncio.wait_for(registered, 10.0) != READY:
            raise RuntimeError("unexpected first message from the floor relay")
        ws.set_handler(peer.from_ws)
        peer.ws = ws
        srv = await loop.create_unix_server(lambda: _PeerIpc(peer), sock_path)
        os.chmod(sock_path, 0o600)
        print(f"floor-peer ready {sock_path}", flush=True)
        stop = asyncio.create_task(_until_signalled())
        closed = asyncio.create_task(ws.wait_closed())
        try:
            await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            closed.cancel()
            srv.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock_path)


async def _until_signalled() -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hotlink.ctl.floor",
        description="Plain-forwarding floor processes for hotlinkctl bench.",
    )
    ap.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay", help="WebSocket server forwarding each message to the others")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=0)
    r.add_argument("--tls-cert", default="", help="serve wss:// with this certificate (PEM)")
    r.add_argument("--tls-key", default="", help="its private key (PEM)")
    p = sub.add_parser("peer", help="UNIX socket <-> WebSocket forwarder")
    p.add_argument("--server", required=True, help="ws://HOST:PORT of the floor relay")
    p.add_argument("--socket", required=True, help="UNIX socket path to listen on")
    p.add_argument("--ca-file", default="", help="CA to verify a wss:// floor relay with")
    args = ap.parse_args(argv)
    coro = (
        run_relay(args.host, args.port, args.tls_cert, args.tls_key)
        if args.cmd == "relay"
        else run_peer(args.server, args.socket, args.ca_file)
    )
    run_main(coro, use_uvloop=not args.no_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
