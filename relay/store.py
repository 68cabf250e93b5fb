"""Atomic file storage under `DATA/datasites/<datasite path>`.

Writes go to a temp file in the target folder and are moved into place with
`os.replace`, so a reader (or a crash) never sees half a file. Paths are validated by
`hotlink.wire.paths` and the resolved target is checked to stay inside the store, so a
symlink planted in the tree cannot redirect a write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hotlink.common.atomic import is_temp_name, write_atomic
from hotlink.wire.errors import ProtocolError
from hotlink.wire.etag import etag_of
from hotlink.wire.paths import reserved_segment, validate_path


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

    def _target(self, path: str) -> Path:
        try:
            validate_path(path)
        except ProtocolError as exc:
            raise StoreError(str(exc)) from None
        seg = reserved_segment(path)
        if seg is not None:  # would squat the place of a session's endpoint
            raise StoreError(f"reserved name {seg!r} in {path!r}")
        target = self.root.joinpath(*path.split("/"))
        parent = target.parent.resolve()
        if parent != self._real_root and self._real_root not in parent.parents:
            raise StoreError(f"path escapes the store: {path!r}")
        return target

    def write(self, path: str, content: bytes) -> StoredFile:
        """Store `content` at `path` atomically; returns what was stored, with the etag
        computed here (never a client's claim), the same one catch-up pages carry."""
        target = self._target(path)
        if is_temp_name(target.name):
            raise StoreError(f"reserved file name: {target.name!r}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise StoreError(f"a folder exists at {path!r}")
            write_atomic(target, content, fsync=self.fsync)
            st = target.stat()
        except OSError as exc:
            raise StoreError(f"cannot store {path!r}: {exc.strerror or exc}") from None
        return StoredFile(path, st.st_size, st.st_mtime_ns, etag_of(content))

    def read(self, path: str) -> bytes:
        try:
            return self._target(path).read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path!r}: {exc.strerror or exc}") from None

    def list_since(self, folder: str, since_mtime_ns: int = 0) -> list[StoredFile]:
        """Files under `folder` (datasite-relative) modified after `since_mtime_ns`,
        oldest first: lets a reconnecting reader catch up on what it missed."""
        base = self._target(folder)
        out: list[StoredFile] = []
        if not base.is_dir():
            return out
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
            for name in files:
                if is_temp_name(name):
                    continue
                full = Path(dirpath, name)
                try:
                    st = full.lstat()
                except OSError:
                    continue
                if not full.is_file() or full.is_symlink() or st.st_mtime_ns <= since_mtime_ns:
                    continue
                rel = full.relative_to(self.root).as_posix()
                out.append(StoredFile(rel, st.st_size, st.st_mtime_ns, ""))
        out.sort(key=lambda f: (f.mtime_ns, f.path))
        return out
