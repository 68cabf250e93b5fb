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

#: Name prefix of every temp file an atomic write leaves for an instant (or after a crash).
TMP_PREFIX = ".hotlink-tmp-"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_FLAGS |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def is_temp_name(name: str) -> bool:
    """True for a file name an atomic write uses while it writes."""
    return name.startswith(TMP_PREFIX)


def _open_temp(folder: str, mode: int) -> tuple[int, str]:
    # Like tempfile.mkstemp (O_EXCL, no symlink following, random name), but with the
    # caller's mode, to which the process umask applies as for any new file.
    while True:
        tmp = os.path.join(folder, TMP_PREFIX + secrets.token_hex(6))
        try:
            return os.open(tmp, _FLAGS, mode), tmp
        except FileExistsError:
            continue


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(
    target: str | os.PathLike[str],
    data: bytes | str | Iterable[bytes],
    *,
    mode: int = 0o600,
    fsync: bool = False,
    mkdir: bool = False,
) -> os.stat_result:
    """Write `data` (bytes, text as UTF-8, or byte chunks written in order) to `target`;
    returns the written file's `fstat` (its size and mtime are the target's: a rename
    changes neither), so a caller that indexes the file needs no second `stat`.

    The temp file is created in the target's folder (a rename across file systems is
    not atomic) with `mode` masked by the umask; default owner-only. `fsync=True`
    flushes it to disk before the rename (durability across power loss; it costs
    milliseconds, so not on an event loop's hot path). `mkdir=True` creates missing
    parent folders (only once the temp file cannot be created: a write to an existing
    folder costs no `mkdir`). On any error the temp file is removed and the error
    raised; the target is then unchanged.

    Plain `os` calls on strings, no `pathlib` or file objects: the relay's store calls
    this on its event loop for every fallback frame, where each object costs.
    """
    target = os.fspath(target)
    folder = os.path.dirname(target) or "."
    if isinstance(data, str):
        data = data.encode()
    try:
        fd, tmp = _open_temp(folder, mode)
    except FileNotFoundError:
        if not mkdir:
            raise
        os.makedirs(folder, exist_ok=True)
        fd, tmp = _open_temp(folder, mode)
    try:
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                _write_all(fd, data)
            else:
                for part in data:
                    _write_all(fd, part)
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st
