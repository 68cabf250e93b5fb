"""`hotlink-relay serve` flags of the store: quotas, write rate, fallback retention.

Kept apart from `cli` so the store's options and their wiring (quota object on the
router, the retention task) live in one place.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from hotlink.common import sizes
from hotlink.common.argtypes import non_negative

from . import retention
from .quota import QuotaLimits, StoreQuota


def _size(text: str) -> int:
    """Bytes (`1GiB`, `512k`, ...); 0 disables the limit."""
    return 0 if text.strip() == "0" else sizes.parse_size(text, minimum=1024)


def add_arguments(s: argparse.ArgumentParser) -> None:
    d = QuotaLimits()
    s.add_argument(
        "--store-quota",
        type=_size,
        default=d.max_bytes,
        metavar="BYTES",
        help="bytes stored per datasite (its owner's, shared with whoever the owner lets "
        "write there); a FileWrite over it gets Nack 'quota exceeded' (default 1GiB; 0 = "
        "unlimited)",
    )
    s.add_argument(
        "--store-max-files",
        type=non_negative(int),
        default=d.max_files,
        metavar="N",
        help="files stored per datasite; a new file over it gets Nack 'quota exceeded' "
        "(default %(default)s; 0 = unlimited)",
    )
    s.add_argument(
        "--write-rate",
        type=_size,
        default=d.write_rate,
        metavar="BYTES_PER_SEC",
        help="FileWrite content bytes per second per user, over all its connections; a "
        "write over it gets Nack 'rate limited' and the agent re-sends it after a pause "
        "(default 16MiB; 0 = off)",
    )
    s.add_argument(
        "--write-burst",
        type=_size,
        default=d.write_burst,
        metavar="BYTES",
        help="token bucket size for --write-rate; one file always fits a full bucket "
        "(default 64MiB)",
    )
    s.add_argument(
        "--fallback-retention",
        type=non_negative(float),
        default=retention.DEFAULT_RETENTION,
        metavar="SECONDS",
        help="fallback files (.request frames) older than this, outside the folders of "
        "live sessions, are deleted; readers away for longer cannot catch up on them "
        "(default %(default)s = 24 h; 0 = keep forever)",
    )


def install(server: Any, args: argparse.Namespace) -> asyncio.Task[None]:
    """Configure `server`'s store limits; returns the retention task (cancel it at exit)."""
    server.router.quota = StoreQuota(
        QuotaLimits(
            max_bytes=args.store_quota,
            max_files=args.store_max_files,
            write_rate=args.write_rate,
            write_burst=args.write_burst,
        )
    )
    keep = args.fallback_retention
    router = server.router

    def live() -> set[str]:
        return {s.path for s in router.sessions.values()}

    interval = min(retention.SWEEP_INTERVAL, max(0.5, keep / 4))
    return asyncio.create_task(
        retention.run(server.store, keep, live, interval), name="relay-retention"
    )
