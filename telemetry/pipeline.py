"""`setup()`: configuration in, a ready `Telemetry` out (the disabled `OFF` when off)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .config import TracingConfig, TracingOptions, resolve
from .core import OFF, SpanSink, Telemetry

log = logging.getLogger(__name__)

#: `inprocess`: export from this process (the SDK's threads), not from a child process.
EXPORT_ENV = "HOTLINK_OTEL_EXPORT"


def setup(
    options: TracingOptions | None = None,
    *,
    service_name: str,
    resource_attrs: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    max_pending: int = 16384,
    flush_interval: float = 0.2,
) -> Telemetry:
    """Resolve flags + `OTEL_*` env and build the process's `Telemetry`.

    Off (the default): returns `OFF` without importing the OpenTelemetry SDK.
    On: a flusher thread hands the recorded spans to an exporter process
    (`exporter_process`: OTLP/gRPC encoded by `otlp_encode`, OTLP/HTTP and console
    through the SDK's `BatchSpanProcessor`).
    Call `shutdown()` on exit (it is also registered with atexit).
    """
    e = os.environ if env is None else env
    cfg = resolve(options, e, default_service_name=service_name, resource_attrs=resource_attrs)
    return from_config(cfg, e, max_pending=max_pending, flush_interval=flush_interval)


def from_config(
    cfg: TracingConfig,
    env: Mapping[str, str] | None = None,
    *,
    max_pending: int = 16384,
    flush_interval: float = 0.2,
) -> Telemetry:
    if not cfg.enabled:
        return OFF
    e = os.environ if env is None else env
    tel = Telemetry(
        enabled=True,
        root_ratio=cfg.root_ratio,
        parent_based=cfg.parent_based,
        sink=_sink(cfg, e),
        max_pending=max_pending,
        flush_interval=flush_interval,
        config=cfg,
    )
    log.info(
        "tracing on: service %s, exporter %s %s %s, sampler %s (root ratio %g)",
        cfg.service_name,
        cfg.exporter,
        cfg.protocol if cfg.exporter == "otlp" else "",
        cfg.endpoint or "(exporter default)",
        cfg.sampler,
        cfg.root_ratio,
    )
    return tel


def _sink(cfg: TracingConfig, env: Mapping[str, str]) -> SpanSink:
    """The exporter process (`exporter_process`), or the SDK in this process when
    `HOTLINK_OTEL_EXPORT=inprocess` or the process cannot be started."""
    if env.get(EXPORT_ENV, "").strip().lower() != "inprocess":
        from .exporter_process import ProcessSink

        try:
            return ProcessSink(cfg).start()
        except OSError as exc:
            log.warning("cannot start the span exporter process (%s): exporting in-process", exc)
    from .export import SdkSink, make_exporter, make_processor, make_resource

    return SdkSink(make_processor(make_exporter(cfg), env), make_resource(cfg))
