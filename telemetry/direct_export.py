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
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .config import TracingConfig
from .core import SpanRecord
from .export import BSP_BATCH, BSP_DELAY_MS, SCOPE, make_resource
from .otlp_encode import Encoder

log = logging.getLogger(__name__)


class _PrebuiltExporter(OTLPSpanExporter):
    """The SDK's gRPC span exporter, given a finished request instead of spans
    (`_translate_data` is the one step skipped; pinned SDK range in pyproject)."""

    def _translate_data(self, data: Any) -> ExportTraceServiceRequest:  # type: ignore[override]
        return data  # type: ignore[no-any-return]

    def _count_data(self, data: Any) -> int:
        return sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans)


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
        req = ExportTraceServiceRequest.FromString(self.encoder.request(spans))
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
