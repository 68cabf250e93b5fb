"""The hot-path facade: sampling decided once and carried, nothing for unsampled
messages, exact ids/times in the built spans, a bounded queue."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hotlink import telemetry
from hotlink.telemetry import core
from hotlink.telemetry import names as N
from hotlink.telemetry.core import OFF, SpanRecord, Telemetry, TraceCtx
from hotlink.telemetry.traceparent import format_traceparent, parse_traceparent


class ListSink:
    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self.flushed = 0
        self.shut = 0

    def export(self, records: list[SpanRecord]) -> None:
        self.records += records

    def force_flush(self, timeout: float) -> None:
        self.flushed += 1

    def shutdown(self, timeout: float) -> None:
        self.shut += 1


def make(ratio: float = 1.0, parent_based: bool = True, **kw: object) -> tuple[Telemetry, ListSink]:
    sink = ListSink()
    tel = Telemetry(
        enabled=True,
        root_ratio=ratio,
        parent_based=parent_based,
        sink=sink,
        start_thread=False,
        **kw,  # type: ignore[arg-type]
    )
    return tel, sink


# ------------------------------------------------------------------ off


def test_off_does_nothing() -> None:
    assert not OFF.enabled
    assert OFF.sample_origin() is None
    assert OFF.sample_lifecycle() is None
    assert OFF.child_of(format_traceparent(1, 2)) is None
    OFF.record(N.RELAY_ROUTE, TraceCtx(1, 2), 0, 1)
    assert OFF.pending == 0 and OFF.stats()["recorded"] == 0
    with OFF.span(N.WATCHER_DETECTED, None) as attrs:
        attrs["x"] = 1
    OFF.flush()
    OFF.shutdown()


def test_setup_off_by_default_returns_off() -> None:
    assert telemetry.setup(service_name=N.SERVICE_RELAY, env={}) is OFF


def test_importing_and_off_setup_load_no_opentelemetry() -> None:
    code = (
        "import sys; from hotlink import telemetry; "
        "t = telemetry.setup(service_name='x', env={}); "
        "assert t.sample_origin() is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ sampling


def test_ratio_one_samples_every_origin_with_fresh_ids() -> None:
    tel, _ = make(1.0)
    ctxs = [tel.sample_origin() for _ in range(200)]
    assert all(c is not None and c.parent_id == 0 and not c.remote for c in ctxs)
    assert len({c.trace_id for c in ctxs if c}) == 200
    assert all(c and c.trace_id and c.span_id for c in ctxs)


def test_ratio_zero_samples_nothing_and_builds_no_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []

    class Counting(TraceCtx):
        __slots__ = ()

        def __init__(self, *a: object) -> None:
            made.append(a)
            super().__init__(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "TraceCtx", Counting)
    tel, sink = make(0.0)
    for _ in range(1000):
        assert tel.sample_origin() is None
    assert tel.sample_lifecycle() is None  # ratio 0 = sampling off for roots
    assert made == [] and tel.pending == 0
    tel.drain()
    assert sink.records == []


def test_ratio_is_roughly_honoured() -> None:
    random.seed(1234)
    tel, _ = make(0.25)
    n = sum(tel.sample_origin() is not None for _ in range(4000))
    assert 800 < n < 1200


def test_origin_ratio_decision_matches_trace_id_rule() -> None:
    # Low 64 bits of a sampled trace id are below the bound (TraceIdRatioBased rule), so a
    # non-parent-based ratio sampler downstream reaches the same decision.
    tel, _ = make(0.5)
    bound = round(0.5 * 2**64)
    for _ in range(200):
        c = tel.sample_origin()
        if c:
            assert c.trace_id & (2**64 - 1) < bound


def test_decision_is_carried_to_another_process_even_at_ratio_zero() -> None:
    origin, _ = make(1.0)
    relay, _ = make(0.0)  # parent-based: the parent's flag decides, not the ratio
    ctx = origin.sample_origin()
    assert ctx is not None
    send = ctx.child()
    child = relay.child_of(send.traceparent)
    assert child is not None
    assert (child.trace_id, child.parent_id, child.remote) == (ctx.trace_id, send.span_id, True)
    assert child.span_id not in (ctx.span_id, send.span_id)
    inner = child.child()
    assert (inner.trace_id, inner.parent_id, inner.remote) == (ctx.trace_id, child.span_id, False)


def test_child_of_unsampled_missing_or_garbage_is_none() -> None:
    tel, _ = make(1.0)
    assert tel.child_of("") is None
    assert tel.child_of(format_traceparent(5, 6, sampled=False)) is None
    for bad in ("garbage", "00-xyz", format_traceparent(0xABC, 0xDEF).upper()):
        assert tel.child_of(bad) is None


def test_parent_ref_is_parent_of_without_parsing_the_common_case() -> None:
    tel, _ = make(1.0)
    tp = format_traceparent(5, 6)
    assert tel.parent_ref(tp) == (tp, 0)  # version 00, sampled: handed on as it came
    assert tel.parent_ref("") is None
    assert tel.parent_ref(format_traceparent(5, 6, sampled=False)) is None
    for bad in ("garbage", "00-xyz", format_traceparent(0xABC, 0xDEF).upper()):
        assert tel.parent_ref(bad) is None
    future = "01" + tp[2:] + "-more"  # another version: parsed here, as parent_of does
    assert tel.parent_ref(future) == (5, 6)
    always_on, _ = make(1.0, parent_based=False)  # decides on the ids: parsed
    assert always_on.parent_ref(format_traceparent(5, 6, sampled=False)) == (5, 6)
    assert OFF.parent_ref(tp) is None


def test_non_parent_based_samplers_decide_on_their_own() -> None:
    always_on, _ = make(1.0, parent_based=False)
    assert always_on.child_of(format_traceparent(5, 6, sampled=False)) is not None
    never, _ = make(0.0, parent_based=False)
    assert never.child_of(format_traceparent(5, 6)) is None
    half, _ = make(0.5, parent_based=False)
    assert half.child_of(format_traceparent(1, 6)) is not None  # low bits 1 < bound
    assert half.child_of(format_traceparent(2**64 - 1, 6)) is None


def test_traceparent_names_the_span_as_parent() -> None:
    ctx = TraceCtx(0xABC, 0xDEF, 7)
    p = parse_traceparent(ctx.traceparent)
    assert p == (0xABC, 0xDEF, 1)


def test_lifecycle_always_sampled_when_on() -> None:
    tel, _ = make(0.01)
    assert all(tel.sample_lifecycle() is not None for _ in range(50))


# ------------------------------------------------------------------ recording


def test_record_queues_a_tuple_and_drain_hands_it_over() -> None:
    tel, sink = make()
    ctx = TraceCtx(11, 22, 33, True)
    attrs = {N.SEQ: 5}
    tel.record(N.RELAY_ROUTE, ctx, 100, 250, attrs)
    tel.record(N.HOTLINK_SEND, ctx, 1, 2, kind=N.CLIENT, error="boom")
    assert tel.pending == 2 and sink.records == []
    assert tel.drain() == 2
    assert sink.records[0] == (N.RELAY_ROUTE, 11, 22, 33, True, 100, 250, attrs, None, "")
    assert sink.records[1][8:] == (N.CLIENT, "boom")
    assert tel.stats() == {
        "recorded": 2,
        "dropped": 0,
        "flushed": 2,
        "pending": 0,
        "sink_errors": 0,
    }


def test_queue_is_bounded_drops_and_counts() -> None:
    tel, sink = make(max_pending=10)
    ctx = TraceCtx(1, 2)
    for i in range(25):
        tel.record("x", ctx, i, i + 1)
    assert tel.pending == 10 and tel.dropped == 15
    tel.drain()
    assert [r[5] for r in sink.records] == list(range(10))  # the oldest are kept
    tel.record("x", ctx, 99, 100)
    assert tel.pending == 1


def test_drain_limit_and_sink_errors_do_not_stop_the_flush() -> None:
    class Failing(ListSink):
        def export(self, records: list[SpanRecord]) -> None:
            raise RuntimeError("exporter down")

    tel = Telemetry(enabled=True, root_ratio=1.0, sink=Failing(), start_thread=False)
    for i in range(5):
        tel.record("x", TraceCtx(1, 2), i, i)
    assert tel.drain(limit=2) == 2 and tel.pending == 3
    assert tel.drain() == 3 and tel.sink_errors >= 1


def test_span_context_manager_records_errors() -> None:
    tel, sink = make()
    ctx = TraceCtx(1, 2)
    with tel.span(N.CLIENT_WRITE_FILE, ctx, {N.PATH: "a"}) as attrs:
        attrs[N.SEQ] = 3
    with pytest.raises(ValueError), tel.span(N.PRIORITY_SEND, ctx):
        raise ValueError("disk full")
    tel.drain()
    ok, bad = sink.records
    assert ok[0] == N.CLIENT_WRITE_FILE and ok[7] == {N.PATH: "a", N.SEQ: 3} and ok[9] == ""
    assert ok[5] <= ok[6]
    assert bad[9] == "ValueError: disk full"


def test_background_thread_flushes_and_shutdown_is_idempotent() -> None:
    sink = ListSink()
    tel = Telemetry(enabled=True, root_ratio=1.0, sink=sink, flush_interval=0.01)
    try:
        ctx = tel.sample_origin()
        assert ctx is not None
        tel.record("x", ctx, 1, 2)
        tel.flush()
        assert len(sink.records) == 1 and sink.flushed == 1
    finally:
        tel.shutdown()
        tel.shutdown()
    assert sink.shut == 1
    assert tel._thread is not None and not tel._thread.is_alive()


# ------------------------------------------------------------------ SDK spans


def test_readable_span_has_exact_ids_times_parent_and_attributes() -> None:
    from hotlink.telemetry.export import to_readable_span
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import SpanKind, StatusCode

    res = Resource.create({"service.name": "hotlink-relay"})
    rec = (N.RELAY_ROUTE, 0xA1, 0xB2, 0xC3, True, 1_000, 3_500, {N.SEQ: 9}, None, "")
    s = to_readable_span(rec, res)
    assert s.name == N.RELAY_ROUTE
    assert (s.context.trace_id, s.context.span_id) == (0xA1, 0xB2)
    assert s.context.trace_flags.sampled and not s.context.is_remote
    assert s.parent is not None
    assert (s.parent.trace_id, s.parent.span_id, s.parent.is_remote) == (0xA1, 0xC3, True)
    assert (s.start_time, s.end_time) == (1_000, 3_500)
    assert dict(s.attributes) == {N.SEQ: 9}
    assert s.kind is SpanKind.CONSUMER  # the name's default kind
    explicit = to_readable_span((*rec[:8], N.SERVER, ""), res)
    assert explicit.kind is SpanKind.SERVER
    assert s.status.status_code is StatusCode.UNSET
    assert s.resource.attributes["service.name"] == "hotlink-relay"
    assert s.instrumentation_scope is not None and s.instrumentation_scope.name == "hotlink"

    root = to_readable_span(("r", 1, 2, 0, False, 5, 6, None, "nope", "bad"), res)
    assert root.parent is None and root.kind is SpanKind.INTERNAL
    assert root.status.status_code is StatusCode.ERROR and root.status.description == "bad"


def test_sdk_sink_feeds_the_processor() -> None:
    from hotlink.telemetry.export import SdkSink
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exp = InMemorySpanExporter()
    tel = Telemetry(
        enabled=True,
        root_ratio=1.0,
        sink=SdkSink(SimpleSpanProcessor(exp), Resource.create({})),
        start_thread=False,
    )
    ctx = tel.sample_origin()
    assert ctx is not None
    child = ctx.child()
    tel.record(N.HOTLINK_IPC_READ, ctx, 10, 20)
    tel.record(N.HOTLINK_SEND, child, 20, 30)
    tel.shutdown()
    got = {s.name: s for s in exp.get_finished_spans()}
    assert set(got) == {N.HOTLINK_IPC_READ, N.HOTLINK_SEND}
    assert got[N.HOTLINK_SEND].parent.span_id == got[N.HOTLINK_IPC_READ].context.span_id
