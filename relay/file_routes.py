"""The relay's file routes: FileWrite (store, ACL files, fan-out) and FileSync (catch-up).

A mixin of `Router`, kept apart because file handling is a different concern from
session routing: it reads the store and the ACL index, never session state. Like the
router it is sans-I/O: messages in, `Outgoing` out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hotlink.wire.errors import ProtocolError
from hotlink.wire.etag import etag_of
from hotlink.wire.extensions import FILE_SYNC, HDR_EXTENSIONS
from hotlink.wire.fallbackfile import peek_sid
from hotlink.wire.messages import REASON_PERMISSION_DENIED, Ack, Error, FileSync, FileWrite, Nack
from hotlink.wire.paths import owner_of, validate_path

from .acl import Access, AclError, is_acl_path, parse_acl
from .connection import Conn, Outgoing
from .store import StoreError

if TYPE_CHECKING:
    from .acl import AclIndex
    from .sid_guard import SidRegistry
    from .store import Store
    from .writers import WriterLedger

log = logging.getLogger("hotlink.relay.router")

BAD_REQUEST = 400

#: FileSync pages: files sent, content bytes, and files looked at (skipped ones count)
#: per request, so one catch-up never holds the event loop for long.
SYNC_PAGE_FILES = 500
SYNC_PAGE_BYTES = 8 << 20
SYNC_SCAN_FILES = 4 * SYNC_PAGE_FILES

_NO_FILE_SYNC = f"FileSync needs {FILE_SYNC!r} in {HDR_EXTENSIONS}"


class FileRoutes:
    """FileWrite and FileSync handling for `Router` (which provides the attributes)."""

    acl: AclIndex
    store: Store
    by_user: dict[str, set[int]]
    sids: SidRegistry
    writers: WriterLedger
    now: float

    def sender_of(self, sid: str) -> str:  # provided by Router
        raise NotImplementedError

    def recheck_all(self) -> list[Outgoing]:  # provided by Router
        raise NotImplementedError

    def _file_write(self, conn: Conn, mid: str, m: FileWrite) -> list[Outgoing]:
        user = conn.user
        try:
            validate_path(m.path)
        except ProtocolError as exc:
            return [Outgoing(conn.id, Nack(mid, f"bad path: {exc}"))]
        acl_file = is_acl_path(m.path)
        # an ACL file only by the datasite owner (not even an admin may hand out access)
        if not (owner_of(m.path) == user if acl_file else self.acl.can(user, m.path, Access.WRITE)):
            return [Outgoing(conn.id, Nack(mid, REASON_PERMISSION_DENIED))]
        if m.length and m.length != len(m.content):
            return [Outgoing(conn.id, Nack(mid, f"len {m.length} != content of {len(m.content)}"))]
        forged = self.sids.forgery(user, m.path, m.content, self.sender_of, self.now)
        if forged:
            log.warning("file write %s by %s refused: %s", m.path, user, forged)
            return [Outgoing(conn.id, Nack(mid, forged))]
        parsed = None
        if acl_file:
            try:
                parsed = parse_acl(m.content)
            except AclError as exc:
                log.info("rejected ACL %s from %s: %s", m.path, user, exc)
                return [Outgoing(conn.id, Nack(mid, f"invalid {m.path}: {exc}"))]
        try:
            stored = self.store.write(m.path, m.content)
        except StoreError as exc:
            log.warning("file write %s by %s failed: %s", m.path, user, exc)
            return [Outgoing(conn.id, Nack(mid, str(exc)))]
        # who wrote a fallback file, for the readers that replay it
        writer = user if peek_sid(m.content) is not None else ""
        self.writers.record(m.path, writer)
        out = [Outgoing(conn.id, Ack(mid))]
        if parsed is not None:
            self.acl.set_file(m.path.rsplit("/", 1)[0], parsed)
            log.info("ACL %s updated by %s (generation %d)", m.path, user, self.acl.generation)
            out += self.recheck_all()
        fwd = FileWrite(m.path, stored.etag, len(m.content), m.content, writer=writer)
        for u, cids in self.by_user.items():
            if u == user or not self.acl.can(u, m.path, Access.READ):
                continue
            out += [Outgoing(cid, fwd) for cid in cids]
        return out

    def _file_sync(self, conn: Conn, m: FileSync) -> list[Outgoing]:
        """Catch-up for a reader that was away: the files under `m.path` it may read,
        stored after its cursor, oldest first, one bounded page per request, then a
        `FileSync` with the new cursor (`mor` when another page waits)."""
        validate_path(m.path)
        if FILE_SYNC not in conn.ext:  # its answer would not reach the client
            return [Outgoing(conn.id, Error(BAD_REQUEST, m.path, _NO_FILE_SYNC))]
        user = conn.user
        try:
            files = self.store.list_since(m.path, max(0, m.since - 1))
        except StoreError as exc:
            return [Outgoing(conn.id, Error(BAD_REQUEST, m.path, str(exc)))]
        limit = min(m.max or SYNC_PAGE_FILES, SYNC_PAGE_FILES)
        cursor = (m.since, m.after)
        out: list[Outgoing] = []
        sent = size = looked = 0
        more = False
        for f in files:
            key = (f.mtime_ns, f.path)
            if key <= cursor:
                continue
            if sent >= limit or size >= SYNC_PAGE_BYTES or looked >= SYNC_SCAN_FILES:
                more = True
                break
            looked += 1
            cursor = key
            if not self.acl.can(user, f.path, Access.READ):
                continue
            if m.limit and f.size > m.limit:
                log.info("catch-up for %s: %s is over its limit, skipped", user, f.path)
                continue
            try:
                content = self.store.read(f.path)
            except StoreError:
                continue  # removed meanwhile
            sid = peek_sid(content)
            if m.sid and sid is not None and sid != m.sid:
                continue
            writer = self.writers.writer(f.path) if sid is not None else ""
            out.append(
                Outgoing(
                    conn.id,
                    FileWrite(f.path, etag_of(content), len(content), content, f.mtime_ns, writer),
                )
            )
            sent += 1
            size += len(content)
        out.append(Outgoing(conn.id, FileSync(m.path, cursor[0], cursor[1], 0, m.sid, more)))
        return out
