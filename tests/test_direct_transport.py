"""Direct link transport over real loopback sockets (no mocks, no timing asserts)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hotlink.agent.direct.addresses import (
    default_listen,
    has_ipv6_loopback,
    parse_address,
)
from hotlink.agent.direct.keys import DirectBinding, LocalKey
from hotlink.agent.direct.transport import (
    DirectConnectFailed,
    DirectLink,
    DirectLinkClosed,
    DirectListener,
    connect,
)
from hotlink.common.hostport import join_hostport

BINDING = DirectBinding(sid="sid-1", sender="a@x.org", reader="b@x.org", leg="leg-1")
HOSTS = ["127.0.0.1"] + (["::1"] if has_ipv6_loopback() else [])


def run(coro: Awaitable[Any], loop: str = "asyncio") -> Any:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(asyncio.wait_for(coro, 60))
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(pred: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Wait for a condition (generous timeout; never a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Pair:
    """A listener, an expectation and the initiator's keys for one link."""

    def __init__(self, listener: DirectListener, binding: DirectBinding = BINDING) -> None:
        self.listener = listener
        self.binding = binding
        self.ki, self.kr = LocalKey.generate(), LocalKey.generate()
        self.accepted: asyncio.Future[DirectLink] = asyncio.get_running_loop().create_future()
        listener.expect(self.kr, self.ki.public, binding, self.accepted.set_result)

    async def connect(self, candidates: list[str] | None = None) -> tuple[DirectLink, DirectLink]:
        link = await connect(
            candidates or self.listener.addresses, self.ki, self.kr.public, self.binding
        )
        return link, await asyncio.wait_for(self.accepted, 10)


class Collector:
    def __init__(self, expect: int) -> None:
        self.got: list[bytes] = []
        self.expect = expect
        self.done = asyncio.get_running_loop().create_future()

    def __call__(self, payload: bytes) -> None:
        self.got.append(payload)
        if len(self.got) == self.expect and not self.done.done():
            self.done.set_result(None)


async def _send_all(link: DirectLink, payloads: list[bytes]) -> None:
    for payload in payloads:
        if not link.writable():
            await link.drain()
        link.send(payload)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("host", HOSTS)
def test_ten_thousand_records_in_order_both_ways_and_a_mebibyte(host: str, loop: str) -> None:
    async def main() -> None:
        listener = await DirectListener.start([(host, 0)])
        try:
            pair = Pair(listener)
            client, server = await pair.connect()
            assert client.role == "initiator" and server.role == "responder"
            assert client.binding == server.binding == BINDING
            assert parse_address(client.peer)[0] == host
            for link in (client, server):
                sock = link._transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            n = 10_000
            up = [i.to_bytes(4, "big") * (1 + i % 50) for i in range(n)] + [b"\x07" * 2**20]
            down = [i.to_bytes(4, "big")[::-1] for i in range(n)] + [b"\x09" * 2**20]
            at_server, at_client = Collector(len(up)), Collector(len(down))
            server.on_message, client.on_message = at_server, at_client
            await asyncio.gather(_send_all(client, up), _send_all(server, down))
            await asyncio.wait_for(asyncio.gather(at_server.done, at_client.done), 30)
            assert at_server.got == up and at_client.got == down
            assert client.records_out == server.records_in == len(up)
            assert server.records_out == client.records_in == len(down)
            assert client.bytes_out == server.bytes_in
            assert listener.refused == 0
            client.close()
            assert await asyncio.wait_for(server.closed, 10) == "closed by peer"
            assert await asyncio.wait_for(client.closed, 10) == "closed"
        finally:
            await listener.close()

    run(main(), loop)


def test_records_before_on_message_are_held_not_lost() -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)])
        try:
            client, server = await Pair(listener).connect()
            for i in range(100):
                server.send(b"early-%d" % i)
            server.close("sent all")  # the peer goes away before the owner listens
            # reading pauses at the first batch held, so not all 100 are read yet
            await until(lambda: client.records_in >= 1, "records to arrive")
            got = Collector(100)
            client.on_message = got
            await asyncio.wait_for(got.done, 10)
            assert got.got == [b"early-%d" % i for i in range(100)]
            assert await asyncio.wait_for(client.closed, 10) == "closed by peer"
        finally:
            await listener.close()

    run(main())


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_close_from_either_side_resolves_closed_on_both(side: str) -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)])
        try:
            client, server = await Pair(listener).connect()
            closer, other = (client, server) if side == "initiator" else (server, client)
            closer.close("done here")
            assert await asyncio.wait_for(closer.closed, 10) == "done here"
            assert await asyncio.wait_for(other.closed, 10) == "closed by peer"
            for link in (closer, other):
                assert not link.writable()
                with pytest.raises(DirectLinkClosed):
                    link.send(b"x")
                with pytest.raises(DirectLinkClosed):
                    await link.drain()
        finally:
            await listener.close()

    run(main())


async def _stranger(address: str, data: bytes) -> bytes:
    """Connect, send `data`, return whatever comes back until the listener closes."""
    host, port = parse_address(address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


class RecordingProxy:
    """A TCP relay of our own that records what the initiator sends."""

    def __init__(self, target: str) -> None:
        self.target = parse_address(target)
        self.client_bytes = bytearray()
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return join_hostport(*self.server.sockets[0].getsockname()[:2])

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(*self.target)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, record: bool) -> None:
            while data := await r.read(65536):
                if record:
                    self.client_bytes += data
                w.write(data)
            w.close()

        await asyncio.gather(pump(cr, sw, True), pump(sr, cw, False), return_exceptions=True)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()


def test_strangers_are_refused_counted_and_the_real_peer_still_served() -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)])
        address = listener.addresses[0]
        try:
            # 1. a real link through a recording proxy, some records, closed
            pair = Pair(listener)
            proxy = RecordingProxy(address)
            via = await proxy.start()
            client, server = await pair.connect([via])
            got = Collector(3)
            server.on_message = got
            for i in range(3):
                client.send(b"secret-%d" % i)
            await asyncio.wait_for(got.done, 10)
            client.close()
            await asyncio.wait_for(server.closed, 10)
            await proxy.close()
            recorded = bytes(proxy.client_bytes)
            assert len(recorded) > 100

            # the same keys are expected again: only a replay could match the tag
            again = asyncio.get_running_loop().create_future()
            listener.expect(pair.kr, pair.ki.public, BINDING, again.set_result)

            # 2. garbage, 3. a valid-looking Hello for another session, 4. the replay
            other = Pair(listener, DirectBinding("sid-2", "c@x.org", "b@x.org", "leg-9"))
            wrong = LocalKey.generate()  # not the key the listener expects for sid-2
            with pytest.raises(DirectConnectFailed):
                await connect([address], wrong, other.kr.public, other.binding, timeout=5)
            assert await _stranger(address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
            reply = await _stranger(address, recorded)
            assert len(reply) <= 66  # at most a Reply with a fresh nonce, never a record
            await until(lambda: listener.refused == 3, "three refusals")
            assert not again.done() and not other.accepted.done()

            # the real peer (a fresh negotiation) is served as before
            fresh = Pair(listener)
            c2, s2 = await fresh.connect()
            got2 = Collector(1)
            s2.on_message = got2
            c2.send(b"still here")
            await asyncio.wait_for(got2.done, 10)
            assert got2.got == [b"still here"]
            c2.close()
            await asyncio.wait_for(s2.closed, 10)
        finally:
            await listener.close()

    run(main())


def test_silent_stranger_is_dropped_after_the_handshake_timeout() -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)], handshake_timeout=0.3)
        try:
            assert await _stranger(listener.addresses[0], b"") == b""
            await until(lambda: listener.refused == 1, "the silent peer refused")
        finally:
            await listener.close()

    run(main())


async def _silent_server() -> tuple[socket.socket, str]:
    """A port that accepts TCP (kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, join_hostport(*sock.getsockname())


@contextlib.contextmanager
def _refusing_port() -> Iterator[str]:
    """An address that refuses connections: bound (so no other process can take the
    port meanwhile) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield join_hostport(*sock.getsockname())


def test_silent_candidate_and_a_good_one_the_good_one_wins() -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)])
        silent, silent_addr = await _silent_server()
        try:
            pair = Pair(listener)
            with _refusing_port() as dead:
                client, server = await pair.connect([silent_addr, dead, *listener.addresses])
            assert client.peer == listener.addresses[0]
            client.close()
            await asyncio.wait_for(server.closed, 10)
        finally:
            silent.close()
            await listener.close()

    run(main())


def test_all_candidates_dead_fails_with_reasons() -> None:
    async def main() -> None:
        silent, silent_addr = await _silent_server()
        try:
            with _refusing_port() as dead:
                key, peer = LocalKey.generate(), LocalKey.generate()
                with pytest.raises(DirectConnectFailed) as info:
                    await connect([silent_addr, dead, "nonsense"], key, peer.public, BINDING, 0.5)
                reasons = info.value.reasons
                assert set(reasons) == {silent_addr, dead, "nonsense"}
                # no Reply: whichever deadline fires first, the outer one or the handshake's
                assert any(
                    text in reasons[silent_addr]
                    for text in ("no handshake within 0.5 s", "handshake not completed in time")
                ), reasons[silent_addr]
                assert "connect failed" in reasons[dead]
                assert "HOST:PORT" in reasons["nonsense"]
                # only dead candidates: fails as soon as each has failed
                with pytest.raises(DirectConnectFailed):
                    await connect([dead], key, peer.public, BINDING, timeout=30)
        finally:
            silent.close()

    run(main())


def test_a_tampered_record_closes_the_link_without_delivering_it() -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)])
        try:
            client, server = await Pair(listener).connect()
            got: list[bytes] = []
            server.on_message = got.append
            client.send(b"good")
            await until(lambda: got == [b"good"], "the first record")
            record = bytearray(client._codec.seal(b"evil"))
            record[-1] ^= 1
            client._transport.write(bytes(record))
            reason = await asyncio.wait_for(server.closed, 10)
            assert "bad record" in reason and got == [b"good"]
            await asyncio.wait_for(client.closed, 10)
        finally:
            await listener.close()

    run(main())


def test_listener_binds_one_shared_port_and_reports_addresses() -> None:
    async def main() -> None:
        listener = await DirectListener.start([(h, 0) for h in HOSTS])
        try:
            ports = {parse_address(a)[1] for a in listener.addresses}
            assert len(listener.addresses) == len(HOSTS) and len(ports) == 1
            with pytest.raises(OSError, match="cannot bind"):
                await DirectListener.start([("127.0.0.1", ports.pop()), ("192.0.2.250", 0)])
            loose = await DirectListener.start([("127.0.0.1", 0), ("192.0.2.250", 0)], strict=False)
            assert len(loose.addresses) == 1
            await loose.close()
        finally:
            await listener.close()
        assert default_listen()[0] == ("127.0.0.1", 0)

    run(main())


def test_handshake_flood_is_capped_and_the_real_peer_still_served() -> None:
    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)], max_pending=2)
        host, port = parse_address(listener.addresses[0])
        silent: list[asyncio.StreamWriter] = []
        try:
            for _ in range(2):
                _, writer = await asyncio.open_connection(host, port)
                silent.append(writer)
            await until(lambda: listener.handshaking() == 2, "two pending handshakes")
            assert await _stranger(listener.addresses[0], b"") == b""  # over the cap
            assert listener.refused == 1
            for writer in silent:
                writer.close()
            await until(lambda: listener.handshaking() == 0, "the silent ones to go")
            assert listener.refused == 1  # going away is not a refusal
            client, server = await Pair(listener).connect()
            client.close()
            await asyncio.wait_for(server.closed, 10)
        finally:
            await listener.close()

    run(main())


def test_oversize_payload_is_refused_and_the_link_stays_up() -> None:
    from hotlink.agent.direct.records import MAX_PAYLOAD, RecordCodec

    async def main() -> None:
        listener = await DirectListener.start([("127.0.0.1", 0)])
        try:
            client, server = await Pair(listener).connect()
            with pytest.raises(DirectLinkClosed, match="exceeds"):
                client.send(bytes(MAX_PAYLOAD + 1))
            got = Collector(1)
            server.on_message = got
            client.send(b"after")
            await asyncio.wait_for(got.done, 10)
            # a direction that used up its counter closes the link instead of wrapping
            client._codec = RecordCodec(b"a" * 32, b"b" * 32, max_records=0)
            with pytest.raises(DirectLinkClosed, match="exhausted"):
                client.send(b"x")
            assert "exhausted" in await asyncio.wait_for(client.closed, 10)
            await asyncio.wait_for(server.closed, 10)
        finally:
            await listener.close()

    run(main())


def test_an_impostor_listener_is_refused_by_the_initiator() -> None:
    """A server that answers the Hello without the expected private key."""
    from hotlink.agent.direct.handshake import ResponderHandshake

    async def main() -> None:
        ki, kr, mallory = LocalKey.generate(), LocalKey.generate(), LocalKey.generate()
        got_confirm = asyncio.get_running_loop().create_future()

        async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hs = ResponderHandshake(lambda tag: (mallory, ki.public, BINDING), now=0.0)
            hs.receive_data(await reader.readexactly(2 + 53))
            writer.write(hs.data_to_send())
            try:
                got_confirm.set_result(await reader.read(100))  # b"": closed, no Confirm
            except ConnectionResetError:
                got_confirm.set_result(b"")
            writer.close()

        server = await asyncio.start_server(impostor, "127.0.0.1", 0)
        address = join_hostport(*server.sockets[0].getsockname()[:2])
        try:
            with pytest.raises(DirectConnectFailed) as info:
                await connect([address], ki, kr.public, BINDING, timeout=10)
            assert "responder MAC" in info.value.reasons[address]
            assert await asyncio.wait_for(got_confirm, 10) == b""
        finally:
            server.close()
            await server.wait_closed()

    run(main())
