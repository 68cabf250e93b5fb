"""Compact data-path records: one flat tuple per message and process, expanded into
the usual `core.SpanRecord`s by whoever builds the spans.

Why: at 100 % sampling the data path's own tracing work was ~20 µs of CPU per message
in each of the relay and the two agents (`/proc` utime+stime, traced vs untraced
devstack), most of it building two attribute dicts of ~12 entries per message and
agent (`session_attrs`, then a copy per span), two `SpanRecord`s, and pickling all of
that in the flusher thread. A compact record carries only what differs per message:
the ids, the clock stamps, seq / size / message id, and a reference to a dict of the
session's attributes that is built once per session and shared by every record (the
pickle of a chunk writes it once). The exporter process (or, for the in-process
sinks, the flusher thread) turns each record into the very spans the call sites used
to record: same names, ids, parents, times and attributes.

Layouts (first field: the kind tag; a `SpanRecord` starts with its name, a str):

- `SEND` (sender agent, `hotlink.ipc_read` + its child `hotlink.send`):
  (SEND, trace_id, read_span, send_span, t_in, t_built, t_sent, shared, path, seq,
  size, message_id, route)
- `RECV` (reader agent, `hotlink.receive_ws` + its child `hotlink.ipc_write`;
  the parent is the relay's `relay.route`, remote; or `hotlink.receive_direct` under
  the sender's `hotlink.send` when `route` is "direct"):
  (RECV, trace_id, parent_span, rx_span, write_span, t0, t_decoded, t_written, shared,
  path, seq, size, message_id, delivery, app_connections or -1, route)

`route` (`hotlink.route`: "relay", "direct", "relay+direct", "files") may be missing
from records of an older peer: it then reads "relay".
In `RECV` and `ROUTE` the trace id may be the incoming traceparent string instead, the
parent span then 0 (`Telemetry.parent_ref`): its ids are parsed here, when the spans
are built, not per message on the data path.
- `ROUTE` (relay, `relay.route`; the parent is the sender's `hotlink.send`, remote):
  (ROUTE, trace_id, parent_span, span, t0, t1, shared, message_id, size, seq, path or "")

`shared` holds the session attributes (`messaging.system`, session id, destination,
peers, modes); the per-message ones are added here, as the `own` half of a
`(shared, own)` attribute pair, so the OTLP encoder writes the shared half's bytes once
per session (`otlp_encode.Encoder`). The agents' `shared` has no `hotlink.path`: the
message's own path is always in `own`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import names as N
from .traceparent import parse_fields

#: `core.SpanRecord` (not imported: `core` imports this module)
SpanRecord = tuple[Any, ...]

SEND = 1
RECV = 2
ROUTE = 3


def _ids(tid: int | str, parent: int) -> tuple[int, int] | None:
    """(trace id, parent span id) of a RECV / ROUTE record: given as ints, or as the
    incoming traceparent (`Telemetry.parent_ref`), parsed here, off the data path."""
    if type(tid) is not str:
        return tid, parent  # type: ignore[return-value]
    p = parse_fields(tid)
    return None if p is None else (p[0], p[1])


def _send(r: tuple[Any, ...]) -> list[SpanRecord]:
    _, tid, read, send, t_in, t1, t2, shared, path, seq, size, mid = r[:12]
    own: dict[str, Any] = {
        N.ROUTE: r[12] if len(r) > 12 else "relay",
        N.MESSAGING_OPERATION_TYPE: "receive",
        N.MESSAGING_BODY_SIZE: size,
        N.PATH: path,
        N.SEQ: seq,
        N.TRANSPORT: "hotlink",
    }
    sown = dict(own)
    sown[N.MESSAGING_OPERATION_TYPE] = "send"
    sown[N.MESSAGING_MESSAGE_ID] = mid
    return [
        (N.HOTLINK_IPC_READ, tid, read, 0, False, t_in, t1, (shared, own), None, ""),
        (N.HOTLINK_SEND, tid, send, read, False, t1, t2, (shared, sown), None, ""),
    ]


def _recv(r: tuple[Any, ...]) -> list[SpanRecord]:
    _, ref, parent, rx, wr, t0, t1, t2, shared, path, seq, size, mid, delivery, nconn = r[:15]
    ids = _ids(ref, parent)
    if ids is None:
        return []
    tid, parent = ids
    route = r[15] if len(r) > 15 else "relay"
    own: dict[str, Any] = {
        N.ROUTE: route,
        N.MESSAGING_OPERATION_TYPE: "receive",
        N.MESSAGING_BODY_SIZE: size,
        N.PATH: path,
        N.SEQ: seq,
        N.TRANSPORT: "hotlink",
        N.MESSAGING_MESSAGE_ID: mid,
    }
    wown = dict(own)
    wown[N.MESSAGING_OPERATION_TYPE] = "send"
    wown[N.DELIVERY] = delivery
    if nconn >= 0:
        wown[N.APP_CONNECTIONS] = nconn
    rx_name = N.HOTLINK_RECEIVE_DIRECT if route == "direct" else N.HOTLINK_RECEIVE_WS
    return [
        (rx_name, tid, rx, parent, True, t0, t1, (shared, own), None, ""),
        (N.HOTLINK_IPC_WRITE, tid, wr, rx, False, t1, t2, (shared, wown), None, ""),
    ]


def _route(r: tuple[Any, ...]) -> list[SpanRecord]:
    _, ref, parent, span, t0, t1, shared, mid, size, seq, path = r
    ids = _ids(ref, parent)
    if ids is None:
        return []
    tid, parent = ids
    own: dict[str, Any] = {N.MESSAGING_MESSAGE_ID: mid, N.MESSAGING_BODY_SIZE: size, N.SEQ: seq}
    if path:
        own[N.PATH] = path
    return [(N.RELAY_ROUTE, tid, span, parent, True, t0, t1, (shared, own), None, "")]


_EXPAND = {SEND: _send, RECV: _recv, ROUTE: _route}


def expand(records: Iterable[Any]) -> list[SpanRecord]:
    """`records` with every compact record replaced by its spans, in order.
    Returns the input list itself when it holds none."""
    if type(records) is list and not any(type(r[0]) is int for r in records):
        return records
    out: list[SpanRecord] = []
    for r in records:
        if type(r[0]) is int:
            fn = _EXPAND.get(r[0])
            if fn is not None:  # an unknown tag (a newer peer): skipped
                out.extend(fn(r))
        else:
            out.append(r)
    return out


def spans_in(records: Iterable[Any]) -> int:
    """How many spans `records` stand for (a compact record is one or two)."""
    return sum((1 if r[0] == ROUTE else 2) if type(r[0]) is int else 1 for r in records)
