"""Relay messages to the sessions they are for: `SessionManager`'s half that is the
link's `on_message`.

Data frames go to the reader session of their sid; control messages (Acks of our Opens,
the relay's Opens, Accepts, Rejects, Closes, progress, catch-up pages, the sender's
stream-start answer) to their session's core through its adapter; what no session
takes goes to the manager's `message_hooks` (the direct path's signals, tunnels), and
relay errors are logged, rate-limited. Apart from the manager's control plane (opening
and closing sessions) so that each stays one idea.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import ProtocolError
from hotlink.wire.extensions import STREAM_START
from hotlink.wire.paths import session_path, validate_path

from .core.state import SessionState
from .session import Session

if TYPE_CHECKING:
    from .filepath import FileWorker

log = logging.getLogger("hotlink.agent.sessions")


class RelayMessages:
    """`on_message` and its handlers; the state is the manager's (`SessionManager`)."""

    by_path: dict[str, Session]
    by_sid: dict[str, Session]
    offers: dict[str, m.HotlinkOpen]
    _acks: dict[str, Session]
    ack_hooks: list[Callable[[str, str | None], bool]]
    message_hooks: list[Callable[[Envelope], bool]]
    files: FileWorker
    loop: asyncio.AbstractEventLoop
    frames_in: int
    bytes_in: int
    unknown_frames: int
    _errors: int

    def _reject(self, s: Session, reason: str) -> None: ...

    def _on_file_sync(self, msg: m.FileSync) -> None: ...

    def close_session(self, s: Session, reason: str = "") -> Session: ...

    def on_message(self, env: Envelope) -> None:
        msg = env.msg
        t = type(msg)
        if t is m.HotlinkData:
            s = self.by_sid.get(msg.sid)  # type: ignore[union-attr]
            if s is None or s.is_sender:
                self.unknown_frames += 1
                return
            n = len(msg.payload)  # type: ignore[union-attr]
            self.frames_in += 1
            self.bytes_in += n
            s.relay_frames += 1  # type: ignore[attr-defined]
            s.relay_bytes += n  # type: ignore[attr-defined]
            s.on_data(msg)  # type: ignore[arg-type]
        elif t is m.Ack:
            self._on_ack(msg.original_id, None)  # type: ignore[union-attr]
        elif t is m.Nack:
            self._on_ack(msg.original_id, msg.error or "nack")  # type: ignore[union-attr]
        elif t is m.HotlinkOpen:
            self._on_open(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkAccept:
            self._on_accept(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkReject:
            self._on_reject(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkClose:
            self._on_close(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkProgress:
            s = self.by_sid.get(msg.sid)  # type: ignore[union-attr]
            if s is not None and s.is_sender:
                s.apply(s.tx.on_progress(msg.frm, msg.seq))  # type: ignore[union-attr]
                self.files.delivered(s, msg.frm, msg.seq)  # type: ignore[union-attr]
        elif t is m.FileWrite:
            self.files.ingest(msg)  # type: ignore[arg-type]
        elif t is m.FileSync:
            self._on_file_sync(msg)  # type: ignore[arg-type]
        elif t is m.HotlinkSignal and msg.kind == STREAM_START:  # type: ignore[union-attr]
            self._on_stream_start(msg)  # type: ignore[arg-type]
        elif any(hook(env) for hook in self.message_hooks):
            return
        elif t is m.Error:
            s = self.by_path.get(msg.path)  # type: ignore[union-attr]
            if s is not None and s.syncing:  # the relay could not answer our catch-up
                s.apply(s.rx.sync_failed(msg.message, self.loop.time()))  # type: ignore[union-attr]
            self._errors += 1
            if self._errors <= 20 or self._errors % 1000 == 0:
                log.warning(
                    "relay error #%d: %s %s %s",
                    self._errors,
                    msg.code,  # type: ignore[union-attr]
                    msg.path,  # type: ignore[union-attr]
                    msg.message,  # type: ignore[union-attr]
                )
        else:
            log.debug("ignoring %s from relay", t.__name__)

    def _on_ack(self, oid: str, error: str | None) -> None:
        s = self._acks.pop(oid, None)
        if s is None:
            for hook in self.ack_hooks:
                if hook(oid, error):
                    return
            return
        if error is not None:
            self._reject(s, error)
            return
        s.apply(s.stream.on_acked())

    def _on_open(self, msg: m.HotlinkOpen) -> None:
        try:
            validate_path(msg.path)
        except ProtocolError:
            log.warning("relay sent an open with a bad path %r; ignored", msg.path)
            return
        if session_path(msg.path) != msg.path:  # a reference sender names its first file
            msg = m.HotlinkOpen(msg.sid, session_path(msg.path), msg.frm, msg.to)
        self.offers[msg.path] = msg
        s = self.by_path.get(msg.path)
        if s is None or s.is_sender or s.closed:
            return
        s.apply(s.rx.offer(msg, self.loop.time()))

    def _on_stream_start(self, msg: m.HotlinkSignal) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None or s.is_sender or msg.seq is None or msg.frm != s.rx.sender:  # type: ignore[attr-defined]
            return
        s.apply(s.rx.stream_start(msg.seq, self.loop.time()))  # type: ignore[attr-defined]

    def _on_accept(self, msg: m.HotlinkAccept) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None or not s.is_sender:
            return
        s.apply(s.tx.on_accept(msg.frm or "?", msg.seq))

    def _on_reject(self, msg: m.HotlinkReject) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None:
            return
        if s.is_sender:
            if not msg.frm and msg.reason in m.TRANSIENT_REJECTS:
                # our Open is answered: a retry gets a fresh message id
                for oid in [k for k, v in self._acks.items() if v is s]:
                    del self._acks[oid]
            s.apply(s.tx.on_reject(msg.frm, msg.reason, self.loop.time()))
        else:
            if not msg.frm and msg.reason == m.REASON_UNKNOWN_SESSION:
                self._drop_offer(s.path, msg.sid)
            s.apply(s.rx.on_reject(msg.frm, msg.reason))
        self._unindex_rejected(s)

    def _on_close(self, msg: m.HotlinkClose) -> None:
        s = self.by_sid.get(msg.sid)
        if s is None:
            for p, off in list(self.offers.items()):
                if off.sid == msg.sid:
                    del self.offers[p]
            return
        if s.is_sender:
            s.apply(s.tx.on_close(msg.frm, msg.reason))
            self._unindex_rejected(s)
            return
        self._drop_offer(s.path, msg.sid)
        effects = s.rx.on_close(msg.reason)
        if effects is None:
            self.close_session(s, msg.reason or "closed by the sender")
        else:
            s.apply(effects)

    def _drop_offer(self, path: str, sid: str) -> None:
        off = self.offers.get(path)
        if off is not None and off.sid == sid:
            del self.offers[path]

    def _unindex_rejected(self, s: Session) -> None:
        if s.state is SessionState.REJECTED and s.sid and self.by_sid.get(s.sid) is s:
            del self.by_sid[s.sid]
