"""The sender's session adapter: app frames in, frames out on the path its core
(`core.SenderStream`) picks; the file worker's events back into the core."""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import deque
from typing import Any

from hotlink.wire import messages as m
from hotlink.wire.envelope import encode
from hotlink.wire.frames import Frame

from .appnames import session_relative
from .core.effects import TEE, Transmit, WriteFile
from .core.paths import ActivePath, FallbackMode, PathId, normalize_mode
from .core.sender_direct import DirectSenderStream
from .core.state import Role
from .ipc import AppConnection
from .session import Session, SessionHost
from .state import SessionRecord
from .transport import LinkDown

log = logging.getLogger("hotlink.agent.sessions")

HOTLINK = PathId.HOTLINK


def new_sid() -> str:
    """A fresh session id: 64 random bits, so nobody can guess a future one."""
    return secrets.token_hex(8)


class SenderSession(Session):
    """The sender's adapter: app frames in, frames out on the path the core picks."""

    is_sender = True
    role = Role.SENDER

    def __init__(
        self,
        mgr: SessionHost,
        path: str,
        *,
        fallback_mode: int,
        restore: SessionRecord | None = None,
        clean: bool = False,
        **kw: Any,
    ) -> None:
        #: open direct links per reader (managed by `agent.direct.service`)
        self.direct_links: dict[str, Any] = {}
        self.direct_frames = self.direct_bytes = 0
        self.relay_frames = self.relay_bytes = 0
        self.stream = self.tx = DirectSenderStream(
            path,
            sid="",
            to=kw["to"],
            mode=normalize_mode(fallback_mode),
            limits=mgr.limits,
            totals=mgr.totals,
            new_sid=new_sid,
            sender=mgr.email,
        )
        super().__init__(mgr, path, **kw)
        if restore is not None and clean:
            self.tx.sid = restore.sid
            self.tx.resume(restore.seq, restore.delivered)
            self.resumed = True
        elif restore is not None:
            log.warning(
                "session %s: the agent did not stop cleanly; it goes on as a new stream", path
            )

    @property
    def sender(self) -> str:
        return self.mgr.email

    @property
    def readers(self) -> frozenset[str]:
        return self.tx.readers

    @property
    def active_path(self) -> ActivePath:
        return self.tx.active_path

    @property
    def seq(self) -> int:
        return self.tx.seq

    @property
    def pending(self) -> deque[m.HotlinkData]:
        return self.tx.pending

    syncing = False

    def counters(self) -> dict[str, int]:
        """GetSession's counters."""
        tx = self.tx
        return {
            "frames_sent": tx.frames_sent,
            "bytes_sent": tx.bytes_sent,
            "drops": tx.drops,
            "queued": len(tx.pending),
            "files_sent": tx.files_sent,
            "files_pending": tx.file_backlog,
            "path_switches": tx.policy.switches,
            "confirmed_seq": tx.confirmed,
            "frames_direct": self.direct_frames,
            "bytes_direct": self.direct_bytes,
            "frames_relay": self.relay_frames,
            "bytes_relay": self.relay_bytes,
            "direct_switches": tx.direct_switches,
        }

    def record(self) -> SessionRecord:
        rec = super().record()
        rec.seq = self.tx.seq
        rec.delivered = self.tx.files_acked_seq
        return rec

    def _transmit(self, fail_over: bool, force: bool = False, path: PathId = HOTLINK) -> None:
        """Send queued frames while the session can send and the link takes them.
        With direct links up (`direct_links`), the core says which carry the queue
        (`DirectSenderStream.carriers`); `path` is only the core's summary of that."""
        tx = self.tx
        pend = tx.pending
        failed = False
        if pend and self.direct_links:
            if force or tx.can_transmit:
                failed = self._transmit_direct()
        elif pend and (force or tx.can_transmit):
            link = self.mgr.link
            n = 0
            while pend and link.writable:
                try:
                    link.send(pend[0])
                except LinkDown:
                    failed = True
                    break
                n += 1
                self.relay_bytes += len(pend[0].payload)
                tee = tx.frame_sent()
                if tee is not None:
                    self._write_file(tee)
            self.relay_frames += n
        done = tx.transmit_done(failed, fail_over)
        if done:
            self.apply(done)

    def _transmit_direct(self) -> bool:
        """Send the queue over the direct links (and the relay when the core says so),
        each frame to every carrier before the next; True when the relay send failed.
        A direct send that fails means the link is closing: its `closed` callback tells
        the core, which re-queues what that reader did not confirm."""
        tx = self.tx
        pend = tx.pending
        link = self.mgr.link
        links = self.direct_links
        while pend:
            relay, direct = tx.carriers()
            carriers = [links[r] for r in direct if r in links]
            if relay and not link.writable:
                break  # the relay link's on_writable flushes again
            blocked = None
            for c in carriers:  # a loop, not next(genexpr): no generator per frame
                if not c.writable():
                    blocked = c
                    break
            if blocked is not None:
                self.mgr.direct.when_writable(self, blocked)  # type: ignore[attr-defined]
                break
            msg = pend[0]
            tr = self.mgr.tracer
            rec = None
            if tr is None:
                wire = encode(msg, link.next_id())
            else:
                rec, tp = tr.before_direct(msg, "relay+direct" if relay else "direct")
                wire = encode(msg, link.next_id(), traceparent=tp)
            for c in carriers:
                try:
                    c.send(wire)
                except Exception:  # DirectLinkClosed: its `closed` callback re-routes
                    log.debug("session %s: direct send failed", self.path, exc_info=True)
            if relay:
                try:
                    link.send(msg)
                except LinkDown:
                    return True
                self.relay_frames += 1
                self.relay_bytes += len(msg.payload)
            elif carriers:
                self.direct_frames += 1
                self.direct_bytes += len(msg.payload)
            if rec is not None:
                tr.after_send(rec)  # type: ignore[union-attr]
            tee = tx.frame_sent()
            if tee is not None:
                self._write_file(tee)
        return False

    def _write_file(self, w: WriteFile) -> None:
        ok = self.mgr.files.write_frame(self, w.seq, w.name, w.etag, w.payload, w.kind)  # type: ignore[arg-type]
        if ok and w.kind == TEE:
            self.tx.tee_queued(w.seq)

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)
        if self.tx.reading_paused:
            conn.pause_reading()

    def app_frames(self, conn: AppConnection, frames: list[Frame]) -> None:
        """The hot path. Raises ProtocolError on a refused frame (after handling the
        frames before it)."""
        frames = session_relative(self.prefix, frames)  # type: ignore[assignment]
        tx = self.tx
        tr = self.mgr.tracer  # None: tracing off (agent/tracing.py)
        if tr is None:
            effects = tx.app_frames(frames)
        else:
            t_in = time.time_ns()
            first = tx.seq
            effects = tx.app_frames(frames)
            # sample the frames of this batch that wait for the hotlink (files are not
            # traced here): the newest entries of `pending`
            last = tx.seq
            pend = tx.pending
            if last == first + 1 and pend and pend[-1].seq == last:  # one frame, mostly
                tr.origin(self, pend[-1], t_in)
            elif last != first:
                new = list(itertools.takewhile(lambda x: x.seq > first, reversed(pend)))
                for msg in reversed(new):
                    tr.origin(self, msg, t_in)
        if len(effects) == 1 and type(effects[0]) is Transmit:  # the common case
            self._transmit(True)
        else:
            self.apply(effects)

    def flush(self) -> None:
        self._transmit(False)

    def reevaluate(self, why: str = "") -> None:
        self.apply(self.tx.reevaluate(why))

    def set_mode(self, mode: FallbackMode) -> None:
        self.apply(self.tx.set_mode(mode))

    # file worker events
    def next_seq(self) -> int:
        return self.tx.next_seq()

    def file_queued(self) -> None:
        self.tx.file_queued()

    def file_written(self, kind: int, size: int, error: str | None) -> None:
        self.apply(self.tx.file_written(kind, size, error))

    def file_acked(self, kind: int, seq: int, size: int) -> None:
        self.apply(self.tx.file_acked(kind, seq, size))

    def file_failed(self, kind: int) -> None:
        self.apply(self.tx.file_failed(kind))
