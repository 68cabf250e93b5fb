"""`hotlinkctl bench --otel`: the same table with tracing on, beside the untraced one.

The bench then runs a second devstack whose relay and agents trace `--otel-sampler-arg`
of the messages (default 1: every one) and export them over OTLP/gRPC to a receiver
of its own, and for every (size, mode) measures floor, hotlink, then hotlink traced,
seconds apart (alternated, so machine noise hits all three alike). The table gets a
`traced` row and its ratio to the untraced row, so what tracing costs stays visible in
every run.

The receiver is `python -m hotlink.telemetry.receiver --count-only` in a process of
its own: it counts spans per name and trace instead of keeping them, so it costs
little of the CPU the benchmark measures, and it runs outside the benchmark process,
whose own timing it must not disturb. Its counts are reported (spans, traces and
per-stage counts) so a traced run that exported nothing cannot pass for a cheap one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from hotlink.telemetry import names as N

from . import devstack
from .errors import CtlError, Unavailable
from .proc_stat import cpu_ticks

#: The data path's spans: each traced message should make one of each.
STAGES = N.HOTLINK_STAGES


@dataclass
class OtelSummary:
    """What the bench's receiver got, and what was asked for."""

    endpoint: str
    ratio: float
    spans: int = 0
    traces: int = 0
    names: dict[str, int] = field(default_factory=dict)
    messages: int = 0  # messages sent through the traced stack (warm-up included)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "sampler_ratio": self.ratio,
            "messages": self.messages,
            "spans": self.spans,
            "traces": self.traces,
            "names": self.names,
        }

    def line(self) -> str:
        per_stage = ", ".join(f"{n} {self.names.get(n, 0)}" for n in STAGES)
        return (
            f"traced: every process exports to its own exporter process, sampler ratio "
            f"{self.ratio:g}; the receiver got {self.spans} spans in {self.traces} traces "
            f"for {self.messages} messages ({per_stage})"
        )


class Receiver:
    """The OTLP receiver process of a traced bench."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoint: str) -> None:
        self.proc = proc
        self.endpoint = endpoint

    @classmethod
    async def start(cls, timeout: float = 30.0) -> Receiver:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotlink.telemetry.receiver",
            "--listen", "127.0.0.1:0", "--count-only",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
        except TimeoutError:
            line = ""
        # "otlp receiver listening on http://127.0.0.1:PORT, counting spans"
        words = [w.rstrip(",") for w in line.split()]
        endpoint = next((w for w in words if w.startswith("http://")), "")
        if not endpoint:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise Unavailable(f"the OTLP receiver for --otel did not start: {line.strip()!r}")
        return cls(proc, endpoint)

    async def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stop it; its counts (empty if it died)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
            return {}
        for line in reversed(out.decode().splitlines()):
            with contextlib.suppress(ValueError):
                d = json.loads(line)
                if isinstance(d, dict):
                    return d
        return {}


def summary(endpoint: str, ratio: float, counts: dict[str, Any], messages: int) -> OtelSummary:
    if not counts:
        raise CtlError("the OTLP receiver of the traced stack reported nothing (it died?)")
    return OtelSummary(
        endpoint=endpoint,
        ratio=ratio,
        spans=int(counts.get("spans", 0)),
        traces=int(counts.get("traces", 0)),
        names=dict(counts.get("names", {})),
        messages=messages,
    )


@dataclass
class TracedStack:
    """The traced devstack of `--otel` and its receiver (bench_otel)."""

    rx: Receiver | None = None
    dir: tempfile.TemporaryDirectory[str] | None = None
    state: devstack.DevstackState | None = None
    chan: Any = None  # bench.Channel
    messages: int = 0

    async def settle(self, progress: Any, quiet: float = 1.5, timeout: float = 20.0) -> None:
        """Wait until the traced stack's exporter processes have done the work a round
        gave them (their CPU time stopped moving for `quiet` seconds, or `timeout`;
        `quiet` covers the traced processes' own hold-back, `core.busy_can_wait`).

        They export once their traced process is quiet (`telemetry.holdback`), that
        is while the bench measures the next floor or untraced round: left alone, the
        traced stack's export would be counted against the untraced figures."""
        pids = exporter_pids(self.state)
        if not pids:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last, still = cpu_ticks(pids), loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            now = cpu_ticks(pids)
            if now != last:
                last, still = now, loop.time()
            elif loop.time() - still >= quiet:
                return
        progress.note("the traced stack's exporters were still busy after the round")

    async def stop(self, ratio: float, progress: Any) -> OtelSummary | None:
        """Stop the stack first (its processes export what they hold as they exit), then
        the receiver; its counts."""
        if self.state is not None:
            progress.note("stopping the traced devstack (its exporters flush)")
            devstack.down_state(self.state)
        if self.dir is not None:
            self.dir.cleanup()
        if self.rx is None:
            return None
        counts = await self.rx.stop()
        return summary(self.rx.endpoint, ratio, counts, self.messages) if counts else None


def exporter_pids(state: devstack.DevstackState | None) -> list[int]:
    """The exporter processes (`telemetry.exporter_process`) of a devstack's relay
    and agents: their children with that module on the command line."""
    if state is None:
        return []
    parents = [p.pid for p in state.peers]
    if state.relay is not None:
        parents.append(state.relay.pid)
    out: list[int] = []
    for ppid in parents:
        try:
            with open(f"/proc/{ppid}/task/{ppid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:  # not Linux, or the process is gone: nothing to wait for
            continue
        for pid in kids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"hotlink.telemetry.exporter_process" in f.read():
                        out.append(pid)
            except OSError:
                continue
    return out
