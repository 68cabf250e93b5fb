"""Real export across processes: two `python -c` processes using hotlink.telemetry,
configured only by OTEL_* env, send spans to the in-test OTLP/gRPC receiver; the
second continues the first's trace from the traceparent it printed."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hotlink.common.ports import free_port
from hotlink.ctl import trace as ctl_trace
from hotlink.telemetry import names as N
from hotlink.telemetry.receiver import OtlpReceiver, by_name, has_names

Env = Callable[..., dict[str, str]]


# The origin ("sender agent"): ipc_read -> send; prints the send span's traceparent
# (what goes in the envelope's tpc), or "" when the message is not sampled.
ORIGIN = """
import sys, time
from hotlink import telemetry
from hotlink.telemetry import names as N
tel = telemetry.setup(service_name=N.SERVICE_AGENT,
                      resource_attrs={N.RES_PEER_EMAIL: "alice@example.org"})
assert tel.enabled
ctx = tel.sample_origin()
tp = ""
if ctx:
    t0 = time.time_ns(); send = ctx.child(); t1 = time.time_ns(); tp = send.traceparent
    a = {N.SESSION_ID: "s1", N.PATH: "alice@example.org/_mpc/0_to_1", N.SEQ: 1,
         N.MESSAGING_BODY_SIZE: 1024, N.TRANSPORT: "hotlink"}
    tel.record(N.HOTLINK_IPC_READ, ctx, t0, t1, a)
    tel.record(N.HOTLINK_SEND, send, t1, time.time_ns(), a)
life = tel.sample_lifecycle()
if life:
    tel.record(N.AGENT_SESSION_OPEN, life, time.time_ns(), time.time_ns())
tel.shutdown()
print(tp)
"""

# The next hop ("relay"): continues the trace from argv[1].
RELAY = """
import sys, time
from hotlink import telemetry
from hotlink.telemetry import names as N
tel = telemetry.setup(service_name=N.SERVICE_RELAY)
t0 = time.time_ns()
ctx = tel.child_of(sys.argv[1])
if ctx:
    tel.record(N.RELAY_ROUTE, ctx, t0, time.time_ns(), {N.SEQ: 1, N.READERS: "bob@example.org"})
    print(ctx.traceparent)
tel.record(N.RELAY_SESSION_OPEN, tel.sample_lifecycle(), time.time_ns(), time.time_ns())
tel.shutdown()
"""


def run(code: str, env: dict[str, str], *args: str) -> str:
    p = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_trace_crosses_processes(otlp_receiver: OtlpReceiver, otel_env: Env) -> None:
    env = otel_env()
    tp = run(ORIGIN, env)
    assert tp.startswith("00-") and tp.endswith("-01")
    relay_tp = run(RELAY, env, tp)
    spans = otlp_receiver.wait_for(
        has_names(N.HOTLINK_IPC_READ, N.HOTLINK_SEND, N.RELAY_ROUTE, N.RELAY_SESSION_OPEN),
        timeout=20,
    )
    named = by_name(spans)
    (read,) = named[N.HOTLINK_IPC_READ]
    (send,) = named[N.HOTLINK_SEND]
    (route,) = named[N.RELAY_ROUTE]
    # one trace, parent/child links across the two processes
    assert read["trace_id"] == send["trace_id"] == route["trace_id"]
    assert read["parent_span_id"] == ""
    assert send["parent_span_id"] == read["span_id"]
    assert route["parent_span_id"] == send["span_id"]
    assert tp == f"00-{send['trace_id']}-{send['span_id']}-01"
    assert relay_tp == f"00-{route['trace_id']}-{route['span_id']}-01"
    # services, resource attributes, attributes, kinds
    assert read["service"] == send["service"] == N.SERVICE_AGENT
    assert route["service"] == N.SERVICE_RELAY
    assert read["resource"][N.RES_PEER_EMAIL] == "alice@example.org"
    assert read["attributes"] == {
        N.SESSION_ID: "s1",
        N.PATH: "alice@example.org/_mpc/0_to_1",
        N.SEQ: 1,
        N.MESSAGING_BODY_SIZE: 1024,
        N.TRANSPORT: "hotlink",
    }
    assert route["attributes"] == {N.SEQ: 1, N.READERS: "bob@example.org"}
    assert (send["kind"], route["kind"]) == ("PRODUCER", "CONSUMER")
    assert read["start_ns"] <= read["end_ns"] <= send["start_ns"] <= send["end_ns"]
    assert route["start_ns"] >= send["start_ns"]
    # lifecycle spans are their own traces
    (life,) = named[N.AGENT_SESSION_OPEN]
    assert life["trace_id"] != read["trace_id"] and life["parent_span_id"] == ""


def test_unsampled_message_creates_no_spans_anywhere(
    otlp_receiver: OtlpReceiver, otel_env: Env
) -> None:
    # The origin samples nothing (ratio 0, which also stops its lifecycle roots); the
    # relay traces everything it is given, but is given no traceparent: it must create
    # no data span. Its lifecycle span shows that its export did work.
    tp = run(ORIGIN, otel_env(OTEL_TRACES_SAMPLER_ARG="0",
                              OTEL_TRACES_SAMPLER="parentbased_traceidratio"))  # fmt: skip
    assert tp == ""
    assert run(RELAY, otel_env(OTEL_TRACES_SAMPLER="always_on"), tp) == ""
    spans = otlp_receiver.wait_for(has_names(N.RELAY_SESSION_OPEN), timeout=20)
    assert [s["name"] for s in spans] == [N.RELAY_SESSION_OPEN]


def test_hotlinkctl_trace_live(
    otel_env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()

    def add(name: str, help: str, fn: Any, desc: str = "") -> Any:
        p = sub.add_parser(name)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=fn)
        return p

    ctl_trace.register(add)
    out = tmp_path / "live.jsonl"
    args = ap.parse_args(
        ["trace", "--listen", f"127.0.0.1:{port}", "--traces", "1", "--duration", "30",
         "--out", str(out), "--prefix", "hotlink.", "-q"]
    )  # fmt: skip
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(args.func(args)))
    t.start()
    try:
        env = otel_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        for _ in range(20):  # the receiver may not listen yet: export again until it has spans
            run(ORIGIN, env)
            if out.exists() and out.read_text().strip():
                break
    finally:
        t.join(40)
    assert result == [0]
    text = capsys.readouterr().out
    assert N.HOTLINK_IPC_READ in text and N.HOTLINK_SEND in text
    assert out.read_text().count("\n") >= 2
