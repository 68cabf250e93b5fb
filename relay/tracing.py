"""Relay spans, kept out of `server.py` so the data path there only pays
`if t0:` (tracing off: `t0` is 0 and nothing here runs).

- `relay.route`: a HotlinkData that arrived with a sampled `tpc`. Child of the sender
  agent's `hotlink.send`; the readers get the route span's own traceparent, so their
  `hotlink.receive_ws` is its child. Starts before decode, ends once the frames are
  queued to every reader.
- `server.handle_file_write` / `server.broadcast` (file path): the FileWrite's check
  and store, then the copies queued to the readers (they carry the broadcast span's
  traceparent).
- Session lifecycle `relay.session.{open,accept,reject,close}`: one span per control
  message, a child of its `tpc` when the agent sent one, else a new lifecycle trace;
  every message the router answers it with carries the span's traceparent (so a
  reader's accept continues the relay's open). Sessions ended by a disconnect or the
  idle timer get a `relay.session.close` root span each.

The router stays sans-I/O and trace-free: everything here reads its output and state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hotlink.telemetry import Telemetry, TraceCtx
from hotlink.telemetry import names as N
from hotlink.telemetry.compact import ROUTE
from hotlink.telemetry.core import new_span_id
from hotlink.telemetry.traceparent import format_traceparent, with_span
from hotlink.wire.envelope import Envelope
from hotlink.wire.messages import (
    FileNotify,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkReject,
    Nack,
)

from .router import Outgoing, Router

Dispatch = Callable[[list[Outgoing]], None]
#: `RelayServer._forward(frame, msg, traceparent, out)`: frame to readers of msg as is
Forward = Callable[[bytes, object, str, list[Outgoing]], None]

_MAX_SHARED = 4096
_LIFECYCLE = {
    HotlinkOpen: N.RELAY_SESSION_OPEN,
    HotlinkAccept: N.RELAY_SESSION_ACCEPT,
    HotlinkReject: N.RELAY_SESSION_REJECT,
    HotlinkClose: N.RELAY_SESSION_CLOSE,
}
#: Message types `after_handle` has something to record for.
TRACED = frozenset((*_LIFECYCLE, HotlinkData, FileWrite, FileNotify))


class RelayTracer:
    def __init__(self, tel: Telemetry, router: Router) -> None:
        self.tel = tel
        self.router = router
        #: sid -> (session, its reader tuple, shared route attributes): `_route_attrs`
        self._shared: dict[str, tuple[object, object, dict[str, str]]] = {}

    # ------------------------------------------------------------------ data path

    def route(
        self,
        user: str,
        env: Envelope,
        out: list[Outgoing],
        t0: int,
        forward: Forward,
        frame: bytes,
    ) -> None:
        """A HotlinkData the router handled (`frame`: its bytes, in the layout the fast
        decoder read): forward it under `relay.route` if sampled.

        The readers get the sender's frame with only the traceparent's 55 bytes
        replaced by the route span's (same length, same message id), so a traced
        message is forwarded like an untraced one: no re-encode, no new id. (Re-encoding
        it was 20 % of a traced relay's CPU: `encode` and `new_id`'s getrandom call.)
        """
        tp_in = env.traceparent
        ref = self.tel.parent_ref(tp_in)
        if ref is None:
            forward(frame, env.msg, tp_in, out)
            return
        span = new_span_id()
        tid, parent = ref
        # a version-00 parent arrives unparsed (same trace, our span); other forms parsed
        tp = (
            with_span(tid, span) if type(tid) is str else format_traceparent(tid, span)  # type: ignore[arg-type]
        )
        # (Outgoing(...) instead of `_replace`, which costs ~4 times as much)
        out = [Outgoing(o[0], o[1], tp) if o[2] == tp_in else o for o in out]
        old, new = tp_in.encode(), tp.encode()
        # tpc precedes dat in this layout, so the first occurrence is the header's
        at = frame.find(old) if len(old) == len(new) else -1
        if at < 0:  # a longer (future version) traceparent: encode the frames anew
            forward(b"", None, "", out)
        else:
            forward(frame[:at] + new + frame[at + len(new) :], env.msg, tp, out)
        t1 = time.time_ns()
        msg: HotlinkData = env.msg  # type: ignore[assignment]
        shared = self._route_attrs(msg.sid, user)
        path = msg.path
        self.tel.add(  # one compact record (telemetry/compact.py): no dict per message
            (ROUTE, tid, parent, span, t0, t1, shared, env.id,
             len(msg.payload), msg.seq, path if path and path != shared[N.PATH] else "")
        )  # fmt: skip

    def _route_attrs(self, sid: str, user: str) -> dict[str, str]:
        """The attributes every `relay.route` span of a session shares, built once per
        session and reader set: one dict object that the record of every message refers
        to (and that the exporter pipe carries once per chunk), not eleven entries
        copied per message."""
        s = self.router.sessions.get(sid)
        deliver = s.deliver if s is not None else None
        got = self._shared.get(sid)
        if got is not None and got[0] is s and got[1] is deliver and got[2][N.SENDER] == user:
            return got[2]
        spath = s.path if s is not None else ""
        attrs = {
            N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
            N.MESSAGING_OPERATION_TYPE: "process",
            N.MESSAGING_DESTINATION: spath,
            N.SESSION_ID: sid,
            N.PATH: spath,
            N.SENDER: user,
            N.READERS: ",".join(s.readers.values()) if s is not None else "",
            N.TRANSPORT: "hotlink",
        }
        if len(self._shared) >= _MAX_SHARED:
            self._shared.clear()
        self._shared[sid] = (s, deliver, attrs)
        return attrs

    # ----------------------------------------------------------- control, files

    def after_handle(
        self, user: str, env: Envelope, out: list[Outgoing], t0: int, t1: int, dispatch: Dispatch
    ) -> None:
        """Any other traced message type (see `TRACED`): record, then dispatch `out`."""
        msg = env.msg
        typ = type(msg)
        if typ is HotlinkData:  # not in the fast layout: no frame to reuse
            self.route(user, env, out, t0, lambda _f, _m, _t, o: dispatch(o), b"")
            return
        if typ is FileWrite or typ is FileNotify:
            self._file_write(user, env, out, t0, t1, dispatch)
            return
        name = _LIFECYCLE.get(typ)
        tel = self.tel
        ctx = tel.child_of(env.traceparent) if env.traceparent else tel.sample_lifecycle()
        if name is None or ctx is None:
            dispatch(out)
            return
        sid = msg.sid  # type: ignore[attr-defined]
        attrs = self._session_attrs(sid)
        err = ""
        if typ is HotlinkOpen:
            attrs[N.SENDER] = user
            attrs[N.PATH] = msg.path  # type: ignore[attr-defined]
            if msg.to:  # type: ignore[attr-defined]
                attrs[N.READER] = msg.to  # type: ignore[attr-defined]
            for o in out:  # the router's answer to the opener
                if type(o.msg) is HotlinkReject and o.msg.sid == sid:
                    attrs[N.REASON] = o.msg.reason
                    err = f"rejected: {o.msg.reason}"
                    break
        elif typ is HotlinkAccept:
            attrs[N.READER] = user
        elif typ is HotlinkReject or typ is HotlinkClose:
            attrs[N.REASON] = msg.reason  # type: ignore[attr-defined]
            if N.SENDER not in attrs:  # the sender closed it: the session is gone
                attrs[N.SENDER] = user
            elif attrs[N.SENDER] != user:
                attrs[N.READER] = user
        tp = ctx.traceparent
        dispatch([o._replace(traceparent=tp) for o in out])
        tel.record(name, ctx, t0, time.time_ns(), attrs, error=err)

    def _file_write(
        self, user: str, env: Envelope, out: list[Outgoing], t0: int, t1: int, dispatch: Dispatch
    ) -> None:
        tel = self.tel
        ctx = tel.child_of(env.traceparent)
        if ctx is None:
            dispatch(out)
            return
        msg: FileWrite = env.msg  # type: ignore[assignment]
        attrs = {
            N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
            N.MESSAGING_OPERATION_TYPE: "process",
            N.MESSAGING_DESTINATION: msg.path,
            N.MESSAGING_MESSAGE_ID: env.id,
            N.MESSAGING_BODY_SIZE: len(msg.content),
            N.PATH: msg.path,
            N.SENDER: user,
            N.TRANSPORT: "file",
        }
        err = ""
        for o in out:
            if type(o.msg) is Nack and o.msg.original_id == env.id:
                err = f"refused: {o.msg.error}"
        tel.record(N.SERVER_HANDLE_FILE_WRITE, ctx, t0, t1, attrs, error=err)
        b = ctx.child()
        tp = b.traceparent
        readers: list[str] = []
        conns = self.router.conns
        fwd: list[Outgoing] = []
        for o in out:
            if type(o.msg) in (FileWrite, FileNotify) and o.msg.path == msg.path:  # type: ignore[attr-defined]
                c = conns.get(o.conn)
                if c is not None:
                    readers.append(c.user)
                fwd.append(o._replace(traceparent=tp))
            else:
                fwd.append(o)
        t2 = time.time_ns()
        dispatch(fwd)
        if err:
            return
        battrs = dict(attrs)
        battrs[N.MESSAGING_OPERATION_TYPE] = "send"
        battrs[N.READERS] = ",".join(sorted(set(readers)))
        tel.record(N.SERVER_BROADCAST, b, t2, time.time_ns(), battrs)

    # --------------------------------------------------------- sessions that end

    def ended(self, out: list[Outgoing], why: str) -> list[Outgoing]:
        """Closes the router produced on its own (a disconnect, the idle timer): one
        `relay.session.close` root per session; its Close messages carry its id."""
        tel = self.tel
        spans: dict[str, tuple[TraceCtx, int]] = {}
        res: list[Outgoing] = []
        now = time.time_ns()
        for o in out:
            m = o.msg
            if type(m) is HotlinkClose:
                got = spans.get(m.sid)
                if got is None:
                    ctx = tel.sample_lifecycle()
                    if ctx is None:
                        return out
                    got = spans[m.sid] = (ctx, now)
                    attrs = self._session_attrs(m.sid)
                    attrs[N.REASON] = m.reason or why
                    tel.record(N.RELAY_SESSION_CLOSE, ctx, now, now, attrs)
                o = o._replace(traceparent=got[0].traceparent)
            res.append(o)
        return res

    def _session_attrs(self, sid: str) -> dict[str, str | int | bool | float]:
        a: dict[str, str | int | bool | float] = {
            N.MESSAGING_SYSTEM: N.SYSTEM_VALUE,
            N.SESSION_ID: sid,
        }
        s = self.router.sessions.get(sid)
        if s is not None:
            a[N.PATH] = s.path
            a[N.MESSAGING_DESTINATION] = s.path
            a[N.SENDER] = s.sender
            if s.readers:
                a[N.READERS] = ",".join(s.readers.values())
        return a
