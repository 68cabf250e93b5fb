"""`hotlinkctl bench --direct` and `devstack up --direct`: argument checks, the
direct-vs-relay comparison and its table (no processes; the e2e run is in
tests/test_bench_direct_e2e.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hotlink.ctl import bench, devstack
from hotlink.ctl.bench_paths import compare_paths
from hotlink.ctl.bench_progress import Progress
from hotlink.ctl.cli import build_parser
from hotlink.ctl.errors import UsageError
from hotlink.ctl.stats import summarize


def _summary(p50_us: int, size: int) -> bench.LatencySummary:
    return summarize([p50_us * 1000] * 99 + [p50_us * 3000], size, 1.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"direct": ("sideways",)}, "use off, auto"),
        ({"direct": ("off", "auto"), "devstack_dir": "/nonexistent"}, "--dir"),
        ({"direct": ("auto",), "bench": "e2e-latency"}, "e2e-latency"),
        ({"direct": ("auto",), "otel": True}, "--otel"),
    ],
)
def test_bench_direct_usage_errors_start_nothing(changes: dict, message: str) -> None:
    cfg = bench.BenchConfig(**changes)
    with pytest.raises(UsageError, match=message):
        asyncio.run(bench.run_bench(cfg, Progress(enabled=False)))


def test_devstack_up_refuses_an_unknown_direct_value(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--direct"):
        asyncio.run(devstack.up(tmp_path / "ds", direct="sometimes"))
    assert not (tmp_path / "ds").exists()  # checked before anything is created


def test_cli_parses_direct_for_bench_and_devstack() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "--direct", "off,auto"]).direct == "off,auto"
    assert parser.parse_args(["devstack", "up", "--direct", "auto"]).direct == "auto"
    assert parser.parse_args(["devstack", "up"]).direct is None
    with pytest.raises(SystemExit):
        parser.parse_args(["devstack", "up", "--direct", "maybe"])


def test_direct_vs_relay_table_and_json() -> None:
    report = bench.BenchReport(bench.BenchConfig(direct=("off", "auto")), {
        "cpu_model": "test", "cpu_count": 2, "python": "3", "uvloop": True, "tracing": False,
    })  # fmt: skip
    floor = _summary(40, 1024)
    for size, relay_us, direct_us in ((1024, 120, 60), (102400, 400, 240)):
        report.results.append(
            bench.RunResult(size, "sequential", 1, _summary(relay_us, size), floor, None, "relay")
        )
        report.results.append(
            bench.RunResult(size, "sequential", 1, _summary(direct_us, size), floor, None, "direct")
        )
    report.throughput += [
        bench.ThroughputResult("relay", 10_000_000, 65536, 153, 0.1),
        bench.ThroughputResult("direct", 10_000_000, 65536, 153, 0.05),
    ]
    rows = compare_paths(report)
    assert [r.ratios() for r in rows] == [
        {"p50": 0.5, "p99": 0.5},
        {"p50": 0.6, "p99": 0.6},
        {"mb_per_s": 2.0},
    ]
    text = bench.render_table(report)
    assert "direct vs relay" in text
    assert text.count("floor") >= 2  # the shared floor row printed once per size
    assert " relay " in text and " direct " in text and "0.50x" in text
    assert "relay 100.0 MB/s, direct 200.0 MB/s, x 2.00" in text
    data = report.to_dict()
    assert data["config"]["direct"] == ["off", "auto"]
    assert [r["path"] for r in data["results"]] == ["relay", "direct", "relay", "direct"]
    assert data["direct_vs_relay"][0]["direct_over_relay"] == {"p50": 0.5, "p99": 0.5}


def test_no_direct_flag_keeps_the_old_report() -> None:
    report = bench.BenchReport(bench.BenchConfig(), {
        "cpu_model": "test", "cpu_count": 2, "python": "3", "uvloop": True, "tracing": False,
    })  # fmt: skip
    report.results.append(bench.RunResult(1024, "sequential", 1, _summary(100, 1024)))
    assert compare_paths(report) == []
    assert "path" not in report.to_dict()["results"][0]
    assert "direct vs relay" not in bench.render_table(report)
    assert " hotlink " in bench.render_table(report)
