"""Keeps the store index of every cluster node in line with the shared store.

Why: catch-up pages come from an in-memory index (`relay.sync_index`), and the nodes
of a cluster share one `datasites/` store. A file written or deleted through node A
is announced on the `file` subject (its path only); every other node re-stats that
path (`Store.note`), so a reader catching up through node B sees it. After a NATS
outage, announcements may have been missed: the node rebuilds its index with a walk
in a worker thread, then re-applies the paths it changed itself meanwhile.

A node announces every path it changed, also the ones it changed while it could not
publish: they wait, in order, until NATS takes them again. Nodes rejoin one after the
other, so a node that is back already may have walked the store before the writes a
node still cut off made; unless that node announces them when it is back, they never
reach the first node's index, and a reader catching up through it skips them (seen as
1-15 frames lost when two nodes rejoined a few milliseconds apart).

An announcement NATS took is not always delivered: written into a socket that is dead
but not noticed yet (nats-py finds out after two missed pings, about 4 s), it is gone,
and the nodes that never lost NATS never rescan. So on a reconnect the paths announced
in the last `RECENT` seconds are announced again (a receiver's re-stat is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from hotlink.wire.errors import ProtocolError

from ..store import Store
from . import codec

log = logging.getLogger(__name__)

#: seconds of announcements sent again after a reconnect (more than nats-py takes to
#: notice a dead connection: 2 missed pings of 2 s)
RECENT = 10.0


class StoreSync:
    def __init__(
        self,
        store: Store,
        me: str,
        publish: Callable[..., bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.me = me
        self._clock = clock
        #: (when, path) of the announcements NATS took in the last `RECENT` seconds
        self._recent: deque[tuple[float, str]] = deque()
        #: publishes one announcement; False when it was dropped (NATS down)
        self._publish = publish
        #: joined once: announcements are due from then on
        self.connected = False
        #: paths changed here and not announced yet, oldest change first (the order a
        #: receiver indexes them in: a catch-up cursor must not pass one not yet there)
        self._unannounced: dict[str, None] = {}
        #: paths changed locally while a rescan runs (None: no rescan running)
        self._during_scan: set[str] | None = None
        #: one rescan at a time (a reconnect during one queues another)
        self._scanning = asyncio.Lock()
        store.listeners.append(self._changed)

    def _changed(self, path: str) -> None:
        if self._during_scan is not None:
            self._during_scan.add(path)
        self._unannounced.pop(path, None)
        self._unannounced[path] = None
        if self.connected:
            self.announce()

    def announce(self) -> None:
        """Announce the paths changed here that are not announced yet, in order,
        stopping at the first one NATS does not take (the next change, tick or
        reconnect tries again)."""
        pending = self._unannounced
        recent = self._recent
        now = self._clock()
        while pending:
            path = next(iter(pending))
            if not self._publish(codec.file_subject(), p=path):
                break
            del pending[path]
            recent.append((now, path))
        while recent and recent[0][0] < now - RECENT:
            recent.popleft()

    def reconnected(self) -> None:
        """NATS is back: what was announced just before may have died with the old
        connection, so it goes out again, before the changes not announced yet."""
        now = self._clock()
        again = {p: None for t, p in self._recent if t >= now - RECENT}
        self._recent.clear()
        for p in self._unannounced:
            again.pop(p, None)
            again[p] = None
        self._unannounced = again
        self.announce()

    def on_file(self, data: bytes) -> None:
        """Another node stored or deleted a file. Called from the NATS read loop, as
        routed frames are, not by a subscription task: a node announces a write before
        it sends the offer or the file broadcast that follows it, and a reader given
        either one catches up from this node's index (a broadcast during a catch-up is
        left to its pages). Queued behind a task, the announcement came too late (up to
        140 ms behind, in the flood of a rejoin) and the page skipped the file."""
        try:
            j = codec.unpack_json(data)
        except ProtocolError as exc:
            log.warning("cluster: bad file announcement: %s", exc)
            return
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
