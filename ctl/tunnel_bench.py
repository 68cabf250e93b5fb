"""`hotlinkctl demo tunnel-throughput`: one tunnel stream against plain loopback TCP.

In one run, alternating, each `rounds` times: MB/s of one TCP connection writing
64 KB chunks (a) straight to a local sink, (b) through a tunnel (client -> agent ->
relay -> agent -> sink) with the default window and with a 4 MiB one, and (c) the relay
path's own frame throughput (64 KB HLNK
frames on a session, the bench's `measure_throughput`), which the tunnel carries.
Medians are printed; nothing here is asserted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from hotlink.v1 import agent_pb2 as pb

from . import devstack
from .bench import measure_throughput, open_hotlink_channel
from .client import AgentClient
from .errors import CtlError, ExitCode

CHUNK = 64 * 1024


async def _sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Reads `total` (8-byte header) bytes, then answers one byte."""
    total = int.from_bytes(await r.readexactly(8), "big")
    got = 0
    while got < total:
        chunk = await r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    w.write(b"k")
    await w.drain()
    w.close()


async def tcp_mb_per_s(host: str, port: int, total: int) -> float:
    """One connection, `total` bytes in 64 KB writes; timed until the sink has them all."""
    body = os.urandom(CHUNK)
    r, w = await asyncio.open_connection(host, port)
    t0 = time.perf_counter()
    w.write(total.to_bytes(8, "big"))
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        w.write(body[:n])
        await w.drain()
        sent += n
    if await r.readexactly(1) != b"k":
        raise CtlError("throughput sink answered garbage")
    elapsed = time.perf_counter() - t0
    w.close()
    return total / elapsed / 1e6


async def run(
    mb: float,
    rounds: int,
    directory: str | None,
    say: Callable[[str], None],
    window: int = 0,
) -> int:
    """`window`: the agents' --tunnel-window for the first tunnel (own devstack) and its
    per-tunnel window; a second tunnel with a 4 MiB window runs alongside."""
    total = int(mb * 1_000_000)
    own = directory is None
    d = directory or tempfile.mkdtemp(prefix="hltput-", dir="/tmp")
    srv = await asyncio.start_server(_sink, "127.0.0.1", 0)
    port = int(srv.sockets[0].getsockname()[1])
    try:
        if own:
            say(f"starting a relay and two agents in {d} ...")
            extra = ["--tunnel-window", str(window)] if window else []
            st = await devstack.up(d, ["alice@example.org", "bob@example.org"], agent_args=extra)
        else:
            st = devstack.DevstackState.load(d)
        (a, b) = st.peers[:2]
        tag = f"tput{os.getpid()}"
        big = 4 << 20
        async with AgentClient(a.control) as ca, AgentClient(b.control) as cb:
            ends: dict[str, tuple[str, int]] = {}
            for name, win in (("tunnel", window), (f"tunnel {big >> 20} MiB", big)):
                path = f"_mpc/{tag}-{win}"
                await ca.stub.OpenTunnel(
                    pb.OpenTunnelRequest(path=path, target=f"127.0.0.1:{port}", window_bytes=win)
                )
                fr = await cb.stub.OpenTunnel(
                    pb.OpenTunnelRequest(path=f"{a.email}/{path}", window_bytes=win)
                )
                host, _, tport = fr.tunnel.listen.rpartition(":")
                ends[name] = (host, int(tport))
            chan = await open_hotlink_channel(ca, a.email, cb, b.email, f"_mpc/{tag}-frames")
            res: dict[str, list[float]] = {"plain TCP": [], **{k: [] for k in ends}}
            res["relay frames"] = []
            try:
                for i in range(rounds):
                    say(f"round {i + 1}/{rounds}: {mb:g} MB each")
                    res["plain TCP"].append(await tcp_mb_per_s("127.0.0.1", port, total))
                    for name, (host, tport) in ends.items():
                        res[name].append(await tcp_mb_per_s(host, tport, total))
                    t = await measure_throughput(chan, total, CHUNK, 32, 300.0)
                    res["relay frames"].append(t.mb_per_s)
            finally:
                await chan.close()
                for win in (window, big):
                    path = f"_mpc/{tag}-{win}"
                    await cb.stub.CloseTunnel(pb.CloseTunnelRequest(path=f"{a.email}/{path}"))
                    await ca.stub.CloseTunnel(pb.CloseTunnelRequest(path=path))
        print(render(res, mb))
        return ExitCode.OK
    finally:
        srv.close()
        if own:
            devstack.down(d)
            if sys.exc_info()[0] is None:
                shutil.rmtree(d, ignore_errors=True)
            else:  # what one needs next: the agents' and relay's logs
                print(f"logs kept in {d}/logs", file=sys.stderr)


def render(res: dict[str, list[float]], mb: float) -> str:
    med = {k: statistics.median(v) for k, v in res.items() if v}
    lines = [f"one stream, {mb:g} MB, 64 KB writes (median of {len(res['tunnel'])} runs)"]
    for k, v in res.items():
        runs = ", ".join(f"{x:.0f}" for x in v)
        lines.append(f"  {k:<20} {med[k]:8.1f} MB/s   (runs: {runs})")
    lines.append(
        f"  tunnel / relay frames: {med['tunnel'] / med['relay frames']:.0%}   "
        f"tunnel / plain TCP: {med['tunnel'] / med['plain TCP']:.1%}"
    )
    return "\n".join(lines)


def summary_dict(res: dict[str, list[float]]) -> dict[str, Any]:
    return {k: {"median_mb_s": statistics.median(v), "runs": v} for k, v in res.items()}
