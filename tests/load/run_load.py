#!/usr/bin/env python
"""Load test: many concurrent sessions across many agent processes through one relay.

    python tests/load/run_load.py --peers 20 --sessions 200 --duration 60 --rate 20

Starts a real relay and `--peers` real agent processes (loopback, temporary directory),
opens `--sessions` sessions (session k: sender peer k mod P, reader peer k+1 mod P),
then one generator process (this one, uvloop) writes `--rate` frames/s of `--size`
bytes into every sender's stream.sock for `--duration` seconds and reads every
reader's stream.sock. Each payload carries (session, index, send time), so the
reader side checks that every session got every frame exactly once and in order and
measures one-way latency app -> agent -> relay -> agent -> app.

Reports throughput, latency percentiles, RSS (current and peak, /proc VmRSS/VmHWM)
of the relay and the agents, and per-session loss. Exit status 1 if anything was lost,
duplicated or reordered. `--json FILE` writes the report as JSON.

Reuses the test fixtures' process wrappers (tests/fixtures_relay.py RelayProcess,
tests/fixtures_agent.py AgentProcess), so it runs from a checkout with the venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/

from fixtures_agent import AgentProcess, acl_yaml
from fixtures_relay import RelayProcess
from hotlink.common.loop import run_main
from hotlink.ctl.client import Stream
from hotlink.ctl.proc_stat import cpu_seconds
from hotlink.v1 import agent_pb2 as pb

HDR = struct.Struct(">IQQ")  # session, index, send time (monotonic ns)


def email(i: int) -> str:
    return f"peer{i:02d}@example.org"


@dataclass
class SessionStat:
    k: int
    path: str
    sent: int = 0
    received: int = 0
    expected_next: int = 0
    dups: int = 0
    gaps: int = 0  # frames skipped over (index jumped forward)
    disorder: int = 0
    lat_us: list[float] = field(default_factory=list)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB, or (0, 0) if the process is gone."""
    cur = peak = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except OSError:
        pass
    return cur, peak


class Sampler(threading.Thread):
    """Samples RSS of the given pids every `interval` s (max seen)."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.max_rss: dict[str, int] = dict.fromkeys(pids, 0)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            for name, pid in self.pids.items():
                self.max_rss[name] = max(self.max_rss[name], rss_kib(pid)[0])


def start_stack(work: Path, peers: int, quiet: bool) -> tuple[RelayProcess, list[AgentProcess]]:
    data = work / "relay-data"
    data.mkdir()
    relay = RelayProcess(data, log_level="WARNING").start()
    agents: list[AgentProcess] = []
    for i in range(peers):
        e = email(i)
        root = work / f"peer{i:02d}"
        ds = root / "datasites" / e
        ds.mkdir(parents=True)
        (ds / "syft.pub.yaml").write_text(acl_yaml(["*"]))
        a = AgentProcess(root, e, relay)
        # log at INFO (the fixture's DEBUG would log on the hot path)
        a.command = _info_command(a)  # type: ignore[method-assign]
        agents.append(a)
    t = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda a: a.start(), agents))
    if not quiet:
        print(f"relay + {peers} agents up in {time.monotonic() - t:.1f}s", flush=True)
    return relay, agents


def _info_command(a: AgentProcess) -> Any:
    orig = AgentProcess.command

    def command() -> list[str]:
        cmd = orig(a)
        i = cmd.index("--log-level")
        cmd[i + 1] = "INFO"
        return cmd

    return command


def open_sessions(agents: list[AgentProcess], n: int) -> list[SessionStat]:
    p = len(agents)
    stats: list[SessionStat] = []

    def one(k: int) -> SessionStat:
        snd, rdr = agents[k % p], agents[(k + 1) % p]
        rel = f"_load/s{k:04d}"
        full = f"{snd.email}/{rel}"
        s = snd.open(rel)
        assert s.state == pb.SESSION_STATE_OPEN, s
        rdr.open(full)
        rdr.wait_session(full, lambda x: x.state == pb.SESSION_STATE_OPEN, 60)
        snd.wait_session(full, lambda x: rdr.email in x.readers, 60)
        return SessionStat(k, full)

    with ThreadPoolExecutor(8) as ex:
        stats = list(ex.map(one, range(n)))
    return stats


async def drive(
    agents: list[AgentProcess],
    stats: list[SessionStat],
    rate: float,
    size: int,
    duration: float,
    drain_timeout: float,
) -> dict[str, float]:
    p = len(agents)
    pad = b"\0" * max(0, size - HDR.size)
    writers: list[Stream] = []
    readers: list[Stream] = []
    for st in stats:
        snd, rdr = agents[st.k % p], agents[(st.k + 1) % p]
        writers.append(await Stream.connect(snd.session_dir(st.path), timeout=20))
        readers.append(await Stream.connect(rdr.session_dir(st.path), timeout=20))
    # Let the readers' agents register the app connections before the first frame.
    await asyncio.sleep(0.5)
    stop_writing = asyncio.Event()
    t_start = time.monotonic()

    async def write(st: SessionStat, w: Stream) -> None:
        interval = 1.0 / rate
        # spread the sessions' ticks over one interval
        nxt = time.monotonic() + (st.k % 100) / 100 * interval
        while not stop_writing.is_set():
            delay = nxt - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            nxt += interval
            now = time.monotonic()
            if nxt < now - 1.0:  # fell behind by > 1 s: do not burst to catch up
                nxt = now
            w.write(HDR.pack(st.k, st.sent, time.monotonic_ns()) + pad)
            st.sent += 1
            await w.drain()

    async def read(st: SessionStat, r: Stream) -> None:
        lat = st.lat_us
        while True:
            try:
                f = await r.recv()
            except Exception:
                return
            now = time.monotonic_ns()
            _k, idx, t = HDR.unpack_from(f.payload)
            lat.append((now - t) / 1000)
            st.received += 1
            if idx == st.expected_next:
                st.expected_next += 1
            elif idx < st.expected_next:
                st.dups += 1
            else:
                st.gaps += idx - st.expected_next
                st.disorder += 1
                st.expected_next = idx + 1

    wtasks = [asyncio.create_task(write(st, w)) for st, w in zip(stats, writers, strict=True)]
    rtasks = [asyncio.create_task(read(st, r)) for st, r in zip(stats, readers, strict=True)]
    await asyncio.sleep(duration)
    stop_writing.set()
    await asyncio.gather(*wtasks)
    t_stop = time.monotonic()
    deadline = t_stop + drain_timeout
    while time.monotonic() < deadline and any(st.received < st.sent for st in stats):
        await asyncio.sleep(0.05)
    t_drained = time.monotonic()
    for t in rtasks:
        t.cancel()
    for s in writers + readers:
        with contextlib.suppress(Exception):
            await s.close()
    return {"t_write": t_stop - t_start, "t_total": t_drained - t_start}


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hotlink-load-"))
    work.mkdir(parents=True, exist_ok=True)
    relay: RelayProcess | None = None
    agents: list[AgentProcess] = []
    try:
        relay, agents = start_stack(work, args.peers, args.quiet)
        t = time.monotonic()
        stats = open_sessions(agents, args.sessions)
        if not args.quiet:
            print(f"{args.sessions} sessions open in {time.monotonic() - t:.1f}s", flush=True)
        assert relay.proc is not None
        pids = {"relay": relay.proc.pid}
        for a in agents:
            assert a.proc is not None
            pids[a.email] = a.proc.pid
        rss0 = {n: rss_kib(pid)[0] for n, pid in pids.items()}
        cpu0 = {n: cpu_seconds([pid]) for n, pid in pids.items()}
        sampler = Sampler(pids)
        sampler.start()
        self_cpu0 = os.times()
        load0 = os.getloadavg()[0]
        try:
            coro = drive(agents, stats, args.rate, args.size, args.duration, args.drain_timeout)
            times = run_main(coro)
        finally:
            sampler.halt.set()
            sampler.join()
        self_cpu = os.times()
        gen_cpu = (self_cpu.user + self_cpu.system) - (self_cpu0.user + self_cpu0.system)
        load1 = os.getloadavg()[0]
        end = {n: rss_kib(pid) for n, pid in pids.items()}
        cpu = {n: cpu_seconds([pid]) - cpu0[n] for n, pid in pids.items()}
        agent_names = [a.email for a in agents]
        sent = sum(s.sent for s in stats)
        received = sum(s.received for s in stats)
        lost = sum(max(0, s.sent - s.expected_next) + s.gaps for s in stats)
        dups = sum(s.dups for s in stats)
        disorder = sum(s.disorder for s in stats)
        lat = [x for s in stats for x in s.lat_us]
        agent_rss = [end[n][0] for n in agent_names]
        agent_max = [sampler.max_rss[n] for n in agent_names]
        report = {
            "params": {
                "peers": args.peers,
                "sessions": args.sessions,
                "duration_s": args.duration,
                "rate_per_session": args.rate,
                "size": args.size,
            },
            "sent": sent,
            "received": received,
            "lost": lost,
            "duplicates": dups,
            "out_of_order": disorder,
            "sessions_incomplete": sum(1 for s in stats if s.expected_next != s.sent or s.gaps),
            "throughput_fps": round(received / times["t_write"], 1),
            "throughput_MBps": round(received * args.size / times["t_write"] / 1e6, 2),
            "offered_fps": round(args.sessions * args.rate, 1),
            "drain_s": round(times["t_total"] - times["t_write"], 2),
            "latency_ms": {
                "p50": round(pct(lat, 0.50) / 1000, 3),
                "p90": round(pct(lat, 0.90) / 1000, 3),
                "p99": round(pct(lat, 0.99) / 1000, 3),
                "p999": round(pct(lat, 0.999) / 1000, 3),
                "max": round(max(lat) / 1000, 3) if lat else None,
                "mean": round(statistics.fmean(lat) / 1000, 3) if lat else None,
            },
            "rss_MiB": {
                "relay_start": round(rss0["relay"] / 1024, 1),
                "relay_max": round(sampler.max_rss["relay"] / 1024, 1),
                "relay_peak_hwm": round(end["relay"][1] / 1024, 1),
                "agent_start_mean": round(statistics.fmean(rss0[n] for n in agent_names) / 1024, 1),
                "agent_end_mean": round(statistics.fmean(agent_rss) / 1024, 1),
                "agent_max": round(max(agent_max) / 1024, 1),
                "agent_peak_hwm_max": round(max(end[n][1] for n in agent_names) / 1024, 1),
                "agents_total_end": round(sum(agent_rss) / 1024, 1),
            },
            "cpu_s": {
                "relay": round(cpu["relay"], 1),
                "agents_total": round(sum(cpu[n] for n in agent_names), 1),
                "generator": round(gen_cpu, 1),
            },
            # other work on the machine shows here (2 cores: > 2 means CPU contention)
            "loadavg_1min": [round(load0, 2), round(load1, 2)],
            "workdir": str(work),
        }
        return report
    finally:
        for a in agents:
            with contextlib.suppress(Exception):
                a.stop()
        if relay is not None:
            relay.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=20, help="agent processes (default 20)")
    ap.add_argument("--sessions", type=int, default=200, help="concurrent sessions (200)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of writing (60)")
    ap.add_argument("--rate", type=float, default=20.0, help="frames/s per session (20)")
    ap.add_argument("--size", type=int, default=256, help="payload bytes (>= 20; 256)")
    ap.add_argument("--drain-timeout", type=float, default=30.0, help="seconds (30)")
    ap.add_argument("--workdir", help="keep everything here (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    ap.add_argument("--json", help="also write the report to this file")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.peers < 2 or args.sessions < 1 or args.size < HDR.size:
        ap.error("need --peers >= 2, --sessions >= 1, --size >= 20")
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    clean = report["lost"] == 0 and report["duplicates"] == 0 and report["out_of_order"] == 0
    clean = clean and report["received"] == report["sent"]
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
