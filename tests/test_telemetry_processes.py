"""Tracing across the REAL processes: a relay (configured by `--otel*` flags)
and two agents (configured by OTEL_* env) export to the in-test OTLP receiver; one
message alice -> bob must make one trace
hotlink.ipc_read -> hotlink.send -> relay.route -> hotlink.receive_ws -> hotlink.ipc_write
across the three processes, plus the session lifecycle spans; one `.request` file an app
writes makes one trace of the file path
watcher.detected -> priority.send -> server.handle_file_write -> server.broadcast
-> client.receive_ws -> client.write_file."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from fixtures_agent import AppClient
from hotlink.telemetry import names as N
from hotlink.telemetry.receiver import OtlpReceiver, by_name, has_names
from hotlink.v1 import agent_pb2 as pb

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
PATH = f"{A}/_mpc/0_to_1"


def _one(spans: list[dict[str, Any]], name: str, **attrs: Any) -> dict[str, Any]:
    got = [
        s
        for s in by_name(spans).get(name, [])
        if all(s["attributes"].get(k) == v for k, v in attrs.items())
    ]
    assert len(got) == 1, (name, attrs, got)
    return got[0]


def test_one_message_one_trace_across_three_processes(
    relay_factory: Callable[..., Any],
    agent_factory: Callable[..., Any],
    otlp_receiver: OtlpReceiver,
    otel_env: Callable[..., dict[str, str]],
) -> None:
    relay = relay_factory(
        extra_args=["--otel", "--otel-endpoint", otlp_receiver.endpoint,
                    "--otel-sampler", "parentbased_traceidratio", "--otel-sampler-arg", "1"]
    )  # fmt: skip
    env = otel_env(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="1")
    alice = agent_factory(A, relay_=relay, env=env)
    bob = agent_factory(B, relay_=relay, env=env)
    s = alice.open("_mpc/0_to_1", to=B)
    assert s.state == pb.SESSION_STATE_OPEN, s
    bob.open(PATH)
    bob.wait_session(PATH, lambda x: x.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(PATH, lambda x: B in x.readers)
    reader = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    try:
        # the reader app is registered before the frame comes (else it is "backlog")
        bob.wait_session(PATH, lambda x: x.ipc_clients >= 1)
        writer.send(b"x" * 1024, path="m/1.request")
        (f,) = reader.recv_n(1)
        assert f.payload == b"x" * 1024 and f.seq == 1
    finally:
        writer.close()
        reader.close()
    alice.stub.CloseSession(
        pb.CloseSessionRequest(session=pb.SessionRef(session_id=s.session_id), reason="done")
    )

    spans = otlp_receiver.wait_for(
        has_names(*N.HOTLINK_STAGES, N.AGENT_SESSION_OPEN, N.RELAY_SESSION_OPEN,
                  N.AGENT_SESSION_ACCEPT, N.RELAY_SESSION_ACCEPT,
                  N.AGENT_SESSION_CLOSE, N.RELAY_SESSION_CLOSE),
        timeout=20,
    )  # fmt: skip
    read = _one(spans, N.HOTLINK_IPC_READ)
    send = _one(spans, N.HOTLINK_SEND)
    route = _one(spans, N.RELAY_ROUTE)
    recv = _one(spans, N.HOTLINK_RECEIVE_WS)
    write = _one(spans, N.HOTLINK_IPC_WRITE)
    chain = [read, send, route, recv, write]

    # one trace, each stage the child of the one before, across three processes
    assert len({x["trace_id"] for x in chain}) == 1
    assert read["parent_span_id"] == ""
    for parent, child in itertools.pairwise(chain):
        assert child["parent_span_id"] == parent["span_id"], (parent["name"], child["name"])
    ag, rl = N.SERVICE_AGENT, N.SERVICE_RELAY
    assert [x["service"] for x in chain] == [ag, ag, rl, ag, ag]
    assert read["resource"][N.RES_PEER_EMAIL] == send["resource"][N.RES_PEER_EMAIL] == A
    assert recv["resource"][N.RES_PEER_EMAIL] == write["resource"][N.RES_PEER_EMAIL] == B
    assert [x["kind"] for x in chain] == ["CONSUMER", "PRODUCER", "CONSUMER",
                                          "CONSUMER", "PRODUCER"]  # fmt: skip
    # times in order (one host clock)
    assert read["start_ns"] <= read["end_ns"] <= send["start_ns"] <= send["end_ns"]
    # (the reader may start on the frame before the relay took its last stamp)
    assert send["start_ns"] <= route["start_ns"] <= route["end_ns"]
    assert route["start_ns"] <= recv["start_ns"] <= recv["end_ns"]
    assert recv["end_ns"] <= write["start_ns"] + 1 and write["start_ns"] <= write["end_ns"]

    # attributes: session, path, seq, size, peers, transport, fallback mode
    sid = s.session_id
    full = f"{PATH}/m/1.request"
    for x in chain:
        a = x["attributes"]
        assert a[N.SESSION_ID] == sid, x
        assert a[N.SEQ] == 1 and a[N.PATH] == full and a[N.MESSAGING_BODY_SIZE] == 1024
        assert a[N.MESSAGING_SYSTEM] == "hotlink" and a[N.TRANSPORT] == "hotlink"
        assert a[N.MESSAGING_DESTINATION] == PATH
    assert read["attributes"][N.SENDER] == A and read["attributes"][N.READER] == B
    assert read["attributes"][N.FALLBACK_MODE] and read["attributes"][N.IPC_MODE] == "unix"
    assert send["attributes"][N.READERS] == B
    assert send["attributes"][N.MESSAGING_OPERATION_TYPE] == "send"
    assert route["attributes"][N.SENDER] == A and route["attributes"][N.READERS] == B
    assert recv["attributes"][N.SENDER] == A and recv["attributes"][N.READER] == B
    assert write["attributes"][N.DELIVERY] == "written"
    assert write["attributes"][N.APP_CONNECTIONS] == 1

    # lifecycle: alice's open -> relay's open (child) -> offer -> bob's accept (child)
    # -> relay's accept (child) -> alice learns of it (child)
    a_open = _one(spans, N.AGENT_SESSION_OPEN, **{N.SESSION_ID: sid})
    r_open = _one(spans, N.RELAY_SESSION_OPEN, **{N.SESSION_ID: sid})
    assert a_open["service"] == N.SERVICE_AGENT and r_open["service"] == N.SERVICE_RELAY
    assert a_open["parent_span_id"] == "" and a_open["status"] != "ERROR"
    assert r_open["parent_span_id"] == a_open["span_id"]
    assert r_open["attributes"][N.SENDER] == A and r_open["attributes"][N.READER] == B
    assert r_open["attributes"][N.PATH] == PATH
    accepts = by_name(spans)[N.AGENT_SESSION_ACCEPT]
    (b_acc,) = [x for x in accepts if x["kind"] == "CLIENT"]  # bob's Accept -> Ack
    (a_acc,) = [x for x in accepts if x["kind"] == "SERVER"]  # alice told of it
    r_acc = _one(spans, N.RELAY_SESSION_ACCEPT, **{N.SESSION_ID: sid})
    assert b_acc["resource"][N.RES_PEER_EMAIL] == B
    assert b_acc["trace_id"] == r_open["trace_id"] == a_open["trace_id"]
    assert b_acc["parent_span_id"] == r_open["span_id"]
    assert r_acc["parent_span_id"] == b_acc["span_id"] and r_acc["attributes"][N.READER] == B
    assert b_acc["kind"] == "CLIENT" and a_acc["resource"][N.RES_PEER_EMAIL] == A
    assert a_acc["parent_span_id"] == r_acc["span_id"]

    # close: alice's close -> relay's close -> bob's close (bob then leaves its leg)
    def closes(sp: list[dict[str, Any]], name: str, peer: str = "", kind: str = "") -> list[Any]:
        return [
            x
            for x in by_name(sp).get(name, [])
            if x["attributes"].get(N.SESSION_ID) == sid
            and (not peer or x["resource"].get(N.RES_PEER_EMAIL) == peer)
            and (not kind or x["kind"] == kind)
        ]

    spans = otlp_receiver.wait_for(
        lambda sp: (
            closes(sp, N.AGENT_SESSION_CLOSE, A) and closes(sp, N.AGENT_SESSION_CLOSE, B, "SERVER")
        ),
        timeout=20,
    )
    (a_close,) = closes(spans, N.AGENT_SESSION_CLOSE, A)
    assert a_close["attributes"][N.REASON] == "done" and a_close["kind"] == "CLIENT"
    (r_close,) = [
        x for x in closes(spans, N.RELAY_SESSION_CLOSE) if x["parent_span_id"] == a_close["span_id"]
    ]
    assert r_close["service"] == N.SERVICE_RELAY and r_close["attributes"][N.SENDER] == A
    (b_close,) = closes(spans, N.AGENT_SESSION_CLOSE, B, "SERVER")
    assert b_close["parent_span_id"] == r_close["span_id"]
    assert b_close["attributes"][N.REASON] == "done"


def test_app_request_file_one_trace_across_three_processes(
    relay_factory: Callable[..., Any],
    agent_factory: Callable[..., Any],
    otlp_receiver: OtlpReceiver,
    otel_env: Callable[..., dict[str, str]],
) -> None:
    relay = relay_factory(
        extra_args=["--otel", "--otel-endpoint", otlp_receiver.endpoint,
                    "--otel-sampler", "parentbased_traceidratio", "--otel-sampler-arg", "1"]
    )  # fmt: skip
    env = otel_env(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="1")
    alice = agent_factory(A, relay_=relay, env=env)
    # --keep-files: bob mirrors the file (temp + rename) before replaying it
    bob = agent_factory(B, relay_=relay, env=env, args=["--keep-files"])
    s = alice.open("_mpc/0_to_1", to=B)
    assert s.state == pb.SESSION_STATE_OPEN, s
    bob.open(PATH)
    bob.wait_session(PATH, lambda x: x.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(PATH, lambda x: B in x.readers)
    payload = b"q" * 700
    reader = AppClient(bob.session_dir(PATH))
    try:
        d = alice.session_dir(PATH)
        tmp = d / "1.request.tmp"  # an app writes a temp name, then renames
        tmp.write_bytes(payload)
        os.replace(tmp, d / "1.request")
        f = reader.recv()
        assert f.payload == payload, f
    finally:
        reader.close()

    full = f"{PATH}/1.request"
    spans = otlp_receiver.wait_for(
        lambda sp: all(
            any(x["attributes"].get(N.PATH) == full for x in by_name(sp).get(n, []))
            for n in N.FILE_STAGES
        ),
        timeout=20,
    )
    chain = [_one(spans, n, **{N.PATH: full}) for n in N.FILE_STAGES]
    det, send, handle, bcast, recv, write = chain

    # one trace, each stage the child of the one before, across three processes
    assert len({x["trace_id"] for x in chain}) == 1
    assert det["parent_span_id"] == ""
    for parent, child in itertools.pairwise(chain):
        assert child["parent_span_id"] == parent["span_id"], (parent["name"], child["name"])
    ag, rl = N.SERVICE_AGENT, N.SERVICE_RELAY
    assert [x["service"] for x in chain] == [ag, ag, rl, rl, ag, ag]
    assert det["resource"][N.RES_PEER_EMAIL] == send["resource"][N.RES_PEER_EMAIL] == A
    assert recv["resource"][N.RES_PEER_EMAIL] == write["resource"][N.RES_PEER_EMAIL] == B
    assert all(x["status"] != "ERROR" for x in chain), chain
    # times in order (one host clock)
    assert det["start_ns"] <= det["end_ns"] <= send["start_ns"] <= send["end_ns"]
    assert send["start_ns"] <= handle["start_ns"] <= handle["end_ns"] <= bcast["start_ns"]
    assert bcast["start_ns"] <= recv["end_ns"] and recv["start_ns"] <= write["start_ns"]
    assert write["start_ns"] <= write["end_ns"]

    # attributes: path, sizes (the app's bytes, then the fallback file on the wire), peers
    for x in chain:
        a = x["attributes"]
        assert a[N.PATH] == full and a[N.TRANSPORT] == "file", x
        assert a[N.MESSAGING_SYSTEM] == "hotlink"
    assert det["attributes"][N.MESSAGING_BODY_SIZE] == len(payload)
    wire = {x["attributes"][N.MESSAGING_BODY_SIZE] for x in chain[1:]}
    assert len(wire) == 1 and wire.pop() > len(payload)
    assert handle["attributes"][N.SENDER] == A and bcast["attributes"][N.SENDER] == A
    assert bcast["attributes"][N.READERS] == B
    assert (
        send["attributes"][N.MESSAGING_MESSAGE_ID] == handle["attributes"][N.MESSAGING_MESSAGE_ID]
    )
    assert send["attributes"][N.MESSAGING_OPERATION_TYPE] == "send"
    assert recv["attributes"][N.MESSAGING_OPERATION_TYPE] == "receive"


def test_rejected_open_is_an_error_span(
    relay_factory: Callable[..., Any],
    agent_factory: Callable[..., Any],
    otlp_receiver: OtlpReceiver,
    otel_env: Callable[..., dict[str, str]],
) -> None:
    relay = relay_factory(extra_args=["--otel", "--otel-endpoint", otlp_receiver.endpoint])
    env = otel_env()
    alice = agent_factory(A, relay_=relay, env=env)
    # bob may not write alice's datasite: the relay rejects the open
    bob = agent_factory(B, relay_=relay, env=env)
    with pytest.raises(Exception):  # noqa: B017 - the gRPC error type is not the point
        bob.open(f"{A}/_mpc/x", role=pb.ROLE_SENDER)
    spans = otlp_receiver.wait_for(
        has_names(N.AGENT_SESSION_OPEN, N.RELAY_SESSION_OPEN, N.AGENT_SESSION_REJECT), timeout=20
    )
    a_open = _one(spans, N.AGENT_SESSION_OPEN)
    r_open = _one(spans, N.RELAY_SESSION_OPEN)
    rej = _one(spans, N.AGENT_SESSION_REJECT)
    assert a_open["status"] == r_open["status"] == rej["status"] == "ERROR"
    assert "permission denied" in a_open["status_message"]
    assert r_open["parent_span_id"] == a_open["span_id"]
    assert rej["trace_id"] == a_open["trace_id"]
    assert rej["attributes"][N.REASON] == r_open["attributes"][N.REASON]
    assert alice.status() is not None


def test_devstack_otel_flags() -> None:
    from hotlink.ctl import devstack
    from hotlink.ctl.cli import build_parser

    p = build_parser()
    args = p.parse_args(["devstack", "up", "--otel"])
    assert (args.otel, args.otel_sampler_arg) == (devstack.DEFAULT_OTEL_ENDPOINT, 1.0)
    args = p.parse_args(["devstack", "up", "--otel", "http://h:4317", "--otel-sampler-arg", "0.5"])
    assert devstack.otel_args(args.otel, args.otel_sampler_arg) == [
        "--otel", "--otel-endpoint", "http://h:4317", "--otel-sampler-arg", "0.5"
    ]  # fmt: skip
    assert p.parse_args(["devstack", "up"]).otel is None
    assert devstack.otel_args(None, 1.0) == []
