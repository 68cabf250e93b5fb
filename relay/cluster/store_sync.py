"""Keeps the store index of every cluster node in line with the shared store.

Why: catch-up pages come from an in-memory index (`relay.sync_index`), and the nodes
of a cluster share one `datasites/` store. A file written or deleted through node A
is announced on the `file` subject (its path only); every other node re-stats that
path (`Store.note`), so a reader catching up through node B sees it. After a NATS
outage, announcements may have been missed: the node rebuilds its index with a walk
in a worker thread, then re-applies the paths it changed itself meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..store import Store
from . import codec


class StoreSync:
    def __init__(self, store: Store, me: str, publish: Callable[..., None]) -> None:
        self.store = store
        self.me = me
        self._publish = publish
        self.connected = False
        #: paths changed locally while a rescan runs (None: no rescan running)
        self._during_scan: set[str] | None = None
        #: one rescan at a time (a reconnect during one queues another)
        self._scanning = asyncio.Lock()
        store.listeners.append(self._changed)

    def _changed(self, path: str) -> None:
        if self._during_scan is not None:
            self._during_scan.add(path)
        if self.connected:
            self._publish(codec.file_subject(), p=path)

    def on_file(self, j: dict[str, Any]) -> None:
        """Another node stored or deleted a file."""
        if j.get("n") == self.me:
            return
        path = j.get("p")
        if isinstance(path, str):
            if self._during_scan is not None:
                self._during_scan.add(path)
            self.store.note(path)

    async def rescan(self) -> None:
        """Rebuild the index from disk (after announcements may have been missed)."""
        async with self._scanning:
            self._during_scan = set()
            try:
                index = await asyncio.to_thread(self.store.scan)
                self.store.reindex(index)
                for path in self._during_scan:
                    self.store.note(path)
            finally:
                self._during_scan = None
