"""The sender's file path, sans-I/O: frames written as fallback (or TEE) files and
what the file worker reports back (written, acknowledged by the relay, failed).

A mixin of `sender.SenderStream` (one stream, two ideas: this module is the half
that moves frames to files and back; the counts live on the stream). Entering the
file path spills the hotlink queue and the unconfirmed re-send window to files in seq
order; the policy returns to the hotlink only once every file is acknowledged.
"""

from __future__ import annotations

import logging

from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import Frame
from hotlink.wire.paths import AUTO_NAME

from .effects import APP, FALLBACK, TEE, Effect, FailApps, WriteFile
from .resend_window import seq_of
from .sender_fields import SenderFields

log = logging.getLogger("hotlink.agent.sessions")


class SenderFiles(SenderFields):
    """File-path events of a sender stream (see the module docstring)."""

    def _admit(self, f: Frame) -> int: ...

    def _check_pause(self, out: list[Effect]) -> None: ...

    def _maybe_resume(self, out: list[Effect]) -> None: ...

    def reevaluate(self, why: str = "") -> list[Effect]: ...

    def _frames_to_files(self, frames: list[Frame]) -> list[Effect]:
        out: list[Effect] = []
        try:
            for f in frames:
                seq = self._admit(f)
                out.append(self._to_file(seq, f.path or AUTO_NAME % seq, f.etag, f.payload))
                self.file_seq_high = seq
        except ProtocolError as exc:
            out.append(FailApps(exc))
            return out
        self._check_pause(out)
        return out

    def _to_file(self, seq: int, name: str, etag: str, payload: bytes) -> WriteFile:
        self.file_backlog += 1
        self.disk_frames += 1
        self.disk_bytes += len(payload)
        return WriteFile(seq, name, etag, payload, FALLBACK)

    def tee_queued(self, seq: int) -> None:
        """The file worker took a TEE copy (it skips copies when it falls behind)."""
        self.file_backlog += 1
        self.file_seq_high = seq

    def spill(self) -> list[Effect]:
        """Shutdown: frames still waiting for the hotlink become fallback files."""
        out: list[Effect] = []
        if not self.closed and self.policy.files_allowed and self.pending:
            self._spill(out)
        return out

    def _spill(self, out: list[Effect]) -> None:
        """Entering the file path: frames waiting for the hotlink (and sent frames no
        reader confirmed) become fallback files, in seq order."""
        ring = [x for x in self.recent if x.seq > self.confirmed]
        self.recent.clear()
        self.recent_bytes = 0
        frames = sorted(
            (x for x in (*ring, *self.pending) if x.seq > self.file_seq_high),
            key=seq_of,
        )
        self.pending.clear()
        self.pending_bytes = 0
        self.replay_until = 0
        plen = len(self.prefix)
        last = 0
        for x in frames:
            if x.seq == last:
                continue
            last = x.seq
            out.append(self._to_file(x.seq, x.path[plen:], x.etag, x.payload))
        if frames:
            self.file_seq_high = max(self.file_seq_high, frames[-1].seq)
            log.info(
                "session %s: %d queued/unconfirmed frames (seq %d..%d) go by files",
                self.path,
                len(frames),
                frames[0].seq,
                frames[-1].seq,
            )
        self._check_pause(out)

    def file_written(self, kind: int, size: int, error: str | None) -> list[Effect]:
        """The disk thread wrote (or failed to write) one of our files."""
        if kind == FALLBACK:
            self.disk_frames -= 1
            self.disk_bytes -= size
        out = self.file_failed(kind) if error is not None else []
        if self.reading_paused:
            self._maybe_resume(out)
        return out

    def file_queued(self) -> None:
        """A file the stream did not ask for (an app's `.request` file, a restored
        fallback file) joined the upload backlog."""
        self.file_backlog += 1

    def file_acked(self, kind: int, seq: int, size: int) -> list[Effect]:
        self.file_backlog -= 1
        self.files_sent += 1
        # a fallback copy of a frame the hotlink already carried is not a second frame
        if kind == APP or (kind == FALLBACK and seq > self.last_seq):
            self.frames_sent += 1
            self.bytes_sent += size
        if kind == FALLBACK and seq > self.files_acked_seq:
            self.files_acked_seq = seq
        if self.file_backlog == 0 and self.policy.files:
            return self.reevaluate("hotlink available, file backlog sent")
        return []

    def file_failed(self, kind: int) -> list[Effect]:
        self.file_backlog -= 1
        if kind != TEE:
            self.drops += 1
            self.totals.drops += 1
        if self.file_backlog == 0 and self.policy.files:
            return self.reevaluate()
        return []
