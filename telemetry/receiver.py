"""A tiny in-process OTLP/gRPC trace receiver, for tests and for users without Jaeger.

It implements the collector's `TraceService/Export` (the generated servicer from
`opentelemetry-proto`), flattens every received span into a plain dict and keeps the
dicts in memory; `dump_jsonl` / `load_jsonl` move them to and from JSON lines, the
input of `hotlinkctl trace`.

One span dict (also one JSON line):
  {"trace_id": hex32, "span_id": hex16, "parent_span_id": hex16 or "", "name": str,
   "kind": "SERVER"|..., "start_ns": int, "end_ns": int, "duration_ns": int,
   "service": str, "resource": {...}, "attributes": {...}, "status": "UNSET"|"OK"|"ERROR",
   "status_message": str, "scope": str}

Standalone: `python -m hotlink.telemetry.receiver --listen 127.0.0.1:4317 --out spans.jsonl`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SpanDict = dict[str, Any]

_KIND = {v: k.removeprefix("SPAN_KIND_") for k, v in trace_pb2.Span.SpanKind.items() if v}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def any_value(v: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as plain JSON-able Python."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def _attrs(kvs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def flatten(req: trace_service_pb2.ExportTraceServiceRequest) -> list[SpanDict]:
    """Every span of an export request as a `SpanDict`."""
    out: list[SpanDict] = []
    for rs in req.resource_spans:
        resource = _attrs(rs.resource.attributes)
        service = str(resource.get("service.name", ""))
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                out.append(
                    {
                        "trace_id": sp.trace_id.hex(),
                        "span_id": sp.span_id.hex(),
                        "parent_span_id": sp.parent_span_id.hex(),
                        "name": sp.name,
                        "kind": _KIND.get(sp.kind, "UNSPECIFIED"),
                        "start_ns": sp.start_time_unix_nano,
                        "end_ns": sp.end_time_unix_nano,
                        "duration_ns": sp.end_time_unix_nano - sp.start_time_unix_nano,
                        "service": service,
                        "resource": resource,
                        "attributes": _attrs(sp.attributes),
                        "status": _STATUS.get(sp.status.code, str(sp.status.code)),
                        "status_message": sp.status.message,
                        "scope": scope,
                    }
                )
    return out


class SpanStore:
    """Thread-safe list of received spans with a blocking `wait_for`."""

    def __init__(
        self, on_spans: Callable[[list[SpanDict]], None] | None = None, keep: bool = True
    ) -> None:
        self._spans: list[SpanDict] = []
        self._cond = threading.Condition()
        self.on_spans = on_spans
        self.keep = keep  # False: only count and call on_spans (long-running receivers)
        self.requests = 0
        self.received = 0

    def add(self, spans: list[SpanDict]) -> None:
        with self._cond:
            if self.keep:
                self._spans.extend(spans)
            self.requests += 1
            self.received += len(spans)
            if self.on_spans is not None:
                self.on_spans(spans)
            self._cond.notify_all()

    def spans(self) -> list[SpanDict]:
        with self._cond:
            return list(self._spans)

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()

    def wait_for(
        self, predicate: Callable[[list[SpanDict]], Any], timeout: float = 10.0
    ) -> list[SpanDict]:
        """Block until `predicate(spans)` is truthy; returns the spans, or raises
        TimeoutError (with what was received, to make a failing test readable)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snapshot = list(self._spans)
                if predicate(snapshot):
                    return snapshot
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({s["name"] for s in snapshot})
                    raise TimeoutError(
                        f"no matching spans within {timeout:g}s; have {len(snapshot)}: {names}"
                    )
                self._cond.wait(left)


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: SpanStore | SpanCounter) -> None:
        self.store = store

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if isinstance(self.store, SpanCounter):
            self.store.add_request(request)
        else:
            self.store.add(flatten(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class SpanCounter:
    """A store that only counts, per span name and distinct traces: what a benchmark's
    receiver keeps, cheap enough not to compete with what it measures (no flattening)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.names: dict[str, int] = {}
        self.traces: set[bytes] = set()
        self.requests = 0
        self.received = 0

    def add_request(self, req: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._lock:
            names, traces = self.names, self.traces
            self.requests += 1
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    self.received += len(ss.spans)
                    for sp in ss.spans:
                        names[sp.name] = names.get(sp.name, 0) + 1
                        traces.add(sp.trace_id)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "spans": self.received,
                "traces": len(self.traces),
                "requests": self.requests,
                "names": dict(sorted(self.names.items())),
            }


class OtlpReceiver:
    """OTLP/gRPC receiver on `host:port` (port 0 picks a free one); a context manager.

    `store` keeps flattened spans (`SpanStore`) or only counts them (`SpanCounter`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        store: SpanStore | SpanCounter | None = None,
        max_workers: int = 4,
    ) -> None:
        self.host = host
        self.store = store or SpanStore()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-rx"),
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _Servicer(self.store), self._server
        )
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot listen on {host}:{port}")

    @property
    def address(self) -> str:
        """`host:port`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT (plain-text gRPC)."""
        return f"http://{self.address}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    def spans(self) -> list[SpanDict]:
        assert isinstance(self.store, SpanStore)
        return self.store.spans()

    def wait_for(
        self, predicate: Callable[[list[SpanDict]], Any], timeout: float = 10.0
    ) -> list[SpanDict]:
        assert isinstance(self.store, SpanStore)
        return self.store.wait_for(predicate, timeout)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- helpers


def by_name(spans: Iterable[SpanDict]) -> dict[str, list[SpanDict]]:
    """Spans grouped by name (in arrival order)."""
    out: dict[str, list[SpanDict]] = {}
    for s in spans:
        out.setdefault(s["name"], []).append(s)
    return out


def has_names(*names: str) -> Callable[[list[SpanDict]], bool]:
    """A `wait_for` predicate: every one of `names` has arrived at least once."""
    want = set(names)
    return lambda spans: want <= {s["name"] for s in spans}


# --------------------------------------------------------------------------- JSON lines


def dump_jsonl(spans: Iterable[SpanDict], path: str | Path, append: bool = False) -> int:
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for s in spans:
            f.write(json.dumps(s, separators=(",", ":")) + "\n")
            n += 1
    return n


def load_jsonl(path: str | Path) -> list[SpanDict]:
    """Span dicts from a JSON-lines file; blank and malformed lines are skipped."""
    out: list[SpanDict] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "name" in obj and "start_ns" in obj:
                out.append(obj)
    return out


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port`, `:port` or `port` -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"not host:port: {text!r}") from None
    if not 0 <= p < 65536:
        raise ValueError(f"port out of range: {text!r}")
    return host, p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hotlink.telemetry.receiver",
        description="Receive OTLP/gRPC spans and append them to a JSON-lines file.",
    )
    ap.add_argument("--listen", default="127.0.0.1:4317", help="host:port (default %(default)s)")
    ap.add_argument("--out", default="spans.jsonl", help="JSON-lines file (appended)")
    ap.add_argument(
        "--count-only",
        action="store_true",
        help="keep no spans: count them per name and trace, print the counts as JSON on "
        "stdout at exit (what `hotlinkctl bench --otel` runs: cheap on the CPU it measures)",
    )
    args = ap.parse_args(argv)
    host, port = parse_listen(args.listen)
    out = Path(args.out)
    lock = threading.Lock()

    def write(spans: list[SpanDict]) -> None:
        with lock:
            dump_jsonl(spans, out, append=True)

    store: SpanStore | SpanCounter = (
        SpanCounter() if args.count_only else SpanStore(on_spans=write, keep=False)
    )
    rx = OtlpReceiver(host, port, store).start()
    where = "counting spans" if args.count_only else f"writing {out}"
    print(f"otlp receiver listening on {rx.endpoint}, {where}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    rx.stop()
    if isinstance(store, SpanCounter):
        print(json.dumps(store.summary()), flush=True)
    else:
        print(f"received {store.received} spans", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
