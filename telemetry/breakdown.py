"""Per-stage latency breakdown from collected spans (what `hotlinkctl trace` prints).

Input: span dicts as `receiver.flatten` makes them. Output, per span name: count and
nearest-rank P50/P90/P99 of its duration, plus the P50 of its start offset from the
start of its message's trace (where in the pipeline the time goes, gaps included);
and per origin stage (the trace's root span), the end-to-end time of a message: first
stage start to last stage end, with how many traces had every stage of their path.

Offsets and end-to-end times compare clocks of different processes: exact on one
machine (devstack), as good as NTP across machines.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .names import FILE_STAGES, HOTLINK_STAGES, STAGE_ORDER

#: Stages a complete trace has, by its origin span name.
PATHS: dict[str, tuple[str, ...]] = {
    HOTLINK_STAGES[0]: HOTLINK_STAGES,
    FILE_STAGES[0]: FILE_STAGES,
}


def percentile(sorted_ns: Sequence[int], p: float) -> int:
    """Nearest-rank percentile (an actual sample; as `hotlink.ctl.stats`)."""
    if not sorted_ns:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1]


@dataclass(frozen=True, slots=True)
class StageStats:
    name: str
    service: str
    count: int
    p50_ns: int
    p90_ns: int
    p99_ns: int
    offset_p50_ns: int  # start, relative to the start of the message's trace


@dataclass(frozen=True, slots=True)
class EndToEnd:
    origin: str  # the root span's name
    count: int  # traces
    complete: int  # traces with every stage of their path (0 if the path is unknown)
    p50_ns: int
    p90_ns: int
    p99_ns: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    spans: int
    traces: int
    stages: list[StageStats]
    end_to_end: list[EndToEnd]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _order_key(name: str, offset: int) -> tuple[int, int, str]:
    try:
        return (STAGE_ORDER.index(name), 0, name)
    except ValueError:
        return (len(STAGE_ORDER), offset, name)


def compute(spans: Iterable[dict[str, Any]]) -> Breakdown:
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    n = 0
    for s in spans:
        by_trace[str(s.get("trace_id", ""))].append(s)
        n += 1
    durations: dict[str, list[int]] = defaultdict(list)
    offsets: dict[str, list[int]] = defaultdict(list)
    services: dict[str, set[str]] = defaultdict(set)
    e2e: dict[str, list[int]] = defaultdict(list)
    complete: dict[str, int] = defaultdict(int)
    for trace in by_trace.values():
        t0 = min(int(s["start_ns"]) for s in trace)
        t1 = max(int(s["end_ns"]) for s in trace)
        for s in trace:
            name = str(s["name"])
            durations[name].append(int(s["end_ns"]) - int(s["start_ns"]))
            offsets[name].append(int(s["start_ns"]) - t0)
            if s.get("service"):
                services[name].add(str(s["service"]))
        roots = [s for s in trace if not s.get("parent_span_id")]
        origin = str(min(roots or trace, key=lambda s: int(s["start_ns"]))["name"])
        e2e[origin].append(t1 - t0)
        path = PATHS.get(origin)
        if path and set(path) <= {str(s["name"]) for s in trace}:
            complete[origin] += 1

    stages = []
    for name, ds in durations.items():
        ds.sort()
        offs = sorted(offsets[name])
        stages.append(
            StageStats(
                name=name,
                service=",".join(sorted(services[name])),
                count=len(ds),
                p50_ns=percentile(ds, 50),
                p90_ns=percentile(ds, 90),
                p99_ns=percentile(ds, 99),
                offset_p50_ns=percentile(offs, 50),
            )
        )
    stages.sort(key=lambda st: _order_key(st.name, st.offset_p50_ns))
    ends = []
    for origin, ts in e2e.items():
        ts.sort()
        ends.append(
            EndToEnd(
                origin=origin,
                count=len(ts),
                complete=complete.get(origin, 0),
                p50_ns=percentile(ts, 50),
                p90_ns=percentile(ts, 90),
                p99_ns=percentile(ts, 99),
            )
        )
    ends.sort(key=lambda e: _order_key(e.origin, 0))
    return Breakdown(spans=n, traces=len(by_trace), stages=stages, end_to_end=ends)
