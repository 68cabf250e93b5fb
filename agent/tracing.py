"""Agent spans. Everything trace-related in the agent lives here; the
data-path modules only call in when `tracer` is not None (tracing on):

- `session.Session.app_frames` (sender): `origin(session, msg, t_in)` per frame.
  Samples the message (`sample_origin_id`) and keeps its ids and stamps for the link
  (`hotlink.ipc_read`: frames read from the app socket -> HotlinkData built). Unsampled:
  nothing is kept.
- `link.WsLink.send`: `before_send(msg, mid)` gives the traceparent to encode (the
  `hotlink.send` span's for sampled data; lifecycle and file messages get theirs)
  and `after_send` records once the message is on the socket: for data, one compact
  record (`telemetry/compact.py`) from which the exporter builds both spans.
- `link.WsLink._on_raw` (every message from the relay, `t0` stamped before decode):
  `on_message(env, t0, listener)` for data with a `tpc` and for control messages.
  Data: `hotlink.receive_ws` (decode, dispatch) then `hotlink.ipc_write` (reorder,
  write to every app connection of the session; attribute `hotlink.delivery` says
  whether the frame reached an app socket now or waits in the reorder buffer / the
  no-app backlog), again one compact record. The session attributes of the data
  records are one dict per session (`_shared`), not built per message.

Session lifecycle spans (always sampled while tracing is on, see `sample_lifecycle`):
`hotlink.session.open` (sender: Open sent -> relay Ack, or ERROR with the Reject
reason; a `hotlink.session.reject` child records the reject), `hotlink.session.accept`
(reader: Accept sent -> Ack, a child of the relay's open span that offered it; sender:
a reader accepted), `hotlink.session.reject` (a reader turned the open down),
`hotlink.session.close` (sent or received).

File (fallback) path: `priority.send` (a FileWrite sent; continues the trace of the
message that fell back when `file_origin` / `FileTraces` knows the path, else a new
origin) and `client.receive_ws` (a FileWrite from the relay with a `tpc`) are recorded
from the link hooks. `watcher.detected` and `client.write_file` come from the file path
(`agent/filepath.py`): `file_detected(path)` in `FileWorker.upload_app_file`, where the
watcher hands a `.request` file to the upload (ends once the upload is queued), and
`file_written(path, t_start)` in `FileWorker._mirror`, once the reader's mirror write
(temp + rename) is done and the file replayed. (A reader without `--keep-files` replays
its session's fallback files without writing them: no `client.write_file` then.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from hotlink.telemetry import FileTraces, Telemetry, TraceCtx
from hotlink.telemetry import names as N
from hotlink.telemetry.compact import RECV, SEND
from hotlink.telemetry.core import new_span_id
from hotlink.telemetry.traceparent import format_traceparent
from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope


class TracedSession(Protocol):
    """What span attributes read from a session (`session.Session`)."""

    path: str
    is_sender: bool
    to: str
    ipc_mode: int
    conns: list[Any]

    @property
    def sender(self) -> str: ...

    @property
    def readers(self) -> frozenset[str]: ...

    @property
    def fallback_mode(self) -> int: ...

    @property
    def last_seq(self) -> int: ...


class SessionIndex(Protocol):
    """What the tracer looks sessions up in (`sessions.SessionManager`)."""

    email: str
    by_sid: dict[str, Any]


Attrs = dict[str, Any]
#: (span name, ctx, start ns, attrs, error) of a span that ends when its message is sent
SendRec = tuple[str, TraceCtx, int, Attrs, str]
#: a sampled HotlinkData waiting for its send: (msg, trace id, ipc_read span id,
#: send span id, t_in, t_built, shared session attributes, route)
DataWait = tuple[m.HotlinkData, int, int, int, int, int, Attrs, str]
#: what `before_send` hands `after_send` for it: (waiting entry, message id)
DataRec = tuple[DataWait, str]

_MAX_WAITING = 4096
_IPC_MODES = {1: "unix", 2: "tcp", 3: "pipe"}
_FALLBACK = {1: "off", 2: "on-failure", 3: "tee"}
#: control messages `on_message` looks at (data only when it carries a tpc)
CONTROL = frozenset(
    {m.Ack, m.Nack, m.HotlinkOpen, m.HotlinkAccept, m.HotlinkReject, m.HotlinkClose}
)


def _bound(d: dict[Any, Any]) -> None:
    while len(d) > _MAX_WAITING:
        del d[next(iter(d))]


class AgentTracer:
    def __init__(self, tel: Telemetry, mgr: SessionIndex | None = None) -> None:
        self.tel = tel
        self.mgr = mgr
        #: id(HotlinkData) -> what its spans need: sampled, not yet sent
        self._data: dict[int, DataWait] = {}
        #: sid -> (session, fallback mode, readers, attributes): `_shared`
        self._shared_by_sid: dict[str, tuple[Any, int, frozenset[str], Attrs]] = {}
        #: Open / Accept message id -> (name, ctx, start, attrs, sid), until the Ack
        self._waiting: dict[str, tuple[str, TraceCtx, int, Attrs, str]] = {}
        self._open_by_sid: dict[str, str] = {}
        #: traceparent of the relay's Open (offer) per sid: the reader's accept continues it
        self._offer_tp: dict[str, str] = {}
        #: file path: path -> traceparent of `watcher.detected` (or the message that fell back)
        self.files = FileTraces()

    # ------------------------------------------------------------------ attributes

    def session_attrs(self, sid: str, s: TracedSession | None = None) -> Attrs:
        a: Attrs = {N.MESSAGING_SYSTEM: N.SYSTEM_VALUE, N.SESSION_ID: sid}
        if s is None and self.mgr is not None and sid:
            s = self.mgr.by_sid.get(sid)
        if s is not None:
            a[N.PATH] = s.path
            a[N.MESSAGING_DESTINATION] = s.path
            a[N.SENDER] = s.sender
            if s.is_sender:
                if s.to:
                    a[N.READER] = s.to
                if s.readers:
                    a[N.READERS] = ",".join(sorted(s.readers))
            elif self.mgr is not None:
                a[N.READER] = self.mgr.email
            a[N.FALLBACK_MODE] = _FALLBACK.get(int(s.fallback_mode), str(s.fallback_mode))
            a[N.IPC_MODE] = _IPC_MODES.get(s.ipc_mode, str(s.ipc_mode))
        return a

    # ------------------------------------------------------------ sender data path

    def origin(self, s: TracedSession, msg: m.HotlinkData, t_in: int) -> None:
        """A frame read from an app became `msg`: sample it here, once. Sampled: the
        ids, the stamps and the session's shared attributes wait for the send; the
        spans are built from one compact record after it (`compact.SEND`)."""
        tid = self.tel.sample_origin_id()
        if not tid:
            return
        data = self._data
        # msg kept: its id stays unique while it waits. The route is the relay's until a
        # direct send says otherwise (`before_direct`): the path is known at the send,
        # not here (a direct link may drop in between).
        data[id(msg)] = (
            msg, tid, new_span_id(), new_span_id(), t_in, time.time_ns(),
            self._shared(msg.sid, s), "relay",
        )  # fmt: skip
        if len(data) > _MAX_WAITING:
            _bound(data)

    def _shared(self, sid: str, s: TracedSession | None) -> Attrs:
        """The session's attributes for the data-path records: one dict per session,
        rebuilt only when what it says changes (readers, fallback mode), shared by
        reference by every record of the session (no dict built per message)."""
        got = self._shared_by_sid.get(sid)
        if s is None:
            if got is not None and got[0] is None:
                return got[3]
            mode, readers = 0, frozenset()
        else:
            mode, readers = s.fallback_mode, s.readers
            if got is not None and got[0] is s and got[1] == mode and got[2] == readers:
                return got[3]
        a = self.session_attrs(sid, s)
        a.pop(N.PATH, None)  # each record has its message's path (compact.py)
        if len(self._shared_by_sid) >= _MAX_WAITING:
            self._shared_by_sid.clear()
        self._shared_by_sid[sid] = (s, mode, frozenset(readers), a)
        return a

    # ---------------------------------------------------------------- link: send

    def before_send(self, msg: m.Message, mid: str) -> tuple[SendRec | DataRec | None, str]:
        """The traceparent for `msg` ("" if none) and what `after_send` records."""
        t = type(msg)
        if t is m.HotlinkData:
            if not self._data:  # nothing sampled waits (the 99 % case at ratio 0.01)
                return None, ""
            got = self._data.pop(id(msg), None)
            if got is None:
                return None, ""
            return (got, mid), format_traceparent(got[1], got[3])
        tel = self.tel
        now = time.time_ns()
        if t is m.HotlinkOpen or t is m.HotlinkAccept:
            sid = msg.sid  # type: ignore[union-attr]
            if t is m.HotlinkOpen:
                ctx = tel.sample_lifecycle()
                name = N.AGENT_SESSION_OPEN
            else:
                tp = self._offer_tp.get(sid, "")
                ctx = tel.child_of(tp) if tp else tel.sample_lifecycle()
                name = N.AGENT_SESSION_ACCEPT
            if ctx is None:
                return None, ""
            a = self.session_attrs(sid)
            a[N.MESSAGING_MESSAGE_ID] = mid
            self._waiting[mid] = (name, ctx, now, a, sid)
            _bound(self._waiting)
            if t is m.HotlinkOpen:
                self._open_by_sid[sid] = mid
                _bound(self._open_by_sid)
            return None, ctx.traceparent
        if t is m.HotlinkClose:
            ctx = tel.sample_lifecycle()
            if ctx is None:
                return None, ""
            a = self.session_attrs(msg.sid)  # type: ignore[union-attr]
            a[N.REASON] = msg.reason  # type: ignore[union-attr]
            return (N.AGENT_SESSION_CLOSE, ctx, now, a, ""), ctx.traceparent
        if t is m.FileWrite:
            path = msg.path  # type: ignore[union-attr]
            tp = self.files.take(path)
            ctx = tel.child_of(tp) if tp else tel.sample_origin()
            if ctx is None:
                return None, ""
            a = {
                N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
                N.MESSAGING_OPERATION_TYPE: "send",
                N.MESSAGING_DESTINATION: path,
                N.MESSAGING_MESSAGE_ID: mid,
                N.MESSAGING_BODY_SIZE: len(msg.content),  # type: ignore[union-attr]
                N.PATH: path,
                N.TRANSPORT: "file",
            }
            return (N.PRIORITY_SEND, ctx, now, a, ""), ctx.traceparent
        return None, ""

    def before_direct(self, msg: m.HotlinkData, route: str) -> tuple[DataRec | None, str]:
        """`before_send` for a frame leaving by direct links (`route`: "direct" or
        "relay+direct"); the relay copy of a mixed send then carries no trace."""
        rec, tp = self.before_send(msg, "")
        if rec is not None and len(rec) == 2:
            got, mid = rec  # type: ignore[misc]
            return ((*got[:7], route), mid), tp
        return None, tp

    def on_direct(self, env: Envelope, t0: int, deliver: Callable[[], None]) -> None:
        """A frame from a direct link (`t0`: before decode): `deliver` it, record
        `hotlink.receive_direct` and `hotlink.ipc_write` under the sender's trace."""
        ref = self.tel.parent_ref(env.traceparent)
        t1 = time.time_ns()
        deliver()
        if ref is not None:
            msg: m.HotlinkData = env.msg  # type: ignore[assignment]
            self._received(msg, ref[0], ref[1], t0, t1, time.time_ns(), env.id, "direct")

    def after_send(self, rec: SendRec | DataRec) -> None:
        if len(rec) == 2:  # a sampled HotlinkData: one compact record, two spans
            (msg, tid, read, send, t_in, t1, shared, route), mid = rec  # type: ignore[misc]
            self.tel.add(
                (SEND, tid, read, send, t_in, t1, time.time_ns(), shared,
                 msg.path, msg.seq, len(msg.payload), mid, route)
            )  # fmt: skip
            return
        name, ctx, t0, a, err = rec  # type: ignore[misc]
        self.tel.record(name, ctx, t0, time.time_ns(), a, error=err)

    # ------------------------------------------------------------- link: receive

    def on_message(self, env: Envelope, t0: int, listener: Any) -> None:
        """A message from the relay (`t0`: before decode); hands it to `listener`."""
        msg = env.msg
        t = type(msg)
        tel = self.tel
        if t is m.HotlinkData:
            ref = tel.parent_ref(env.traceparent)
            t1 = time.time_ns()
            listener.on_message(env)
            if ref is None:
                return
            t2 = time.time_ns()
            self._received(msg, ref[0], ref[1], t0, t1, t2, env.id)  # type: ignore[arg-type]
            return
        if t is m.FileWrite:
            ctx = tel.child_of(env.traceparent)
            t1 = time.time_ns()
            listener.on_message(env)
            if ctx is not None:
                path = msg.path  # type: ignore[union-attr]
                a = {
                    N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
                    N.MESSAGING_OPERATION_TYPE: "receive",
                    N.MESSAGING_DESTINATION: path,
                    N.MESSAGING_MESSAGE_ID: env.id,
                    N.MESSAGING_BODY_SIZE: len(msg.content),  # type: ignore[union-attr]
                    N.PATH: path,
                    N.TRANSPORT: "file",
                }
                tel.record(N.CLIENT_RECEIVE_WS, ctx, t0, t1, a)
                self.files.put("rx:" + path, ctx.traceparent)  # for file_written
            return
        try:
            self._control(env, t0)
        finally:
            listener.on_message(env)

    def _received(
        self,
        msg: m.HotlinkData,
        tid: int | str,
        parent: int,
        t0: int,
        t1: int,
        t2: int,
        mid: str,
        route: str = "relay",
    ) -> None:
        s = self.mgr.by_sid.get(msg.sid) if self.mgr is not None else None
        if s is None or s.is_sender:
            delivery = "unknown session"
        elif s.last_seq < msg.seq:
            delivery = "reorder"  # held until the gap before it fills (or times out)
        elif s.conns:
            delivery = "written"
        else:
            delivery = "backlog"  # no app connected: kept for the first one
        self.tel.add(
            (RECV, tid, parent, new_span_id(), new_span_id(), t0, t1, t2,
             self._shared(msg.sid, s), msg.path, msg.seq, len(msg.payload), mid, delivery,
             -1 if s is None else len(s.conns), route)
        )  # fmt: skip

    def _control(self, env: Envelope, t0: int) -> None:
        msg = env.msg
        t = type(msg)
        tel = self.tel
        now = time.time_ns()
        if t is m.Ack or t is m.Nack:
            got = self._waiting.pop(msg.original_id, None)  # type: ignore[union-attr]
            if got is None:
                return
            name, ctx, start, a, sid = got
            if self._open_by_sid.get(sid) == msg.original_id:  # type: ignore[union-attr]
                del self._open_by_sid[sid]
            err = f"nack: {msg.error}" if t is m.Nack else ""  # type: ignore[union-attr]
            tel.record(name, ctx, start, now, a, error=err)
            return
        if t is m.HotlinkOpen:  # an offer: our accept continues the relay's open span
            if env.traceparent:
                self._offer_tp[msg.sid] = env.traceparent  # type: ignore[union-attr]
                _bound(self._offer_tp)
            return
        sid = msg.sid  # type: ignore[union-attr]
        parent = tel.child_of(env.traceparent) if env.traceparent else None
        if t is m.HotlinkReject:
            reason = msg.reason  # type: ignore[union-attr]
            mid = "" if msg.frm else self._open_by_sid.pop(sid, "")  # type: ignore[union-attr]
            got = self._waiting.pop(mid, None) if mid else None
            ctx = parent
            if got is not None:  # our open was refused: it ends in ERROR
                name, octx, start, a, _ = got
                a[N.REASON] = reason
                tel.record(name, octx, start, now, a, error=f"rejected: {reason}")
                ctx = ctx or octx.child()
            ctx = ctx or tel.sample_lifecycle()
            if ctx is None:
                return
            a = self.session_attrs(sid)
            a[N.REASON] = reason
            if msg.frm:  # type: ignore[union-attr]
                a[N.READER] = msg.frm  # type: ignore[union-attr]
            tel.record(N.AGENT_SESSION_REJECT, ctx, t0, now, a, error=f"rejected: {reason}")
            return
        ctx = parent or tel.sample_lifecycle()
        if ctx is None:
            return
        a = self.session_attrs(sid)
        if t is m.HotlinkAccept:
            a[N.READER] = msg.frm  # type: ignore[union-attr]
            tel.record(N.AGENT_SESSION_ACCEPT, ctx, t0, now, a, kind=N.SERVER)
        elif t is m.HotlinkClose:
            a[N.REASON] = msg.reason  # type: ignore[union-attr]
            if msg.frm:  # type: ignore[union-attr]
                a[N.READER] = msg.frm  # type: ignore[union-attr]
            tel.record(N.AGENT_SESSION_CLOSE, ctx, t0, now, a, kind=N.SERVER)

    # ------------------------------------------------------ file path call sites

    def file_detected(self, path: str, fell_back: str = "") -> Callable[..., None] | None:
        """Call site (`FileWorker.upload_app_file`): the watcher hands the `.request` file `path`
        (datasite-relative, as on the wire) to the upload. Records `watcher.detected`
        (continuing `fell_back`, the traceparent of the hotlink message that became the
        file, if known) and makes the FileWrite's `priority.send` its child. Returns a
        callable `done(error)` to end the span, or None if not sampled."""
        tel = self.tel
        tp = fell_back or self.files.take(path)
        ctx = tel.child_of(tp) if tp else tel.sample_origin()
        if ctx is None:
            return None
        t0 = time.time_ns()
        a: Attrs = {N.MESSAGING_SYSTEM: N.SYSTEM_VALUE, N.PATH: path, N.TRANSPORT: "file"}
        self.files.put(path, ctx.traceparent)

        def done(error: str = "", size: int = -1) -> None:
            if size >= 0:
                a[N.MESSAGING_BODY_SIZE] = size
            tel.record(N.WATCHER_DETECTED, ctx, t0, time.time_ns(), a, error=error)

        return done

    def file_written(self, path: str, t_start: int, error: str = "", size: int = -1) -> None:
        """Call site (`FileWorker._mirror`): the mirror wrote (and replayed) the file `path` it
        got from the relay; `t_start` = time.time_ns() when the write was queued."""
        tp = self.files.take("rx:" + path)
        if not tp:
            return
        parent = self.tel.child_of(tp)
        if parent is None:
            return
        ctx = TraceCtx(parent.trace_id, parent.span_id, parent.parent_id, False)
        a: Attrs = {N.MESSAGING_SYSTEM: N.SYSTEM_VALUE, N.PATH: path, N.TRANSPORT: "file"}
        if size >= 0:
            a[N.MESSAGING_BODY_SIZE] = size
        self.tel.record(N.CLIENT_WRITE_FILE, ctx, t_start, time.time_ns(), a, error=error)
