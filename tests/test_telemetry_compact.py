"""Compact data-path records: expanded into the same spans the call sites recorded
before (names, ids, parents, times, attributes), whoever expands them."""

from __future__ import annotations

import pickle
from typing import Any

from hotlink.telemetry import compact
from hotlink.telemetry import names as N
from hotlink.telemetry.core import Telemetry
from hotlink.telemetry.export import SCOPE, to_readable_span
from hotlink.telemetry.exporter_process import ProcessSink, decode_frames, encode_batch
from hotlink.telemetry.otlp_encode import Encoder
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

SHARED = {
    N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
    N.SESSION_ID: "sid1",
    N.MESSAGING_DESTINATION: "alice@example.org/_mpc/0_to_1",
    N.SENDER: "alice@example.org",
    N.READER: "bob@example.org",
}
PATH = "alice@example.org/_mpc/0_to_1/00000007.request"
SEND = (compact.SEND, 0xA1, 0xB1, 0xB2, 100, 200, 300, SHARED, PATH, 7, 1024, "m7")
RECV = (compact.RECV, 0xA1, 0xC0, 0xC1, 0xC2, 400, 500, 600, SHARED, PATH, 7, 1024, "m7",
        "written", 1)  # fmt: skip
ROUTE = (compact.ROUTE, 0xA1, 0xB2, 0xC0, 310, 390, {**SHARED, N.PATH: "p"}, "m7", 1024, 7, "")


def flat(attrs: Any) -> dict[str, Any]:
    if type(attrs) is tuple:
        out = dict(attrs[0])
        out.update(attrs[1])
        return out
    return dict(attrs)


def test_sender_record_is_ipc_read_then_send() -> None:
    read, send = compact.expand([SEND])
    assert read[:7] == (N.HOTLINK_IPC_READ, 0xA1, 0xB1, 0, False, 100, 200)
    assert send[:7] == (N.HOTLINK_SEND, 0xA1, 0xB2, 0xB1, False, 200, 300)
    common = {**SHARED, N.PATH: PATH, N.SEQ: 7, N.MESSAGING_BODY_SIZE: 1024}
    common[N.TRANSPORT] = "hotlink"
    common[N.ROUTE] = "relay"  # a record without its route field (older peer)
    assert flat(read[7]) == {**common, N.MESSAGING_OPERATION_TYPE: "receive"}
    assert flat(send[7]) == {
        **common,
        N.MESSAGING_OPERATION_TYPE: "send",
        N.MESSAGING_MESSAGE_ID: "m7",
    }
    assert read[8] is None and read[9] == "" and send[8] is None


def test_reader_record_is_receive_ws_then_ipc_write() -> None:
    rx, wr = compact.expand([RECV])
    assert rx[:7] == (N.HOTLINK_RECEIVE_WS, 0xA1, 0xC1, 0xC0, True, 400, 500)
    assert wr[:7] == (N.HOTLINK_IPC_WRITE, 0xA1, 0xC2, 0xC1, False, 500, 600)
    assert flat(rx[7])[N.MESSAGING_OPERATION_TYPE] == "receive"
    assert flat(rx[7])[N.MESSAGING_MESSAGE_ID] == "m7"
    w = flat(wr[7])
    assert w[N.DELIVERY] == "written" and w[N.APP_CONNECTIONS] == 1
    assert w[N.MESSAGING_OPERATION_TYPE] == "send" and w[N.SESSION_ID] == "sid1"
    # no session known: no app connection count
    (_, wr2) = compact.expand([(*RECV[:14], -1)])
    assert N.APP_CONNECTIONS not in flat(wr2[7])


def test_records_carry_their_route_and_a_direct_receive_is_named_so() -> None:
    read, send = compact.expand([(*SEND, "relay+direct")])
    assert flat(read[7])[N.ROUTE] == flat(send[7])[N.ROUTE] == "relay+direct"
    rx, wr = compact.expand([(*RECV, "direct")])
    assert rx[0] == N.HOTLINK_RECEIVE_DIRECT and flat(rx[7])[N.ROUTE] == "direct"
    assert wr[0] == N.HOTLINK_IPC_WRITE and flat(wr[7])[N.ROUTE] == "direct"
    (rx2, _) = compact.expand([RECV])
    assert rx2[0] == N.HOTLINK_RECEIVE_WS and flat(rx2[7])[N.ROUTE] == "relay"


def test_route_record_keeps_the_shared_path_unless_the_message_has_another() -> None:
    (r,) = compact.expand([ROUTE])
    assert r[:7] == (N.RELAY_ROUTE, 0xA1, 0xC0, 0xB2, True, 310, 390)
    assert flat(r[7])[N.PATH] == "p" and flat(r[7])[N.SEQ] == 7
    (r2,) = compact.expand([(*ROUTE[:10], "q")])
    assert flat(r2[7])[N.PATH] == "q"


def test_receive_and_route_records_may_carry_the_incoming_traceparent() -> None:
    """The relay and the reader put the sender's traceparent in the record as it came
    (`Telemetry.parent_ref`): the spans are the ones its parsed ids give."""
    tp_send = f"00-{0xA1:032x}-{0xB2:016x}-01"
    tp_route = f"00-{0xA1:032x}-{0xC0:016x}-01"
    assert compact.expand([(compact.ROUTE, tp_send, 0, *ROUTE[3:])]) == compact.expand([ROUTE])
    assert compact.expand([(compact.RECV, tp_route, 0, *RECV[3:])]) == compact.expand([RECV])
    # a value that does not parse gives no span (nothing is made up)
    assert compact.expand([(compact.ROUTE, "00-garbage", 0, *ROUTE[3:])]) == []
    assert compact.spans_in([(compact.RECV, tp_route, 0, *RECV[3:])]) == 2


def test_plain_records_pass_through_and_unknown_tags_are_skipped() -> None:
    plain = ("x", 1, 2, 0, False, 1, 2, None, None, "")
    records = [plain]
    assert compact.expand(records) is records
    assert compact.expand([plain, (99, 1, 2), SEND])[0] is plain
    assert len(compact.expand([plain, (99, 1, 2), SEND])) == 3
    assert compact.spans_in([plain, SEND, RECV, ROUTE]) == 6


class ListSink:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def export(self, records: list[Any]) -> None:
        self.got.extend(records)

    def force_flush(self, timeout: float) -> None:
        pass

    def shutdown(self, timeout: float) -> None:
        pass


def test_in_process_sinks_get_spans_and_the_process_sink_gets_the_tuples() -> None:
    sink = ListSink()
    tel = Telemetry(enabled=True, root_ratio=1.0, sink=sink, start_thread=False)
    tel.add(SEND)
    tel.drain()
    assert [r[0] for r in sink.got] == [N.HOTLINK_IPC_READ, N.HOTLINK_SEND]
    assert ProcessSink.compact is True
    # what crosses the pipe: the tuple, its shared dict once per chunk
    data = encode_batch([SEND, RECV])
    (batch,), _ = decode_frames(bytearray(data))
    assert batch == [SEND, RECV] and batch[0][7] is batch[1][8]
    assert len(pickle.dumps([SEND] * 64)) < 64 * 120


def test_full_queue_drops_and_counts() -> None:
    tel = Telemetry(
        enabled=True, root_ratio=1.0, sink=ListSink(), start_thread=False, max_pending=2
    )
    for _ in range(3):
        tel.add(SEND)
    assert tel.pending == 2 and tel.dropped == 1


def test_encoder_writes_what_the_sdk_writes_for_expanded_records() -> None:
    resource = Resource.create({"service.name": "hotlink-agent"})
    spans = compact.expand([SEND, RECV, ROUTE, (*ROUTE[:10], "q"), SEND])
    sdk = encode_spans([to_readable_span(r, resource) for r in spans])  # type: ignore[arg-type]
    enc = Encoder(resource.attributes, SCOPE.name, SCOPE.version)
    for _ in range(2):  # the second time from the shared-attribute caches
        ours = ExportTraceServiceRequest.FromString(enc.request(enc.span(r) for r in spans))
        assert ours == sdk
    # an equal shared dict that is another object (the next pickled chunk)
    other = compact.expand([(*SEND[:7], dict(SHARED), *SEND[8:])])
    want = encode_spans([to_readable_span(r, resource) for r in other])  # type: ignore[arg-type]
    assert ExportTraceServiceRequest.FromString(enc.request(enc.span(r) for r in other)) == want


def test_direct_grpc_sink_sends_our_bytes_to_a_real_receiver(otlp_receiver: Any) -> None:
    """The exporter process's OTLP/gRPC path: compact records expanded, encoded by us
    and sent as bytes through the SDK's channel (no protobuf object in between)."""
    from hotlink.telemetry.config import TracingConfig
    from hotlink.telemetry.direct_export import DirectGrpcSink
    from hotlink.telemetry.receiver import has_names

    sink = DirectGrpcSink(TracingConfig(enabled=True, endpoint=otlp_receiver.endpoint), {})
    assert sink.exporter.raw  # the SDK this project pins has what the raw stub needs
    try:
        sink.export(compact.expand([SEND, RECV, ROUTE]))
        sink.force_flush(10.0)
        assert sink.failed == 0
        spans = otlp_receiver.wait_for(
            has_names(N.HOTLINK_IPC_READ, N.HOTLINK_SEND, N.RELAY_ROUTE, N.HOTLINK_RECEIVE_WS,
                      N.HOTLINK_IPC_WRITE),
            timeout=20,
        )  # fmt: skip
    finally:
        sink.shutdown(2.0)
    send = next(s for s in spans if s["name"] == N.HOTLINK_SEND)
    assert send["attributes"][N.MESSAGING_MESSAGE_ID] == "m7"
    assert send["attributes"][N.SESSION_ID] == "sid1" and send["attributes"][N.SEQ] == 7
