"""Reading and writing files inside a datasite without being led outside it.

Apps and other users can put symlinks, FIFOs or folders where the file path expects a
plain file; these helpers refuse them (with a message that says why, for the log)
instead of following them out of the datasite or blocking on a FIFO.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from hotlink.common.atomic import TMP_PREFIX

from .core.names import RESERVED_NAMES


class FileRefused(Exception):
    """A file the file path will not take; the message says why (it is logged)."""


def resolve_inside(base: Path, real_base: Path, rel_parts: list[str]) -> Path:
    """`base/rel` if its folder resolves inside `real_base` (symlinks followed)."""
    target = base.joinpath(*rel_parts)
    parent = target.parent.resolve()
    if parent != real_base and real_base not in parent.parents:
        raise FileRefused(f"{'/'.join(rel_parts)} resolves outside {base} (symlink?)")
    name = target.name
    if name.startswith(TMP_PREFIX) or name in RESERVED_NAMES:
        raise FileRefused(f"reserved file name {name!r}")
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(target)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            raise FileRefused(f"{target} is a symlink or a folder")
    return target


def read_regular(path: Path, real_dir: Path, max_bytes: int) -> bytes:
    """Read an app-written file, refusing symlinks, non-regular files, files whose
    folder resolves outside `real_dir`, and files over `max_bytes`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise FileRefused(f"{path} vanished before it could be read") from None
    if stat.S_ISLNK(st.st_mode):
        raise FileRefused(f"{path} is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{path} is not a regular file")
    parent = path.parent.resolve()
    if parent != real_dir and real_dir not in parent.parents:
        raise FileRefused(f"{path} is outside the session directory {real_dir}")
    if st.st_size > max_bytes:
        raise FileRefused(f"{path} has {st.st_size} bytes, over the {max_bytes}-byte limit")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise FileRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        # read(n) allocates n bytes up front: sized by the lstat, not by the limit (a
        # 16 MiB buffer mapped and unmapped per file), and read on only if the file
        # grew since, up to one byte over the limit
        want = st.st_size + 1
        data = f.read(want)
        if len(data) == want and want <= max_bytes:
            data += f.read(max_bytes + 1 - want)
    if len(data) > max_bytes:
        raise FileRefused(f"{path} grew over the {max_bytes}-byte limit while being read")
    return data
