"""`hotlinkctl demo mpyc`: three MPyC parties, each on its own agent, over tunnels.

Party j > 0 listens on a real local port and its agent exposes it as
`_mpc/mpyc/<tag>/p<j>`; every lower party's agent forwards that path to a local port,
which the party is given in its `-P` list (MPyC parties connect to every higher one).
So every cross-party byte travels party -> agent -> (relay or direct link) -> agent ->
party. One run measures three columns: the tunnels with the agents started
`--direct off` (through the relay), with `--direct auto` (the direct peer path), and
the parties connected straight to each other. Each tunnel column checks the path the
tunnel sessions report (`active_path`); an agent build without `--direct`, or sessions
that did not go direct, give a "not measured: why" line instead of a figure. Per
column it prints the time of one MPC round (a secure multiplication plus opening the
product: two message exchanges) and of a secure comparison (many exchanges).
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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from hotlink.common.ports import free_port
from hotlink.v1 import agent_pb2 as pb

from . import demo_paths, devstack
from .client import AgentClient
from .errors import CtlError, ExitCode

PARTY_MODULE = "hotlink.ctl.mpyc_party"
DEMO_PEERS = ["alice@example.org", "bob@example.org", "carol@example.org"]
#: how long the tunnel sessions may take to settle on the path a column measures
PATH_TIMEOUT = 15.0
#: --dir: how long a probe tunnel's sessions get to move to the direct path
DIRECT_SETTLE = 5.0


@dataclass
class MpycRun:
    label: str
    results: list[dict[str, Any]]
    seconds: float

    @property
    def round_ms(self) -> list[float]:
        return list(self.results[0]["round_ms"]) if self.results else []


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


def _pcts(ms: list[float]) -> str:
    ms = sorted(ms)
    p50 = statistics.median(ms)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return f"p50 {p50:.2f} ms, p90 {p90:.2f} ms, max {ms[-1]:.2f} ms"


def summary(run: MpycRun) -> str:
    ms = run.round_ms
    if not ms:
        return f"{run.label:<28}no rounds"
    r = run.results[0]
    text = (
        f"{run.label:<28}sum={r['sum']} less={r['less']}  per round: {_pcts(ms)} "
        f"({len(ms)} rounds, {run.seconds:.1f} s total)"
    )
    cmp = r.get("compare_ms") or []
    if cmp:
        text += f"; secure comparison: {_pcts(cmp)}"
    return text


@dataclass
class Column:
    """One column of the demo: a measured run, or why there is none."""

    label: str
    run: MpycRun | None = None
    missing: str = ""
    #: what the tunnels' sessions were seen on (checked, not assumed from flags)
    paths: str = ""

    def line(self) -> str:
        if self.run is None:
            return f"{self.label:<28}not measured: {self.missing}"
        text = summary(self.run)
        return text + (f"  [tunnel sessions: {self.paths}]" if self.paths else "")


async def tunnel_column(
    label: str,
    st: devstack.DevstackState,
    want: str,
    inputs: list[int],
    rounds: int,
    say: Callable[[str], None],
) -> Column:
    """Open the tunnels on a running devstack, check their sessions are on path `want`
    ('hotlink' = relay, 'direct'), run the parties, close the tunnels. A column whose
    sessions are not (all) on that path is reported as missing, never as a figure."""
    peers = st.peers[:3]
    controls = [p.control for p in peers]
    emails = [p.email for p in peers]
    tag = f"demo{os.getpid()}{want}"
    ports = [free_port() for _ in peers]
    say(f"{label}: opening tunnels: " + ", ".join(f"{emails[j]} exposes p{j}" for j in (1, 2)))
    addrs = await open_tunnels(controls, emails, ports, tag)
    try:
        n = len(peers)
        ok, seen = await demo_paths.wait_for_path(controls, want, n * (n - 1), PATH_TIMEOUT)
        if not ok:
            return Column(
                label,
                missing=f"the tunnel sessions did not all go {want} within "
                f"{PATH_TIMEOUT:g} s ({demo_paths.describe(seen)})",
            )
        run = await run_parties(addrs, inputs, rounds, 120.0, label)
        after = await demo_paths.tunnel_paths(controls)
        if sum(after.values()) != after[want]:
            return Column(
                label,
                missing=f"the tunnel sessions left the {want} path during the run "
                f"({demo_paths.describe(after)})",
            )
        return Column(label, run, paths=demo_paths.describe(after))
    finally:
        await close_tunnels(controls, emails, tag)


async def _on_own_devstack(
    mode: str | None,
    fn: Callable[[devstack.DevstackState], Awaitable[Column]],
    say: Callable[[str], None],
) -> Column:
    """A throw-away devstack of three agents (with `--direct MODE` unless None)."""
    d = tempfile.mkdtemp(prefix="hlmpyc-", dir="/tmp")
    ok = False
    try:
        flags = ["--direct", mode] if mode else []
        how = f" (--direct {mode})" if mode else ""
        say(f"starting a relay and three agents{how} in {d} ...")
        st = await devstack.up(d, list(DEMO_PEERS), agent_args=flags)
        col = await fn(st)
        ok = True
        return col
    finally:
        if os.path.exists(os.path.join(d, devstack.STATE_FILE)):  # a failed `up` cleaned up
            devstack.down(d)
        if ok:
            shutil.rmtree(d, ignore_errors=True)
        else:  # what one needs next: the agents' and relay's logs
            print(f"logs kept in {d}/logs", file=sys.stderr)


async def run_demo(rounds: int, directory: str | None, say: Callable[[str], None]) -> int:
    """Three columns in one run: tunnels through the relay (agents `--direct off`),
    tunnels through the direct peer path (`--direct auto`), parties straight."""
    inputs = [13, 29, 7]
    relay_label, direct_label = "tunnels via relay", "tunnels via direct path"
    no_direct = demo_paths.direct_flag_missing()
    cols: list[Column] = []
    if directory is not None:
        st = devstack.DevstackState.load(directory)
        if len(st.peers) < 3:
            raise CtlError(
                f"the devstack in {directory} has {len(st.peers)} peers; MPyC demo needs 3"
            )
        seen = Counter[str]() if no_direct else await _paths_now(st)
        want = "direct" if seen["direct"] else "hotlink"
        label, other = (
            (direct_label, relay_label) if want == "direct" else (relay_label, direct_label)
        )
        cols.append(await tunnel_column(label, st, want, inputs, rounds, say))
        cols.append(
            Column(
                other,
                missing="--dir measures the running devstack as its agents were "
                "started; run without --dir for both tunnel columns",
            )
        )
    else:
        relay_mode = None if no_direct else "off"
        cols.append(
            await _on_own_devstack(
                relay_mode,
                lambda st: tunnel_column(relay_label, st, "hotlink", inputs, rounds, say),
                say,
            )
        )
        if no_direct:
            cols.append(Column(direct_label, missing=no_direct))
        else:
            cols.append(
                await _on_own_devstack(
                    "auto",
                    lambda st: tunnel_column(direct_label, st, "direct", inputs, rounds, say),
                    say,
                )
            )
    straight_ports = [free_port() for _ in DEMO_PEERS]
    straight = [[f"127.0.0.1:{p}" for p in straight_ports] for _ in DEMO_PEERS]
    cols.append(
        Column(
            "parties connected straight",
            await run_parties(straight, inputs, rounds, 120.0, "parties connected straight"),
        )
    )
    print(f"inputs {inputs}: expected sum={sum(inputs)} less={inputs[0] < inputs[1]}")
    for c in cols:
        print(c.line())
    runs = [c.run for c in cols if c.run is not None]
    ok = all(
        r["sum"] == sum(inputs) and r["less"] == (inputs[0] < inputs[1])
        for run in runs
        for r in run.results
    )
    return ExitCode.OK if ok else ExitCode.ERROR


async def _paths_now(st: devstack.DevstackState) -> Counter[str]:
    """Which path tunnel sessions of a running devstack take: a probe tunnel (opened,
    looked at, closed) decides, so --dir reports what the agents do. Sessions start on
    the relay; a direct path gets `DIRECT_SETTLE` seconds to take them over."""
    controls = [p.control for p in st.peers[:3]]
    emails = [p.email for p in st.peers[:3]]
    tag = f"probe{os.getpid()}"
    await open_tunnels(controls, emails, [free_port() for _ in controls], tag)
    try:
        n = len(controls)
        _, seen = await demo_paths.wait_for_path(controls, "", n * (n - 1), PATH_TIMEOUT)
        if seen["direct"] < sum(seen.values()):
            _, seen = await demo_paths.wait_for_path(controls, "direct", n * (n - 1), DIRECT_SETTLE)
        return seen
    finally:
        await close_tunnels(controls, emails, tag)


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
        help="mpyc: three MPyC parties over tunnels (relay, direct path) vs straight; "
        "tunnel-throughput: MB/s of one tunnel stream vs plain loopback TCP and the relay's "
        "frame throughput",
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
