"""The file path's one disk thread: a FIFO of (work, done) jobs.

All disk work of the file path (fallback and TEE writes, re-reads for upload, mirror
writes, deletions, reads of app-written `.request` files) runs in ONE worker thread,
so it stays in order (a frame's file is written before it is uploaded, a mirror file
before its frame is replayed) and never blocks the event loop that carries the
hotlink. `done` callbacks run on the loop, in submission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("hotlink.agent.filepath")

#: jobs handed to the thread at once
BATCH = 256

Done = Callable[[Any, BaseException | None], None]


class DiskQueue:
    """One worker thread, one FIFO of (work, done) jobs; `done` runs on the loop."""

    def __init__(self) -> None:
        self.jobs: deque[tuple[Callable[[], Any], Done]] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hotlink-files")
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self.jobs)

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        if self.closed:
            return
        if self._task is None:
            self.start()
        self.jobs.append((work, done))
        if not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hotlink-disk")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        jobs = self.jobs
        while True:
            await self._wake.wait()
            self._wake.clear()
            while jobs:
                batch = [jobs.popleft() for _ in range(min(BATCH, len(jobs)))]
                results = await loop.run_in_executor(
                    self._executor, _run_batch, [w for w, _ in batch]
                )
                for (_, done), (res, exc) in zip(batch, results, strict=True):
                    try:
                        done(res, exc)
                    except Exception:
                        log.exception("file path callback failed")

    async def close(self) -> None:
        """Finish queued jobs (bounded wait), then stop the thread."""
        if self._task is None:
            self.closed = True
            self._executor.shutdown(wait=False)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while self.jobs:
                    await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.closed = True
        self._executor.shutdown(wait=True)


def _run_batch(works: list[Callable[[], Any]]) -> list[tuple[Any, BaseException | None]]:
    out: list[tuple[Any, BaseException | None]] = []
    for w in works:
        try:
            out.append((w(), None))
        except Exception as exc:
            out.append((None, exc))
    return out
