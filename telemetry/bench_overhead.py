"""Micro-benchmark: what tracing costs per message, ours vs the raw OpenTelemetry SDK.

    python -m hotlink.telemetry.bench_overhead [--messages N] [--repeat R] [--json]

One "message" is the hotlink path's five stages as the call sites do them (origin
decision, span ids, traceparent on the wire twice, parse at two hops, clock stamps,
`record` x5), all in one process, so the figure is the sum over the three processes.

Rows:
- off: `OFF` (tracing disabled), the default;
- sampled out: tracing on, this message not sampled (the 99% case at ratio 0.01);
- sampled, hot path: tracing on, message sampled: what the data path pays;
- sampled, background: building the five `ReadableSpan`s and handing them to the
  `BatchSpanProcessor` (flusher thread; off the data path but the same CPU/GIL);
- raw SDK always_on / sampled out: five `tracer.start_span(...).end()` with the SDK's
  own Tracer and BatchSpanProcessor, for comparison (the cost of the plain SDK way).
Export itself (protobuf + gRPC in the BSP thread) is not included in any row.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from . import names as N
from .core import OFF, Telemetry
from .export import SdkSink

STAGES = N.HOTLINK_STAGES


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[object]) -> SpanExportResult:  # type: ignore[override]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class NullSink:
    def export(self, records: list[object]) -> None:
        pass

    def force_flush(self, timeout: float) -> None:
        pass

    def shutdown(self, timeout: float) -> None:
        pass


def _processor() -> BatchSpanProcessor:
    # Huge queue and delay: on_end is an append; the worker never runs during the loop.
    return BatchSpanProcessor(
        NullExporter(),
        max_queue_size=2_000_000,
        schedule_delay_millis=3_600_000,
        max_export_batch_size=512,
    )


def one_message(tel: Telemetry, tp_in: str = "") -> None:
    """The five hotlink stages as the call sites in design do them (see __init__)."""
    tn = time.time_ns
    # sender agent
    ctx = tel.sample_origin()
    if ctx:
        t0 = tn()
        send = ctx.child()
        t1 = tn()
        tp = send.traceparent
        t2 = tn()
        a = {N.SESSION_ID: "s1", N.PATH: "alice@x/_mpc/0_to_1", N.SEQ: 1, N.MESSAGING_BODY_SIZE: 1}
        tel.record(STAGES[0], ctx, t0, t1, a)
        tel.record(STAGES[1], send, t1, t2, a)
    else:
        tp = tp_in
    # relay
    r0 = tn() if tel.enabled else 0
    rctx = tel.child_of(tp)
    if rctx:
        tp = rctx.traceparent
        tel.record(STAGES[2], rctx, r0, tn(), {N.SEQ: 1})
    # reader agent
    w0 = tn() if tel.enabled else 0
    wctx = tel.child_of(tp)
    if wctx:
        w1 = tn()
        ipc = wctx.child()
        tel.record(STAGES[3], wctx, w0, w1, {N.SEQ: 1})
        tel.record(STAGES[4], ipc, w1, tn(), {N.SEQ: 1})


def _best(fn: Callable[[], None], n: int, repeat: int, per: int = 1) -> float:
    """Best-of-`repeat` mean ns per call of fn (called n times), divided by `per`."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best / per


def run(n: int, repeat: int) -> dict[str, float]:
    res: dict[str, float] = {}
    base = _best(lambda: None, n, repeat)

    res["off"] = _best(lambda: one_message(OFF), n, repeat) - base

    out = Telemetry(enabled=True, root_ratio=0.0, sink=NullSink(), start_thread=False)
    res["sampled out"] = _best(lambda: one_message(out), n, repeat) - base

    rec = Telemetry(
        enabled=True, root_ratio=1.0, sink=NullSink(), max_pending=10**9, start_thread=False
    )
    pending = rec._pending

    def sampled() -> None:
        one_message(rec)
        if len(pending) > 5000:  # steady state: the flusher empties the queue
            pending.clear()

    res["sampled, hot path"] = _best(sampled, n, repeat) - base
    pending.clear()

    resource = Resource.create({"service.name": "bench"})
    bg = Telemetry(
        enabled=True,
        root_ratio=1.0,
        sink=SdkSink(_processor(), resource),
        max_pending=10**9,
        start_thread=False,
    )
    best = float("inf")
    for _ in range(repeat):
        for _ in range(n):
            one_message(bg)
        t = time.perf_counter_ns()
        bg.drain()
        best = min(best, (time.perf_counter_ns() - t) / n)
    res["sampled, background"] = best
    bg._sink.processor.shutdown()  # type: ignore[union-attr]

    for label, sampler in (
        ("raw SDK always_on", ALWAYS_ON),
        ("raw SDK sampled out", ParentBased(TraceIdRatioBased(0.0))),
    ):
        proc = _processor()
        provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(proc)
        tracer = provider.get_tracer("bench")

        def five(tracer=tracer) -> None:  # type: ignore[no-untyped-def]
            for name in STAGES:
                tracer.start_span(name, attributes={N.SEQ: 1}).end()

        res[label] = _best(five, max(1, n // 5), repeat) - base
        provider.shutdown()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hotlink.telemetry.bench_overhead")
    ap.add_argument("--messages", type=int, default=20000, help="messages per repeat")
    ap.add_argument("--repeat", type=int, default=5, help="repeats (best is reported)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.messages, args.repeat)
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in res.items()}))
        return 0
    print(f"per message = {len(STAGES)} stages across 3 processes (best of {args.repeat})")
    print(f"{'mode':<22}{'per message':>14}{'per stage':>12}")
    for k, v in res.items():
        print(f"{k:<22}{v / 1000:>11.2f} µs{v / len(STAGES) / 1000:>9.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
