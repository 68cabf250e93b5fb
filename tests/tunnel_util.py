"""Shared helpers of the tunnel e2e tests: a 3-peer devstack, servers, streams."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from hotlink.ctl.client import AgentClient
from hotlink.v1 import agent_pb2 as pb
from test_ctl_e2e import Stack, ctl

A, B, C = "alice@example.org", "bob@example.org", "carol@example.org"


@contextmanager
def three_peer_stack(prefix: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as d:
        r = ctl("devstack", "up", "--dir", d, "--peers", f"{A},{B},{C}", "--json")
        assert r.returncode == 0, r.stderr.decode()
        try:
            yield Stack(d, json.loads(r.stdout))
        finally:
            down = ctl("devstack", "down", "--dir", d, "--json")
            assert down.returncode == 0, down.stderr.decode()


async def expose(stack: Stack, owner: str, path: str, target: str, **kw: object) -> pb.Tunnel:
    async with AgentClient(stack.control(owner)) as c:
        r = await c.stub.OpenTunnel(pb.OpenTunnelRequest(path=path, target=target, **kw))
        return r.tunnel


async def forward(stack: Stack, peer: str, full: str, **kw: object) -> tuple[str, int]:
    async with AgentClient(stack.control(peer)) as c:
        r = await c.stub.OpenTunnel(pb.OpenTunnelRequest(path=full, **kw))
    host, _, port = r.tunnel.listen.rpartition(":")
    return host, int(port)


async def tunnel(stack: Stack, email: str, full: str) -> pb.Tunnel:
    async with AgentClient(stack.control(email)) as c:
        r = await c.stub.ListTunnels(pb.ListTunnelsRequest())
    return next(t for t in r.tunnels if t.path == full)


async def wait_tunnel(
    stack: Stack, email: str, full: str, cond: Callable[[pb.Tunnel], bool], timeout: float = 30
) -> pb.Tunnel:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        t = await tunnel(stack, email, full)
        if cond(t):
            return t
        assert loop.time() < end, f"tunnel {full} on {email} never got there: {t}"
        await asyncio.sleep(0.05)


async def wait_direct_up(stack: Stack, email: str, full: str, timeout: float = 30) -> None:
    """Until every session of the tunnel `full` on `email` has its direct link up (the
    default --direct auto on one host): the agent's set of sockets is settled then."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        async with AgentClient(stack.control(email)) as c:
            r = await c.stub.ListSessions(pb.ListSessionsRequest())
        mine = [s for s in r.sessions if s.path.startswith(full)]
        if mine and all(s.direct and all(d.status == "up" for d in s.direct) for s in mine):
            return
        assert loop.time() < end, f"direct links of {full} on {email} never all up: {mine}"
        await asyncio.sleep(0.05)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, asyncio.CancelledError):
        # a reset, or the test's loop ending: the echo just stops. A cancelled handler
        # must end normally: Python 3.11's start_server callback calls
        # `task.exception()` on it, which raises and logs an asyncio ERROR.
        pass
    finally:
        w.close()


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    return srv, int(srv.sockets[0].getsockname()[1])


async def stream_both_ways(
    host: str,
    port: int,
    nbytes: int,
    during: Callable[[], Awaitable[None]] | None = None,
    pace: float = 0.0,
    marks: dict[str, float] | None = None,
) -> tuple[str, str, str, str]:
    """Client and a `sink_and_source` server each send `nbytes` of random data at the
    same time (64 KB writes, `pace` seconds apart); returns (sent by client, got by
    server, sent by server, got by client) as sha256 hex. The server side is found
    through `SERVER`; `marks["client_sent"]` is when the client wrote its last byte."""
    r, w = await asyncio.open_connection(host, port)
    data = os.urandom(nbytes)
    got = hashlib.sha256()

    async def send() -> None:
        for i in range(0, nbytes, 65536):
            w.write(data[i : i + 65536])
            await w.drain()
            if pace:
                await asyncio.sleep(pace)
        w.write_eof()
        if marks is not None:
            marks["client_sent"] = time.monotonic()

    async def recv() -> None:
        while chunk := await r.read(1 << 20):
            got.update(chunk)

    tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(recv())]
    if during is not None:
        await during()
    await asyncio.wait_for(asyncio.gather(*tasks), 240)
    w.close()
    srv_got, srv_sent = await asyncio.wait_for(SERVER.done, 60)
    return hashlib.sha256(data).hexdigest(), srv_got, srv_sent, got.hexdigest()


class _Server:
    done: asyncio.Future[tuple[str, str]]


SERVER = _Server()


def sink_and_source(nbytes: int, pace: float = 0.0) -> Handler:
    """Server that reads everything (hashing it) while it sends `nbytes` random bytes."""
    SERVER.done = asyncio.get_running_loop().create_future()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = os.urandom(nbytes)
        got = hashlib.sha256()

        async def send() -> None:
            for i in range(0, nbytes, 65536):
                w.write(data[i : i + 65536])
                await w.drain()
                if pace:
                    await asyncio.sleep(pace)
            w.write_eof()

        async def recv() -> None:
            while chunk := await r.read(1 << 20):
                got.update(chunk)

        await asyncio.gather(send(), recv())
        w.close()
        if not SERVER.done.done():
            SERVER.done.set_result((got.hexdigest(), hashlib.sha256(data).hexdigest()))

    return handle
