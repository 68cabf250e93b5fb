#!/usr/bin/env python
"""CPU cost of tracing outside the agents, per message, without the network.

    python tests/load/trace_cpu.py [LABEL]

Prints thread CPU ns (best of 3 rounds; preemption on a busy machine does not count):

- relay: `RelayTracer.route` for 20 000 decoded 1 KB HotlinkData frames that carry a
  sampled traceparent (parse, new span id, the frame spliced with the route span's
  traceparent, the readers' `Outgoing`, one compact record), a no-op forward, and the
  records pickled per 64 as the flusher does; the harness's own `Outgoing` and clock
  read (~0.6 µs) are included;
- exporter: `otlp_encode.Encoder.span` per data-path span expanded from compact
  records (`compact.expand`), with fresh ids, seqs and message ids in every round.

docs/performance.md compares trees with it (run it with each tree's venv, alternating;
the exporter row needs a tree with `telemetry/compact.py`).
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from typing import Any

from hotlink.relay.connection import Outgoing
from hotlink.relay.tracing import RelayTracer
from hotlink.telemetry import names as N
from hotlink.telemetry.core import Telemetry
from hotlink.telemetry.exporter_process import encode_batch
from hotlink.wire import messages as m
from hotlink.wire.envelope import decode_data_view, encode

TP = "00-1234567890abcdef1234567890abcdef-1234567890abcdef-01"
PATH = "alice@example.org/_mpc/0_to_1/m/1.request"


class NoSessions:
    """The router as `RelayTracer` reads it: no session known (attributes from the
    message alone)."""

    sessions: dict[str, Any] = {}


def relay_route(n: int = 20_000) -> float:
    tel = Telemetry(enabled=True, root_ratio=1.0, sink=None, start_thread=False)
    tel.max_pending = 10 * n
    tr = RelayTracer(tel, NoSessions())  # type: ignore[arg-type]
    frames = [encode(m.HotlinkData("sid1", i, PATH, b"x" * 1024), f"id{i}", TP) for i in range(n)]
    envs = [decode_data_view(f) for f in frames]

    def forward(_f: bytes, _m: object, _t: str, _o: list[Outgoing]) -> None:
        pass

    best = float("inf")
    for _ in range(3):
        tel._pending.clear()
        t0 = time.thread_time_ns()
        for f, e in zip(frames, envs, strict=True):
            assert e is not None
            tr.route("alice@example.org", e, [Outgoing(2, e.msg, TP)], time.time_ns(), forward, f)
        batch = list(tel._pending)
        for i in range(0, len(batch), 64):
            encode_batch(batch[i : i + 64])
        best = min(best, (time.thread_time_ns() - t0) / n)
    return best


def exporter_encode() -> float | None:
    try:
        from hotlink.telemetry import compact
    except ImportError:  # a tree from before the compact records
        return None
    from hotlink.telemetry.otlp_encode import Encoder

    shared = {
        N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
        N.SESSION_ID: "01JABCDEFGHJKMNPQRSTVWXYZ0",
        N.MESSAGING_DESTINATION: "alice@example.org/_mpc/0_to_1",
        N.SENDER: "alice@example.org",
        N.READER: "bob@example.org",
        N.READERS: "bob@example.org",
        N.FALLBACK_MODE: "off",
        N.IPC_MODE: "unix",
    }
    seqs = itertools.count(1)
    r64 = random.getrandbits

    def chunk() -> list[Any]:
        recs: list[Any] = []
        for _ in range(32):
            i = next(seqs)
            t = time.time_ns()
            recs.append(
                (compact.SEND, r64(128), r64(64), r64(64), t, t + 1000, t + 2000, shared,
                 PATH, i, 1024, f"a1b2c3{i:x}")
            )  # fmt: skip
            recs.append(
                (compact.RECV, r64(128), r64(64), r64(64), r64(64), t, t + 1000, t + 2000,
                 shared, PATH, i, 1024, f"a1b2c3{i:x}", "written", 1)
            )  # fmt: skip
        return compact.expand(recs)

    enc = Encoder({"service.name": "hotlink-agent"}, "hotlink", "0")
    best = float("inf")
    for _ in range(3):
        sets = [chunk() for _ in range(100)]
        n = sum(len(s) for s in sets)
        t0 = time.thread_time_ns()
        for spans in sets:
            for r in spans:
                enc.span(r)
        best = min(best, (time.thread_time_ns() - t0) / n)
    return best


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    print(f"{label}\trelay route traced (incl. ~0.6 µs harness), ns/message\t{relay_route():.0f}")
    got = exporter_encode()
    if got is not None:
        print(f"{label}\texporter encode, ns/span\t{got:.0f}")


if __name__ == "__main__":
    main()
