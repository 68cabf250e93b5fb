"""Which remote files the agent writes to disk, and how many bytes it lets them take.

Why: the relay sends an agent every file its user may read. Mirroring all of them
let mallory, by making her datasite `read: ["*"]` and writing 160 MiB, fill every
other peer's disk within seconds. Now a file from another datasite is written only
when something local asked for it:

- it belongs to an open reader session (its folder; fallback files are replayed
  into the stream, and kept on disk only with --keep-files), or
- it lies under a subscription (`--subscribe PATH`, repeatable: a folder of another
  datasite whose files this peer wants to have).

Everything else is dropped (counted, logged once per datasite). What is written is
bounded per remote datasite (`--mirror-datasite-bytes`) and in all
(`--mirror-total-bytes`): a file over either bound is not written (logged, counted),
a session still gets its frame. The byte counts start from what the mirror already
holds (scanned in the disk thread at start) and follow every write.

Sans-I/O: the file worker asks `wants` / `admit` and reports nothing else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hotlink.wire.paths import validate_path

log = logging.getLogger("hotlink.agent.mirror")

DEFAULT_DATASITE_BYTES = 256 << 20
DEFAULT_TOTAL_BYTES = 1 << 30


class MirrorPolicy:
    def __init__(
        self,
        email: str,
        subscriptions: tuple[str, ...] = (),
        datasite_bytes: int = DEFAULT_DATASITE_BYTES,
        total_bytes: int = DEFAULT_TOTAL_BYTES,
    ) -> None:
        self.email = email
        self.subscriptions = tuple(s.rstrip("/") for s in subscriptions)
        self.datasite_bytes = datasite_bytes
        self.total_bytes = total_bytes
        #: mirrored path -> size, and the sums per datasite and in all
        self.sizes: dict[str, int] = {}
        self.per_datasite: dict[str, int] = {}
        self.total = 0
        #: files not wanted, and wanted files refused by a byte bound
        self.unwanted = 0
        self.over_cap = 0
        self._told: set[tuple[str, str]] = set()

    def subscribed(self, path: str) -> bool:
        return any(path == s or path.startswith(s + "/") for s in self.subscriptions)

    def wants(self, path: str, for_session: bool) -> bool:
        """Whether a remote file is mirrored at all (content bounds apart)."""
        if for_session or self.subscribed(path):
            return True
        self.unwanted += 1
        owner = path.split("/", 1)[0]
        if ("unwanted", owner) not in self._told:
            self._told.add(("unwanted", owner))
            log.info(
                "not mirroring files of %s that no session or --subscribe asks for (first: %s)",
                owner,
                path,
            )
        return False

    def admit(self, path: str, size: int) -> bool:
        """Count `size` bytes at `path` if they fit both bounds; False: do not write."""
        owner = path.split("/", 1)[0]
        grow = size - self.sizes.get(path, 0)
        site = self.per_datasite.get(owner, 0)
        if grow > 0 and (
            (self.datasite_bytes and site + grow > self.datasite_bytes)
            or (self.total_bytes and self.total + grow > self.total_bytes)
        ):
            self.over_cap += 1
            if ("cap", owner) not in self._told:
                self._told.add(("cap", owner))
                log.warning(
                    "mirror of %s is full (%d bytes of %d, all datasites %d of %d): %s and "
                    "further files over the bound are not written",
                    owner, site, self.datasite_bytes, self.total, self.total_bytes, path,
                )  # fmt: skip
            return False
        self.sizes[path] = size
        self.per_datasite[owner] = site + grow
        self.total += grow
        return True

    def load(self, found: dict[str, int]) -> None:
        """Sizes of what the mirror holds at start (`scan`), added to the counts."""
        for path, size in found.items():
            if path in self.sizes:
                continue
            self.sizes[path] = size
            owner = path.split("/", 1)[0]
            self.per_datasite[owner] = self.per_datasite.get(owner, 0) + size
            self.total += size


def scan(base: Path, email: str) -> dict[str, int]:
    """Regular files of other datasites under `base` (ROOT/datasites), by datasite path.
    Disk work: run it in the worker thread."""
    out: dict[str, int] = {}
    try:
        owners = [e for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for entry in owners:
        if entry.name == email:
            continue
        for dirpath, dirs, files in os.walk(entry.path):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if os.path.isfile(full) and not os.path.islink(full):
                    out[Path(full).relative_to(base).as_posix()] = st.st_size
    return out


def parse_subscriptions(v: object) -> tuple[str, ...]:
    """`--subscribe` values: a list (repeated flag, TOML) or comma-separated paths, each
    a datasite path (`bob@example.org/public`); checked like any wire path."""
    items = v if isinstance(v, list | tuple) else [v]
    out = []
    for item in items:
        for p in str(item).split(","):
            p = p.strip().strip("/")
            if p:
                validate_path(p)  # ProtocolError is a ValueError: a config error
                out.append(p)
    return tuple(dict.fromkeys(out))
