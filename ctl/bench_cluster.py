"""Relay cluster benchmarks (docs/performance.md "Relay cluster").

    python -m hotlink.ctl.bench_cluster latency [--count 2000] [--size 1024]
    python -m hotlink.ctl.bench_cluster rate [--sessions 48] [--seconds 8]

`latency`: one devstack with 3 relay nodes and 4 peers (alice and dave on relay-0,
bob on relay-1), two sessions measured in alternating blocks in the same run:
alice -> dave (same node) and alice -> bob (cross-node, through NATS). One-way app
socket to app socket, one message in flight, as `hotlinkctl bench`.

`rate`: the aggregate message rate of 1, 2 and 3 relay nodes under many sessions:
raw WebSocket clients (no agents, so the relays and NATS get the CPU), `--sessions`
sessions each with its sender and reader connected to the nodes in turn, each
keeping `--window` frames in flight; the rate counted is frames delivered to readers
per second over `--seconds`. `--placement local` puts a session's reader on its
sender's node, `spread` on the next node (cross-node for 2 and 3 nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hotlink.common.ports import free_port
from hotlink.relay.auth import load_or_create_secret, mint_token
from hotlink.wire.envelope import HDR_ENCODINGS, decode, encode
from hotlink.wire.messages import HotlinkAccept, HotlinkData, HotlinkOpen
from websockets.asyncio.client import connect

from . import bench, devstack, devstack_cluster
from .client import AgentClient
from .proc_stat import cpu_seconds
from .stats import fmt_ns, summarize

PEERS = ["alice@example.org", "bob@example.org", "carol@example.org", "dave@example.org"]


# ------------------------------------------------------------------------ latency


async def latency(count: int, size: int, blocks: int) -> dict[str, Any]:
    devstack.CLUSTER = devstack_cluster
    with tempfile.TemporaryDirectory(prefix="hlcl-", dir="/tmp") as tmp:
        # relay paths only: with the direct path on, the agents would link up and the
        # figures would time their link, not the relays
        state = await devstack.up(tmp, PEERS, relays=3, direct="off")
        clients: list[AgentClient] = []
        chans: list[bench.Channel] = []
        try:
            a, b, d = state.peers[0], state.peers[1], state.peers[3]
            ca, cb, cd = AgentClient(a.control), AgentClient(b.control), AgentClient(d.control)
            clients += [ca, cb, cd]
            same = await bench.open_hotlink_channel(ca, a.email, cd, d.email, "_mpc/same")
            cross = await bench.open_hotlink_channel(ca, a.email, cb, b.email, "_mpc/cross")
            chans += [same, cross]
            assert state.cluster is not None
            nats_ch = await _nats_channel(state.cluster["nats"]["url"])
            chans.append(nats_ch)
            body = bytearray(os.urandom(size))
            pairs = (("same-node", same), ("cross-node", cross), ("nats", nats_ch))
            samples: dict[str, list[int]] = {name: [] for name, _ in pairs}
            per = max(1, count // blocks)
            for _name, ch in pairs:  # warm-up
                await bench._run(ch, body, 100, 1, 60, None, 0)
            base = 100
            for _ in range(blocks):
                for name, ch in pairs:
                    samples[name] += await bench._run(ch, body, per, 1, 60, None, base)
                base += per
            out = {name: summarize(s, size, 0.0).to_dict() for name, s in samples.items()}
            out["placement"] = state.cluster["placement"] if state.cluster else {}
            return out
        finally:
            for ch in chans:
                with contextlib.suppress(Exception):
                    await ch.close()
            for c in clients:
                await c.close()
            devstack.down_state(state)


async def _nats_channel(url: str) -> bench.Channel:
    """The NATS hop alone, for comparison: publish and receive the message back in
    one process through nats-server (nats-py's ordinary API)."""
    import nats

    nc = await nats.connect(url)
    sub = await nc.subscribe("hotlink-bench.floor")

    async def send(payload: bytes) -> None:
        await nc.publish("hotlink-bench.floor", payload)

    async def recv() -> bytes:
        return (await sub.next_msg(timeout=30)).data

    async def close() -> None:
        await nc.close()

    return bench.Channel("nats publish -> subscribe", send, recv, close)


# --------------------------------------------------------------------------- rate


def _spawn_nodes(
    tmp: Path, n: int, nats_url: str | None, procs: list[Any]
) -> tuple[list[Any], list[str]]:
    """Start `n` relay nodes; each goes into `procs` as soon as it runs (the caller
    stops them even when a later one fails to start)."""
    urls: list[str] = []
    data = tmp / "data"
    for i in range(n):
        argv = [sys.executable, "-m", "hotlink.relay.cli", "serve", "--port", "0",
                "--data", str(data), "--log-level", "INFO", "--open-rate", "0",
                "--max-sessions-per-user", "0"]  # fmt: skip
        if nats_url:
            argv += ["--nats", nats_url, "--node-id", f"relay-{i}"]
        log = open(tmp / f"relay-{i}.log", "ab")  # noqa: SIM115 - owned by the child
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        procs.append(p)
        line = p.stdout.readline() if p.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"relay {i} did not start: {line!r}")
        urls.append(line.rsplit(" ", 1)[1].strip())
    return procs, urls


async def _rate_run(
    urls: list[str],
    secret: bytes,
    sessions: int,
    window: int,
    seconds: float,
    spread: bool,
    relay_pids: list[int],
    nats_pid: int | None,
) -> tuple[float, float, float]:
    """(delivered msgs/s, relay CPU µs per msg, nats-server CPU µs per msg)"""
    hdr = {HDR_ENCODINGS: "msgpack"}
    payload = os.urandom(256)
    delivered = 0
    stop = asyncio.Event()
    conns = []

    async def client(user: str, node: int) -> Any:
        ws = await connect(
            urls[node] + "/api/v1/events",
            additional_headers={**hdr, "Authorization": f"Bearer {mint_token(secret, user)}"},
            compression=None,
            max_queue=None,
        )
        conns.append(ws)
        await ws.recv()  # System greeting
        return ws

    async def session(k: int) -> None:
        nonlocal delivered
        node = k % len(urls)
        sender = f"s{k}@load.example"
        reader = f"r{k}@load.example"
        path = f"{sender}/_mpc/load"
        ws_r = await client(reader, (node + 1) % len(urls) if spread else node)
        ws_s = await client(sender, node)
        sid = f"load-{k}"
        await ws_s.send(encode(HotlinkOpen(sid, path, "", reader)))
        while True:  # the offer reaches the reader (from whichever node is home)
            env = decode(await ws_r.recv())
            if isinstance(env.msg, HotlinkOpen) and env.msg.sid == sid:
                break
        await ws_r.send(encode(HotlinkAccept(sid)))
        while True:
            env = decode(await ws_s.recv())
            if isinstance(env.msg, HotlinkAccept):
                break
        await ready.wait()
        seq = 0

        async def pump() -> None:
            nonlocal seq
            for _ in range(window):
                seq += 1
                await ws_s.send(encode(HotlinkData(sid, seq, path, payload)))

        await pump()
        while not stop.is_set():
            await ws_r.recv()
            if counting.is_set():
                delivered += 1
            seq += 1
            await ws_s.send(encode(HotlinkData(sid, seq, path, payload)))

    ready = asyncio.Event()
    counting = asyncio.Event()
    tasks = [asyncio.create_task(session(k)) for k in range(sessions)]
    await asyncio.sleep(0)
    while sum(1 for c in conns) < 2 * sessions:
        await asyncio.sleep(0.05)
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()  # type: ignore[misc]
    await asyncio.sleep(0.5)  # the last accepts
    ready.set()
    await asyncio.sleep(1.0)  # warm-up
    counting.set()
    t0 = time.perf_counter()
    cpu0 = cpu_seconds(relay_pids), cpu_seconds([nats_pid] if nats_pid else [])
    await asyncio.sleep(seconds)
    n = delivered
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_seconds(relay_pids), cpu_seconds([nats_pid] if nats_pid else [])
    stop.set()
    for t in tasks:
        t.cancel()
    for c in conns:
        with contextlib.suppress(Exception):
            await c.close()
    per = 1e6 / max(n, 1)
    return n / elapsed, (cpu1[0] - cpu0[0]) * per, (cpu1[1] - cpu0[1]) * per


CONFIGS = (("1 node, no NATS", 1, False), ("1 node", 1, True), ("2 nodes", 2, True),
           ("3 nodes", 3, True))  # fmt: skip


async def rate(
    sessions: int, window: int, seconds: float, placement: str, rounds: int
) -> dict[str, Any]:
    """Every configuration `rounds` times, interleaved (the machine's background load
    drifts: each configuration sees the same mix); the median is reported."""
    runs: dict[str, list[tuple[int, float, float]]] = {label: [] for label, _, _ in CONFIGS}
    for _ in range(rounds):
        one = await _rate_round(sessions, window, seconds, placement)
        for k, v in one.items():
            runs[k].append(v)

    def med(xs: list[Any]) -> Any:
        return sorted(xs)[len(xs) // 2]

    return {
        k: {
            "median_msgs_per_s": med([r[0] for r in v]),
            "relay_cpu_us_per_msg": med([r[1] for r in v]),
            "nats_cpu_us_per_msg": med([r[2] for r in v]),
            "runs": [r[0] for r in v],
        }
        for k, v in runs.items()
    }


async def _rate_round(
    sessions: int, window: int, seconds: float, placement: str
) -> dict[str, tuple[int, float, float]]:
    nats_bin = devstack_cluster.nats_binary()
    out: dict[str, tuple[int, float, float]] = {}
    for label, n, with_nats in CONFIGS:
        with tempfile.TemporaryDirectory(prefix="hlrate-", dir="/tmp") as tmp:
            t = Path(tmp)
            ds = t / "data" / "datasites"
            for k in range(sessions):  # ACLs before the relays start (read at start)
                f = ds / f"s{k}@load.example" / "_mpc" / "syft.pub.yaml"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text('rules:\n  - pattern: "**"\n    access:\n      read: ["*"]\n')
            secret = load_or_create_secret(t / "data")
            nats = None
            nats_url = None
            procs: list[Any] = []
            try:
                if with_nats:
                    port = free_port()
                    nats_url = f"nats://127.0.0.1:{port}"
                    nats = subprocess.Popen(
                        devstack_cluster._nats_argv(nats_bin, port, str(t / "js")),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    await devstack_cluster._wait_port(port, nats.pid, t / "nats.log", 15)
                procs, urls = _spawn_nodes(t, n, nats_url, procs)
                await asyncio.sleep(2.0 if n > 1 else 0.5)  # heartbeats: the nodes meet
                r, cpu, ncpu = await _rate_run(
                    urls, secret, sessions, window, seconds, placement == "spread",
                    [p.pid for p in procs], nats.pid if nats else None,
                )  # fmt: skip
                out[label] = (round(r), round(cpu, 1), round(ncpu, 1))
            finally:
                for p in [*procs, nats]:
                    if p is not None:
                        p.terminate()
                for p in [*procs, nats]:
                    if p is None:
                        continue
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        logs = "".join(
                            f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:]
                            for f in t.glob("relay-*.log")
                        )
                        print(
                            f"{label}: pid {p.pid} ({' '.join(map(str, p.args))[-80:]}) "
                            f"ignored SIGTERM for 30 s: killed\n{logs}",
                            file=sys.stderr,
                        )
                        p.kill()
                        p.wait()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hotlink.ctl.bench_cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency", help="same-node vs cross-node one-way latency")
    lat.add_argument("--count", type=int, default=2000)
    lat.add_argument("--size", type=int, default=1024)
    lat.add_argument("--blocks", type=int, default=10)
    lat.add_argument("--json", action="store_true")
    rt = sub.add_parser("rate", help="aggregate message rate of 1, 2, 3 nodes")
    rt.add_argument("--sessions", type=int, default=48)
    rt.add_argument("--window", type=int, default=4)
    rt.add_argument("--seconds", type=float, default=8.0)
    rt.add_argument("--placement", choices=["local", "spread"], default="local")
    rt.add_argument("--rounds", type=int, default=3)
    rt.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.what == "latency":
        res = asyncio.run(latency(args.count, args.size, args.blocks))
        if not args.json:
            for name in ("same-node", "cross-node", "nats"):
                s = res[name]
                print(f"{name:<11} n={s['count']} " + " ".join(
                    f"{k[:-3].upper()}={fmt_ns(s[k])}"
                    for k in ("p50_ns", "p90_ns", "p99_ns", "mean_ns")))  # fmt: skip
            diff = res["cross-node"]["p50_ns"] - res["same-node"]["p50_ns"]
            print(f"cross-node P50 - same-node P50 = {fmt_ns(diff)}")
    else:
        res = asyncio.run(
            rate(args.sessions, args.window, args.seconds, args.placement, args.rounds)
        )
        if not args.json:
            for k, v in res.items():
                print(
                    f"{k:<16} {v['median_msgs_per_s']:>7} msgs/s  relays "
                    f"{v['relay_cpu_us_per_msg']:>5} µs CPU/msg  nats-server "
                    f"{v['nats_cpu_us_per_msg']:>5} µs CPU/msg  (medians; runs: {v['runs']})"
                )
    if args.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
