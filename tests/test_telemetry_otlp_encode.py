"""The direct OTLP encoder produces what the SDK's encoder produces for the same records."""

from __future__ import annotations

from hotlink.telemetry import names as N
from hotlink.telemetry.export import SCOPE, to_readable_span
from hotlink.telemetry.otlp_encode import Encoder
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

RECORDS = [
    (N.HOTLINK_IPC_READ, (1 << 127) | 0xA1, 0xB2, 0, False, 1_000, 3_500,
     {N.SEQ: 9, N.PATH: "alice@example.org/_mpc/x", N.MESSAGING_BODY_SIZE: 1024}, None, ""),
    (N.RELAY_ROUTE, 0xA1, 0xB3, 0xB2, True, 2_000, 2_100,
     ({N.SESSION_ID: "s1", N.READERS: "bob@example.org"}, {N.SEQ: 10, N.SESSION_ID: "s2"}),
     None, ""),
    (N.AGENT_SESSION_ACCEPT, 5, 6, 7, False, 1, 2, {"flag": True, "ratio": 0.5, "neg": -3},
     N.SERVER, "rejected: nope"),
    ("custom", 8, 9, 0, False, 1, 2, None, "nope", ""),
]  # fmt: skip


def test_same_request_as_the_sdk_encoder() -> None:
    resource = Resource.create({"service.name": "hotlink-relay", "hotlink.peer": "a@b.c"})
    sdk = encode_spans([to_readable_span(r, resource) for r in RECORDS])  # type: ignore[arg-type]
    enc = Encoder(resource.attributes, SCOPE.name, SCOPE.version)
    ours = ExportTraceServiceRequest.FromString(
        enc.request(enc.span(r) for r in RECORDS)  # type: ignore[arg-type]
    )
    assert ours == sdk
    # the attribute cache does not change the bytes of a second encoding
    again = enc.request(enc.span(r) for r in RECORDS)  # type: ignore[arg-type]
    assert ExportTraceServiceRequest.FromString(again) == sdk
