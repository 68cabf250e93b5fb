"""Latency statistics: percentiles and summaries of nanosecond samples.

Percentiles use the nearest-rank method (the value of an actual sample, never an
interpolation), which is what the reference's benchmark reports and what stays honest
with few samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from hotlink.common import sizes


def percentile(sorted_ns: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of an ascending sequence; p in (0, 100]."""
    if not sorted_ns:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} outside (0, 100]")
    rank = max(1, math.ceil(p / 100 * len(sorted_ns)))
    return sorted_ns[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """One run's one-way latencies (ns) and wall-clock throughput."""

    count: int
    p50_ns: int
    p90_ns: int
    p95_ns: int
    p99_ns: int
    min_ns: int
    max_ns: int
    mean_ns: float
    payload_bytes: int
    elapsed_s: float
    #: time on CPU per message (µs) of each process on the path, by its role
    #: ("sender agent", "relay", ...), over the measured messages (`bench_measure`)
    cpu_us: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def mb_per_s(self) -> float:
        """Payload megabytes (10^6) per second of wall time over the run."""
        if self.elapsed_s <= 0:
            return 0.0
        return self.count * self.payload_bytes / self.elapsed_s / 1e6

    @property
    def msgs_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        d: dict[str, float | int] = asdict(self)
        d["mb_per_s"] = round(self.mb_per_s, 3)
        d["msgs_per_s"] = round(self.msgs_per_s, 1)
        d["mean_ns"] = round(self.mean_ns, 1)
        return d


def summarize(samples_ns: Sequence[int], payload_bytes: int, elapsed_s: float) -> LatencySummary:
    s = sorted(samples_ns)
    if not s:
        raise ValueError("no samples")
    return LatencySummary(
        count=len(s),
        p50_ns=percentile(s, 50),
        p90_ns=percentile(s, 90),
        p95_ns=percentile(s, 95),
        p99_ns=percentile(s, 99),
        min_ns=s[0],
        max_ns=s[-1],
        mean_ns=sum(s) / len(s),
        payload_bytes=payload_bytes,
        elapsed_s=elapsed_s,
    )


RATIO_KEYS = ("p50_ns", "p90_ns", "p95_ns", "p99_ns", "max_ns", "mean_ns")


def ratios(result: LatencySummary, floor: LatencySummary) -> dict[str, float]:
    """result / floor for each latency figure (>1 means slower than the floor)."""
    out: dict[str, float] = {}
    for k in RATIO_KEYS:
        f = getattr(floor, k)
        out[k.removesuffix("_ns")] = round(getattr(result, k) / f, 3) if f else math.inf
    return out


def fmt_ns(ns: float) -> str:
    """Human duration: 330 µs, 1.10 ms, 2.5 s."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} B"


def parse_size(text: str) -> int:
    """`1KB`, `10k`, `100KB`, `1MB`, `512` → bytes (`hotlink.common.sizes`: binary
    units, like the reference); at least 8, the timestamp every payload carries."""
    n = sizes.parse_size(text)
    if n < 8:
        raise ValueError(f"size {text!r} too small: payloads carry an 8-byte timestamp")
    return n
