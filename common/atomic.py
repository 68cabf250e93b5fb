"""Atomic file writes: a temp file in the target's folder, then `os.replace`.

Every Hotlink writer (the relay's store, the agent's fallback files, mirror, state file
and endpoint markers, the devstack state, the benchmark's `.request` files) uses this
one helper, so a reader or a crash never sees half a file and every scanner can skip
the temp files by one prefix, `TMP_PREFIX`. It starts with "." so tools that skip hidden
files (the agent's `.request` watcher, `ls`) skip them too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

#: Name prefix of every temp file an atomic write leaves for an instant (or after a crash).
TMP_PREFIX = ".hotlink-tmp-"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_FLAGS |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def is_temp_name(name: str) -> bool:
    """True for a file name an atomic write uses while it writes."""
    return name.startswith(TMP_PREFIX)


def _open_temp(folder: Path, mode: int) -> tuple[int, Path]:
    # Like tempfile.mkstemp (O_EXCL, no symlink following, random name), but with the
    # caller's mode, to which the process umask applies as for any new file.
    while True:
        tmp = folder / f"{TMP_PREFIX}{secrets.token_hex(6)}"
        try:
            return os.open(tmp, _FLAGS, mode), tmp
        except FileExistsError:
            continue


def write_atomic(
    target: str | os.PathLike[str],
    data: bytes | str | Iterable[bytes],
    *,
    mode: int = 0o600,
    fsync: bool = False,
    mkdir: bool = False,
) -> None:
    """Write `data` (bytes, text as UTF-8, or byte chunks written in order) to `target`.

    The temp file is created in the target's folder (a rename across file systems is
    not atomic) with `mode` masked by the umask; default owner-only. `fsync=True`
    flushes it to disk before the rename (durability across power loss; it costs
    milliseconds, so not on an event loop's hot path). `mkdir=True` creates missing
    parent folders. On any error the temp file is removed and the error raised; the
    target is then unchanged.
    """
    target = Path(target)
    if mkdir:
        target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = _open_temp(target.parent, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                for part in data:
                    f.write(part)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
