"""The reader's session adapter: frames from any path into its core
(`core.ReaderStream`), the frames it releases out to every connected app."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

from hotlink.wire import messages as m
from hotlink.wire.fallbackfile import FallbackFrame
from hotlink.wire.paths import owner_of

from .core.effects import Deliver, DeliverBacklog
from .core.paths import ActivePath, normalize_mode
from .core.reader import ReaderStream
from .ipc import AppConnection
from .session import Session, SessionHost
from .state import SessionRecord

_NO_PENDING: deque[m.HotlinkData] = deque()
_NO_READERS: frozenset[str] = frozenset()


class ReaderSession(Session):
    """The reader's adapter: frames from any path in, writes to every app out."""

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
        self.stream = self.rx = ReaderStream(
            path,
            sender=owner_of(path),
            mode=normalize_mode(fallback_mode),
            limits=mgr.limits,
            totals=mgr.totals,
            app_flushed=self._app_flushed,
            budget=mgr.reader_budget,
        )
        super().__init__(mgr, path, **kw)
        if restore is not None:
            self.rx.restore(
                restore.sid, restore.delivered, (restore.cursor_mtime, restore.cursor_path)
            )
            if isinstance(restore.sender, str) and restore.sender:
                self.rx.sender = restore.sender

    @property
    def sender(self) -> str:
        return self.rx.sender

    @property
    def readers(self) -> frozenset[str]:
        return _NO_READERS

    @property
    def active_path(self) -> ActivePath:
        """Where frames come from: files, or the hotlink, reported as DIRECT while the
        sender's direct link is up (its sender sends there first). Decided here, not
        per frame, so the relay path's per-frame work stays as it is."""
        path = self.rx.reader_path
        neg = self.negotiator
        if path is ActivePath.HOTLINK and neg is not None and neg.is_up(self.sender):
            return ActivePath.DIRECT
        return path

    seq = 0

    @property
    def pending(self) -> deque[m.HotlinkData]:
        return _NO_PENDING

    @property
    def syncing(self) -> bool:
        return self.rx.catch_up.running

    @property
    def ingest_pending(self) -> int:
        return self.rx.ingest_pending

    @ingest_pending.setter
    def ingest_pending(self, n: int) -> None:
        self.rx.ingest_pending = n

    #: frames and payload bytes that came over the direct link (counted by
    #: `agent.direct.service`)
    direct_frames = 0
    direct_bytes = 0
    #: frames / payload bytes that came through the relay (`SessionManager.on_message`)
    relay_frames = 0
    relay_bytes = 0

    def counters(self) -> dict[str, int]:
        """GetSession's counters."""
        rx = self.rx
        return {
            "frames_received": rx.frames_received,
            "bytes_received": rx.bytes_received,
            "drops": rx.drops,
            "files_received": rx.files_received,
            "duplicates": rx.reorder.duplicates,
            "file_duplicates": rx.reorder.file_duplicates,
            "path_switches": rx.policy.switches,
            "frames_direct": self.direct_frames,
            "bytes_direct": self.direct_bytes,
            "frames_relay": self.relay_frames,
            "bytes_relay": self.relay_bytes,
            "refetched": rx.refetch.refused,
        }

    def record(self) -> SessionRecord:
        rec = super().record()
        rec.delivered = self.rx.delivered()
        rec.cursor_mtime, rec.cursor_path = self.rx.persist_cursor()
        rec.sender = self.rx.sender
        return rec

    def app_delivered(self) -> int:
        return self.rx.delivered()

    def _app_flushed(self, last: int) -> int | None:
        conns = self.conns
        return min(c.flushed_seq(last) for c in conns) if conns else None

    def _sent(self, msg: m.Message) -> None:
        self.rx.sent(msg)

    def app_connected(self, conn: AppConnection) -> None:
        self.conns.append(conn)
        for e in self.rx.app_connected(self.mgr.loop.time()):
            if type(e) is DeliverBacklog:
                for h, p in e.frames:  # type: ignore[union-attr]
                    conn.write(h, p)
            else:
                self.apply([e])
        self._arm()

    def app_dropped(self, conn: AppConnection, frames: int, first: int) -> None:
        """A slow app was disconnected: if no other app has its frames, they are
        refetched (not lost, not counted as drops)."""
        if not self.rx.app_lost(first):
            super().app_dropped(conn, frames, first)
        self._arm()

    def app_dropped_revised(self, conn: AppConnection, was: int, first: int) -> None:
        self.rx.app_lost_revised(was, first)

    def app_disconnected(self, conn: AppConnection) -> None:
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)
            self.rx.app_disconnected()

    def on_data(self, msg: m.HotlinkData) -> None:
        """The hot path: a frame from the hotlink."""
        rx = self.rx
        now = self.mgr.loop.time()
        header = rx.in_order(msg, now)
        if header is not None:
            payload = msg.payload
            for c in self.conns:
                c.write(header, payload)  # type: ignore[union-attr]
        else:
            for e in rx.on_data(msg, now):
                if type(e) is Deliver:
                    for c in self.conns:
                        c.write(e.header, e.payload)  # type: ignore[union-attr]
                else:
                    self.apply([e])
        # The timer is re-armed only when the stream's next deadline moved: with only
        # the progress timer pending and already armed (the common case) there is
        # nothing to do, and `_arm` would find the same.
        if (
            rx.progress_due != self._timer_when
            or rx.gap_due is not None
            or rx.catch_up.due is not None
            or rx.refetch.due is not None
        ):
            self._arm()

    def take_file(self, frame: FallbackFrame) -> bool:
        """Is this fallback file part of our current stream?"""
        effects = self.rx.take_file(frame)
        if effects is None:
            return False
        self.apply(effects)
        return True

    def on_file_frame(self, frame: FallbackFrame) -> None:
        self.apply(self.rx.on_file_frame(frame, self.mgr.loop.time()))
