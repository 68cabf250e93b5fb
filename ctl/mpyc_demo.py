"""`hotlinkctl demo mpyc`: three MPyC parties, each on its own agent, over tunnels.

Party j > 0 listens on a real local port and its agent exposes it as
`_mpc/mpyc/<tag>/p<j>`; every lower party's agent forwards that path to a local port,
which the party is given in its `-P` list (MPyC parties connect to every higher one).
So every cross-party byte travels party -> agent -> relay -> agent -> party. The same
program then runs with the parties connected straight to each other, in the same
run, for comparison. (A direct agent-to-agent path does not exist yet; when it does,
the tunnels use it without changes here.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from hotlink.v1 import agent_pb2 as pb

from . import devstack
from .client import AgentClient
from .errors import CtlError, ExitCode

PARTY_MODULE = "hotlink.ctl.mpyc_party"
DEMO_PEERS = ["alice@example.org", "bob@example.org", "carol@example.org"]


@dataclass
class MpycRun:
    label: str
    results: list[dict[str, Any]]
    seconds: float

    @property
    def round_ms(self) -> list[float]:
        return list(self.results[0]["round_ms"]) if self.results else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def open_tunnels(
    controls: list[str], emails: list[str], ports: list[int], tag: str
) -> list[list[str]]:
    """Expose each party's port on its agent, forward it on every lower party's agent.
    Returns each party's `-P` address list."""
    n = len(controls)
    clients = [AgentClient(c, timeout=30.0) for c in controls]
    try:
        for j in range(1, n):
            await clients[j].stub.OpenTunnel(
                pb.OpenTunnelRequest(path=f"_mpc/mpyc/{tag}/p{j}", target=f"127.0.0.1:{ports[j]}"),
                timeout=30,
            )
        addrs = [[f"127.0.0.1:{ports[j]}" for j in range(n)] for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                r = await clients[i].stub.OpenTunnel(
                    pb.OpenTunnelRequest(path=f"{emails[j]}/_mpc/mpyc/{tag}/p{j}"), timeout=30
                )
                addrs[i][j] = r.tunnel.listen
        return addrs
    finally:
        for c in clients:
            await c.close()


async def close_tunnels(controls: list[str], emails: list[str], tag: str) -> None:
    n = len(controls)
    for i, ctl in enumerate(controls):
        async with AgentClient(ctl) as c:
            paths = [f"_mpc/mpyc/{tag}/p{i}"] if i else []
            paths += [f"{emails[j]}/_mpc/mpyc/{tag}/p{j}" for j in range(i + 1, n)]
            for p in paths:
                with contextlib.suppress(grpc.aio.AioRpcError):  # already gone
                    await c.stub.CloseTunnel(pb.CloseTunnelRequest(path=p), timeout=10)


async def run_parties(
    addrs: list[list[str]], inputs: list[int], rounds: int, timeout: float, label: str
) -> MpycRun:
    """Start one MPyC process per party, wait for all, return their parsed results.

    Highest index first, each started once the one before listens: an MPyC party
    retries a refused connect, but through a tunnel the local connect succeeds and is
    reset when the far target is not listening yet (as with `ssh -L`), which MPyC
    does not retry.
    """
    procs: list[asyncio.subprocess.Process] = []
    t0 = time.perf_counter()
    for i in reversed(range(len(addrs))):
        plist = addrs[i]
        argv = [sys.executable, "-m", PARTY_MODULE, "-I", str(i)]
        for a in plist:
            argv += ["-P", a]
        env = dict(os.environ, HOTLINK_MPYC_INPUT=str(inputs[i]), HOTLINK_MPYC_ROUNDS=str(rounds))
        procs.append(
            await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
        if i > 0:
            await _wait_listening(plist[i], procs[-1], timeout)
    procs.reverse()
    try:
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout)
    except TimeoutError:
        for p in procs:
            if p.returncode is None:
                p.kill()
        for p in procs:
            await p.wait()
        raise CtlError(f"MPyC parties ({label}) did not finish in {timeout:g}s") from None
    seconds = time.perf_counter() - t0
    results = []
    for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        line = next((x for x in out.decode().splitlines() if x.startswith("RESULT ")), "")
        if p.returncode != 0 or not line:
            raise CtlError(
                f"MPyC party {i} ({label}) failed (exit {p.returncode}): "
                + err.decode(errors="replace")[-800:]
            )
        results.append(json.loads(line[7:]))
    return MpycRun(label, results, seconds)


async def _wait_listening(addr: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    """Until something listens on `addr` (probed by bind, so the party never sees a
    stray connection)."""
    host, _, port = addr.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.returncode is None:
        with socket.socket() as s:
            try:
                s.bind((host, int(port)))
            except OSError:
                return
        await asyncio.sleep(0.02)


def summary(run: MpycRun) -> str:
    ms = sorted(run.round_ms)
    if not ms:
        return f"{run.label}: no rounds"
    p50 = statistics.median(ms)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    r = run.results[0]
    return (
        f"{run.label:<26} sum={r['sum']} less={r['less']}  per round: p50 {p50:.2f} ms, "
        f"p90 {p90:.2f} ms, max {ms[-1]:.2f} ms ({len(ms)} rounds, {run.seconds:.1f} s total)"
    )


async def run_demo(rounds: int, directory: str | None, say: Callable[[str], None]) -> int:
    inputs = [13, 29, 7]
    own_dir = directory is None
    d = directory or tempfile.mkdtemp(prefix="hlmpyc-", dir="/tmp")
    try:
        if own_dir:
            say(f"starting a relay and three agents in {d} ...")
            st = await devstack.up(d, list(DEMO_PEERS))
        else:
            st = devstack.DevstackState.load(d)
        if len(st.peers) < 3:
            raise CtlError(f"the devstack in {d} has {len(st.peers)} peers; MPyC demo needs 3")
        peers = st.peers[:3]
        controls = [p.control for p in peers]
        emails = [p.email for p in peers]
        tag = f"demo{os.getpid()}"
        ports = [free_port() for _ in peers]
        say("opening tunnels: " + ", ".join(f"{emails[j]} exposes p{j}" for j in (1, 2)))
        addrs = await open_tunnels(controls, emails, ports, tag)
        try:
            via_relay = await run_parties(addrs, inputs, rounds, 120.0, "tunnels via relay")
        finally:
            await close_tunnels(controls, emails, tag)
        straight_ports = [free_port() for _ in peers]
        straight = [[f"127.0.0.1:{p}" for p in straight_ports] for _ in peers]
        direct = await run_parties(straight, inputs, rounds, 120.0, "parties connected directly")
        print(f"inputs {inputs}: expected sum={sum(inputs)} less={inputs[0] < inputs[1]}")
        print(summary(via_relay))
        print("tunnels via direct path    not available: agents have no direct link yet")
        print(summary(direct))
        ok = all(
            r["sum"] == sum(inputs) and r["less"] == (inputs[0] < inputs[1])
            for r in via_relay.results + direct.results
        )
        return ExitCode.OK if ok else ExitCode.ERROR
    finally:
        if own_dir:
            devstack.down(d)
            if sys.exc_info()[0] is None:
                shutil.rmtree(d, ignore_errors=True)
            else:  # what one needs next: the agents' and relay's logs
                print(f"logs kept in {d}/logs", file=sys.stderr)


def register(add: Callable[..., argparse.ArgumentParser], run: Callable[[Any], int]) -> None:
    p = add(
        "demo",
        "demos on a local devstack (mpyc: three MPyC parties over tunnels)",
        lambda a: _cmd(a, run),
        __doc__ or "",
    )
    p.add_argument(
        "which",
        choices=["mpyc", "tunnel-throughput"],
        help="mpyc: three MPyC parties over tunnels vs straight; tunnel-throughput: MB/s of "
        "one tunnel stream vs plain loopback TCP and the relay's frame throughput",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="mpyc: timed MPC rounds (default 20); throughput: runs (default 3)",
    )
    p.add_argument("--mb", type=float, default=50.0, help="throughput: MB per run (default 50)")
    p.add_argument(
        "--window",
        type=int,
        default=0,
        metavar="BYTES",
        help="throughput: the agents' --tunnel-window (own devstack only; default: theirs)",
    )
    p.add_argument("--dir", help="use the running devstack in DIR instead of a new one")


def _cmd(args: argparse.Namespace, run: Callable[[Any], int]) -> int:
    if args.rounds < 0 or args.mb <= 0:
        raise CtlError("--rounds and --mb must be positive")
    say = lambda t: print(t, file=sys.stderr, flush=True)  # noqa: E731
    if args.which == "tunnel-throughput":
        from . import tunnel_bench

        return run(tunnel_bench.run(args.mb, args.rounds or 3, args.dir, say, args.window))
    return run(run_demo(args.rounds or 20, args.dir, say))
