"""Bare `hotlinkctl devstack`: the README's one-command tour.

Start a relay and two agents in a temp dir, open a session each way (alice → bob on
`_mpc/0_to_1`, bob → alice on `_mpc/1_to_0`), stream the reference's burst (10 x 1 KB,
10 x 10 KB, 5 x 100 KB) in each direction, print the latency table, stop everything.
On failure the temp dir is kept and the logs named, because that is what one needs next.

The agents run with their default `--direct auto`, so a session goes agent to agent
once the direct link is up; the tour waits a moment for it and says which path each
direction measured (`direct`, or `relay` with the reason).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from typing import Any

from . import devstack, output
from .agent_client import AgentClient
from .bench import Channel, measure, open_hotlink_channel
from .bench_paths import wait_direct
from .errors import CtlError, ExitCode
from .stats import LatencySummary, fmt_ns, fmt_size

BURST = ((1024, 10), (10 * 1024, 10), (100 * 1024, 5))
#: how long the tour waits for a session's direct link before measuring the relay path
DIRECT_WAIT = 5.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_demo(args: argparse.Namespace) -> int:
    peers = devstack.parse_peers(args.peers)
    d = tempfile.mkdtemp(prefix="hotlink-devstack-", dir="/tmp")
    _say(f"devstack: starting a relay and {len(peers)} agents in {d} ...")
    state: devstack.DevstackState | None = None
    clients: list[AgentClient] = []
    channels: list[Channel] = []
    ok = False
    try:
        state = await devstack.up(d, peers, timeout=args.timeout)
        assert state.relay is not None
        _say(f"devstack: relay {state.relay.url}; agents ready, links up")
        a, b = state.peers[0], state.peers[1]
        ca, cb = AgentClient(a.control), AgentClient(b.control)
        clients += [ca, cb]
        rows: list[tuple[str, str, int, LatencySummary]] = []
        for src, csrc, dst, cdst, rel in (
            (a, ca, b, cb, "_mpc/0_to_1"),
            (b, cb, a, ca, "_mpc/1_to_0"),
        ):
            _say(f"devstack: {src.email} opens {rel} for {dst.email}")
            ch = await open_hotlink_channel(csrc, src.email, cdst, dst.email, rel)
            channels.append(ch)
            direction = f"{src.email.split('@')[0]} -> {dst.email.split('@')[0]}"
            try:
                await wait_direct(csrc, f"{src.email}/{rel}", dst.email, DIRECT_WAIT)
                path = "direct"
            except CtlError as exc:
                path = "relay"
                _say(f"devstack: {direction} measured on the relay path: {exc.message}")
            await measure(ch, 1024, 5, timeout=30.0)  # warm-up: connections, caches
            for size, count in BURST:
                s = await measure(ch, size, count, timeout=30.0)
                rows.append((direction, path, size, s))
        if args.json:
            output.dump_json(
                {
                    "dir": d,
                    "relay": state.relay.url,
                    "results": [
                        {"direction": dr, "path": pa, "size": sz, **s.to_dict()}
                        for dr, pa, sz, s in rows
                    ],
                }
            )
        else:
            print(_table(rows))
        ok = True
    except CtlError as exc:
        exc.hint = (exc.hint + "; " if exc.hint else "") + f"logs are in {d}/logs"
        raise
    finally:
        for ch in channels:
            try:
                await ch.close()
            except Exception as exc:
                _say(f"devstack: closing {ch.name}: {exc}")
        for c in clients:
            await c.close()
        if state is not None:
            devstack.down_state(state)
            _say("devstack: stopped")
        if ok and not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            _say(f"devstack: kept {d} (logs in {d}/logs)")
    return ExitCode.OK


def _table(rows: list[tuple[str, str, int, LatencySummary]]) -> str:
    out: list[Any] = [
        "hotlink one-way latency, app socket -> app socket (one in flight)",
        f"{'direction':<16}{'path':<8}{'size':>7}{'n':>5}{'P50':>10}{'P90':>10}{'P99':>10}"
        f"{'max':>10}",
    ]
    out.append("-" * len(out[1]))
    for direction, path, size, s in rows:
        out.append(
            f"{direction:<16}{path:<8}{fmt_size(size):>7}{s.count:>5}{fmt_ns(s.p50_ns):>10}"
            f"{fmt_ns(s.p90_ns):>10}{fmt_ns(s.p99_ns):>10}{fmt_ns(s.max_ns):>10}"
        )
    out.append("")
    out.append(
        "reference (Go client): P50 ~330 µs, P99 ~1.1 ms.  Full run, relay and direct "
        "against the floor: hotlinkctl bench --direct off,auto"
    )
    return "\n".join(out)
