"""`hotlinkctl trace`: per-stage latency breakdown from spans, for users without Jaeger.

Two sources:
- files: `hotlinkctl trace spans.jsonl` (JSON lines as written by
  `python -m hotlink.telemetry.receiver` or by `--listen ... --out`);
- live: `hotlinkctl trace --listen 127.0.0.1:4317 [--duration S] [--out F]` runs an
  OTLP/gRPC receiver; point the relay and agents at it
  (`OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317`, or `--otel-endpoint`), send
  traffic, stop with Ctrl-C (or after --duration / --traces) to get the table.

Registered by `hotlinkctl`'s parser through `register(add)`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hotlink.telemetry import breakdown as bd
from hotlink.telemetry import receiver as rx

from . import output
from .errors import ExitCode, NotFound, UsageError
from .stats import fmt_ns

DESCRIPTION = """\
Print a per-stage latency breakdown (count, P50/P90/P99 duration, median start offset
within the message) and end-to-end times per message from collected spans.

  hotlinkctl trace spans.jsonl
  hotlinkctl trace --listen 127.0.0.1:0 --out spans.jsonl   # port 0: a free one, printed
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT OTEL_TRACES_SAMPLER_ARG=1 \\
      hotlinkctl devstack        # or your relay and agents; Ctrl-C (or kill) here for the table
"""


def register(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the `trace` subcommand with `cli.build_parser`'s `add` helper."""
    p = add("trace", "per-stage latency breakdown from OpenTelemetry spans", cmd_trace, DESCRIPTION)
    p.add_argument("files", nargs="*", metavar="FILE", help="JSON-lines span files")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="run an OTLP/gRPC receiver here and collect spans live (127.0.0.1:0 picks a free "
        "port and prints it; 4317 is the OTLP default); Ctrl-C or SIGTERM prints the table",
    )
    p.add_argument("--duration", type=float, metavar="S", help="live: stop after S seconds")
    p.add_argument("--traces", type=int, metavar="N", help="live: stop once N traces were received")
    p.add_argument("--out", metavar="FILE", help="live: also write the spans to FILE (JSON lines)")
    p.add_argument("--prefix", metavar="P", help="only spans whose name starts with P")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def cmd_trace(args: argparse.Namespace) -> int:
    if args.listen and args.files:
        raise UsageError("give span files or --listen, not both")
    if not args.listen and not args.files:
        raise UsageError(
            "no spans to read",
            "pass a JSON-lines file, or collect live: hotlinkctl trace --listen 127.0.0.1:0",
        )
    spans = collect_live(args) if args.listen else load_files(args.files)
    if args.prefix:
        spans = [s for s in spans if str(s.get("name", "")).startswith(args.prefix)]
    if not spans:
        raise NotFound(
            "no spans",
            "is tracing on? set OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_TRACES_SAMPLER_ARG=1 "
            "to trace every message) for the relay and agents",
        )
    b = bd.compute(spans)
    if args.json:
        output.dump_json(b.to_dict())
    else:
        print(render(b))
    return ExitCode.OK


def load_files(files: list[str]) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for f in files:
        try:
            spans += rx.load_jsonl(f)
        except FileNotFoundError:
            raise NotFound(f"no such file: {f}") from None
    return spans


def collect_live(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        host, port = rx.parse_listen(args.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out_lock = threading.Lock()
    if args.out:
        open(args.out, "w").close()  # truncate: this run's spans only

    def write(spans: list[dict[str, Any]]) -> None:
        with out_lock:
            rx.dump_jsonl(spans, args.out, append=True)

    try:
        receiver = rx.OtlpReceiver(host, port, rx.SpanStore(on_spans=write if args.out else None))
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"cannot listen on {args.listen}: {exc}", "pick another port") from None
    receiver.start()
    if not args.quiet:
        print(
            f"trace: receiving OTLP/gRPC on {receiver.endpoint}; run the relay/agents with\n"
            f"  OTEL_EXPORTER_OTLP_ENDPOINT={receiver.endpoint}\n"
            "Ctrl-C to stop and print the breakdown",
            file=sys.stderr,
            flush=True,
        )
    deadline = time.monotonic() + args.duration if args.duration else None
    # SIGTERM (kill, a supervisor, `timeout`) stops a collection like Ctrl-C does: with
    # the table, not silently.
    stop = threading.Event()
    old_term = _on_sigterm(lambda: stop.set())
    try:
        while deadline is None or time.monotonic() < deadline:
            if args.traces:
                have = {s["trace_id"] for s in receiver.spans()}
                if len(have) >= args.traces:
                    break
            if stop.wait(0.2):
                break
    except KeyboardInterrupt:
        pass  # the normal way to stop a live collection
    finally:
        _restore_sigterm(old_term)
        receiver.stop(grace=0.5)
    return receiver.spans()


def _on_sigterm(fn: Callable[[], None]) -> Any:
    """Install `fn` as the SIGTERM handler (main thread only); returns the old one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: fn())


def _restore_sigterm(old: Any) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)


def render(b: bd.Breakdown) -> str:
    rows = [("STAGE", "SERVICE", "COUNT", "P50", "P90", "P99", "START@P50")]
    for s in b.stages:
        rows.append(
            (
                s.name,
                s.service or "-",
                str(s.count),
                fmt_ns(s.p50_ns),
                fmt_ns(s.p90_ns),
                fmt_ns(s.p99_ns),
                "+" + fmt_ns(s.offset_p50_ns),
            )
        )
    lines = [_table(rows, 2), "", "end to end (first stage start -> last stage end, per message):"]
    rows = [("ORIGIN", "TRACES", "COMPLETE", "P50", "P90", "P99")]
    for e in b.end_to_end:
        rows.append(
            (
                e.origin,
                str(e.count),
                str(e.complete) if e.origin in bd.PATHS else "-",
                fmt_ns(e.p50_ns),
                fmt_ns(e.p90_ns),
                fmt_ns(e.p99_ns),
            )
        )
    lines.append(_table(rows, 1))
    lines.append(f"\n{b.spans} spans in {b.traces} traces")
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]], first_number: int) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = set(range(first_number, len(rows[0])))
    return "\n".join(
        "  ".join(
            (c.rjust(w) if i in right else c.ljust(w))
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    )
