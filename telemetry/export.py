"""Off the data path: turn recorded tuples into SDK spans and hand them to the exporter.

`to_readable_span` builds an `opentelemetry.sdk.trace.ReadableSpan` with exactly the
recorded ids, parent, times and attributes (the SDK's `Tracer` cannot take given
ids). `SdkSink` feeds those to a `BatchSpanProcessor`, which batches and exports on
its own thread (OTLP/gRPC, OTLP/HTTP or console), so export never runs on the event
loop. Imported only when tracing is enabled.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

from hotlink.common.version import VERSION
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .config import TracingConfig
from .core import SpanRecord
from .names import KINDS

SCOPE = InstrumentationScope("hotlink", VERSION)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {k.name: k for k in SpanKind}
_UNSET = Status(StatusCode.UNSET)

#: Our defaults for the batch processor when the OTEL_BSP_* variables are unset:
#: a bigger queue than the SDK's 2048 (bursts of a fast stream) and a 1 s delay
#: (the SDK's 5 s makes a devstack demo look broken).
BSP_MAX_QUEUE = 8192
BSP_DELAY_MS = 1000
BSP_BATCH = 512


def to_readable_span(rec: SpanRecord, resource: Resource) -> ReadableSpan:
    """One queued record as a finished, sampled SDK span."""
    name, tid, sid, pid, remote, start, end, attrs, kind, error = rec
    ctx = SpanContext(tid, sid, is_remote=False, trace_flags=_SAMPLED)
    parent = SpanContext(tid, pid, is_remote=remote, trace_flags=_SAMPLED) if pid else None
    return ReadableSpan(
        name=name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes=dict(attrs) if attrs else {},
        kind=_KINDS.get(kind or KINDS.get(name, ""), SpanKind.INTERNAL),
        status=Status(StatusCode.ERROR, error) if error else _UNSET,
        start_time=start,
        end_time=end,
        instrumentation_scope=SCOPE,
    )


class SdkSink:
    """`SpanSink` over an SDK span processor (a `BatchSpanProcessor` in production)."""

    def __init__(self, processor: SpanProcessor, resource: Resource) -> None:
        self.processor = processor
        self.resource = resource

    def export(self, records: list[SpanRecord]) -> None:
        on_end = self.processor.on_end
        res = self.resource
        for rec in records:
            on_end(to_readable_span(rec, res))

    def force_flush(self, timeout: float) -> None:
        self.processor.force_flush(int(timeout * 1000))

    def shutdown(self, timeout: float) -> None:
        self.processor.force_flush(int(timeout * 1000))
        self.processor.shutdown()


def make_exporter(cfg: TracingConfig) -> SpanExporter:
    """The span exporter `cfg` asks for; the exporters read OTEL_EXPORTER_OTLP_* themselves
    (headers, timeout, certificates, compression, insecure)."""
    if cfg.exporter == "console":
        return ConsoleSpanExporter(out=sys.stderr)  # stdout belongs to the CLIs
    if cfg.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(endpoint=cfg.endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=cfg.endpoint)


def make_processor(exporter: SpanExporter, env: Mapping[str, str]) -> BatchSpanProcessor:
    """A BatchSpanProcessor with Hotlink's defaults unless OTEL_BSP_* say otherwise."""
    _quiet_queue_full_warnings()
    return BatchSpanProcessor(
        exporter,
        max_queue_size=None if "OTEL_BSP_MAX_QUEUE_SIZE" in env else BSP_MAX_QUEUE,
        schedule_delay_millis=None if "OTEL_BSP_SCHEDULE_DELAY" in env else BSP_DELAY_MS,
        max_export_batch_size=None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in env else BSP_BATCH,
    )


def make_resource(cfg: TracingConfig) -> Resource:
    # Resource.create also runs the SDK's env detector (OTEL_RESOURCE_ATTRIBUTES) and
    # adds telemetry.sdk.*; our merged attributes (flags included) win.
    return Resource.create(dict(cfg.resource_attrs))


class _EveryMinute(logging.Filter):
    """The SDK logs one warning per dropped span ("Queue full"); keep one a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.last = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "Queue full" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self.last >= 60.0:
            self.last = now
            if self.suppressed:
                record.msg = f"{record.msg} ({self.suppressed} more since the last report)"
                self.suppressed = 0
            return True
        self.suppressed += 1
        return False


_filter_installed = False


def _quiet_queue_full_warnings() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("opentelemetry.sdk._shared_internal").addFilter(_EveryMinute())
        _filter_installed = True
