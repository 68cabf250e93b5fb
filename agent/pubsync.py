"""Upload this peer's own `syft.pub.yaml` files to the relay as FileWrite.

Disk work (an os.walk + stat scan, reading changed files) runs in a worker thread so
it never blocks the event loop that carries the data path. Scans run at start, on
every link up, whenever the file watcher reports a changed `syft.pub.yaml`
(`request_rescan`, so a grant reaches the relay within about the watcher's debounce)
and every `interval` seconds as a safety net for missed events. When the link comes up
the files of the last scan are sent at once from memory (before the sessions are
re-opened, so a fresh relay learns the ACLs first) and a rescan follows. Acks/Nacks
are matched by message id; a Nack is logged and the file is retried on the next scan.
A file the relay acknowledged that is gone from disk is deleted on the relay
(FileDelete), so removing a `syft.pub.yaml` takes its grants back ("no rule: owner
only") instead of leaving the last uploaded rules in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from hotlink.wire.etag import etag_of
from hotlink.wire.messages import FileDelete, FileWrite

from .transport import LinkDown, Transport

log = logging.getLogger("hotlink.agent.pubsync")

ACL_NAME = "syft.pub.yaml"
SKIP_DIRS = {".hotlink", ".git", "__pycache__"}
MAX_ACL_BYTES = 256 * 1024

Key = tuple[int, int]  # (mtime_ns, size)


class PubSync:
    def __init__(self, root: Path, email: str, link: Transport, interval: float) -> None:
        self.base = root / "datasites" / email
        self.email = email
        self.link = link
        self.interval = interval
        #: rel path -> (key, content) as of the last scan
        self.files: dict[str, tuple[Key, bytes]] = {}
        #: rel path -> key the relay acknowledged
        self.synced: dict[str, Key] = {}
        self._inflight: dict[str, tuple[str, Key | None]] = {}
        self._scan_task: asyncio.Task[None] | None = None
        #: a change was reported while a scan ran: scan once more when it ends
        self._rescan_again = False

    # --- disk (worker thread) ----------------------------------------------------

    def _scan(self, known: dict[str, tuple[Key, bytes]]) -> dict[str, tuple[Key, bytes]]:
        found: dict[str, tuple[Key, bytes]] = {}
        for dirpath, dirnames, filenames in os.walk(self.base):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            if ACL_NAME not in filenames:
                continue
            p = Path(dirpath) / ACL_NAME
            rel = p.relative_to(self.base).as_posix()
            try:
                st = p.stat()
                key = (st.st_mtime_ns, st.st_size)
                old = known.get(rel)
                if old is not None and old[0] == key:
                    found[rel] = old
                    continue
                if st.st_size > MAX_ACL_BYTES:
                    log.warning("%s is larger than %d bytes; not uploaded", p, MAX_ACL_BYTES)
                    continue
                found[rel] = (key, p.read_bytes())
            except OSError as exc:
                log.warning("cannot read %s: %s", p, exc)
        return found

    async def rescan(self) -> None:
        self.files = await asyncio.to_thread(self._scan, dict(self.files))
        self.send_changed()

    # --- loop side ---------------------------------------------------------------

    def send_changed(self, force: bool = False) -> int:
        """Send files whose content the relay has not acknowledged (all with `force`)."""
        if not self.link.up:
            return 0
        if force:  # send every file again; what must still be deleted stays listed
            self.synced = {r: k for r, k in self.synced.items() if r not in self.files}
        sent = 0
        for rel, (key, content) in self.files.items():
            if self.synced.get(rel) == key:
                continue
            etag = etag_of(content)
            try:
                oid = self.link.send(FileWrite(f"{self.email}/{rel}", etag, len(content), content))
            except LinkDown:
                return sent
            self._inflight[oid] = (rel, key)
            sent += 1
        # files the relay holds (acknowledged) that are no longer on disk
        deleting = {r for r, k in self._inflight.values() if k is None}
        for rel in [r for r in self.synced if r not in self.files and r not in deleting]:
            try:
                oid = self.link.send(FileDelete(f"{self.email}/{rel}"))
            except LinkDown:
                return sent
            self._inflight[oid] = (rel, None)
            sent += 1
        return sent

    def on_ack(self, oid: str, error: str | None) -> bool:
        entry = self._inflight.pop(oid, None)
        if entry is None:
            return False
        rel, key = entry
        if error is None and key is None:
            if rel not in self.files:
                self.synced.pop(rel, None)
            log.info("deleted %s/%s on the relay (removed here)", self.email, rel)
        elif error is None:
            self.synced[rel] = key
            log.info("uploaded %s/%s", self.email, rel)
        else:
            log.warning(
                "relay refused %s/%s: %s (the relay keeps enforcing the last version it "
                "accepted, if any)",
                self.email, rel, error,
            )  # fmt: skip
        return True

    def on_link_up(self) -> None:
        self._inflight.clear()
        self.send_changed(force=True)
        if self._scan_task is None or self._scan_task.done():
            self._scan_task = asyncio.get_running_loop().create_task(self._safe_rescan())

    def request_rescan(self) -> None:
        """An ACL file changed on disk: scan now (or right after the running scan)."""
        if self._scan_task is not None and not self._scan_task.done():
            self._rescan_again = True
            return
        self._scan_task = asyncio.get_running_loop().create_task(self._safe_rescan())

    async def _safe_rescan(self) -> None:
        while True:
            self._rescan_again = False
            try:
                await self.rescan()
            except Exception:
                log.exception("syft.pub.yaml scan failed")
            if not self._rescan_again:
                return

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._safe_rescan()

    async def stop(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scan_task
