"""The file path: fallback files out, the reader's mirror in.

All disk work runs in ONE worker thread, fed by one FIFO (`diskqueue.DiskQueue`): fallback and
TEE file writes, re-reads for upload, mirror writes, deletions and reads of
app-written `.request` files. One thread keeps them in order (a frame's file is
written before it is uploaded, a mirror file before its frame is replayed) and never
blocks the event loop that carries the hotlink. Results come back to the loop in
submission order.

Upload (`FileWorker.pump`, on the loop): files go to the relay as `FileWrite` in the
order they were written, at most `MAX_INFLIGHT` unacknowledged, only while the link is
writable. The relay's Ack makes a file durable; only then does the sender count it as
sent (and, without `--keep-files`, delete its own copy). When the link drops, the
unacknowledged files go back to the front of the queue. File contents are kept in
memory for the upload up to `memory_budget` bytes; beyond that the upload re-reads
them from disk, so a long relay outage costs disk, not memory.

Mirror (reader): `ingest` takes every `FileWrite` the relay sends (broadcasts and
catch-up pages). Paths are validated and resolved inside `ROOT/datasites` (a symlink
in the tree cannot redirect a write); files are written atomically (temp + rename);
fallback files of an open reader session are replayed into its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hotlink.common.atomic import write_atomic
from hotlink.wire import fallbackfile as ff
from hotlink.wire.errors import ProtocolError
from hotlink.wire.etag import etag_of
from hotlink.wire.extensions import WRITER
from hotlink.wire.messages import REASON_RATE_LIMITED, FileDelete, FileWrite
from hotlink.wire.paths import owner_of, validate_path

from .core.effects import APP, FALLBACK, TEE
from .core.names import RESERVED_NAMES
from .diskqueue import BATCH, DiskQueue, Done
from .held_files import HeldFiles
from .mirror_policy import MirrorPolicy, scan
from .safe_files import read_regular, resolve_inside
from .tracing import AgentTracer
from .transport import LinkDown, Transport

log = logging.getLogger("hotlink.agent.filepath")

MAX_INFLIGHT = 256
#: pause of the uploads after the relay answered "rate limited" (its --write-rate)
RATE_LIMIT_PAUSE = 0.5

__all__ = ["APP", "FALLBACK", "RESERVED_NAMES", "TEE", "FileSession", "FileWorker", "Upload"]


class FileSession(Protocol):
    """What the file worker needs from a session (`session.Session`): where its
    files go, and the events it feeds back (the session's core keeps the counts)."""

    path: str
    prefix: str
    session_dir: Path

    @property
    def sid(self) -> str: ...

    @property
    def sender(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def syncing(self) -> bool: ...

    ingest_pending: int

    def next_seq(self) -> int: ...

    def file_queued(self) -> None: ...

    def file_written(self, kind: int, size: int, error: str | None) -> None: ...

    def file_acked(self, kind: int, seq: int, size: int) -> None: ...

    def file_failed(self, kind: int) -> None: ...

    def reevaluate(self, why: str = "") -> None: ...

    def take_file(self, frame: ff.FallbackFrame) -> bool: ...

    def on_file_frame(self, frame: ff.FallbackFrame) -> None: ...


@dataclass(slots=True, eq=False)
class Upload:
    session: FileSession
    wire_path: str
    seq: int
    kind: int
    #: local file that holds exactly `content` (re-read from it when content is None)
    local: Path | None
    content: bytes | None = None
    etag: str = ""
    size: int = 0
    reading: bool = False
    #: content is counted in the worker's memory budget
    budgeted: bool = False


class FileWorker:
    """Fallback/TEE files and uploads for senders; mirror and replay for readers."""

    def __init__(
        self,
        link: Transport,
        *,
        root: Path,
        email: str,
        find_reader: Callable[[str], FileSession | None],
        keep_files: bool,
        max_file_bytes: int,
        memory_budget: int,
        tee_queue: int,
        mirror: MirrorPolicy | None = None,
    ) -> None:
        self.link = link
        #: what of other datasites is written to disk, and its byte bounds
        self.mirror_policy = mirror or MirrorPolicy(email)
        self.email = email
        self.find_reader = find_reader
        #: spans (agent/tracing.py), set when tracing is on
        self.tracer: AgentTracer | None = None
        self.keep_files = keep_files
        self.max_file_bytes = max_file_bytes
        self.memory_budget = memory_budget
        self.tee_queue = tee_queue
        self.base = root / "datasites"
        self.real_base = self.base.resolve()
        self.disk = DiskQueue()
        self.uploads: deque[Upload] = deque()
        self.inflight: dict[str, Upload] = {}
        self.memory = 0
        #: local paths this agent wrote (the watcher skips them); bounded
        self.own_paths: dict[str, None] = {}
        self.refused = 0
        #: fallback files refused because the relay says someone else wrote them
        self.forged = 0
        self.tee_skipped = 0
        self.mirrored = 0
        #: relay copies to delete once a session's named reader confirmed them
        self.held = HeldFiles()
        #: uploads the relay refused as "rate limited", re-sent after a pause, in order
        self.rate_backlog: list[Upload] = []
        self._resume: asyncio.TimerHandle | None = None

    async def close(self) -> None:
        await self.disk.close()

    async def load_mirror(self) -> None:
        """Count what the mirror already holds (at start, before the link is up)."""
        found = await asyncio.to_thread(scan, self.base, self.email)
        self.mirror_policy.load(found)

    # --- sender: writing fallback / TEE files -------------------------------------

    def write_frame(
        self, s: FileSession, seq: int, name: str, etag: str, payload: bytes, kind: int
    ) -> bool:
        """Queue one frame as a file (no I/O here). False if a TEE copy was skipped."""
        if kind == TEE and len(self.disk) >= self.tee_queue:
            self.tee_skipped += 1
            if self.tee_skipped == 1 or self.tee_skipped % 1000 == 0:
                log.warning(
                    "session %s: TEE file copies fall behind the hotlink; %d skipped so far",
                    s.path,
                    self.tee_skipped,
                )
            return False
        local = s.session_dir / name
        sid = s.sid
        keep = self.budget_ok(len(payload))
        own = self.own_paths
        own[str(local)] = None
        if len(own) > 200_000:
            for k in list(own)[:100_000]:
                del own[k]
        u = Upload(s, s.prefix + name, seq, kind, local)

        def work() -> tuple[bytes | None, str, int]:
            head = ff.encode_parts(sid, seq, name, etag, len(payload))
            write_atomic(local, (head, payload), mkdir=True)
            content = head + payload
            return (content if keep else None), etag_of(content), len(content)

        def done(res: Any, exc: BaseException | None) -> None:
            if exc is not None:
                log.error("session %s: cannot write fallback file %s: %s", s.path, local, exc)
                s.file_written(kind, len(payload), f"write failed: {exc}")
                return
            u.content, u.etag, u.size = res
            if u.content is not None:
                u.budgeted = True
                self.memory += u.size
            self.uploads.append(u)
            s.file_written(kind, len(payload), None)
            self.pump()

        self.disk.submit(work, done)
        return True

    def budget_ok(self, n: int) -> bool:
        return self.memory + n <= self.memory_budget

    def upload_app_file(self, s: FileSession, local: Path, name: str) -> None:
        """An app wrote `<session dir>/<name>`: read it (checked) and send it as the
        session's next frame."""
        session_dir = s.session_dir
        limit = self.max_file_bytes
        wire = s.prefix + name
        tr = self.tracer  # None: tracing off
        # watcher.detected: from here to the upload queued; priority.send is its child
        detected = tr.file_detected(wire) if tr is not None else None

        def untraced(error: str) -> None:
            """The file will not be sent: end `watcher.detected` (if `error`) and drop
            its context so a later file on this path does not continue it."""
            if detected is not None and tr is not None:
                tr.files.take(wire)
                if error:
                    detected(error)

        def work() -> bytes:  # on the disk thread, the folder's resolve too
            return read_regular(local, session_dir.resolve(), limit)

        def done(res: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self.refused += 1
                log.warning("refused %s: %s", local, exc)
                untraced(f"refused: {exc}")
                return
            if s.closed:
                untraced("session closed")
                return
            raw: bytes = res
            if ff.peek_sid(raw) == s.sid:
                untraced("")
                return  # one of our own fallback files (e.g. restored): already handled
            seq = s.next_seq()
            try:
                content = ff.encode(s.sid, seq, name, "", raw)
            except ProtocolError as exc2:
                log.warning("refused %s: %s", local, exc2)
                untraced(f"refused: {exc2}")
                return
            s.file_queued()
            u = Upload(s, wire, seq, APP, None, content, etag_of(content), len(content))
            self.uploads.append(u)
            log.debug("session %s: app file %s queued as seq %d", s.path, name, seq)
            if detected is not None:
                detected("", len(raw))
            self.pump()

        self.disk.submit(work, done)

    def restore_uploads(self, s: FileSession, acked: int) -> None:
        """A restored sender: its fallback files the relay never acknowledged (seq >
        `acked`, this stream's sid) are uploaded again, in seq order."""
        root = s.session_dir
        sid = s.sid

        def work() -> list[tuple[int, Path, bytes]]:
            found: list[tuple[int, Path, bytes]] = []
            for dirpath, dirs, names in os.walk(root):
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
                for n in names:
                    if n.startswith("."):
                        continue
                    p = Path(dirpath, n)
                    try:
                        if p.is_symlink() or not p.is_file():
                            continue
                        with open(p, "rb") as fh:
                            head = fh.read(300)
                            if ff.peek_sid(head) != sid:
                                continue
                            data = head + fh.read()
                        frame = ff.decode(data)
                    except (OSError, ProtocolError):
                        continue
                    if frame.seq > acked:
                        found.append((frame.seq, p, data))
            found.sort(key=lambda t: t[0])
            return found

        def done(res: Any, exc: BaseException | None) -> None:
            if exc is not None:
                log.warning(
                    "session %s: scanning for unsent fallback files failed: %s", s.path, exc
                )
                return
            if s.closed or not res:
                return
            prefix = str(root) + "/"
            for seq, p, data in res:
                name = str(p)[len(prefix) :]
                u = Upload(s, s.prefix + name, seq, FALLBACK, p, None, etag_of(data), len(data))
                if self.budget_ok(len(data)):
                    u.content, u.budgeted = data, True
                    self.memory += len(data)
                s.file_queued()
                self.uploads.append(u)
            log.info(
                "session %s: %d fallback files of the previous run (seq %d..%d) will be sent",
                s.path,
                len(res),
                res[0][0],
                res[-1][0],
            )
            s.reevaluate()
            self.pump()

        self.disk.submit(work, done)

    # --- upload ---------------------------------------------------------------------

    def pump(self) -> None:
        """Send queued files while the link takes them (called on every change)."""
        link = self.link
        q = self.uploads
        if not q or not link.up:
            return
        inflight = self.inflight
        if self._resume is not None:  # paused by the relay's write rate
            return
        while q and len(inflight) < MAX_INFLIGHT and link.writable:
            u = q[0]
            if u.content is None:
                self._read_ahead()
                return
            try:
                oid = link.send(FileWrite(u.wire_path, u.etag, u.size, u.content))
            except LinkDown:
                return
            q.popleft()
            inflight[oid] = u

    def _read_ahead(self) -> None:
        batch = []
        for u in self.uploads:
            if u.content is not None or len(batch) >= BATCH:
                break
            if u.reading:
                return
            u.reading = True
            batch.append(u)
        paths = [u.local for u in batch]

        def work() -> list[bytes | BaseException]:
            out: list[bytes | BaseException] = []
            for p in paths:
                try:
                    assert p is not None
                    out.append(p.read_bytes())
                except OSError as exc:
                    out.append(exc)
            return out

        def done(res: Any, exc: BaseException | None) -> None:
            results = res if exc is None else [exc] * len(batch)
            for u, r in zip(batch, results, strict=True):
                u.reading = False
                if isinstance(r, BaseException):
                    log.error("cannot re-read %s for upload: %s", u.local, r)
                    with contextlib.suppress(ValueError):
                        self.uploads.remove(u)
                    u.session.file_failed(u.kind)
                else:
                    u.content, u.size = r, len(r)
                    u.etag = etag_of(r)
            self.pump()

        self.disk.submit(work, done)

    def on_ack(self, oid: str, error: str | None) -> bool:
        u = self.inflight.pop(oid, None)
        if u is None:
            return False
        if error is not None and error.startswith(REASON_RATE_LIMITED) and u.content is not None:
            self._rate_limited(u)
            return True
        if u.budgeted:
            self.memory -= u.size
            u.budgeted = False
        u.content = None
        s = u.session
        if error is not None:
            log.error("relay refused file %s (seq %d): %s", u.wire_path, u.seq, error)
            s.file_failed(u.kind)
        else:
            s.file_acked(u.kind, u.seq, u.size)
            if not self.keep_files and u.kind != APP:
                self._delete(self.held.acked(s, u.seq, u.wire_path))
            if not self.keep_files and u.local is not None and u.kind != APP:
                local = u.local
                self.disk.submit(lambda: local.unlink(missing_ok=True), _ignore)
        self.pump()
        return True

    def delivered(self, s: FileSession, reader: str, seq: int) -> None:
        """A reader's HotlinkProgress: relay copies it confirmed go (`held_files`)."""
        if not self.keep_files:
            self._delete(self.held.delivered(s, reader, seq))

    def _delete(self, paths: list[str]) -> None:
        for path in paths:  # a lost one goes with the relay's retention sweep
            with contextlib.suppress(LinkDown):
                self.link.send(FileDelete(path))

    def _rate_limited(self, u: Upload) -> None:
        """Not a failure: the relay asks us to slow down. The file goes back to the
        queue (with the others refused meanwhile, in send order) after a pause."""
        self.rate_backlog.append(u)
        if self._resume is None:
            log.info("relay rate-limits file writes; uploads paused %.1f s", RATE_LIMIT_PAUSE)
            loop = asyncio.get_running_loop()
            self._resume = loop.call_later(RATE_LIMIT_PAUSE, self._resume_uploads)

    def _resume_uploads(self) -> None:
        self._resume = None
        back = sorted(self.rate_backlog, key=lambda u: u.seq)
        self.rate_backlog.clear()
        self.uploads.extendleft(reversed(back))
        self.pump()

    def on_link_down(self) -> None:
        if self.inflight:
            self.uploads.extendleft(reversed(list(self.inflight.values())))
            self.inflight.clear()

    def forget_session(self, s: FileSession) -> None:
        """Session closed: its queued uploads are dropped (files stay on disk)."""
        self.rate_backlog = [u for u in self.rate_backlog if u.session is not s]
        self.held.forget(s)
        if any(u.session is s for u in self.uploads):
            kept = deque(u for u in self.uploads if u.session is not s)
            for u in self.uploads:
                if u.session is s and u.budgeted:
                    self.memory -= u.size
            self.uploads = kept

    # --- reader: mirror and replay ------------------------------------------------

    def ingest(self, msg: FileWrite) -> None:
        """A file from the relay (broadcast or catch-up page)."""
        path = msg.path
        try:
            validate_path(path)
        except ProtocolError as exc:
            log.warning("relay sent a file with a bad path %r: %s; ignored", path, exc)
            return
        if owner_of(path) == self.email:
            log.debug("ignoring relay copy of our own datasite file %s", path)
            return
        content = msg.content
        s = self.find_reader(path)
        if not self.mirror_policy.wants(path, s is not None):
            return
        frame = None
        if s is not None and ff.is_fallback(content):
            try:
                frame = ff.decode(content)
            except ProtocolError as exc:
                log.warning("fallback file %s is malformed (%s); mirrored, not replayed", path, exc)
        if s is not None and frame is not None and not self._from_sender(s, msg):
            return
        if s is not None and frame is not None and s.take_file(frame):
            if s.syncing and not msg.mtime:
                # A broadcast during our catch-up: the catch-up pages will list this
                # file too, in store order; taking it now would only put it ahead of
                # the older files still to come (and could overflow the reorder window).
                return
            if not self.keep_files:
                s.on_file_frame(frame)
                return
            s.ingest_pending += 1
            sess = s

            def then(res: Any, exc: BaseException | None) -> None:
                sess.ingest_pending -= 1
                if exc is not None:
                    log.warning("cannot mirror %s: %s", path, exc)
                if not sess.closed:
                    sess.on_file_frame(frame)

            self._mirror(path, content, then)
            return
        if s is not None and frame is not None and not self.keep_files:
            return  # another stream's file on an open session's path: not kept
        self._mirror(path, content, _log_mirror_error(path))

    def _from_sender(self, s: FileSession, msg: FileWrite) -> bool:
        """A fallback file is replayed (and mirrored) only if the relay says the
        session's sender wrote it: anyone else with write access to the folder could
        otherwise forge the sender's frames. A relay that does not stamp writers (a
        reference relay) cannot tell; its files are taken as before."""
        if WRITER not in getattr(self.link, "extensions", ()):
            return True
        if msg.writer and msg.writer == s.sender:
            return True
        self.forged += 1
        log.warning(
            "fallback file %s of session %s written by %s, not by its sender %s: refused",
            msg.path,
            s.path,
            msg.writer or "an unknown user",
            s.sender,
        )
        return False

    def _mirror(self, path: str, content: bytes, done: Done) -> None:
        if not self.mirror_policy.admit(path, len(content)):
            # not written; `done` still runs in order behind the queued disk work
            self.disk.submit(_nothing, done)
            return
        base, real_base = self.base, self.real_base
        parts = path.split("/")

        def work() -> None:
            target = resolve_inside(base, real_base, parts)
            write_atomic(target, content, mkdir=True)

        self.mirrored += 1
        tr = self.tracer  # None: tracing off
        if tr is None:
            self.disk.submit(work, done)
            return
        t_start = time.time_ns()
        size = len(content)

        def traced(res: Any, exc: BaseException | None) -> None:
            # client.write_file: queued -> written (temp + rename) and replayed by `done`
            try:
                done(res, exc)
            finally:
                err = "" if exc is None else f"write failed: {exc}"
                tr.file_written(path, t_start, err, size)

        self.disk.submit(work, traced)


def _ignore(res: Any, exc: BaseException | None) -> None:
    return None


def _nothing() -> None:
    return None


def _log_mirror_error(path: str) -> Done:
    def done(res: Any, exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("not mirrored %s: %s", path, exc)

    return done
