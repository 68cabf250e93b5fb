"""Watch this peer's datasite for new `*.request` files (inotify via watchfiles).

No polling: watchfiles' Rust watcher (inotify on Linux) wakes us when files appear.
Events are filtered to `*.request` files that were added or modified; temp files of
atomic writers (`x.request.tmp`, `hotlink.common.atomic.TMP_PREFIX` names) do not
match. What to do with a path is the session manager's decision (`on_paths`); the
watcher only reports.
A failing watcher logs and restarts after a pause: it never takes the agent down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from hotlink.common.atomic import TMP_PREFIX
from watchfiles import Change, awatch

log = logging.getLogger("hotlink.agent.watcher")

SUFFIX = ".request"


def request_filter(change: Change, path: str) -> bool:
    if change is Change.deleted or not path.endswith(SUFFIX):
        return False
    name = path.rsplit("/", 1)[-1]
    # Hidden names, and the temp files of Hotlink's own atomic writes (named
    # explicitly so the filter stays right should the prefix stop starting with ".").
    return not name.startswith((".", TMP_PREFIX))


class RequestWatcher:
    def __init__(self, base: Path, on_paths: Callable[[list[Path]], None]) -> None:
        self.base = base
        self.on_paths = on_paths
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hotlink-watcher")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.base.mkdir(parents=True, exist_ok=True)
                gen = awatch(
                    self.base,
                    watch_filter=request_filter,
                    debounce=200,
                    step=1,
                    stop_event=self._stop,
                    recursive=True,
                    ignore_permission_denied=True,
                    yield_on_timeout=True,
                    rust_timeout=1000,
                )
                async for changes in gen:
                    self.ready.set()
                    if not changes:
                        continue
                    paths = sorted(Path(p) for _, p in changes)
                    try:
                        self.on_paths(paths)
                    except Exception:
                        log.exception("handling watched files failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("file watcher on %s failed (%s); restarting in 1 s", self.base, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 3)
            if not self._task.done():
                self._task.cancel()
