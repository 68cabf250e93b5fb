"""The cluster's session registry in a JetStream key-value bucket.

A node's Router holds its live sessions in memory; what must outlive the node is
mirrored into the KV bucket `hotlink-sessions`, one key per session id: its sender,
path, addressee, home node and the last seq each reader confirmed. `diff` is the
sans-I/O part (what to put and delete since the last sync); `SessionRegistry.sync`
writes it, once per tick, off the data path.

Readers of the bucket: a node that sees another node die lists the sessions that
were homed there (they are resumed when their senders re-open on a surviving node);
a node that gets an open for a session id another live user holds on another node
learns it here; operators can inspect it with the `nats kv` tool.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from ..router import Router

log = logging.getLogger(__name__)

BUCKET = "hotlink-sessions"

Record = tuple[str, str, str, tuple[tuple[str, int], ...]]


def key_of(sid: str) -> str:
    """A KV key for any session id (keys allow only `[-/_=.A-Za-z0-9]`)."""
    return base64.urlsafe_b64encode(sid.encode()).decode().rstrip("=") or "_"


def sid_of(key: str) -> str:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()


def snapshot(router: Router) -> dict[str, Record]:
    return {
        sid: (s.sender, s.path, s.to, tuple(sorted(s.acked.items())))
        for sid, s in router.sessions.items()
    }


def diff(before: dict[str, Record], now: dict[str, Record]) -> tuple[dict[str, Record], list[str]]:
    """(sessions to put, sids to delete) to turn the bucket's view into `now`."""
    puts = {sid: r for sid, r in now.items() if before.get(sid) != r}
    dels = [sid for sid in before if sid not in now]
    return puts, dels


def encode_record(sid: str, r: Record, home: str) -> bytes:
    sender, path, to, acked = r
    return json.dumps(
        {"sid": sid, "sender": sender, "path": path, "to": to, "home": home, "acked": dict(acked)},
        separators=(",", ":"),
    ).encode()


class SessionRegistry:
    def __init__(self, router: Router, node: str) -> None:
        self.router = router
        self.node = node
        self.kv: Any = None
        self._written: dict[str, Record] = {}

    async def open(self, js: Any) -> None:
        try:
            self.kv = await js.key_value(BUCKET)
        except Exception:
            self.kv = await js.create_key_value(bucket=BUCKET, history=1)

    async def sync(self) -> None:
        """Write what changed since the last sync (every record again after `reset`)."""
        kv = self.kv
        if kv is None:
            return
        now = snapshot(self.router)
        puts, dels = diff(self._written, now)
        for sid, r in puts.items():
            await kv.put(key_of(sid), encode_record(sid, r, self.node))
            self._written[sid] = r
        for sid in dels:
            rec = await self.get(sid)
            if rec is None or rec.get("home") == self.node:  # not re-homed meanwhile
                await kv.delete(key_of(sid))
            self._written.pop(sid, None)

    def reset(self) -> None:
        """After a NATS outage the bucket may lag: write every live session again."""
        self._written.clear()

    async def get(self, sid: str) -> dict[str, Any] | None:
        if self.kv is None:
            return None
        try:
            entry = await self.kv.get(key_of(sid))
        except Exception:  # KeyNotFoundError, deleted key
            return None
        if not entry.value:
            return None
        try:
            return json.loads(entry.value)
        except ValueError:
            return None

    async def homed_at(self, node: str) -> list[dict[str, Any]]:
        """Records whose home is `node` (a scan: used only when a node is lost)."""
        if self.kv is None:
            return []
        try:
            keys = await self.kv.keys()
        except Exception:  # NoKeysError: empty bucket
            return []
        out = []
        for k in keys:
            rec = await self.get(sid_of(k))
            if rec is not None and rec.get("home") == node:
                out.append(rec)
        return out
