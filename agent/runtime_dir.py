"""Private directories and endpoint naming (docs/design.md "Agent local layout").

- `ensure_private_dir` creates a directory 0700 or refuses one that is not a real
  directory owned by us with no group/world bits: the reference's shared
  `/tmp/syftbox-hotlink` could be pre-created by another user (reference §8).
- `unix_socket_location` applies the long-path rule: a socket path over 100 bytes
  lives in the private runtime dir under the sha1 of the marker path.
- `pipe_name` is the Windows named-pipe name (served by `ipc.IpcEndpoint`, untested).
- `bind_unix_socket` binds with umask 0177 so the socket is never reachable by
  others, even for an instant, then chmods it 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from hotlink.common.atomic import write_atomic

#: Socket paths longer than this (bytes) go to the runtime dir (sun_path is ~108).
MAX_SOCKET_PATH = 100


class InsecureDirectory(OSError):
    """A directory that is not private to this user."""


def default_runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "hotlink"
    return Path(f"/tmp/hotlink-{os.getuid()}")


def check_private_dir(path: Path) -> None:
    """Raise `InsecureDirectory` unless `path` is a directory (not a symlink), owned by
    the current user, with no group or world permission bits."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise InsecureDirectory(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise InsecureDirectory(f"{path} is owned by uid {st.st_uid}, not by us ({os.getuid()})")
    if st.st_mode & 0o077:
        raise InsecureDirectory(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be group/world accessible"
        )


def ensure_private_dir(path: Path, *, fix_mode: bool = False) -> Path:
    """Create `path` (and parents) with mode 0700, or validate an existing one.

    `fix_mode=True` chmods an existing directory that we own to 0700 first (used for
    `ROOT/.hotlink`, which is ours by construction); the shared runtime dir is never
    "fixed", only refused.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=False)
    except FileExistsError:
        if fix_mode:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
                os.chmod(path, 0o700)
    check_private_dir(path)
    return path


def unix_socket_location(marker: Path, runtime_dir: Path) -> tuple[Path, bool]:
    """Where the socket for marker `.../stream.sock` lives: `(path, indirect)`.

    `indirect` is True when the real socket is in `runtime_dir` and `marker` becomes a
    regular file holding its path.
    """
    abs_marker = os.path.abspath(marker)
    if len(abs_marker.encode()) <= MAX_SOCKET_PATH:
        return Path(abs_marker), False
    digest = hashlib.sha1(abs_marker.encode()).hexdigest()
    return runtime_dir / f"{digest}.sock", True


def pipe_name(session_dir: Path | str) -> str:
    """Windows named pipe for a session dir: `\\\\.\\pipe\\hotlink-<sha1 of abs dir>`."""
    d = str(session_dir)
    if not (d.startswith("\\\\") or (len(d) > 1 and d[1] == ":")):
        d = os.path.abspath(d)
    return "\\\\.\\pipe\\hotlink-" + hashlib.sha1(d.encode()).hexdigest()


def is_windows() -> bool:
    return sys.platform == "win32"


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening-ready UNIX socket bound at `path` with mode 0600 (stale entry removed)."""
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISREG(st.st_mode):
            os.unlink(path)
        else:
            raise FileExistsError(f"{path} exists and is not a socket or a marker file")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def write_file_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Marker and state files: `hotlink.common.atomic.write_atomic` with a text body."""
    write_atomic(path, text, mode=mode)
