"""An exclusive `flock` on a lock file: how every process here serialises the
read-modify-write of a shared file (`peers.json`, the relay's `revoked.json`) and
keeps one agent per root (`agent.lock`).

The lock file is created 0600 and is never the data file itself: the data file is
replaced by an atomic rename, and a lock on the old inode would not cover the new one.
Where there is no `flock` (Windows) the lock is a no-op: the callers say what that
leaves open.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def acquire(path: Path, *, wait: bool = True) -> int:
    """Open `path` and lock it; the lock lasts until the returned fd is closed.
    `wait=False`: raise BlockingIOError at once if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the lock for the `with` body (waiting for another holder to finish)."""
    fd = acquire(path)
    try:
        yield
    finally:
        os.close(fd)
