"""TCP tunnels end to end: real relay and three agents (devstack), real TCP apps."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hotlink.agent.tunnels.naming import down_path
from hotlink.common.ports import free_port
from hotlink.ctl import mpyc_demo
from hotlink.ctl.client import AgentClient
from hotlink.ctl.errors import ExitCode
from hotlink.v1 import agent_pb2 as pb
from test_ctl_e2e import Stack, ctl
from tunnel_util import (
    A,
    B,
    C,
    echo,
    expose,
    forward,
    serve,
    three_peer_stack,
    tunnel,
    wait_tunnel,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with three_peer_stack("hltun-") as s:
        yield s


async def _closed_without_data(host: str, port: int, send: bytes = b"hello") -> bytes:
    """What the tunnel gives a client before it closes or resets it.

    The forwarder accepts the TCP connection, then resets it once the owner says no.
    That can take only a few ms, and under load this process may not have looked at
    its connect yet. The kernel has already stored the RST as the socket's error, and
    asyncio reads that error as the connect's result. So the connect itself fails with
    ECONNRESET, though the connection was made and then reset."""
    try:
        r, w = await asyncio.open_connection(host, port)
    except ConnectionResetError:
        return b""
    w.write(send)
    try:
        data = await asyncio.wait_for(r.read(), 60)
    except ConnectionResetError:
        data = b""
    w.close()
    return data


def test_mpyc_three_parties_over_tunnels(stack: Stack) -> None:
    """Every cross-party connection of an unmodified MPyC program goes through tunnels."""

    async def main() -> None:
        emails = [A, B, C]
        controls = [stack.control(e) for e in emails]
        ports = [free_port() for _ in emails]
        addrs = await mpyc_demo.open_tunnels(controls, emails, ports, "t")
        # party i reaches every higher party j only through its own agent's tunnel port
        for i in range(3):
            for j in range(i + 1, 3):
                assert addrs[i][j] != f"127.0.0.1:{ports[j]}"
        inputs = [13, 29, 7]
        run = await mpyc_demo.run_parties(addrs, inputs, 3, 120, "tunnels")
        for res in run.results:
            assert res["sum"] == 49
            assert res["less"] is True
            assert len(res["round_ms"]) == 3
        t = await tunnel(stack, C, f"{C}/_mpc/mpyc/t/p2")
        assert sorted(p.email for p in t.peers) == [A, B]
        assert t.counters.connections == 2 and t.counters.bytes_in > 0
        await mpyc_demo.close_tunnels(controls, emails, "t")

    asyncio.run(main())


def test_refused_acl_never_reaches_the_target(stack: Stack) -> None:
    """`private/` has no ACL granting bob: the relay never admits him, so alice never
    connects anything; bob's client is reset after the connect timeout."""

    async def main() -> None:
        seen: list[int] = []

        async def spy(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            seen.append(1)
            w.close()

        srv, port = await serve(spy)
        await expose(stack, A, "private/tun", f"127.0.0.1:{port}")
        host, lport = await forward(stack, B, f"{A}/private/tun", connect_timeout_seconds=2)
        assert await _closed_without_data(host, lport) == b""
        t = await tunnel(stack, B, f"{A}/private/tun")
        assert t.counters.refused >= 1 and t.counters.connections == 0
        assert not seen
        owner = await tunnel(stack, A, f"{A}/private/tun")
        assert list(owner.peers) == []
        srv.close()
        for who, p in ((B, f"{A}/private/tun"), (A, "private/tun")):
            async with AgentClient(stack.control(who)) as c:
                await c.stub.CloseTunnel(pb.CloseTunnelRequest(path=p))

    asyncio.run(main())


def test_target_down_resets_the_client(stack: Stack) -> None:
    async def main() -> None:
        dead = free_port()
        await expose(stack, A, "_mpc/tun/down", f"127.0.0.1:{dead}")
        host, port = await forward(stack, B, f"{A}/_mpc/tun/down")
        assert await _closed_without_data(host, port) == b""
        t = await wait_tunnel(stack, A, f"{A}/_mpc/tun/down", lambda t: t.counters.refused == 1)
        assert t.counters.active == 0
        assert t.counters.last_refusal == (
            f"target: cannot connect to 127.0.0.1:{dead}: Connection refused"
        ), str(t)
        # the forwarding side says why too: the reason travels back with the reset
        t = await wait_tunnel(stack, B, f"{A}/_mpc/tun/down", lambda t: t.counters.active == 0)
        assert t.counters.refused == 1 and "target:" in t.counters.last_refusal

    asyncio.run(main())


def test_listen_address_rules(stack: Stack) -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await forward(stack, B, f"{A}/_mpc/tun/taken", listen=f"127.0.0.1:{port}")
            assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "in use" in (ei.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await forward(stack, B, f"{A}/_mpc/tun/taken", listen="0.0.0.0:0")
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await expose(stack, A, f"{B}/_mpc/x", "127.0.0.1:1")
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # a connect timeout of nan/inf would leave a connection waiting for the
        # owner forever (until the peer timeout), not reset after the timeout
        for bad in (float("nan"), float("inf"), -1.0):
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await forward(stack, B, f"{A}/_mpc/tun/ct", connect_timeout_seconds=bad)
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        async with AgentClient(stack.control(B)) as c:
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await c.stub.CloseTunnel(pb.CloseTunnelRequest(path=f"{A}/_mpc/nope"))
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(main())
    # the CLI: non-loopback only with --allow-remote, and then a loud warning
    root = stack.root(B)
    r = ctl("--root", root, "tunnel", "forward", f"{A}/_mpc/tun/taken", "--listen", "0.0.0.0:0")
    assert r.returncode != 0 and b"not loopback" in r.stderr
    r = ctl("--root", root, "tunnel", "forward", f"{A}/_mpc/tun/remote",
            "--listen", "0.0.0.0:0", "--allow-remote")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert b"WARNING" in r.stderr and b"NOT a loopback" in r.stderr
    assert r.stdout.decode().startswith("0.0.0.0:")
    r = ctl("--root", root, "tunnel", "close", f"{A}/_mpc/tun/remote")
    assert r.returncode == 0, r.stderr.decode()


def test_hundred_concurrent_connections(stack: Stack) -> None:
    async def main() -> None:
        srv, port = await serve(echo)
        await expose(stack, C, "_mpc/tun/many", f"127.0.0.1:{port}")
        host, lport = await forward(stack, A, f"{C}/_mpc/tun/many")
        # all 100 are open at once, on both ends, before any byte is sent
        barrier = asyncio.Barrier(101)

        async def one(i: int) -> bool:
            data = os.urandom(20_000 + i)
            r, w = await asyncio.open_connection(host, lport)
            await barrier.wait()
            await barrier.wait()
            w.write(data)
            await w.drain()
            got = await asyncio.wait_for(r.readexactly(len(data)), 120)
            w.write_eof()
            rest = await asyncio.wait_for(r.read(), 60)
            w.close()
            return got == data and rest == b""

        conns = asyncio.gather(*(one(i) for i in range(100)))
        await asyncio.wait_for(barrier.wait(), 120)
        for who in (A, C):
            await wait_tunnel(stack, who, f"{C}/_mpc/tun/many", lambda t: t.counters.active == 100)
        await barrier.wait()
        ok = await conns
        assert all(ok)
        t = await wait_tunnel(stack, A, f"{C}/_mpc/tun/many", lambda t: t.counters.active == 0)
        assert t.counters.connections == 100 and t.counters.resets == 0
        total = sum(20_000 + i for i in range(100))
        assert t.counters.bytes_out == total and t.counters.bytes_in == total
        srv.close()

    asyncio.run(main())


def test_new_tunnels_take_a_burst_while_their_links_come_up(stack: Stack) -> None:
    """Each new tunnel gets 100 connections at once, while its sessions are new and
    their direct links still coming up: no OPEN may be lost. (A direct frame that
    overtook the frames the relay was still carrying to a new reader made it drop
    them as old; this lost an OPEN within a few tunnels.)"""

    async def main() -> None:
        srv, port = await serve(echo)

        async def one(host: str, lport: int, i: int, opened: asyncio.Barrier) -> bytes:
            r, w = await asyncio.open_connection(host, lport)
            await opened.wait()  # all 100 OPENs at once, before any byte
            data = b"%03d" % i * 20
            w.write(data)
            try:
                return await asyncio.wait_for(r.readexactly(len(data)), 60)
            except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
                return repr(exc).encode()
            finally:
                w.close()

        paths = [f"_mpc/tun/burst{k}" for k in range(20)]
        for k, p in enumerate(paths):
            await expose(stack, C, p, f"127.0.0.1:{port}")
            host, lport = await forward(stack, A, f"{C}/{p}")
            opened = asyncio.Barrier(100)
            got = await asyncio.gather(*(one(host, lport, i, opened) for i in range(100)))
            bad = [i for i, g in enumerate(got) if g != b"%03d" % i * 20]
            assert not bad, (k, bad[:5], got[bad[0]])
        for p in paths:
            for who, path in ((A, f"{C}/{p}"), (C, p)):
                async with AgentClient(stack.control(who)) as c:
                    await c.stub.CloseTunnel(pb.CloseTunnelRequest(path=path))
        srv.close()

    asyncio.run(main())


def test_half_close_and_cli_listing(stack: Stack) -> None:
    """The client shuts down its sending side; the server reads to EOF, then answers
    on the still-open direction and closes."""

    async def digest(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        h = hashlib.sha256()
        while chunk := await r.read(65536):
            h.update(chunk)
        w.write(h.hexdigest().encode())
        await w.drain()
        w.close()

    async def main() -> None:
        srv, port = await serve(digest)
        r = await asyncio.to_thread(
            ctl, "--root", stack.root(B), "tunnel", "expose", "_mpc/tun/half",
            "--target", f"127.0.0.1:{port}", "--to", C, "--window", "256KiB",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout.decode().startswith(f"exposing {B}/_mpc/tun/half -> 127.0.0.1:{port}")
        host, lport = await forward(stack, C, f"{B}/_mpc/tun/half")
        data = os.urandom(300_000)
        r, w = await asyncio.open_connection(host, lport)
        w.write(data)
        w.write_eof()
        answer = await asyncio.wait_for(r.read(), 60)
        assert answer == hashlib.sha256(data).hexdigest().encode()
        w.close()
        await wait_tunnel(stack, B, f"{B}/_mpc/tun/half", lambda t: t.counters.active == 0)
        srv.close()

    asyncio.run(main())
    r = ctl("--root", stack.root(C), "tunnel", "ls", "--json")
    assert r.returncode == 0, r.stderr.decode()
    rows = {t["path"]: t for t in json.loads(r.stdout)["tunnels"]}
    half = rows[f"{B}/_mpc/tun/half"]
    assert half["listen"].startswith("127.0.0.1:") and int(half["counters"]["connections"]) == 1
    r = ctl("--root", stack.root(C), "tunnel", "ls")
    assert f"{B}/_mpc/tun/half" in r.stdout.decode()
    r = ctl("--root", stack.root(B), "status", "--json")
    assert f"{B}/_mpc/tun/half" in r.stdout.decode()


def test_tunnel_survives_agent_restart_and_close_cleans_up(stack: Stack) -> None:
    async def main() -> None:
        srv, port = await serve(echo)
        await expose(stack, C, "_mpc/tun/restart", f"127.0.0.1:{port}")
        host, lport = await forward(stack, B, f"{C}/_mpc/tun/restart")

        async def roundtrip() -> bytes:
            r, w = await asyncio.open_connection(host, lport)
            w.write(b"ping")
            got = await asyncio.wait_for(r.readexactly(4), 60)
            w.close()
            return got

        assert await roundtrip() == b"ping"
        for who in (B, C):  # the forwarder, then the owner
            assert ctl("devstack", "stop", who, "--dir", stack.dir).returncode == 0
            out = ctl("devstack", "start", who, "--dir", stack.dir)
            assert out.returncode == 0, out.stderr.decode()
            t = await wait_tunnel(stack, B, f"{C}/_mpc/tun/restart", lambda t: t.state == "ready")
            assert t.listen == f"{host}:{lport}"  # same port after the restart
            assert await roundtrip() == b"ping"
        async with AgentClient(stack.control(B)) as c:
            await c.stub.CloseTunnel(pb.CloseTunnelRequest(path=f"{C}/_mpc/tun/restart"))
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, lport)
        saved = json.loads((Path(stack.root(B)) / ".hotlink" / "tunnels.json").read_text())
        assert f"{C}/_mpc/tun/restart" not in [t["path"] for t in saved["tunnels"]]
        srv.close()

    asyncio.run(main())


def test_restored_tunnel_whose_port_is_taken_waits_for_it(stack: Stack) -> None:
    """After a restart the saved port belongs to someone else: the tunnel is listed as
    waiting with the reason, stays saved, and listens on that same port once it is
    free."""
    full = f"{C}/_mpc/tun/taken"

    async def main() -> None:
        srv, port = await serve(echo)
        await expose(stack, C, "_mpc/tun/taken", f"127.0.0.1:{port}")
        host, lport = await forward(stack, B, full)
        assert ctl("devstack", "stop", B, "--dir", stack.dir).returncode == 0
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((host, lport))
        blocker.listen()
        try:
            out = ctl("devstack", "start", B, "--dir", stack.dir)
            assert out.returncode == 0, out.stderr.decode()
            t = await tunnel(stack, B, full)
            assert t.state == "waiting", t
            assert f"cannot listen on {host}:{lport}" in t.reason, t.reason
            r = await asyncio.to_thread(ctl, "--root", stack.root(B), "tunnel", "ls")
            assert f"{full}: waiting: cannot listen on {host}:{lport}" in r.stdout.decode()
            saved = json.loads((Path(stack.root(B)) / ".hotlink" / "tunnels.json").read_text())
            assert full in [s["path"] for s in saved["tunnels"]]
        finally:
            blocker.close()
        t = await wait_tunnel(stack, B, full, lambda t: t.state == "ready")
        assert t.listen == f"{host}:{lport}" and t.reason == ""
        r, w = await asyncio.open_connection(host, lport)
        w.write(b"ping")
        assert await asyncio.wait_for(r.readexactly(4), 60) == b"ping"
        w.close()
        async with AgentClient(stack.control(B)) as c:
            await c.stub.CloseTunnel(pb.CloseTunnelRequest(path=full))
        srv.close()

    asyncio.run(main())


def test_owner_close_resets_and_reexpose_recovers(stack: Stack) -> None:
    async def main() -> None:
        srv, port = await serve(echo)
        await expose(stack, A, "_mpc/tun/again", f"127.0.0.1:{port}")
        host, lport = await forward(stack, C, f"{A}/_mpc/tun/again")
        r, w = await asyncio.open_connection(host, lport)
        w.write(b"one")
        assert await asyncio.wait_for(r.readexactly(3), 60) == b"one"
        async with AgentClient(stack.control(A)) as c:
            await c.stub.CloseTunnel(pb.CloseTunnelRequest(path="_mpc/tun/again"))
        # the open connection is reset (or closed), never left hanging
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(r.read(), 60) == b""
        w.close()
        await expose(stack, A, "_mpc/tun/again", f"127.0.0.1:{port}")
        for _ in range(600):  # until the forwarder is admitted again
            r, w = await asyncio.open_connection(host, lport)
            w.write(b"two")
            try:
                if await asyncio.wait_for(r.readexactly(3), 60) == b"two":
                    break
            except (ConnectionResetError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.1)
            finally:
                w.close()
        else:
            raise AssertionError("forward never worked again after the re-expose")
        srv.close()

    asyncio.run(main())


def test_back_pressure_bounds_what_a_slow_reader_costs(stack: Stack) -> None:
    """The server does not read: the client's writes must stall with bounded bytes in
    between (tunnel window + socket buffers), then everything arrives once it reads."""

    async def main() -> None:
        release = asyncio.Event()
        got = hashlib.sha256()
        done = asyncio.get_running_loop().create_future()

        async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await release.wait()
            while chunk := await r.read(1 << 20):
                got.update(chunk)
            done.set_result(got.hexdigest())
            w.close()

        srv, port = await serve(slow)
        await expose(stack, A, "_mpc/tun/slow", f"127.0.0.1:{port}")
        host, lport = await forward(stack, B, f"{A}/_mpc/tun/slow")
        total = 64 << 20
        data = os.urandom(1 << 20) * 64
        _, w = await asyncio.open_connection(host, lport)

        async def send() -> None:
            for i in range(0, total, 65536):
                w.write(data[i : i + 65536])
                await w.drain()
            w.write_eof()

        task = asyncio.ensure_future(send())
        full = f"{A}/_mpc/tun/slow"
        await wait_tunnel(stack, B, full, lambda t: t.counters.bytes_out > 1 << 20, 60)
        await asyncio.sleep(2)  # let it run into the stall (bound checked below)
        t = await tunnel(stack, B, full)
        assert not task.done(), "64 MiB went into a tunnel whose reader reads nothing"
        # window (1 MiB) + one read + kernel socket buffers on the way, far below 64 MiB
        assert t.counters.bytes_out < 32 << 20, t.counters
        release.set()
        await asyncio.wait_for(task, 120)
        assert await asyncio.wait_for(done, 120) == hashlib.sha256(data).hexdigest()
        w.close()
        srv.close()

    asyncio.run(main())


def test_acl_revocation_resets_the_forwarder(stack: Stack) -> None:
    """The owner takes bob's read access away: the relay drops his door leg, and the
    owner resets his connections and closes his data sessions (they have their own
    ACL files, so nothing else would stop them)."""

    async def main() -> None:
        srv, port = await serve(echo)
        await expose(stack, A, "_mpc/rev/t", f"127.0.0.1:{port}")
        host, lport = await forward(stack, B, f"{A}/_mpc/rev/t", connect_timeout_seconds=2)
        r, w = await asyncio.open_connection(host, lport)
        w.write(b"one")
        assert await asyncio.wait_for(r.readexactly(3), 60) == b"one"
        # the door session and the data sessions cannot be closed on their own (the
        # door is what the relay's verdicts act on: closing it alone kept bob in)
        data = down_path(A, "_mpc/rev/t", B)
        for who, ref in ((A, "_mpc/rev/t"), (A, data)):
            res = await asyncio.to_thread(ctl, "--root", stack.root(who), "close", ref)
            assert res.returncode == ExitCode.ERROR, res.stderr
            assert b"tunnel close" in res.stderr, res.stderr
        w.write(b"1.5")
        assert await asyncio.wait_for(r.readexactly(3), 60) == b"1.5"
        acl = Path(stack.root(A)) / "datasites" / A / "_mpc" / "rev" / "syft.pub.yaml"
        acl.write_text(f'rules: [{{pattern: "**", access: {{read: ["{C}"]}}}}]\n')
        # picked up by the agent's periodic ACL scan (10 s by default)
        await wait_tunnel(stack, A, f"{A}/_mpc/rev/t", lambda t: not t.peers, 90)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(r.read(), 60) == b""
        w.close()
        assert await _closed_without_data(host, lport, b"two") == b""
        srv.close()

    asyncio.run(main())


def test_a_ready_tunnel_waits_while_the_relay_link_is_down(stack: Stack) -> None:
    """Last in the module (it stops the relay): the pipes to the local sessions stay
    connected, but nothing can cross; `tunnel ls` says so, and ready again after."""

    async def main() -> None:
        full = f"{A}/_mpc/tun/linkdown"
        srv, port = await serve(echo)
        async with srv:
            await expose(stack, A, "_mpc/tun/linkdown", f"127.0.0.1:{port}")
            await forward(stack, B, full)
            await wait_tunnel(stack, B, full, lambda t: t.state == "ready")
            assert ctl("devstack", "stop", "relay", "--dir", stack.dir).returncode == 0
            try:
                t = await wait_tunnel(stack, B, full, lambda t: t.state == "waiting")
                assert t.reason.startswith("relay link is "), t
                assert "connections wait for it" in t.reason
            finally:
                assert ctl("devstack", "start", "relay", "--dir", stack.dir).returncode == 0
            await wait_tunnel(stack, B, full, lambda t: t.state == "ready" and not t.reason)

    asyncio.run(main())
