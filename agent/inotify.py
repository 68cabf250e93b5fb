"""Linux inotify for the datasite watcher, read from the event loop: no polling thread.

watchfiles' Rust watcher wakes every `step` ms (and takes the GIL) to collect changes
and check its stop event: 200 wake-ups a second at the 5 ms step that keeps a fallback
file's pick-up fast, on every agent, busy or idle. Here the inotify descriptor sits in
the event loop (`loop.add_reader`): nothing runs while nothing changes, and an event is
handled as soon as the kernel queues it (no step, no debounce).

Sans-I/O core, tested without a kernel: `parse_events` turns the kernel's records into
`Event`s, `TreeWatch` knows which watch descriptor is which folder and turns events into
watchfiles-style `(Change, path)` pairs plus the folders to start or stop watching.
`InotifyTree` is the adapter: the descriptor, the three libc calls, the reader callback.

What is reported: a file once it is complete (closed after writing, or renamed into
place), not at its creation, so an app's half-written `.request` file is not picked up
(entries that are complete as they appear, symlinks and hard links, are reported then);
folders when they appear (the watcher lists what they already hold, see
`watcher.py`); deletions. Hidden folders are not watched, as the folder listing skips
them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import stat
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from watchfiles import Change

log = logging.getLogger("hotlink.agent.watcher")

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: what every folder's watch asks for
DIR_MASK = (
    IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
    | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
)  # fmt: skip
_HEAD = struct.Struct("=iIII")
READ_SIZE = 64 * 1024

Changes = set[tuple[Change, str]]


class InotifyUnavailable(OSError):
    """No inotify here (not Linux, no libc symbol) or no watch left (the user's
    `fs.inotify.max_user_watches`); the watcher falls back to watchfiles."""


@dataclass(frozen=True, slots=True)
class Event:
    wd: int
    mask: int
    name: str


def parse_events(buf: bytes) -> list[Event]:
    """The `struct inotify_event` records of one read (the kernel never splits one)."""
    out: list[Event] = []
    pos, end = 0, len(buf)
    while end - pos >= _HEAD.size:
        wd, mask, _cookie, n = _HEAD.unpack_from(buf, pos)
        pos += _HEAD.size
        name = buf[pos : pos + n].split(b"\0", 1)[0]
        pos += n
        out.append(Event(wd, mask, os.fsdecode(name)))
    return out


def hidden(name: str) -> bool:
    """A hidden folder: neither watched nor listed (the watcher's listing skips them too)."""
    return name.startswith(".")


@dataclass(slots=True)
class Outcome:
    """What a batch of events means: the changes to report, the folders to watch
    (new, or moved in) and to forget (moved out), and trouble."""

    changes: Changes = field(default_factory=set)
    #: other things created (not folders): reported only if they will not be closed
    #: after writing (see `complete_on_creation`)
    created: list[str] = field(default_factory=list)
    new_dirs: list[str] = field(default_factory=list)
    gone_dirs: list[str] = field(default_factory=list)
    #: the kernel dropped events (its queue was full): some changes are unknown
    overflow: bool = False
    #: the watched root itself was deleted or moved
    root_gone: bool = False


class TreeWatch:
    """Watch descriptors <-> folders of one tree, and what their events mean."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.dirs: dict[int, str] = {}
        self.wds: dict[str, int] = {}

    def added(self, wd: int, path: str) -> None:
        old = self.dirs.get(wd)
        if old is not None and old != path:  # the same folder under its new name
            self.wds.pop(old, None)
        self.dirs[wd] = path
        self.wds[path] = wd

    def under(self, top: str) -> list[int]:
        """Watch descriptors of `top` and every folder below it."""
        prefix = top + "/"
        return [wd for p, wd in self.wds.items() if p == top or p.startswith(prefix)]

    def forget(self, wd: int) -> None:
        path = self.dirs.pop(wd, None)
        if path is not None and self.wds.get(path) == wd:
            del self.wds[path]

    def on_events(self, events: Iterable[Event]) -> Outcome:
        out = Outcome()
        for ev in events:
            mask = ev.mask
            if mask & IN_Q_OVERFLOW:
                out.overflow = True
                continue
            folder = self.dirs.get(ev.wd)
            if folder is None:
                continue  # a watch removed meanwhile
            if mask & IN_IGNORED:
                self.forget(ev.wd)
                if folder == self.root:
                    out.root_gone = True
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if folder == self.root:
                    out.root_gone = True
                continue
            path = f"{folder}/{ev.name}"
            if mask & IN_ISDIR:
                if hidden(ev.name):
                    continue
                if mask & (IN_CREATE | IN_MOVED_TO):
                    out.new_dirs.append(path)
                    out.changes.add((Change.added, path))
                elif mask & (IN_MOVED_FROM | IN_DELETE):
                    if mask & IN_MOVED_FROM:
                        out.gone_dirs.append(path)
                    out.changes.add((Change.deleted, path))
            elif mask & IN_CLOSE_WRITE:
                out.changes.add((Change.modified, path))
            elif mask & IN_CREATE:
                out.created.append(path)
            elif mask & IN_MOVED_TO:
                out.changes.add((Change.added, path))
            elif mask & (IN_DELETE | IN_MOVED_FROM):
                out.changes.add((Change.deleted, path))
        return out


def complete_on_creation(path: str) -> bool:
    """Whether a new non-folder entry is complete as it appears: a symlink, a hard link
    to an existing file, a FIFO... (no IN_CLOSE_WRITE will follow, so it is reported
    now, to be sent or refused with a reason); not a regular file being written."""
    try:
        st = os.lstat(path)
    except OSError:
        return False  # gone already
    return not stat.S_ISREG(st.st_mode) or st.st_nlink > 1


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError, TypeError) as exc:
        raise InotifyUnavailable(f"inotify is not available here: {exc}") from None
    return lib


class InotifyTree:
    """Recursive inotify on `root` (hidden folders excluded), as an async iterator of
    change batches filtered by `keep`. Close it to release the descriptor."""

    def __init__(self, root: str, keep: Callable[[Change, str], bool]) -> None:
        self._lib = _libc()
        fd = self._lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyUnavailable(f"inotify_init1: {os.strerror(err)}")
        self.fd = fd
        self.tree = TreeWatch(root)
        self._keep = keep
        self._batches: asyncio.Queue[Changes | BaseException] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self.watch_tree(self.tree.root)
        except BaseException:
            os.close(fd)
            raise
        if self.tree.root not in self.tree.wds:
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, "cannot watch the datasite", root)

    def _add(self, path: str) -> bool:
        wd = self._lib.inotify_add_watch(self.fd, os.fsencode(path), DIR_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                raise InotifyUnavailable(
                    "no inotify watch left (raise fs.inotify.max_user_watches)"
                )
            return False  # gone, not a folder, or not ours to read: nothing to watch
        self.tree.added(wd, path)
        return True

    def watch_tree(self, top: str) -> None:
        """Watch `top` and the folders below it (symlinks not followed)."""
        if not self._add(top):
            return
        for dirpath, dirnames, _files in os.walk(top):
            dirnames[:] = [d for d in dirnames if not hidden(d)]
            for d in dirnames:
                self._add(f"{dirpath}/{d}")

    def unwatch_tree(self, top: str) -> None:
        for wd in self.tree.under(top):
            self._lib.inotify_rm_watch(self.fd, wd)  # the kernel then sends IN_IGNORED
            self.tree.forget(wd)

    def _readable(self) -> None:
        try:
            chunks = []
            while True:
                try:
                    data = os.read(self.fd, READ_SIZE)
                except BlockingIOError:
                    break
                if not data:
                    break
                chunks.append(data)
            events = [ev for chunk in chunks for ev in parse_events(chunk)]
            out = self.tree.on_events(events)
            for top in out.gone_dirs:
                self.unwatch_tree(top)
            for top in out.new_dirs:
                self.watch_tree(top)  # before the watcher lists it: nothing falls between
            if out.overflow:
                log.warning(
                    "inotify queue overflowed on %s: some file events were lost", self.tree.root
                )
                self.watch_tree(self.tree.root)
            for path in out.created:
                if complete_on_creation(path):
                    out.changes.add((Change.added, path))
            if out.root_gone:
                gone = "the watched datasite went away"
                raise FileNotFoundError(errno.ENOENT, gone, self.tree.root)
            changes = {c for c in out.changes if self._keep(*c)}
            if changes:
                self._batches.put_nowait(changes)
        except BaseException as exc:  # handed to the consumer, which restarts the watch
            self._stop_reading()
            self._batches.put_nowait(exc)

    def _stop_reading(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None

    async def batches(self, stop: asyncio.Event) -> AsyncIterator[Changes]:
        """Change batches until `stop` is set; an empty one first (watching from now)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)
        yield set()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.ensure_future(self._batches.get())
                await asyncio.wait((getting, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                got = getting.result()
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            stopping.cancel()

    def close(self) -> None:
        self._stop_reading()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
