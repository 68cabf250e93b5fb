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

What waits is bounded: past `MAX_UNANNOUNCED` entries (a long outage with many files
written), the waiting paths are replaced by their folders, one level up at a time and
never above a datasite, and a receiver re-reads an announced folder from disk
(`{n, e, d}` instead of `{n, e, p}`). A folder announced in place of its first changed
file is re-read no later than that file would have been indexed, so the order above
holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from hotlink.wire.errors import ProtocolError

from ..store import Store, StoreError
from . import codec

log = logging.getLogger(__name__)

#: seconds of announcements sent again after a reconnect (more than nats-py takes to
#: notice a dead connection: 2 missed pings of 2 s)
RECENT = 10.0
#: announcements waiting for NATS before they are folded into their folders
MAX_UNANNOUNCED = 20_000

#: an announcement: (path, is a folder)
Key = tuple[str, bool]


def _parent(key: Key) -> Key:
    """The folder one level up, never above a datasite (a datasite's own folder stays)."""
    path, _ = key
    up = path.rpartition("/")[0]
    return (up, True) if up else key


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
        #: (when, key) of the announcements NATS took in the last `RECENT` seconds
        self._recent: deque[tuple[float, Key]] = deque()
        #: publishes one announcement; False when it was dropped (NATS down)
        self._publish = publish
        #: joined once: announcements are due from then on
        self.connected = False
        #: paths (or their folders, see `_fold`) changed here and not announced yet,
        #: oldest change first (the order a receiver indexes them in: a catch-up cursor
        #: must not pass one not yet there)
        self._unannounced: dict[Key, None] = {}
        #: what waits was folded into folders (logged once, until it is all announced)
        self._folded = False
        #: paths and folders changed while a rescan runs (None: no rescan running)
        self._during_scan: set[Key] | None = None
        #: one rescan at a time (a reconnect during one queues another)
        self._scanning = asyncio.Lock()
        store.listeners.append(self._changed)

    def _changed(self, path: str) -> None:
        key = (path, False)
        if self._during_scan is not None:
            self._during_scan.add(key)
        pending = self._unannounced
        pending.pop(key, None)
        pending[key] = None
        if self.connected:
            self.announce()
        if len(pending) > MAX_UNANNOUNCED:
            self._fold()

    def _fold(self) -> None:
        """Too much waits for NATS: announce folders instead of their files, going up
        one level at a time until half the bound is left (or only datasites are)."""
        pending = self._unannounced
        before = len(pending)
        while len(pending) > MAX_UNANNOUNCED // 2:
            folded = dict.fromkeys(_parent(k) for k in pending)
            if folded.keys() == pending.keys():
                break  # datasites only: bounded by the number of users
            pending = folded
        self._unannounced = pending
        if not self._folded:  # once per outage, not per write
            self._folded = True
            log.warning(
                "cluster: %d changed paths wait for NATS; announcing %d folders instead "
                "(the other nodes re-read them from disk)",
                before,
                len(pending),
            )

    def announce(self) -> None:
        """Announce the paths changed here that are not announced yet, in order,
        stopping at the first one NATS does not take (the next change, tick or
        reconnect tries again)."""
        pending = self._unannounced
        recent = self._recent
        now = self._clock()
        while pending:
            key = next(iter(pending))
            path, folder = key
            field = {"d": path} if folder else {"p": path}
            if not self._publish(codec.file_subject(), **field):
                break
            del pending[key]
            recent.append((now, key))
        if not pending:
            self._folded = False
        while recent and recent[0][0] < now - RECENT:
            recent.popleft()

    def reconnected(self) -> None:
        """NATS is back: what was announced just before may have died with the old
        connection, so it goes out again, before the changes not announced yet."""
        now = self._clock()
        again = {k: None for t, k in self._recent if t >= now - RECENT}
        self._recent.clear()
        for k in self._unannounced:
            again.pop(k, None)
            again[k] = None
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
        path, folder = j.get("p"), j.get("d")
        if isinstance(path, str):
            key = (path, False)
        elif isinstance(folder, str) and folder:
            key = (folder, True)
        else:
            return
        if self._during_scan is not None:
            self._during_scan.add(key)
        self._apply(key)

    def _apply(self, key: Key) -> None:
        """Bring the index in line with the disk for one announced path or folder."""
        path, folder = key
        if not folder:
            self.store.note(path)
            return
        try:
            self.store.refresh(path)
        except StoreError as exc:
            log.warning("cluster: cannot re-read announced folder %r: %s", path, exc)

    async def rescan(self) -> None:
        """Rebuild the index from disk (after announcements may have been missed)."""
        async with self._scanning:
            self._during_scan = set()
            try:
                index = await asyncio.to_thread(self.store.scan)
                self.store.reindex(index)
                for key in self._during_scan:
                    self._apply(key)
            finally:
                self._during_scan = None
