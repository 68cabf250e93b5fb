"""OpenTelemetry tracing for Hotlink, built so that tracing off costs nothing and
tracing on never puts SDK work on the data path.

Setup (once per process; off unless `--otel` or an OTEL_EXPORTER_OTLP_*ENDPOINT is
set, see `config` for every rule and the default sampler, parent-based ratio 0.01):

    from hotlink import telemetry
    from hotlink.telemetry import names as N

    telemetry.add_arguments(parser)                    # --otel, --otel-endpoint, ...
    tel = telemetry.setup(telemetry.options_from_args(args),
                          service_name=N.SERVICE_AGENT,       # or N.SERVICE_RELAY
                          resource_attrs={N.RES_PEER_EMAIL: email})
    ...
    tel.shutdown()                                     # on exit: exports what is queued

Pass `tel` to components (default `telemetry.OFF`, the disabled instance).

The model: sampling is decided once per message where it enters Hotlink
(`sample_origin()`), and carried as the W3C traceparent in the WS envelope's `tpc`.
Unsampled messages carry no `tpc` and get None everywhere: call sites then do nothing
else (no objects, no clock reads). For sampled ones, take `time.time_ns()` stamps on
the hot path and call `tel.record(...)` after the frame has been handed on; `record`
only appends a tuple to a bounded queue; a background thread hands the records to
an exporter process, which builds the spans with those exact ids and times. Span
ids exist before the span: `ctx.traceparent`
can go on the wire first.

Hotlink path, sender agent (origin):

    ctx = tel.sample_origin()                          # None for ~99% of frames
    t0 = time.time_ns() if ctx else 0                  # frame read from the app
    ...parse the HLNK frame, assign seq...
    if ctx:
        t1 = time.time_ns()
        send_ctx = ctx.child()                         # hotlink.send, child of ipc_read
        wire = encode(data, traceparent=send_ctx.traceparent)
    else:
        wire = encode(data)
    ws.send(wire)
    if ctx:
        t2 = time.time_ns()
        a = {N.SESSION_ID: sid, N.PATH: path, N.SEQ: seq, N.MESSAGING_BODY_SIZE: size}
        tel.record(N.HOTLINK_IPC_READ, ctx, t0, t1, a)
        tel.record(N.HOTLINK_SEND, send_ctx, t1, t2, a)

Relay (`relay.route`; forward the relay's own id so readers are its children):

    t0 = time.time_ns() if tel.enabled else 0          # before decode: tpc is inside
    env = decode(frame)
    ctx = tel.child_of(env.traceparent)                # "" -> None at once
    outs = router.handle(...)                          # Outgoing(conn, msg, traceparent)
    tp = ctx.traceparent if ctx else env.traceparent   # tracing off: pass it through
    ...queue the encoded frames (with tp) to the readers...
    if ctx:
        tel.record(N.RELAY_ROUTE, ctx, t0, time.time_ns(),
                   {N.SESSION_ID: sid, N.SEQ: seq, N.SENDER: email, N.READERS: readers})

Reader agent (`hotlink.receive_ws` then `hotlink.ipc_write`):

    ctx = tel.child_of(env.traceparent)                # t0 taken before decode, as above
    ...reorder, deliver to the IPC clients...
    if ctx:
        w = ctx.child()
        tel.record(N.HOTLINK_RECEIVE_WS, ctx, t0, t1, attrs)
        tel.record(N.HOTLINK_IPC_WRITE, w, t1, t2, attrs)

File (fallback) path, off the latency path (see `filemeta` for why nothing goes on
disk): the agent that falls back keeps `FileTraces.put(path, ctx.traceparent)`;
the watcher continues it or starts a new origin; `tpc` rides on FileWrite/FileNotify:

    tp = file_traces.take(path)
    ctx = tel.child_of(tp) if tp else tel.sample_origin()
    with tel.span(N.WATCHER_DETECTED, ctx, {N.PATH: path, N.TRANSPORT: "file"}):
        ...
    send_ctx = ctx.child() if ctx else None
    with tel.span(N.PRIORITY_SEND, send_ctx, {...}):
        ws.send(encode(FileWrite(...), traceparent=send_ctx.traceparent if send_ctx else ""))
    # relay: ctx = tel.child_of(env.traceparent) -> server.handle_file_write, then
    #        ctx.child() -> server.broadcast, FileNotify sent with that child's traceparent
    # reader: ctx = tel.child_of(env.traceparent) -> client.receive_ws,
    #         ctx.child() -> client.write_file

Session lifecycle (rare: always sampled when tracing is on):

    ctx = tel.sample_lifecycle()                       # agent, before sending Open
    ws.send(encode(HotlinkOpen(...), traceparent=ctx.traceparent if ctx else ""))
    ...on Ack/Reject...: tel.record(N.AGENT_SESSION_OPEN, ctx, t0, time.time_ns(), attrs,
                                    error="rejected: ..." if rejected else "")
    # relay: tel.span(N.RELAY_SESSION_OPEN, tel.child_of(env.traceparent), attrs)

Modules: `config` (settings and their precedence), `core` (the hot-path facade
`Telemetry`), `compact` (the data path's one record per message and process, and
its expansion into spans), `pipeline` (`setup`), `exporter_process` (the child process spans are
exported from, fed through a pipe), `holdback` (when that process does its work:
once its traced process is quiet), `otlp_encode` (records to OTLP bytes without SDK
spans) and `direct_export` (its batching and gRPC send, in that process), `export`
(tuples to SDK spans: console, OTLP/HTTP, in-process),
`names` (span names and attribute keys), `traceparent` (W3C format), `filemeta`
(traces on the file path), `receiver` (an OTLP receiver for tests and users without
Jaeger), `breakdown` (per-stage latency from spans), `bench_overhead` (what tracing
costs).

Without Jaeger: `python -m hotlink.telemetry.receiver --out spans.jsonl` (or
`hotlinkctl trace --listen`) collects spans; `hotlinkctl trace spans.jsonl` prints
the per-stage breakdown. Overhead: `python -m hotlink.telemetry.bench_overhead`.
"""

from __future__ import annotations

from . import names
from .config import (
    DEFAULT_RATIO,
    DEFAULT_SAMPLER,
    TracingConfig,
    TracingOptions,
    add_arguments,
    options_from_args,
    resolve,
)
from .core import OFF, Telemetry, TraceCtx
from .filemeta import FileTraces
from .pipeline import from_config, setup
from .traceparent import ParsedTraceparent, format_traceparent, parse_traceparent

__all__ = [
    "DEFAULT_RATIO",
    "DEFAULT_SAMPLER",
    "OFF",
    "FileTraces",
    "ParsedTraceparent",
    "Telemetry",
    "TraceCtx",
    "TracingConfig",
    "TracingOptions",
    "add_arguments",
    "format_traceparent",
    "from_config",
    "names",
    "options_from_args",
    "parse_traceparent",
    "resolve",
    "setup",
]
