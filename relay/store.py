"""Atomic file storage under `DATA/datasites/<datasite path>`.

Writes go to a temp file in the target folder and are moved into place with
`os.replace`, so a reader (or a crash) never sees half a file. Paths are validated by
`hotlink.wire.paths`, and no folder on the way may be a symlink (each folder below
the store's root is `lstat`ed: it must be a real folder), so a symlink planted in the
tree cannot redirect a write or a read, not even to another place inside the store;
files are opened without following a final symlink.

What is stored is also kept in a `SyncIndex` (updated on every write and delete, built
at start by a walk that does not follow symlinks): catch-up pages and quotas read it,
never the disk tree.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hotlink.common.atomic import is_temp_name, write_atomic
from hotlink.wire.errors import ProtocolError
from hotlink.wire.etag import etag_of
from hotlink.wire.paths import reserved_segment, validate_path

from .sync_index import Key, SyncIndex

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class StoreError(Exception):
    """A write the store refuses or cannot do; the message is safe to send to a client."""


@dataclass(slots=True, frozen=True)
class StoredFile:
    path: str  # datasite-relative
    size: int
    mtime_ns: int
    etag: str


class Store:
    """`fsync=False` by default: writes run on the relay's event loop, and an fsync can
    stall every stream for milliseconds; `os.replace` still gives readers
    all-or-nothing files. Pass `fsync=True` for durability across power loss."""

    def __init__(self, data_dir: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.fsync = fsync
        self.root = Path(data_dir, "datasites")
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = self.root.resolve()
        #: every stored path is this plus "/" + the (validated) path
        self._base = str(self._real_root)
        self.index = SyncIndex()
        #: called with a path after each write or delete (the cluster tells other nodes)
        self.listeners: list[Callable[[str], None]] = []
        #: the index may lack other processes' writes (a cluster node cut from NATS
        #: misses their announcements): `after` re-reads the folder from disk first
        self.stale = False
        self.reindex()

    def _target(self, path: str, *, create: bool = False) -> str:
        """Where `path` lives under the store's real root, once `path` is valid and
        every folder on the way that exists is a real folder: a symlink (even one
        pointing inside the store) would let a write or a catch-up reach another
        datasite. `create` makes the missing folders, each checked as it is made.

        One `lstat` per folder of the path (three for a session's files), no
        `realpath` over the root's own ancestors: this runs for every fallback frame
        on the relay's event loop."""
        try:
            validate_path(path)
        except ProtocolError as exc:
            raise StoreError(str(exc)) from None
        seg = reserved_segment(path)
        if seg is not None:  # would squat the place of a session's endpoint
            raise StoreError(f"reserved name {seg!r} in {path!r}")
        folder = self._base
        for name in path.split("/")[:-1]:
            folder = f"{folder}/{name}"
            try:
                try:
                    mode = os.lstat(folder).st_mode
                except FileNotFoundError:
                    if not create:
                        break  # nothing below a missing folder exists to be a symlink
                    with contextlib.suppress(FileExistsError):  # made meanwhile
                        os.mkdir(folder)
                    mode = os.lstat(folder).st_mode  # checked like any other
            except OSError as exc:
                raise StoreError(f"cannot reach {path!r}: {exc.strerror or exc}") from None
            if stat.S_ISLNK(mode):
                raise StoreError(f"path escapes the store (symlink on the way): {path!r}")
            if not stat.S_ISDIR(mode):
                raise StoreError(f"not a folder on the way to {path!r}")
        return f"{self._base}/{path}"

    def write(self, path: str, content: bytes) -> StoredFile:
        """Store `content` at `path` atomically; returns what was stored, with the etag
        computed here (never a client's claim), the same one catch-up pages carry."""
        name = path.rsplit("/", 1)[-1] if isinstance(path, str) else ""
        if is_temp_name(name):
            raise StoreError(f"reserved file name: {name!r}")
        target = self._target(path, create=True)
        try:
            st = write_atomic(target, content, fsync=self.fsync)
        except IsADirectoryError:
            raise StoreError(f"a folder exists at {path!r}") from None
        except OSError as exc:
            raise StoreError(f"cannot store {path!r}: {exc.strerror or exc}") from None
        self.index.put(path, st.st_mtime_ns, st.st_size)
        self._changed(path)
        return StoredFile(path, st.st_size, st.st_mtime_ns, etag_of(content))

    def read(self, path: str) -> bytes:
        """A stored regular file's content (a symlink or special file is refused)."""
        target = self._target(path)
        try:
            fd = os.open(target, _READ_FLAGS)
        except OSError as exc:
            raise StoreError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"not a regular file: {path!r}")
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        except OSError as exc:
            raise StoreError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def delete(self, path: str) -> bool:
        """Remove a stored file; False if there was none. Folders left empty stay (a
        session folder is reused by the next session on the same path)."""
        target = self._target(path)
        try:
            st = os.lstat(target)
            if stat.S_ISDIR(st.st_mode):
                raise StoreError(f"{path!r} is a folder")
            os.unlink(target)
        except FileNotFoundError:
            found = self.index.remove(path)
            if found:
                self._changed(path)
            return False
        except OSError as exc:
            raise StoreError(f"cannot delete {path!r}: {exc.strerror or exc}") from None
        self.index.remove(path)
        self._changed(path)
        return True

    def after(self, folder: str, cursor: Key) -> Iterator[tuple[int, str, int]]:
        """Indexed files under `folder` after `cursor`, oldest first (see SyncIndex)."""
        if os.path.islink(self._target(folder)):  # the way to it is checked by _target
            raise StoreError(f"path escapes the store (symlink): {folder!r}")
        if self.stale:
            self.refresh(folder)
        return self.index.after(folder, cursor)

    def refresh(self, folder: str) -> None:
        """Bring the index of `folder` in line with the disk (a walk of that folder
        only: a session's folder, while the index is `stale`)."""
        everything = (0, "")
        fresh = list(self.scan(folder).after(folder, everything))
        keep = {path for _, path, _ in fresh}
        for _, path, _ in list(self.index.after(folder, everything)):
            if path not in keep:
                self.index.remove(path)
        for mtime, path, size in fresh:
            self.index.put(path, mtime, size)

    def note(self, path: str) -> None:
        """Another process (a cluster node on the shared store) wrote or deleted `path`:
        bring the index in line with the disk."""
        try:
            st = os.lstat(self._target(path))
        except (StoreError, OSError):
            self.index.remove(path)
            return
        if stat.S_ISREG(st.st_mode) and not is_temp_name(path.rsplit("/", 1)[-1]):
            self.index.put(path, st.st_mtime_ns, st.st_size)
        else:
            self.index.remove(path)

    def _changed(self, path: str) -> None:
        for fn in self.listeners:
            fn(path)

    def scan(self, folder: str = "") -> SyncIndex:
        """Walk the store, or one `folder` of it (no symlink followed, temp files
        skipped) into a new index. Pure disk work: may run in a thread; `reindex`
        installs its result."""
        index = SyncIndex()
        base = self._base
        for dirpath, dirs, files in os.walk(self._target(folder) if folder else base):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
            for name in files:
                if is_temp_name(name):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = full[len(base) + 1 :].replace(os.sep, "/")
                try:
                    validate_path(rel)
                except ProtocolError:
                    continue  # not reachable by any client path
                index.put(rel, st.st_mtime_ns, st.st_size)
        return index

    def reindex(self, index: SyncIndex | None = None) -> None:
        self.index = index if index is not None else self.scan()

    def list_since(self, folder: str, since_mtime_ns: int = 0) -> list[StoredFile]:
        """Files under `folder` modified after `since_mtime_ns`, oldest first (from the
        index; used by tools and tests, the catch-up pages use `after`)."""
        cursor = (since_mtime_ns + 1, "")  # every file with a later mtime
        return [StoredFile(p, size, mt, "") for mt, p, size in self.after(folder, cursor)]
