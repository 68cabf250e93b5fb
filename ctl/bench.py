"""`hotlinkctl bench`: one-way latency app socket → app socket, against a measured floor.

`--bench e2e-latency` measures the file path instead (the reference's
"e2e-latency"): the sending app writes a `.request` file into the sender's session
directory (temp name, then rename, as apps should), the sender's agent notices it
(inotify), uploads it, the relay stores and broadcasts it, and the reader's agent
writes it into its mirror and replays it into the reader app's stream.sock; the sample
ends when the reader app has the frame (the mirror file is checked to exist too). No
floor: there is no plain-forwarding equivalent of the file path.

Each payload carries `perf_counter_ns()` (CLOCK_MONOTONIC; sender and receiver are this
one process) little-endian in bytes 0..8 and its message index in bytes 8..16, so a lost
or reordered frame is detected rather than silently skewing the figures. For every
(size, mode) the floor (`floor.py`: same topology, plain forwarding) is measured first
and hotlink right after, so each ratio compares runs seconds apart on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import platform
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotlink.common.atomic import write_atomic
from hotlink.common.loop import running_on_uvloop, uvloop_available
from hotlink.v1 import agent_pb2 as pb

from . import devstack
from .agent_client import AgentClient
from .bench_otel import OtelSummary, Receiver, TracedStack
from .bench_progress import Progress
from .bench_table import render_table as render_table  # `bench.render_table` for callers
from .errors import CtlError, Unavailable, UsageError
from .stats import LatencySummary, fmt_size, ratios, summarize
from .stream import Endpoint, Stream
from .tlsgen import make_local_ca

STAMP = struct.Struct("<QQ")  # send time ns, message index
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

SendFn = Callable[[bytes], Awaitable[None]]
RecvFn = Callable[[], Awaitable[bytes]]


@dataclass
class Channel:
    """One direction of a topology, as the app sees it."""

    name: str
    send: SendFn
    recv: RecvFn
    close: Callable[[], Awaitable[None]]


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


@dataclass
class RunResult:
    size: int
    mode: str  # "sequential" | "pipelined"
    inflight: int
    hotlink: LatencySummary
    floor: LatencySummary | None = None
    traced: LatencySummary | None = None  # --otel: the same through a traced devstack

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "size": self.size,
            "mode": self.mode,
            "inflight": self.inflight,
            "hotlink": self.hotlink.to_dict(),
        }
        if self.floor is not None:
            d["floor"] = self.floor.to_dict()
            d["ratio_to_floor"] = ratios(self.hotlink, self.floor)
        if self.traced is not None:
            d["traced"] = self.traced.to_dict()
            d["traced_ratio_to_untraced"] = ratios(self.traced, self.hotlink)
        return d


@dataclass
class ThroughputResult:
    path: str
    total_bytes: int
    frame_size: int
    frames: int
    elapsed_s: float

    @property
    def mb_per_s(self) -> float:
        return self.total_bytes / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "total_bytes": self.total_bytes,
            "frame_size": self.frame_size,
            "frames": self.frames,
            "elapsed_s": round(self.elapsed_s, 4),
            "mb_per_s": round(self.mb_per_s, 2),
            "frames_per_s": round(self.frames_per_s, 1),
        }


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
            },
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
            "throughput": [t.to_dict() for t in self.throughput],
            "otel": self.otel.to_dict() if self.otel is not None else None,
            "reference": REFERENCE,
        }


# --------------------------------------------------------------------------- measuring


async def measure(
    ch: Channel,
    size: int,
    count: int,
    *,
    inflight: int = 1,
    warmup: int = 0,
    timeout: float = 60.0,
    progress: Progress | None = None,
    label: str = "",
) -> LatencySummary:
    """Send `count` messages of `size` bytes with at most `inflight` unanswered."""
    if size < STAMP.size:
        raise UsageError(f"payload size {size} below the {STAMP.size}-byte stamp")
    body = bytearray(os.urandom(min(size, 4096)) * (size // 4096 + 1))[:size]
    if warmup:
        await _run(ch, body, warmup, inflight, timeout, None, 0)
    if progress:
        progress.start(label, count)
    t0 = time.perf_counter()
    samples = await _run(ch, body, count, inflight, timeout, progress, warmup)
    elapsed = time.perf_counter() - t0
    return summarize(samples, size, elapsed)


async def _run(
    ch: Channel,
    body: bytearray,
    count: int,
    inflight: int,
    timeout: float,
    progress: Progress | None,
    base: int,
) -> list[int]:
    samples: list[int] = []
    send, recv, clock, stamp = ch.send, ch.recv, time.perf_counter_ns, STAMP.pack_into

    def check(msg: bytes, expect: int) -> None:
        now = clock()
        sent, idx = STAMP.unpack_from(msg)
        if idx != expect or len(msg) != len(body):
            raise CtlError(
                f"{ch.name}: expected message {expect} of {len(body)} bytes, got message "
                f"{idx} of {len(msg)} bytes (lost, duplicated or reordered frame)"
            )
        samples.append(now - sent)

    async def sequential() -> None:
        for i in range(count):
            stamp(body, 0, clock(), base + i)
            await send(bytes(body))
            check(await recv(), base + i)
            if progress is not None and not i % 16:
                progress.update(i)

    async def pipelined() -> None:
        window = asyncio.Semaphore(inflight)

        async def produce() -> None:
            for i in range(count):
                await window.acquire()
                stamp(body, 0, clock(), base + i)
                await send(bytes(body))

        producer = asyncio.create_task(produce())
        try:
            for i in range(count):
                check(await recv(), base + i)
                window.release()
                if progress is not None and not i % 16:
                    progress.update(i)
            await producer
        finally:
            producer.cancel()

    try:
        await asyncio.wait_for(sequential() if inflight <= 1 else pipelined(), timeout)
    except TimeoutError:
        raise Unavailable(
            f"{ch.name}: only {len(samples)} of {count} messages arrived within {timeout:g}s",
            "frames were lost or the path stalled; see the agent logs (devstack logs/)",
        ) from None
    if progress is not None:
        progress.update(count)
    return samples


async def measure_throughput(
    ch: Channel, total_bytes: int, frame_size: int, inflight: int, timeout: float
) -> ThroughputResult:
    """Stream `total_bytes` in `frame_size` frames, `inflight` unanswered at most."""
    frames = max(1, -(-total_bytes // frame_size))
    body = bytearray(os.urandom(min(frame_size, 4096)) * (frame_size // 4096 + 1))[:frame_size]
    t0 = time.perf_counter()
    await _run(ch, body, frames, max(inflight, 1), timeout, None, 0)
    elapsed = time.perf_counter() - t0
    return ThroughputResult(ch.name, frames * frame_size, frame_size, frames, elapsed)


# --------------------------------------------------------------------------- topologies


async def _wait_attached(
    sender: AgentClient, reader: AgentClient, reader_email: str, full: str, timeout: float
) -> None:
    """Until the reader accepted and its app is attached: no frame can be lost."""
    await sender.wait_session(
        full,
        lambda s: s.state == pb.SESSION_STATE_OPEN and reader_email in s.readers,
        timeout,
        f"{reader_email} to accept",
    )
    await reader.wait_session(
        full,
        lambda s: s.state == pb.SESSION_STATE_OPEN and s.ipc_clients >= 1,
        timeout,
        "the reader app to attach",
    )


async def open_hotlink_channel(
    sender: AgentClient,
    sender_email: str,
    reader: AgentClient,
    reader_email: str,
    rel_path: str,
    *,
    ipc: str = "unix",
    timeout: float = 15.0,
) -> Channel:
    """Open `rel_path` on the sender's datasite for `reader_email`, connect both apps,
    and wait until the reader accepted and its app is attached (no frame can be lost)."""
    ipc_mode = pb.IPC_MODE_TCP if ipc == "tcp" else pb.IPC_MODE_UNIX
    full = f"{sender_email}/{rel_path}"
    s_sess = await sender.open_session(
        rel_path, to=reader_email, ipc_mode=ipc_mode, fallback_mode=pb.FALLBACK_MODE_OFF
    )
    r_sess = await reader.open_session(full, ipc_mode=ipc_mode, fallback_mode=pb.FALLBACK_MODE_OFF)
    rx = await Stream.connect(r_sess.session_dir, timeout=timeout)
    tx = await Stream.connect(s_sess.session_dir, timeout=timeout)
    await _wait_attached(sender, reader, reader_email, full, timeout)

    async def recv() -> bytes:
        return (await rx.recv()).payload

    async def close() -> None:
        await tx.close()
        await rx.close()
        for client, ref in ((sender, full), (reader, full)):
            with contextlib.suppress(CtlError):
                await client.close_session(ref, "bench done")

    return Channel(f"hotlink {sender_email}->{reader_email}", tx.send, recv, close)


async def open_file_channel(
    sender: AgentClient,
    sender_email: str,
    reader: AgentClient,
    reader_email: str,
    rel_path: str,
    *,
    timeout: float = 15.0,
    notes: list[str] | None = None,
) -> Channel:
    """The file path as an app sees it: write `.request` files on the sender side,
    read frames from the reader's stream.sock."""
    full = f"{sender_email}/{rel_path}"
    s_sess = await sender.open_session(rel_path, to=reader_email)
    r_sess = await reader.open_session(full)
    rx = await Stream.connect(r_sess.session_dir, timeout=timeout)
    await _wait_attached(sender, reader, reader_email, full, timeout)
    sdir, rdir = Path(s_sess.session_dir), Path(r_sess.session_dir)
    names = itertools.count()
    missing = [0]

    async def send(payload: bytes) -> None:
        name = f"e2e-{next(names):08d}.request"
        # atomic: the watcher never sees half a file
        write_atomic(sdir / name, payload, mode=0o644)

    async def recv() -> bytes:
        f = await rx.recv()
        if not (rdir / f.path[len(full) + 1 :]).exists():  # frames carry the full path
            missing[0] += 1
        return f.payload

    async def close() -> None:
        await rx.close()
        if missing[0] and notes is not None:
            notes.append(
                f"{missing[0]} replayed files were not in the reader's mirror "
                "(start its agent with --keep-files to keep them)"
            )
        for client in (sender, reader):
            with contextlib.suppress(CtlError):
                await client.close_session(full, "bench done")

    return Channel(f"files {sender_email}->{reader_email}", send, recv, close)


@dataclass
class FloorStack:
    """The three floor processes and the two app connections."""

    procs: list[asyncio.subprocess.Process]
    tmp: tempfile.TemporaryDirectory[str]
    channel: Channel

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        self.tmp.cleanup()


async def _spawn_floor(args: list[str], expect: str) -> tuple[asyncio.subprocess.Process, str]:
    argv = [sys.executable, "-m", "hotlink.ctl.floor"]
    if not uvloop_available():
        argv.append("--no-uvloop")
    proc = await asyncio.create_subprocess_exec(
        *argv, *args, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 15.0)).decode().strip()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Unavailable(f"floor process {' '.join(args)} did not start within 15s") from None
    if not line.startswith(expect):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CtlError(f"floor process {' '.join(args)} failed to start: {line!r}")
    return proc, line


async def start_floor(tls: bool = False) -> FloorStack:
    tmp = tempfile.TemporaryDirectory(prefix="hlfloor-", dir="/tmp")
    procs: list[asyncio.subprocess.Process] = []
    try:
        relay_args, peer_args = ["relay", "--port", "0"], []
        if tls:  # the same TLS as the measured path: the floor stays a like-for-like one
            files = make_local_ca(Path(tmp.name) / "tls")
            relay_args += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
            peer_args = ["--ca-file", str(files.ca)]
        relay, line = await _spawn_floor(relay_args, "floor-relay listening on ")
        procs.append(relay)
        url = line.rsplit(" ", 1)[-1]
        sa, sb = str(Path(tmp.name) / "a.sock"), str(Path(tmp.name) / "b.sock")
        for sock in (sa, sb):
            p, _ = await _spawn_floor(
                ["peer", "--server", url, "--socket", sock, *peer_args], "floor-peer"
            )
            procs.append(p)
        tx = await Stream.connect_endpoint(Endpoint("unix", path=sa))
        rx = await Stream.connect_endpoint(Endpoint("unix", path=sb))
    except BaseException:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
        tmp.cleanup()
        raise

    async def recv() -> bytes:
        return (await rx.recv()).payload

    async def close() -> None:
        await tx.close()
        await rx.close()

    return FloorStack(procs, tmp, Channel("floor", tx.send, recv, close))


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
    report = BenchReport(cfg, environment())
    if cfg.tls:
        report.notes.append(
            "relay links over TLS (wss://, local CA)"
            + ("; the floor's too" if cfg.floor else "")
            + ("; --dir: the running stack's own setting applies" if cfg.devstack_dir else "")
        )
    own_dir: tempfile.TemporaryDirectory[str] | None = None
    state: devstack.DevstackState | None = None
    floor: FloorStack | None = None
    chan: Channel | None = None
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
        if cfg.devstack_dir:
            state = devstack.DevstackState.load(cfg.devstack_dir)
            progress.note(f"using the devstack in {cfg.devstack_dir}")
        else:
            own_dir = tempfile.TemporaryDirectory(prefix="hlbench-", dir="/tmp")
            progress.note(f"starting a devstack in {own_dir.name}")
            keep = ["--keep-files"] if files else []
            state = await devstack.up(own_dir.name, agent_args=keep, tls=cfg.tls)
        if len(state.peers) < 2:
            raise CtlError(f"the devstack in {state.dir} has fewer than two peers")
        a, b = state.peers[0], state.peers[1]
        ca, cb = AgentClient(a.control), AgentClient(b.control)
        clients += [ca, cb]
        rel = f"_mpc/bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if files:
            chan = await open_file_channel(ca, a.email, cb, b.email, rel, notes=report.notes)
        else:
            chan = await open_hotlink_channel(ca, a.email, cb, b.email, rel, ipc=cfg.ipc)
        if traced.rx is not None:
            traced.dir = tempfile.TemporaryDirectory(prefix="hlbench-otel-", dir="/tmp")
            progress.note(
                f"starting a traced devstack in {traced.dir.name} (spans to "
                f"{traced.rx.endpoint}, sampler ratio {cfg.otel_ratio:g})"
            )
            traced.state = await devstack.up(
                traced.dir.name, otel=traced.rx.endpoint, otel_ratio=cfg.otel_ratio
            )
            ta, tb = traced.state.peers[0], traced.state.peers[1]
            ta_c, tb_c = AgentClient(ta.control), AgentClient(tb.control)
            clients += [ta_c, tb_c]
            traced.chan = await open_hotlink_channel(
                ta_c, ta.email, tb_c, tb.email, rel, ipc=cfg.ipc
            )

        modes = [("sequential", 1)]
        if cfg.inflight > 1:
            modes.append(("pipelined", cfg.inflight))
        if cfg.count > 0:
            for size in cfg.sizes:
                for mode, inflight in modes:
                    tag = f"{fmt_size(size)} {mode}"
                    fl = None
                    if floor is not None:
                        fl = await measure(
                            floor.channel, size, cfg.count, inflight=inflight,
                            warmup=cfg.warmup, timeout=cfg.timeout, progress=progress,
                            label=f"floor   {tag}",
                        )  # fmt: skip
                    hl = await measure(
                        chan, size, cfg.count, inflight=inflight, warmup=cfg.warmup,
                        timeout=cfg.timeout, progress=progress,
                        label=f"{'files' if files else 'hotlink'} {tag}",
                    )  # fmt: skip
                    tr = None
                    if traced.chan is not None:
                        tr = await measure(
                            traced.chan, size, cfg.count, inflight=inflight,
                            warmup=cfg.warmup, timeout=cfg.timeout, progress=progress,
                            label=f"traced  {tag}",
                        )  # fmt: skip
                        traced.messages += cfg.count + cfg.warmup
                    report.results.append(RunResult(size, mode, inflight, hl, fl, tr))
        if cfg.throughput_mb > 0:
            total = int(cfg.throughput_mb * 1_000_000)
            window = max(cfg.inflight, 1)
            for name, ch in (("floor", floor.channel if floor else None), ("hotlink", chan)):
                if ch is None:
                    continue
                progress.note(
                    f"{name}: throughput, {cfg.throughput_mb:g} MB in "
                    f"{fmt_size(cfg.frame_size)} frames"
                )
                t = await measure_throughput(ch, total, cfg.frame_size, window, cfg.timeout)
                t.path = name
                report.throughput.append(t)
    finally:
        progress.finish()
        if floor is not None:
            await floor.stop()
        if chan is not None:
            with contextlib.suppress(Exception):
                await chan.close()
        if traced.chan is not None:
            with contextlib.suppress(Exception):
                await traced.chan.close()
        for c in clients:
            await c.close()
        if own_dir is not None:
            if state is not None:
                devstack.down_state(state)
            own_dir.cleanup()
        report.otel = await traced.stop(cfg.otel_ratio, progress)
    return report
