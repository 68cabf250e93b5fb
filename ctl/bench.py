"""`hotlinkctl bench`: one-way latency app socket → app socket, against a measured floor.

`--bench e2e-latency` measures the file path instead (the reference's
"e2e-latency"): the sending app writes a `.request` file into the sender's session
directory (temp name, then rename, as apps should), the sender's agent notices it
(inotify), uploads it, the relay stores and broadcasts it, and the reader's agent
writes it into its mirror and replays it into the reader app's stream.sock; the sample
ends when the reader app has the frame (the mirror file is checked to exist too). No
floor: there is no plain-forwarding equivalent of the file path.

Modules: `bench_measure` (the stamped samples of one channel), `bench_channels` (the
hotlink, file and floor channels), `bench_table` (the text table). For every (size,
mode) the floor (`floor.py`: same topology, plain forwarding) and each devstack are
measured in alternating blocks (`--blocks`), so each ratio compares samples taken at
the same moments of the same machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotlink.common import hot_modules
from hotlink.common.loop import running_on_uvloop

from . import devstack
from .agent_client import AgentClient
from .bench_channels import FloorStack as FloorStack
from .bench_channels import open_file_channel as open_file_channel
from .bench_channels import open_hotlink_channel as open_hotlink_channel
from .bench_channels import start_floor as start_floor
from .bench_measure import STAMP as STAMP
from .bench_measure import Channel as Channel
from .bench_measure import ThroughputResult as ThroughputResult
from .bench_measure import _run as _run  # bench_cluster measures with it
from .bench_measure import measure as measure
from .bench_measure import measure_alternating, throughput_alternating
from .bench_measure import measure_throughput as measure_throughput
from .bench_otel import OtelSummary, Receiver, TracedStack
from .bench_paths import PATH_LABELS, BenchStack, compare_paths, path_processes, start_stacks
from .bench_progress import Progress as Progress  # `bench.Progress` for the CLI
from .bench_table import render_table as render_table  # `bench.render_table` for callers
from .errors import UsageError
from .stats import LatencySummary, fmt_size, ratios

DEFAULT_SIZES = (1024, 10 * 1024, 100 * 1024)

#: The reference's published figures (hotlink-protocol.md §7): 25 samples, one in flight.
REFERENCE: dict[str, dict[str, int]] = {
    "go": {"p50_ns": 330_000, "p90_ns": 870_000, "p95_ns": 880_000, "p99_ns": 1_100_000},
    "rust": {"p50_ns": 970_000, "p90_ns": 4_800_000, "p95_ns": 5_500_000, "p99_ns": 5_800_000},
}

DESCRIPTIONS = {
    "hotlink-protocol": "one-way latency, app socket to app socket, monotonic ns stamp",
    "e2e-latency": "one-way latency, .request file in the sender's session dir to the "
    "reader app's stream.sock (file path), monotonic ns stamp",
}


@dataclass
class BenchConfig:
    bench: str = "hotlink-protocol"
    sizes: tuple[int, ...] = DEFAULT_SIZES
    count: int = 1000
    warmup: int = 50
    inflight: int = 8
    ipc: str = "unix"
    floor: bool = True
    throughput_mb: float = 0.0
    frame_size: int = 64 * 1024
    timeout: float = 60.0
    devstack_dir: str = ""
    otel: bool = False  # also measure a traced devstack (bench_otel)
    otel_ratio: float = 1.0
    #: relay links over TLS (wss://, a throwaway local CA), for the floor too
    tls: bool = False
    #: `--direct off,auto`: one devstack per value (agents started with `--direct V`),
    #: measured side by side in the same run; empty: one devstack, no flag
    direct: tuple[str, ...] = ()
    #: every row measured in this many blocks per path, alternating between the floor
    #: and each devstack (bench_measure.measure_alternating); 1: one after the other
    blocks: int = 4


@dataclass
class RunResult:
    size: int
    mode: str  # "sequential" | "pipelined"
    inflight: int
    hotlink: LatencySummary
    floor: LatencySummary | None = None
    traced: LatencySummary | None = None  # --otel: the same through a traced devstack
    #: which devstack: "" (the only one), "relay" (agents --direct off), "direct" (auto)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "size": self.size,
            "mode": self.mode,
            "inflight": self.inflight,
            "hotlink": self.hotlink.to_dict(),
        }
        if self.path:
            d["path"] = self.path
        if self.floor is not None:
            d["floor"] = self.floor.to_dict()
            d["ratio_to_floor"] = ratios(self.hotlink, self.floor)
        if self.traced is not None:
            d["traced"] = self.traced.to_dict()
            d["traced_ratio_to_untraced"] = ratios(self.traced, self.hotlink)
        return d


@dataclass
class BenchReport:
    config: BenchConfig
    environment: dict[str, Any]
    results: list[RunResult] = field(default_factory=list)
    throughput: list[ThroughputResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    otel: OtelSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "bench": cfg.bench,
            "description": DESCRIPTIONS.get(cfg.bench, ""),
            "notes": self.notes,
            "config": {
                "sizes": list(cfg.sizes),
                "count": cfg.count,
                "warmup": cfg.warmup,
                "inflight": cfg.inflight,
                "ipc": cfg.ipc,
                "tls": cfg.tls,
                "floor": cfg.floor,
                "throughput_mb": cfg.throughput_mb,
                "frame_size": cfg.frame_size,
                "otel": cfg.otel,
                "otel_sampler_ratio": cfg.otel_ratio if cfg.otel else None,
                "direct": list(cfg.direct),
                "blocks": cfg.blocks,
            },
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
            "throughput": [t.to_dict() for t in self.throughput],
            "otel": self.otel.to_dict() if self.otel is not None else None,
            "direct_vs_relay": [c.to_dict() for c in compare_paths(self)],
            "reference": REFERENCE,
        }


# --------------------------------------------------------------------------- environment


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    tracing = (
        any(
            os.environ.get(k)
            for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "HOTLINK_TRACING")
        )
        and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"
    )
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "uvloop": running_on_uvloop(),
        "tracing": bool(tracing),
        "hot_path": hot_modules.status().summary(),
        "clock": "time.perf_counter_ns (CLOCK_MONOTONIC), sender and receiver in one process",
        "time_unix": int(time.time()),
    }


# --------------------------------------------------------------------------- the bench


async def run_bench(cfg: BenchConfig, progress: Progress) -> BenchReport:
    """Start (or reuse) a devstack and the floor, measure, stop what we started."""
    if cfg.bench not in DESCRIPTIONS:
        raise UsageError(f"unknown benchmark {cfg.bench!r}", "use " + " or ".join(DESCRIPTIONS))
    files = cfg.bench == "e2e-latency"
    if files:
        cfg.floor = False  # nothing to compare the file path with
        cfg.throughput_mb = 0.0
    variants = _direct_variants(cfg, files)
    report = BenchReport(cfg, environment())
    if cfg.tls:
        report.notes.append(
            "relay links over TLS (wss://, local CA)"
            + ("; the floor's too" if cfg.floor else "")
            + ("; --dir: the running stack's own setting applies" if cfg.devstack_dir else "")
        )
    floor: FloorStack | None = None
    stacks: list[BenchStack] = []
    clients: list[AgentClient] = []
    traced = TracedStack()
    try:
        if cfg.floor:
            # Before any gRPC channel exists: forking after gRPC started threads makes
            # grpc log fork warnings.
            progress.note("starting the floor (plain forwarding processes)")
            floor = await start_floor(cfg.tls)
        if cfg.otel:
            if files:
                raise UsageError("--otel measures the hotlink path, not e2e-latency")
            traced.rx = await Receiver.start()
        rel = f"_mpc/bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        await start_stacks(cfg, variants, files, rel, progress, stacks, clients, report.notes)
        if traced.rx is not None:
            traced.dir = tempfile.TemporaryDirectory(prefix="hlbench-otel-", dir="/tmp")
            progress.note(
                f"starting a traced devstack in {traced.dir.name} (spans to "
                f"{traced.rx.endpoint}, sampler ratio {cfg.otel_ratio:g})"
            )
            traced.state = await devstack.up(
                traced.dir.name, otel=traced.rx.endpoint, otel_ratio=cfg.otel_ratio,
                direct="off",
            )  # fmt: skip
            ta, tb = traced.state.peers[0], traced.state.peers[1]
            ta_c, tb_c = AgentClient(ta.control), AgentClient(tb.control)
            clients += [ta_c, tb_c]
            traced.chan = await open_hotlink_channel(
                ta_c, ta.email, tb_c, tb.email, rel, ipc=cfg.ipc
            )
            traced.chan.processes = path_processes(traced.state)

        modes = [("sequential", 1)]
        if cfg.inflight > 1:
            modes.append(("pipelined", cfg.inflight))
        if cfg.count > 0:
            for size in cfg.sizes:
                for mode, inflight in modes:
                    tag = f"{fmt_size(size)} {mode}"
                    chans = [st.chan for st in stacks if st.chan is not None]
                    labels = [f"{st.label:<7} {tag}" for st in stacks]
                    if floor is not None:
                        chans.insert(0, floor.channel)
                        labels.insert(0, f"floor   {tag}")
                    sums = await measure_alternating(
                        chans, size, cfg.count, blocks=cfg.blocks, labels=labels,
                        inflight=inflight, warmup=cfg.warmup, timeout=cfg.timeout,
                        progress=progress,
                    )  # fmt: skip
                    fl = sums.pop(0) if floor is not None else None
                    for index, (stack, hl) in enumerate(zip(stacks, sums, strict=True)):
                        tr = None
                        if traced.chan is not None and index == 0:
                            tr = await measure(
                                traced.chan, size, cfg.count, inflight=inflight,
                                warmup=cfg.warmup, timeout=cfg.timeout, progress=progress,
                                label=f"traced  {tag}",
                            )  # fmt: skip
                            traced.messages += cfg.count + cfg.warmup
                            await traced.settle(progress)
                        path = stack.label if cfg.direct else ""
                        report.results.append(RunResult(size, mode, inflight, hl, fl, tr, path))
        if cfg.throughput_mb > 0:
            total = int(cfg.throughput_mb * 1_000_000)
            window = max(cfg.inflight, 1)
            named = [("floor", floor.channel if floor else None)]
            named += [(stack.label, stack.chan) for stack in stacks]
            named = [(name, ch) for name, ch in named if ch is not None]
            progress.note(
                f"throughput of {', '.join(n for n, _ in named)}: {cfg.throughput_mb:g} MB "
                f"in {fmt_size(cfg.frame_size)} frames each, in {cfg.blocks} alternating blocks"
            )
            results = await throughput_alternating(
                [ch for _, ch in named], total, cfg.frame_size, window, cfg.timeout,
                blocks=cfg.blocks,
            )  # fmt: skip
            for (name, _), t in zip(named, results, strict=True):
                t.path = name
                report.throughput.append(t)
    finally:
        progress.finish()
        if floor is not None:
            await floor.stop()
        for stack in stacks:
            await stack.close_channel()
        if traced.chan is not None:
            with contextlib.suppress(Exception):
                await traced.chan.close()
        for c in clients:
            await c.close()
        for stack in stacks:
            stack.stop()
        report.otel = await traced.stop(cfg.otel_ratio, progress)
    return report


def _direct_variants(cfg: BenchConfig, files: bool) -> list[str]:
    """The `--direct` values to measure ("" alone: one devstack, no flag).

    Without `--direct` the bench's own devstack runs `--direct off`: the table is the
    relay path against the floor (and `--otel`'s traced twin), whatever the agents'
    default; `--direct off,auto` adds the direct path. A `--dir` stack or the file
    path keeps its own setting."""
    if not cfg.direct:
        return [""] if files or cfg.devstack_dir else ["off"]
    variants = list(dict.fromkeys(cfg.direct))
    bad = [v for v in variants if v not in PATH_LABELS or not v]
    if bad:
        raise UsageError(f"--direct {','.join(bad)}: use off, auto or off,auto")
    if cfg.devstack_dir:
        raise UsageError(
            "--direct starts its own devstack per value; it does not combine with --dir",
            "drop --dir (or start that stack with: hotlinkctl devstack up --direct VALUE)",
        )
    if files:
        raise UsageError("--direct measures the hotlink path, not e2e-latency")
    if cfg.otel and variants != ["off"]:
        raise UsageError(
            "--otel traces the relay path: it combines with --direct off only",
            "run the direct path as a second bench: hotlinkctl bench --direct auto",
        )
    return variants
