"""The exporter process's OTLP/gRPC path: records to `otlp_encode` bytes, batched
here, sent by the SDK's own gRPC exporter (endpoint, headers, TLS, compression,
timeout and retries from the usual OTEL_EXPORTER_OTLP_* variables), which is handed
the finished request instead of SDK spans.

Batching follows the batch span processor's variables: a batch goes out when it has
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans (default 512) or its first span is
`OTEL_BSP_SCHEDULE_DELAY` ms old (default 1000, as `export.BSP_DELAY_MS`). Export runs
in the exporter process's only thread; meanwhile new records wait in the pipe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .config import TracingConfig
from .core import SpanRecord
from .export import BSP_BATCH, BSP_DELAY_MS, SCOPE, make_resource
from .otlp_encode import Encoder

log = logging.getLogger(__name__)


class _Request:
    """A finished `ExportTraceServiceRequest` as bytes, and how many spans it holds."""

    __slots__ = ("data", "spans")

    def __init__(self, data: bytes, spans: int) -> None:
        self.data = data
        self.spans = spans


class _RawTraceStub:
    """`TraceServiceStub` whose `Export` takes the request's bytes as they are: no
    protobuf object built from our bytes only to be serialised back (that parse and
    serialisation cost ~0.9 µs per span in the exporter process)."""

    def __init__(self, channel: Any) -> None:
        self.Export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,  # grpc sends bytes unchanged
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class _PrebuiltExporter(OTLPSpanExporter):
    """The SDK's gRPC span exporter (channel, TLS, headers, compression, timeout and
    retries), given a finished request instead of spans: `_translate_data` is the one
    step skipped (SDK internals; pinned SDK range in pyproject, checked by
    `supported`)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        #: the request goes out as our bytes, through a stub on the SDK's channel (also
        #: what its reconnection builds); an SDK without those attributes gets a parsed
        #: request through its own stub
        self.raw = all(hasattr(self, a) for a in ("_stub", "_client", "_channel"))
        if self.raw:
            self._stub = _RawTraceStub
            self._client = _RawTraceStub(self._channel)

    def _translate_data(self, data: Any) -> Any:
        if self.raw:
            return data.data
        return ExportTraceServiceRequest.FromString(data.data)

    def _count_data(self, data: Any) -> int:
        return data.spans  # type: ignore[no-any-return]


def supported() -> bool:
    """The SDK internals `_PrebuiltExporter` relies on are there."""
    return callable(getattr(OTLPSpanExporter, "_translate_data", None)) and callable(
        getattr(OTLPSpanExporter, "_export", None)
    )


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        v = int(env.get(name, ""))
    except ValueError:
        return default
    return v if v > 0 else default


class DirectGrpcSink:
    """Records in, OTLP/gRPC requests out; `due()` / `tick()` drive the batch timer."""

    def __init__(self, cfg: TracingConfig, env: Mapping[str, str]) -> None:
        self.exporter = _PrebuiltExporter(endpoint=cfg.endpoint)
        self.encoder = Encoder(make_resource(cfg).attributes, SCOPE.name, SCOPE.version or "")
        self.batch_size = _env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", BSP_BATCH)
        self.delay = _env_int(env, "OTEL_BSP_SCHEDULE_DELAY", BSP_DELAY_MS) / 1000.0
        self._spans: list[bytes] = []
        self._since = 0.0
        self.failed = 0

    def export(self, records: list[SpanRecord]) -> None:
        if not self._spans:
            self._since = time.monotonic()
        span = self.encoder.span
        for rec in records:
            try:
                self._spans.append(span(rec))
            except Exception:
                log.exception("dropping a span that cannot be encoded: %r", rec[0])
            if len(self._spans) >= self.batch_size:
                self._send()

    def due(self) -> float | None:
        """Seconds until the pending batch must go out (None: nothing pending)."""
        if not self._spans:
            return None
        return max(0.0, self._since + self.delay - time.monotonic())

    def tick(self) -> None:
        if self._spans and time.monotonic() >= self._since + self.delay:
            self._send()

    def _send(self) -> None:
        spans, self._spans = self._spans, []
        self._since = time.monotonic()
        req = _Request(self.encoder.request(spans), len(spans))
        try:
            result = self.exporter.export(req)  # type: ignore[arg-type]
        except Exception:
            log.exception("span export failed")
            result = None
        if result is None or getattr(result, "name", "") != "SUCCESS":
            self.failed += len(spans)

    def force_flush(self, timeout: float) -> None:
        if self._spans:
            self._send()

    def shutdown(self, timeout: float) -> None:
        self.force_flush(timeout)
        self.exporter.shutdown(timeout_millis=timeout * 1000)
