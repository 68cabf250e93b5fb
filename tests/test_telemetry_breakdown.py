"""Per-stage breakdown, JSON lines, the file-trace map and `hotlinkctl trace`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from hotlink.ctl import trace as ctl_trace
from hotlink.ctl.errors import NotFound, UsageError
from hotlink.telemetry import breakdown as bd
from hotlink.telemetry import names as N
from hotlink.telemetry.filemeta import FileTraces
from hotlink.telemetry.receiver import dump_jsonl, load_jsonl, parse_listen

US = 1_000


def message(
    trace: int, base: int, per_stage: list[int], gap: int = 10 * US
) -> list[dict[str, Any]]:
    """One hotlink-path trace: each stage lasts per_stage[i] ns, gaps between."""
    spans, t, parent = [], base, ""
    for i, (name, d) in enumerate(zip(N.HOTLINK_STAGES, per_stage, strict=False)):
        sid = f"{trace:08x}{i:08x}"
        spans.append(
            {
                "trace_id": f"{trace:032x}",
                "span_id": sid,
                "parent_span_id": parent,
                "name": name,
                "service": "hotlink-relay" if name == N.RELAY_ROUTE else "hotlink-agent",
                "start_ns": t,
                "end_ns": t + d,
            }
        )
        parent, t = sid, t + d + gap
    return spans


def test_compute_stats_order_and_end_to_end() -> None:
    spans = []
    for k in range(1, 101):  # durations k µs for every stage
        spans += message(k, k * 10**9, [k * US] * 5)
    spans += message(1000, 0, [US, US])  # incomplete: 2 stages
    b = bd.compute(reversed(spans))
    assert [s.name for s in b.stages] == list(N.HOTLINK_STAGES)
    first = b.stages[0]
    assert first.count == 101 and first.p50_ns == 50 * US and first.p99_ns == 99 * US
    assert first.offset_p50_ns == 0
    route = b.stages[2]
    assert route.service == "hotlink-relay" and route.offset_p50_ns == 2 * (50 * US + 10 * US)
    (e2e,) = b.end_to_end
    assert e2e.origin == N.HOTLINK_IPC_READ and e2e.count == 101 and e2e.complete == 100
    assert e2e.p50_ns == 5 * 50 * US + 4 * 10 * US
    assert b.spans == 502 and b.traces == 101
    assert json.loads(json.dumps(b.to_dict()))["stages"][0]["name"] == N.HOTLINK_IPC_READ


def test_unknown_names_sort_after_known_stages() -> None:
    spans = [
        *message(1, 0, [US]),
        {"trace_id": "b", "span_id": "1", "name": "zz.other", "start_ns": 0, "end_ns": 5},
        {"trace_id": "c", "span_id": "1", "name": "aa.other", "start_ns": 0, "end_ns": 5},
    ]
    b = bd.compute(spans)
    assert [s.name for s in b.stages] == [N.HOTLINK_IPC_READ, "aa.other", "zz.other"]


def test_jsonl_round_trip_skips_junk(tmp_path: Path) -> None:
    spans = message(7, 0, [US] * 5)
    f = tmp_path / "spans.jsonl"
    assert dump_jsonl(spans, f) == 5
    with open(f, "a") as fh:
        fh.write("\nnot json\n[1, 2]\n")
    assert load_jsonl(f) == spans


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:4317") == ("127.0.0.1", 4317)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("4317") == ("127.0.0.1", 4317)
    assert parse_listen("[::1]:4317") == ("::1", 4317)
    for bad in ("x:y", "1:99999"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_file_traces_bounded() -> None:
    ft = FileTraces(capacity=2)
    ft.put("a", "tp-a")
    ft.put("b", "tp-b")
    ft.put("x", "")  # nothing to remember
    ft.put("c", "tp-c")
    assert len(ft) == 2 and ft.evicted == 1
    assert ft.take("a") == "" and ft.take("c") == "tp-c" and ft.take("c") == ""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()

    def add(name: str, help: str, fn: Any, desc: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=desc)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=fn)
        return p

    ctl_trace.register(add)
    return ap


def test_hotlinkctl_trace_from_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "spans.jsonl"
    spans = []
    for k in range(1, 11):
        spans += message(k, k * 10**9, [k * US] * 5)
    dump_jsonl(spans, f)
    args = _parser().parse_args(["trace", str(f)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in N.HOTLINK_STAGES:
        assert name in out
    assert "START@P50" in out and "COMPLETE" in out and "50 spans in 10 traces" in out

    args = _parser().parse_args(["trace", "--json", "--prefix", "relay.", str(f)])
    assert args.func(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in d["stages"]] == [N.RELAY_ROUTE]


def test_hotlinkctl_trace_errors(tmp_path: Path) -> None:
    p = _parser()
    with pytest.raises(UsageError):
        ctl_trace.cmd_trace(p.parse_args(["trace"]))
    with pytest.raises(UsageError):
        ctl_trace.cmd_trace(p.parse_args(["trace", "--listen", ":0", "x.jsonl"]))
    with pytest.raises(NotFound):
        ctl_trace.cmd_trace(p.parse_args(["trace", str(tmp_path / "missing.jsonl")]))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(NotFound):
        ctl_trace.cmd_trace(p.parse_args(["trace", str(tmp_path / "empty.jsonl")]))
