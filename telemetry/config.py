"""Tracing configuration: standard `OTEL_*` variables plus explicit overrides.

Precedence, as everywhere in Hotlink: flag (a `TracingOptions` field that is not
None) > environment > default.

Tracing is OFF unless one of these turns it on (off is the zero-cost default):
  - `--otel` (`TracingOptions.enabled=True`);
  - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
  - `OTEL_TRACES_EXPORTER=console`.
and these turn it off again: `--no-otel` (`enabled=False`), `OTEL_SDK_DISABLED=true`
and `OTEL_TRACES_EXPORTER=none` (both unless `--otel` is given: the flag wins, and
exports over OTLP).
`OTEL_TRACES_EXPORTER=otlp` alone does not enable tracing: it is the spec's default
value and often set globally, so it says nothing about wanting Hotlink's spans.

Sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `--otel-sampler`,
`--otel-sampler-arg`): default `parentbased_traceidratio` with ratio 0.01. Why not the
spec's `parentbased_always_on`: the data path runs at tens of thousands of frames per
second, each traced message makes about five spans in three processes, and every
sampled span costs CPU in the exporter; 1% still yields hundreds of traces a minute
(plenty for a latency picture in Jaeger) while keeping the export pipeline far from
its queue limits. To follow single messages use
`OTEL_TRACES_SAMPLER=parentbased_always_on` (or `--otel-sampler-arg 1`).
A missing or invalid argument means 0.01 for every ratio sampler (the spec says 1.0;
ours is the documented Hotlink default).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.01
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTERS = ("otlp", "console", "none")

_TRUE = frozenset({"true", "1", "yes", "on"})


@dataclass(slots=True)
class TracingOptions:
    """Explicit settings (CLI flags, TOML keys); None means "not given: use the env"."""

    enabled: bool | None = None
    endpoint: str | None = None
    protocol: str | None = None
    sampler: str | None = None
    ratio: float | None = None
    service_name: str | None = None
    resource_attrs: dict[str, str] = field(default_factory=dict)
    exporter: str | None = None


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """The resolved configuration `setup()` builds a pipeline from."""

    enabled: bool
    exporter: str = "otlp"  # otlp | console | none
    endpoint: str | None = None  # None: the exporter's own default / env handling
    protocol: str = "grpc"
    sampler: str = DEFAULT_SAMPLER
    ratio: float = DEFAULT_RATIO
    service_name: str = "unknown_service"
    resource_attrs: Mapping[str, str] = field(default_factory=dict)

    @property
    def root_ratio(self) -> float:
        """Probability that a message with no parent (an origin) is sampled."""
        s = self.sampler
        if s in ("always_on", "parentbased_always_on"):
            return 1.0
        if s in ("always_off", "parentbased_always_off"):
            return 0.0
        return self.ratio

    @property
    def parent_based(self) -> bool:
        return self.sampler.startswith("parentbased_")


def parse_resource_attributes(text: str) -> dict[str, str]:
    """`k1=v1,k2=v2` (values percent-decoded, as `OTEL_RESOURCE_ATTRIBUTES`); bad items skipped."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key:
            out[key] = unquote(value.strip())
    return out


def _ratio(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        r = float(text)
    except ValueError:
        log.warning("ignoring invalid sampler argument %r (want a number in [0, 1])", text)
        return None
    if not 0.0 <= r <= 1.0:
        log.warning("ignoring sampler argument %r outside [0, 1]", text)
        return None
    return r


def _http_traces_url(base: str) -> str:
    """OTLP/HTTP: a base endpoint gets the `/v1/traces` signal path (spec rule)."""
    if urlparse(base).path in ("", "/"):
        return base.rstrip("/") + "/v1/traces"
    return base


def resolve(
    options: TracingOptions | None = None,
    env: Mapping[str, str] | None = None,
    *,
    default_service_name: str = "unknown_service",
    resource_attrs: Mapping[str, str] | None = None,
) -> TracingConfig:
    """Merge flags, environment and defaults into one `TracingConfig`.

    `resource_attrs` are the process's own attributes (e.g. the agent's email); the
    env's `OTEL_RESOURCE_ATTRIBUTES` and then `options.resource_attrs` override them.
    """
    o = options or TracingOptions()
    e = os.environ if env is None else env

    def get(name: str) -> str | None:
        v = e.get(name)
        return v.strip() if v and v.strip() else None

    exporter = (o.exporter or get("OTEL_TRACES_EXPORTER") or "otlp").lower()
    if exporter not in EXPORTERS:
        log.warning("unknown traces exporter %r: using otlp", exporter)
        exporter = "otlp"
    protocol = (
        o.protocol
        or get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).lower()
    if protocol not in PROTOCOLS:
        log.warning("unsupported OTLP protocol %r: using grpc", protocol)
        protocol = "grpc"

    signal_ep = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_ep = get("OTEL_EXPORTER_OTLP_ENDPOINT")
    endpoint: str | None
    if o.endpoint:
        endpoint = _http_traces_url(o.endpoint) if protocol == "http/protobuf" else o.endpoint
    elif signal_ep:
        endpoint = signal_ep
    elif base_ep:
        endpoint = _http_traces_url(base_ep) if protocol == "http/protobuf" else base_ep
    else:
        endpoint = None

    if o.enabled is not None:
        enabled = o.enabled
    else:
        enabled = bool(o.endpoint or signal_ep or base_ep or exporter == "console")
        if (get("OTEL_SDK_DISABLED") or "").lower() in _TRUE:
            enabled = False
    if exporter == "none":
        if o.enabled and o.exporter is None:
            exporter = "otlp"  # `--otel` beats OTEL_TRACES_EXPORTER=none
        else:
            enabled = False

    sampler = (o.sampler or get("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).lower()
    if sampler not in SAMPLERS:
        log.warning("unsupported sampler %r: using %s", sampler, DEFAULT_SAMPLER)
        sampler = DEFAULT_SAMPLER
    ratio = o.ratio if o.ratio is not None else _ratio(get("OTEL_TRACES_SAMPLER_ARG"))
    if ratio is None or not 0.0 <= ratio <= 1.0:
        ratio = DEFAULT_RATIO

    attrs: dict[str, str] = dict(resource_attrs or {})
    attrs.update(parse_resource_attributes(e.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    attrs.update(o.resource_attrs)
    service = o.service_name or get("OTEL_SERVICE_NAME") or default_service_name
    attrs["service.name"] = service
    return TracingConfig(
        enabled=enabled,
        exporter=exporter,
        endpoint=endpoint,
        protocol=protocol,
        sampler=sampler,
        ratio=ratio,
        service_name=service,
        resource_attrs=attrs,
    )


# --------------------------------------------------------------------------- CLI flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The tracing flags shared by `hotlink-agent` and `hotlink-relay`."""
    g = parser.add_argument_group(
        "tracing (OpenTelemetry; the standard OTEL_* variables apply, flags win)"
    )
    g.add_argument(
        "--otel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="export spans (default: on iff OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set)",
    )
    g.add_argument(
        "--otel-endpoint",
        metavar="URL",
        default=None,
        help="OTLP endpoint, e.g. http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 (http)",
    )
    g.add_argument("--otel-protocol", choices=PROTOCOLS, default=None, help="OTLP protocol")
    g.add_argument(
        "--otel-sampler",
        choices=SAMPLERS,
        default=None,
        help=f"sampler (default {DEFAULT_SAMPLER})",
    )
    g.add_argument(
        "--otel-sampler-arg",
        type=float,
        default=None,
        metavar="RATIO",
        help=f"sampling ratio for the ratio samplers (default {DEFAULT_RATIO})",
    )


def options_from_args(args: argparse.Namespace) -> TracingOptions:
    """`TracingOptions` from the flags `add_arguments` defined (missing ones: None)."""
    return TracingOptions(
        enabled=getattr(args, "otel", None),
        endpoint=getattr(args, "otel_endpoint", None),
        protocol=getattr(args, "otel_protocol", None),
        sampler=getattr(args, "otel_sampler", None),
        ratio=getattr(args, "otel_sampler_arg", None),
    )
