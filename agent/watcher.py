"""Watch this peer's datasite for new `*.request` files and ACL changes.

No polling on Linux: the inotify descriptor is read from the event loop
(`inotify.InotifyTree`), so an idle agent does not wake up for its watcher and a file
is picked up as soon as the kernel reports it. Elsewhere (or when inotify fails, e.g.
no watch left under `fs.inotify.max_user_watches`) watchfiles does the watching; its
Rust thread polls every 5 ms. Events are filtered to `*.request` files that were added
or modified, and to `syft.pub.yaml` files (any change, so an edited ACL reaches the
relay at once, not at the next periodic scan); temp files of atomic writers
(`x.request.tmp`, `hotlink.common.atomic.TMP_PREFIX` names) do not match. What to do
with a path is the session manager's decision (`on_paths`) or the ACL uploader's
(`on_acl`); the watcher only reports. One watcher serves both.
A failing watcher logs and restarts after a pause: it never takes the agent down.

New folders: inotify watches a folder only once its creation event has been read, so
files written into a folder right after `mkdir` (an `acl grant` on a fresh folder, the
first fallback file of a session) can produce no event of their own. Every added
folder is therefore listed once (in a worker thread) and what it already holds is
reported as if it had just appeared. When the file's own event follows (its watch was
in place after all), it is not reported again unless the file changed since the
listing, so a file is picked up (and traced) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from hotlink.common.atomic import TMP_PREFIX
from watchfiles import Change, awatch

from .inotify import InotifyTree, InotifyUnavailable, hidden

log = logging.getLogger("hotlink.agent.watcher")

SUFFIX = ".request"
ACL_NAME = "syft.pub.yaml"


def request_filter(change: Change, path: str) -> bool:
    if change is Change.deleted or not path.endswith(SUFFIX):
        return False
    name = path.rsplit("/", 1)[-1]
    # Hidden names, and the temp files of Hotlink's own atomic writes (named
    # explicitly so the filter stays right should the prefix stop starting with ".").
    return not name.startswith((".", TMP_PREFIX))


def is_acl(path: str) -> bool:
    return path.rsplit("/", 1)[-1] == ACL_NAME


def watch_filter(change: Change, path: str) -> bool:
    return is_acl(path) or request_filter(change, path) or is_new_folder(change, path)


def is_new_folder(change: Change, path: str) -> bool:
    if change is not Change.added or path.endswith(SUFFIX):
        return False
    name = path.rsplit("/", 1)[-1]
    return not name.startswith((".", TMP_PREFIX)) and os.path.isdir(path)


#: (mtime_ns, size) of a listed file, to tell its later event from a change
StatKey = tuple[int, int]
#: files reported from a folder listing, remembered until their own event comes
MAX_LISTED = 4096


def _stat_key(path: str | Path) -> StatKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def list_new_folders(folders: list[str]) -> tuple[dict[Path, StatKey | None], bool]:
    """What new folders already hold: their `*.request` files (with their stat keys),
    and whether any of them holds an ACL file (symlinks are not followed)."""
    requests: dict[Path, StatKey | None] = {}
    acl = False
    for top in folders:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not hidden(d)]
            for name in filenames:
                path = f"{dirpath}/{name}"
                if name == ACL_NAME:
                    acl = True
                elif request_filter(Change.added, path):
                    requests[Path(path)] = _stat_key(path)
    return requests, acl


#: chooses the watcher's backend: auto (inotify on Linux), inotify or watchfiles
BACKEND_ENV = "HOTLINK_WATCHER"
BACKENDS = ("inotify", "watchfiles")


def default_backend(env: Mapping[str, str] | None = None) -> str:
    """`HOTLINK_WATCHER`'s backend, or inotify on Linux and watchfiles elsewhere.
    Raises ValueError naming the variable for a value it does not know."""
    raw = (os.environ if env is None else env).get(BACKEND_ENV, "").strip().lower()
    if raw in ("", "auto"):
        return "inotify" if sys.platform.startswith("linux") else "watchfiles"
    if raw not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV} must be auto, inotify or watchfiles, not {raw!r}")
    return raw


class RequestWatcher:
    def __init__(
        self,
        base: Path,
        on_paths: Callable[[list[Path]], None],
        on_acl: Callable[[], None] | None = None,
        backend: str | None = None,
    ) -> None:
        self.base = base
        self.on_paths = on_paths
        self.on_acl = on_acl
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        #: files reported from a folder listing whose own event has not come yet
        self._listed: dict[Path, StatKey | None] = {}
        #: "inotify" (Linux: no thread, no polling) or "watchfiles" (elsewhere, or once
        #: inotify failed: its Rust thread polls every 5 ms)
        self.backend = backend if backend is not None else default_backend()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hotlink-watcher")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.base.mkdir(parents=True, exist_ok=True)
                if self.backend == "inotify":
                    await self._run_inotify()
                else:
                    await self._run_watchfiles()
            except asyncio.CancelledError:
                raise
            except InotifyUnavailable as exc:
                log.warning("%s; watching %s with watchfiles instead", exc, self.base)
                self.backend = "watchfiles"
            except Exception as exc:
                log.warning("file watcher on %s failed (%s); restarting in 1 s", self.base, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    async def _run_inotify(self) -> None:
        tree = InotifyTree(str(self.base), watch_filter)
        try:
            async for changes in tree.batches(self._stop):
                await self._handle(changes)
        finally:
            tree.close()

    async def _run_watchfiles(self) -> None:
        """Where inotify cannot be used: watchfiles' thread, which polls every `step`."""
        gen = awatch(
            self.base,
            watch_filter=watch_filter,
            debounce=200,
            # the Rust watcher wakes every `step` ms (and takes the GIL): 5 ms costs
            # ~200 wake-ups/s idle instead of 1000, and adds at most 4 ms to picking up
            # a file
            step=5,
            stop_event=self._stop,
            recursive=True,
            ignore_permission_denied=True,
            yield_on_timeout=True,
            rust_timeout=1000,
        )
        async for changes in gen:
            await self._handle(changes)

    async def _handle(self, changes: set[tuple[Change, str]]) -> None:
        self.ready.set()
        if not changes:
            return
        folders = [p for c, p in changes if is_new_folder(c, p)]
        found: dict[Path, StatKey | None] = {}
        acl = any(is_acl(p) for _, p in changes)
        if folders:
            found, acl_inside = await asyncio.to_thread(list_new_folders, folders)
            acl = acl or acl_inside
        if acl and self.on_acl is not None:
            try:
                self.on_acl()
            except Exception:
                log.exception("handling a changed ACL file failed")
        named = {Path(p) for c, p in changes if request_filter(c, p)}
        paths = sorted(self._not_listed(named).union(found))
        # a file whose own event came in this batch needs no memo
        self._remember({p: k for p, k in found.items() if p not in named})
        if not paths:
            return
        try:
            self.on_paths(paths)
        except Exception:
            log.exception("handling watched files failed")

    def _not_listed(self, named: set[Path]) -> set[Path]:
        """`named` without the files a folder listing already reported unchanged."""
        if not self._listed:
            return named
        out: set[Path] = set()
        for p in named:
            if p in self._listed:
                key = self._listed.pop(p)
                if key is not None and key == _stat_key(p):
                    continue
            out.add(p)
        return out

    def _remember(self, found: dict[Path, StatKey | None]) -> None:
        self._listed.update(found)
        while len(self._listed) > MAX_LISTED:
            del self._listed[next(iter(self._listed))]

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 3)
            if not self._task.done():
                self._task.cancel()
