"""The relay's file routes: FileWrite (store, ACL files, fan-out), FileDelete and FileSync
(catch-up).

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
from hotlink.wire.messages import (
    REASON_PERMISSION_DENIED,
    Ack,
    Error,
    FileDelete,
    FileSync,
    FileWrite,
    Nack,
)
from hotlink.wire.paths import owner_of, validate_path

from .acl import Access, AclError, is_acl_path, parse_acl
from .connection import Conn, Outgoing
from .quota import StoreQuota
from .store import StoreError
from .sync_cursor import CursorSeal

if TYPE_CHECKING:
    from collections.abc import Callable

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
    clock: Callable[[], float]
    #: the server installs the configured ones; tests get defaults on first use
    quota: StoreQuota | None = None
    cursor_seal: CursorSeal | None = None
    sids: SidRegistry
    writers: WriterLedger
    now: float

    def sender_of(self, sid: str) -> str:  # provided by Router
        raise NotImplementedError

    def recheck_all(self) -> list[Outgoing]:  # provided by Router
        raise NotImplementedError

    def _write_refusal(self, user: str, path: str) -> str | None:
        """Why `user` may not write (or delete) `path`, or None. An ACL file only by
        the datasite owner (not even an admin may hand out access)."""
        try:
            validate_path(path)
        except ProtocolError as exc:
            return f"bad path: {exc}"
        if not (
            owner_of(path) == user if is_acl_path(path) else self.acl.can(user, path, Access.WRITE)
        ):
            return REASON_PERMISSION_DENIED
        return None

    def _file_write(self, conn: Conn, mid: str, m: FileWrite) -> list[Outgoing]:
        user = conn.user
        refusal = self._write_refusal(user, m.path)
        if refusal is not None:
            return [Outgoing(conn.id, Nack(mid, refusal))]
        acl_file = is_acl_path(m.path)
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
        if self.quota is None:
            self.quota = StoreQuota()
        refused = self.quota.check(self.store.index, user, m.path, len(m.content), self.clock())
        if refused is not None:
            log.info("file write %s by %s refused: %s", m.path, user, refused)
            return [Outgoing(conn.id, Nack(mid, refused))]
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

    def _file_delete(self, conn: Conn, mid: str, m: FileDelete) -> list[Outgoing]:
        """Remove a stored file: by whoever may write it (an ACL file: its datasite's
        owner only). The answer is the same whether the file existed or not, and a
        caller without write access learns nothing (permission is checked first)."""
        user = conn.user
        refusal = self._write_refusal(user, m.path)
        if refusal is not None:
            return [Outgoing(conn.id, Nack(mid, refusal))]
        acl_file = is_acl_path(m.path)
        try:
            removed = self.store.delete(m.path)
        except StoreError as exc:
            return [Outgoing(conn.id, Nack(mid, str(exc)))]
        out = [Outgoing(conn.id, Ack(mid))]
        if removed:
            log.info("%s deleted %s", user, m.path)
            if acl_file:
                self.acl.remove_file(m.path.rsplit("/", 1)[0])
                out += self.recheck_all()
        return out

    def _file_sync(self, conn: Conn, m: FileSync) -> list[Outgoing]:
        """Catch-up for a reader that was away: the files under `m.path` it may read,
        stored after its cursor, oldest first, one bounded page per request, then a
        `FileSync` with the new cursor (`mor` when another page waits).

        The page comes from the store's index (no walk): its cost is the files it
        looks at, whatever the folder holds. A cursor that would name a file the
        caller may not read is sealed (`sync_cursor`), so the caller never learns
        names or mtimes of what it cannot read."""
        validate_path(m.path)
        if FILE_SYNC not in conn.ext:  # its answer would not reach the client
            return [Outgoing(conn.id, Error(BAD_REQUEST, m.path, _NO_FILE_SYNC))]
        user = conn.user
        if self.cursor_seal is None:
            self.cursor_seal = CursorSeal.ephemeral()
        seal = self.cursor_seal
        start = seal.open(m.since, m.after, user, m.path)
        try:
            files = self.store.after(m.path, start)
        except StoreError as exc:
            return [Outgoing(conn.id, Error(BAD_REQUEST, m.path, str(exc)))]
        limit = min(m.max or SYNC_PAGE_FILES, SYNC_PAGE_FILES)
        cursor = start
        #: the mtime the reply may show: of the last readable file, or the caller's own
        shown = m.since
        hidden = start[1] != m.after  # the caller came with a sealed cursor
        out: list[Outgoing] = []
        sent = size = looked = 0
        more = False
        for mtime, path, fsize in files:
            if sent >= limit or size >= SYNC_PAGE_BYTES or looked >= SYNC_SCAN_FILES:
                more = True
                break
            looked += 1
            cursor = (mtime, path)
            if not self.acl.can(user, path, Access.READ):
                hidden = True
                continue
            hidden = False
            shown = mtime
            if m.limit and fsize > m.limit:
                log.info("catch-up for %s: %s is over its limit, skipped", user, path)
                continue
            try:
                content = self.store.read(path)
            except StoreError:
                continue  # removed meanwhile
            sid = peek_sid(content)
            if m.sid and sid is not None and sid != m.sid:
                continue
            writer = self.writers.writer(path) if sid is not None else ""
            out.append(
                Outgoing(
                    conn.id,
                    FileWrite(path, etag_of(content), len(content), content, mtime, writer),
                )
            )
            sent += 1
            size += len(content)
        if hidden:
            reply = FileSync(m.path, shown, seal.seal(cursor, user, m.path), 0, m.sid, more)
        else:
            reply = FileSync(m.path, cursor[0], cursor[1], 0, m.sid, more)
        out.append(Outgoing(conn.id, reply))
        return out
