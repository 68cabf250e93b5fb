"""The exporter process: records pickled over a pipe, exported by a child process.

Real processes and a real OTLP/gRPC receiver; no timing assertions (waits have
generous timeouts)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from hotlink.telemetry import names as N
from hotlink.telemetry.config import resolve
from hotlink.telemetry.core import Telemetry
from hotlink.telemetry.exporter_process import ProcessSink, decode_frames, encode_batch
from hotlink.telemetry.pipeline import from_config
from hotlink.telemetry.receiver import OtlpReceiver, SpanCounter, by_name, has_names

Env = Callable[..., dict[str, str]]


def _cfg(rx: OtlpReceiver, service: str = N.SERVICE_RELAY):  # type: ignore[no-untyped-def]
    return resolve(
        None,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_TRACES_SAMPLER": "always_on"},
        default_service_name=service,
        resource_attrs={N.RES_PEER_EMAIL: "alice@example.org"},
    )


def test_records_cross_the_pipe_and_arrive_as_spans(otlp_receiver: OtlpReceiver) -> None:
    sink = ProcessSink(_cfg(otlp_receiver)).start()
    tel = Telemetry(enabled=True, root_ratio=1.0, sink=sink, start_thread=False)
    ctx = tel.sample_origin()
    assert ctx is not None
    child = ctx.child()
    shared = {N.SESSION_ID: "s1", N.PATH: "alice@example.org/_mpc/x"}
    tel.record(N.HOTLINK_IPC_READ, ctx, 1_000, 2_000, {N.SEQ: 1})
    tel.record(N.RELAY_ROUTE, child, 2_000, 3_000, (shared, {N.SEQ: 2}), error="boom")
    tel.flush(timeout=30)  # the child acknowledges once its exporter has sent them
    spans = otlp_receiver.wait_for(has_names(N.HOTLINK_IPC_READ, N.RELAY_ROUTE), timeout=30)
    named = by_name(spans)
    (read,) = named[N.HOTLINK_IPC_READ]
    (route,) = named[N.RELAY_ROUTE]
    assert read["trace_id"] == f"{ctx.trace_id:032x}" and read["span_id"] == f"{ctx.span_id:016x}"
    assert route["parent_span_id"] == read["span_id"]
    assert (read["start_ns"], read["end_ns"]) == (1_000, 2_000)
    # a (shared, own) pair arrives merged
    assert route["attributes"] == {**shared, N.SEQ: 2}
    assert route["status"] == "ERROR" and route["status_message"] == "boom"
    assert read["service"] == N.SERVICE_RELAY
    assert read["resource"][N.RES_PEER_EMAIL] == "alice@example.org"
    tel.shutdown(timeout=30)
    assert sink.proc is not None and sink.proc.returncode == 0  # EOF: it exported and left
    assert sink.dropped == 0 and sink.sent == 2


def test_exporter_runs_idle_and_exits_with_its_parent(otlp_receiver: OtlpReceiver) -> None:
    # The parent is killed without a shutdown: the pipe's EOF ends the child.
    code = (
        "import sys, time\n"
        "from hotlink.telemetry.config import TracingConfig\n"
        "from hotlink.telemetry.exporter_process import ProcessSink\n"
        f"cfg = TracingConfig(enabled=True, endpoint={otlp_receiver.endpoint!r})\n"
        "s = ProcessSink(cfg).start()\n"
        "print(s.proc.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        if hasattr(os, "SCHED_IDLE"):
            # the policy is set once the SDK is imported: wait for it, generously
            for _ in range(600):
                if os.sched_getscheduler(child) == os.SCHED_IDLE:
                    break
                asyncio.run(asyncio.sleep(0.05))
            assert os.sched_getscheduler(child) == os.SCHED_IDLE
    finally:
        parent.kill()
        parent.wait()
    for _ in range(600):  # reaped by init once it exits
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as f:
            if f.read().split()[2] == "Z":
                break
        asyncio.run(asyncio.sleep(0.05))
    else:
        pytest.fail("the exporter process outlived its parent")


def test_a_dead_exporter_drops_and_counts_without_blocking(otlp_receiver: OtlpReceiver) -> None:
    sink = ProcessSink(_cfg(otlp_receiver)).start()
    assert sink.proc is not None
    sink.proc.kill()
    sink.proc.wait()
    rec = (N.RELAY_ROUTE, 1, 2, 0, False, 1, 2, {N.SEQ: 1}, None, "")
    for _ in range(3):
        sink.export([rec] * 10)  # EPIPE, then dropped: never raises, never waits
    assert sink.dropped >= 20
    sink.force_flush(1.0)
    sink.shutdown(1.0)


def test_setup_hands_records_to_the_exporter_process(otlp_receiver: OtlpReceiver) -> None:
    tel = from_config(_cfg(otlp_receiver), {})
    assert isinstance(tel._sink, ProcessSink)
    ctx = tel.sample_origin()
    tel.record(N.HOTLINK_SEND, ctx, 5, 6, {N.SEQ: 3})
    for _ in range(600):  # the flusher thread takes it off the queue
        if not tel.pending:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert tel.pending == 0 and tel.flushed == 1
    tel.shutdown(timeout=30)
    spans = otlp_receiver.wait_for(has_names(N.HOTLINK_SEND), timeout=30)
    assert by_name(spans)[N.HOTLINK_SEND][0]["attributes"] == {N.SEQ: 3}


def test_inprocess_export_is_still_available(otlp_receiver: OtlpReceiver) -> None:
    from hotlink.telemetry.export import SdkSink

    tel = from_config(_cfg(otlp_receiver), {"HOTLINK_OTEL_EXPORT": "inprocess"})
    assert isinstance(tel._sink, SdkSink)
    tel.record(N.HOTLINK_SEND, tel.sample_origin(), 5, 6, ({N.SEQ: 1}, {N.PATH: "p"}))
    tel.shutdown(timeout=30)
    spans = otlp_receiver.wait_for(has_names(N.HOTLINK_SEND), timeout=30)
    assert by_name(spans)[N.HOTLINK_SEND][0]["attributes"] == {N.SEQ: 1, N.PATH: "p"}


def test_batches_frame_and_keep_128_bit_trace_ids() -> None:
    rec = (N.RELAY_ROUTE, (1 << 127) | 5, 2, 3, True, 1, 2, {N.SEQ: 1}, None, "")
    two = bytearray(encode_batch([rec]) + encode_batch([rec, rec]))
    objs, used = decode_frames(two + b"\x05\x00")  # a torn third frame waits
    assert objs == [[rec], [rec, rec]] and used == len(two)


def test_span_counter_counts_names_and_traces(otlp_receiver: OtlpReceiver) -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    req = trace_service_pb2.ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for i, name in enumerate((N.HOTLINK_SEND, N.HOTLINK_SEND, N.RELAY_ROUTE)):
        spans.append(trace_pb2.Span(name=name, trace_id=bytes([i % 2]) * 16, span_id=b"\1" * 8))
    c = SpanCounter()
    c.add_request(req)
    assert c.summary() == {
        "spans": 3,
        "traces": 2,
        "requests": 1,
        "names": {N.HOTLINK_SEND: 2, N.RELAY_ROUTE: 1},
    }
