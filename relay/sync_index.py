"""An in-memory index of the relay's store: files by folder, ordered by (mtime_ns, path).

Why: a catch-up (`FileSync`) asks for "the files under F after cursor C, oldest
first". Walking and sorting F on every request made each page cost O(files in F)
(606 ms per one-file page at 30,000 files, on the event loop). The index keeps, for
every folder, a sorted list of `(mtime_ns, path)` of the files below it, updated on
each store write and delete, so a page is one `bisect` plus the entries it returns:
its cost does not grow with the folder. Each file appears in the list of each of its
ancestor folders (depth-many entries; datasite paths are shallow).

It also keeps per-datasite totals (bytes, files) for the store quota, without a walk.

Built once at start by a walk that never follows symlinks (`Store.reindex`), so a
symlink planted in DATA can never bring outside files into a catch-up.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

Key = tuple[int, str]  # (mtime_ns, path)


@dataclass(slots=True)
class Usage:
    """One datasite's stored bytes and files."""

    bytes: int = 0
    files: int = 0


def _folders_of(path: str) -> Iterator[str]:
    """Every ancestor folder of `path` (datasite-relative), the datasite itself first."""
    i = path.find("/")
    while i != -1:
        yield path[:i]
        i = path.find("/", i + 1)


class SyncIndex:
    """Sans-I/O: told about files (`put`, `remove`), answers ordered range queries."""

    def __init__(self) -> None:
        #: path -> (mtime_ns, size)
        self.files: dict[str, tuple[int, int]] = {}
        #: folder -> sorted keys of the files anywhere below it
        self._by_folder: dict[str, list[Key]] = {}
        #: datasite (owner) -> usage
        self.usage: dict[str, Usage] = {}

    def __len__(self) -> int:
        return len(self.files)

    def put(self, path: str, mtime_ns: int, size: int) -> None:
        """A file was stored (or replaced) at `path`."""
        self.remove(path)
        self.files[path] = (mtime_ns, size)
        key = (mtime_ns, path)
        for folder in _folders_of(path):
            bisect.insort(self._by_folder.setdefault(folder, []), key)
        u = self.usage.setdefault(path.split("/", 1)[0], Usage())
        u.bytes += size
        u.files += 1

    def remove(self, path: str) -> bool:
        """`path` is gone; False if it was not indexed."""
        old = self.files.pop(path, None)
        if old is None:
            return False
        key = (old[0], path)
        for folder in _folders_of(path):
            lst = self._by_folder.get(folder)
            if lst is None:
                continue
            i = bisect.bisect_left(lst, key)
            if i < len(lst) and lst[i] == key:
                del lst[i]
            if not lst:
                del self._by_folder[folder]
        u = self.usage.get(path.split("/", 1)[0])
        if u is not None:
            u.bytes -= old[1]
            u.files -= 1
        return True

    def after(self, folder: str, cursor: Key) -> Iterator[tuple[int, str, int]]:
        """`(mtime_ns, path, size)` of the files under `folder` strictly after `cursor`,
        oldest first. Lazy: a page takes only what it uses. Do not change the index
        while iterating (the relay's event loop does both, never interleaved)."""
        lst = self._by_folder.get(folder)
        if not lst:
            return
        i = bisect.bisect_right(lst, cursor)
        files = self.files
        while i < len(lst):
            mtime, path = lst[i]
            yield mtime, path, files[path][1]
            i += 1

    def paths_under(self, folder: str) -> list[str]:
        """All indexed paths below `folder` (for sweeps; a copy, safe to mutate meanwhile)."""
        return [p for _, p in self._by_folder.get(folder, ())]

    def usage_of(self, owner: str) -> Usage:
        return self.usage.get(owner) or Usage()
