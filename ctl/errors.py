"""Errors of the ctl layer and the exit codes scripts can rely on.

Every failure the CLI reports is a `CtlError` carrying an exit code and a hint that
says what to do next; the CLI prints `error: <message>` and `hint: <hint>` and exits
with the code. Library users catch the subclasses they care about.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of `hotlinkctl` (documented in its --help)."""

    OK = 0
    ERROR = 1  # anything not listed below
    USAGE = 2  # bad arguments (argparse uses 2 too)
    UNREACHABLE = 3  # the agent's control socket does not answer
    NOT_FOUND = 4  # no such session / file / devstack
    PERMISSION = 5  # the relay or the agent refused (ACL)
    UNAVAILABLE = 6  # relay/link/endpoint unavailable, or timed out
    CONFLICT = 7  # session already exists with another role
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = """exit codes:
  0  ok
  1  generic error
  2  usage error (bad arguments)
  3  agent unreachable (control socket does not answer)
  4  not found (session, endpoint, devstack)
  5  permission denied (ACL / relay rejected)
  6  unavailable or timed out (relay down, link down, no verdict in time)
  7  conflict (a session exists on that path with another role)
  130 interrupted (Ctrl-C)"""


class CtlError(Exception):
    """A failure with an exit code and an actionable hint."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str = "", *, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
            "kind": type(self).__name__,
        }


class UsageError(CtlError):
    exit_code = ExitCode.USAGE


class AgentUnreachable(CtlError):
    exit_code = ExitCode.UNREACHABLE


class NotFound(CtlError):
    exit_code = ExitCode.NOT_FOUND


class PermissionDenied(CtlError):
    exit_code = ExitCode.PERMISSION


class Unavailable(CtlError):
    exit_code = ExitCode.UNAVAILABLE


class Conflict(CtlError):
    exit_code = ExitCode.CONFLICT


class EndpointNotFound(NotFound):
    """The session directory has no `stream.sock` / `stream.tcp` (yet)."""


class StreamClosed(CtlError):
    """The agent closed the app connection (EOF), or the stream was closed locally."""

    exit_code = ExitCode.UNAVAILABLE
