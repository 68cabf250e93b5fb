"""Store quotas: bytes and files per datasite, and a FileWrite byte rate per user.

Why: without them one user wrote 200 MiB in under a second, all Acked, and could fill
the relay's disk. Sans-I/O like the router: `check` is given the write and the clock
and answers with a Nack reason or None; `SyncIndex.usage` provides the totals.

- Storage and file count are charged to the datasite the file lands in (its
  owner's): the store is laid out by datasite, and an owner who grants others write
  access shares their quota with them. Replacing a file charges only the growth.
- The byte rate is per writing user, over all their connections: a token bucket of
  `write_burst` bytes refilled at `write_rate` bytes/s. One message may always pass a
  full bucket (the burst is at least one maximal message), so the limit slows a
  writer down, it never makes a large file impossible. A writer over it gets
  `Nack "rate limited"`; the agent re-sends the file after a pause (no data lost).
"""

from __future__ import annotations

from dataclasses import dataclass

from hotlink.wire.messages import REASON_QUOTA_EXCEEDED as REASON_QUOTA
from hotlink.wire.messages import REASON_RATE_LIMITED as REASON_RATE

from .sync_index import SyncIndex

MIB = 1 << 20


@dataclass(slots=True, frozen=True)
class QuotaLimits:
    """0 disables a limit."""

    #: bytes stored per datasite
    max_bytes: int = 1024 * MIB
    #: files stored per datasite
    max_files: int = 100_000
    #: FileWrite content bytes per second per user, and the bucket size
    write_rate: int = 16 * MIB
    write_burst: int = 64 * MIB


@dataclass(slots=True)
class _Bucket:
    tokens: float
    refilled: float


class StoreQuota:
    def __init__(self, limits: QuotaLimits | None = None) -> None:
        self.limits = limits or QuotaLimits()
        self._buckets: dict[str, _Bucket] = {}

    def check(self, index: SyncIndex, user: str, path: str, size: int, now: float) -> str | None:
        """None if `user` may store `size` bytes at `path` now (and the bytes are
        taken from its rate bucket); else the Nack reason."""
        lim = self.limits
        owner = path.split("/", 1)[0]
        old = index.files.get(path)
        usage = index.usage_of(owner)
        if lim.max_files and old is None and usage.files >= lim.max_files:
            return f"{REASON_QUOTA}: {owner} holds {usage.files} files (limit {lim.max_files})"
        grow = size - (old[1] if old is not None else 0)
        if lim.max_bytes and grow > 0 and usage.bytes + grow > lim.max_bytes:
            return (
                f"{REASON_QUOTA}: {owner} would hold {usage.bytes + grow} bytes "
                f"(limit {lim.max_bytes})"
            )
        if lim.write_rate <= 0:
            return None
        burst = float(max(lim.write_burst, lim.write_rate, size))
        b = self._buckets.get(user)
        if b is None:
            b = self._buckets[user] = _Bucket(burst, now)
        b.tokens = min(burst, b.tokens + (now - b.refilled) * lim.write_rate)
        b.refilled = now
        if b.tokens < size:
            return f"{REASON_RATE}: over {lim.write_rate} bytes/s of file writes"
        b.tokens -= size
        return None
