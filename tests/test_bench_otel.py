"""`hotlinkctl bench --otel`: a traced devstack measured beside the untraced one, spans
counted by a receiver process of its own; everything it started is stopped again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hotlink.ctl.bench import BenchConfig, BenchReport, RunResult, render_table
from hotlink.ctl.bench_otel import STAGES, OtelSummary
from hotlink.ctl.stats import summarize

HOTLINKCTL = [sys.executable, "-m", "hotlink.ctl.cli"]


def _ours() -> set[int]:
    """Exporter and receiver processes of this Python (the bench's children)."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmd
            and cmd[0] == sys.executable.encode()
            and (b"hotlink.telemetry.exporter_process" in cmd or b"--count-only" in cmd)
        ):
            found.add(int(pid))
    return found


def test_bench_otel_measures_a_traced_stack_and_counts_its_spans() -> None:
    before = _ours()
    r = subprocess.run(
        [*HOTLINKCTL, "bench", "--otel", "--sizes", "1KB", "--count", "5", "--warmup", "1",
         "--inflight", "2", "--no-floor", "--json", "-q"],
        capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["config"]["otel"] is True and doc["config"]["otel_sampler_ratio"] == 1.0
    assert {x["mode"] for x in doc["results"]} == {"sequential", "pipelined"}
    for x in doc["results"]:
        assert x["hotlink"]["count"] == 5 and x["traced"]["count"] == 5
        assert set(x["traced_ratio_to_untraced"]) >= {"p50", "p99"}
    otel = doc["otel"]
    assert otel["messages"] == 2 * (5 + 1)
    # every traced message made one span of each data-path stage, all delivered
    for stage in STAGES:
        assert otel["names"].get(stage) == otel["messages"], otel["names"]
    assert otel["traces"] >= otel["messages"]
    assert not (_ours() - before), "bench --otel left exporter or receiver processes"


def test_table_shows_the_traced_row_and_its_ratio() -> None:
    s = summarize([100_000, 200_000, 300_000], 1024, 1.0)
    t = summarize([150_000, 250_000, 600_000], 1024, 1.0)
    rep = BenchReport(
        BenchConfig(sizes=(1024,), otel=True),
        {"cpu_model": "cpu", "cpu_count": 2, "python": "3", "uvloop": True, "tracing": False},
        results=[RunResult(1024, "sequential", 1, s, s, t)],
        otel=OtelSummary("http://127.0.0.1:1", 1.0, 15, 3, dict.fromkeys(STAGES, 3), 3),
    )
    text = render_table(rep)
    traced = next(line for line in text.splitlines() if " traced " in line)
    assert "1.25x / 2.00x" in traced  # P50 250/200 µs, P99 600/300 µs
    assert "15 spans in 3 traces for 3 messages" in text
