"""OpenSession's arguments: which folder a path names, which role the agent plays
there, and the checks of the other fields. `SessionError` is the control plane's
error (its `code` maps to a gRPC status in `control.py`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import (
    owner_of,
    session_path,
    validate_email,
    validate_path,
    validate_relpath,
    validate_session_path,
)

from .core.paths import normalize_mode
from .core.state import Role
from .ipc import MODE_PIPE, MODE_TCP, MODE_UNIX
from .runtime_dir import is_windows


class SessionError(Exception):
    """A control-plane failure; `code` maps to a gRPC status in `control.py`."""

    INVALID = "INVALID_ARGUMENT"
    EXISTS = "ALREADY_EXISTS"
    DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    PRECONDITION = "FAILED_PRECONDITION"
    EXHAUSTED = "RESOURCE_EXHAUSTED"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_path(own_email: str, path: str, role: int = 0) -> tuple[str, Role]:
    """`_mpc/0_to_1` -> (`own@x/_mpc/0_to_1`, SENDER); `other@y/_mpc/0_to_1` -> READER.

    The first segment is an owner email if it contains `@`; otherwise the path is
    relative to the agent's own datasite. `role` (1 sender, 2 reader) overrides.
    Raises `ProtocolError` for anything unsafe (absolute, `..`, empty segments...).
    """
    validate_relpath(path)
    first = path.split("/", 1)[0]
    full = path if "@" in first else f"{own_email}/{path}"
    validate_path(full)
    validate_session_path(full)
    if session_path(full) != full:  # peers would take it for a file of its parent folder
        raise ProtocolError(f"a session folder named like a .request file: {path!r}")
    if role not in (0, Role.SENDER, Role.READER):
        raise ProtocolError(f"unknown role {role}")
    derived = Role.SENDER if owner_of(full) == own_email else Role.READER
    if role == Role.READER and derived is Role.SENDER:
        # the relay offers a session to the users its ACL lets read, never its sender
        raise ProtocolError(
            f"{full} is in your own datasite: open it as its sender (a reader of your own "
            "session would wait forever: the relay never offers it to its sender)"
        )
    return full, Role(role) if role else derived


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: values of `hotlink.v1.DirectMode` (0 = the agent's --direct)
DIRECT_OFF = 1
DIRECT_AUTO = 2


def check_direct(direct: int) -> int:
    """A valid OpenSession `direct` (0, DIRECT_OFF, DIRECT_AUTO); `SessionError` otherwise."""
    if direct not in (0, DIRECT_OFF, DIRECT_AUTO):
        raise SessionError(SessionError.INVALID, f"unknown direct mode {direct}")
    return direct


@dataclass(frozen=True, slots=True)
class OpenArgs:
    """A checked OpenSession: the full path, the role the agent plays there, the
    resolved IPC mode and the options as given."""

    path: str
    role: Role
    ipc_mode: int
    to: str
    fallback_mode: int
    tcp_addr: str
    direct: int


def check_open_args(
    own_email: str,
    path: str,
    role: int,
    to: str,
    ipc_mode: int,
    fallback_mode: int,
    tcp_addr: str,
    direct: int = 0,
) -> OpenArgs:
    """The checked arguments of a valid OpenSession; `SessionError` otherwise."""
    try:
        full, r = resolve_path(own_email, path, role)
        try:
            normalize_mode(fallback_mode)
        except ValueError:
            raise ProtocolError(f"unknown fallback_mode {fallback_mode}") from None
        if to:
            try:
                validate_email(to)
            except ProtocolError as exc:
                raise ProtocolError(f"to: {exc} (the one reader, e.g. bob@example.org)") from None
        if tcp_addr:
            host, sep, port = tcp_addr.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ProtocolError(f"tcp_addr must be HOST:PORT, got {tcp_addr!r}")
            if not is_loopback(host):
                raise ProtocolError(f"tcp_addr must be a loopback address, got {host!r}")
    except ProtocolError as exc:
        raise SessionError(SessionError.INVALID, str(exc)) from None
    mode = ipc_mode or (MODE_PIPE if is_windows() else MODE_UNIX)
    if mode not in (MODE_UNIX, MODE_TCP, MODE_PIPE):
        raise SessionError(SessionError.INVALID, f"unknown ipc_mode {ipc_mode}")
    if mode == MODE_PIPE and not is_windows():
        raise SessionError(SessionError.INVALID, "IPC_MODE_PIPE is only available on Windows")
    if tcp_addr and mode != MODE_TCP:
        raise SessionError(
            SessionError.INVALID, "tcp_addr is the address of a TCP endpoint: it needs ipc_mode TCP"
        )
    check_direct(direct)
    return OpenArgs(full, r, mode, to, fallback_mode, tcp_addr, direct)
