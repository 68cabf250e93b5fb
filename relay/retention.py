"""Retention of fallback files in the relay's store.

Why: fallback files were kept forever (a closed tee session of 1000 frames left 1000
files behind). A fallback file (content starts with the `HLFB` magic) that is older
than the retention bound and does not sit in the folder of a live session is
deleted. Readers that were away catch up within the bound; after it, the stream has
ended and its files are history. Files that are not fallback files are never touched.

Split as the rest of the relay: `plan` (pure) picks the candidates from the store's
index, the head of each candidate is read in a worker thread (disk), and the deletes
run on the event loop in small batches, each re-checked against the index (a file
rewritten meanwhile has a new mtime and is kept).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from hotlink.wire import fallbackfile as ff

from .store import Store, StoreError
from .sync_index import SyncIndex

log = logging.getLogger("hotlink.relay.retention")

#: default bound (seconds) and sweep period
DEFAULT_RETENTION = 24 * 3600.0
SWEEP_INTERVAL = 60.0
#: deletes per event-loop turn
BATCH = 200


def plan(index: SyncIndex, cutoff_ns: int, live_folders: Iterable[str]) -> list[tuple[str, int]]:
    """`(path, mtime_ns)` of files older than `cutoff_ns` outside every live session's
    folder (a session's files are below its path)."""
    live = tuple(f + "/" for f in live_folders)
    return [
        (p, mt)
        for p, (mt, _) in list(index.files.items())
        if mt < cutoff_ns and not p.startswith(live)
    ]


def fallback_only(root: Path, candidates: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The candidates whose content is a fallback file (worker thread: reads heads)."""
    out = []
    for path, mt in candidates:
        try:
            fd = os.open(root.joinpath(*path.split("/")), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            head = os.read(fd, len(ff.MAGIC))
        except OSError:
            continue
        finally:
            os.close(fd)
        if ff.is_fallback(head):
            out.append((path, mt))
    return out


async def sweep(store: Store, retention: float, live_folders: Callable[[], Iterable[str]]) -> int:
    """One pass; returns how many files were deleted."""

    cutoff = time.time_ns() - int(retention * 1e9)
    cands = plan(store.index, cutoff, live_folders())
    if not cands:
        return 0
    doomed = await asyncio.to_thread(fallback_only, store.root, cands)
    deleted = 0
    for i in range(0, len(doomed), BATCH):
        live = tuple(f + "/" for f in live_folders())
        for path, mt in doomed[i : i + BATCH]:
            cur = store.index.files.get(path)
            if cur is None or cur[0] != mt or path.startswith(live):
                continue  # rewritten, gone, or a session started there meanwhile
            try:
                deleted += store.delete(path)
            except StoreError as exc:
                log.warning("retention: cannot delete %s: %s", path, exc)
        await asyncio.sleep(0)
    if deleted:
        log.info("retention: deleted %d fallback files older than %.0f s", deleted, retention)
    return deleted


async def run(
    store: Store,
    retention: float,
    live_folders: Callable[[], Iterable[str]],
    interval: float = SWEEP_INTERVAL,
) -> None:
    """Sweep every `interval` seconds until cancelled (retention 0: never)."""
    if retention <= 0:
        return
    while True:
        try:
            await sweep(store, retention, live_folders)
        except Exception:
            log.exception("retention sweep failed")
        await asyncio.sleep(interval)
