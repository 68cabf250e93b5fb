"""File descriptors: the process's limit raised to what it may use, and a budget that
refuses new clients before the limit is reached.

Every agent connected to the relay, every app or tunnel connection of an agent and
every file being stored holds a descriptor. Services often start with a soft limit of
1 024 (the hard limit being far higher). Past it `accept()` fails with EMFILE, and
uvloop (libuv) then accepts and closes each new connection at once so that its loop
does not spin: clients see their connection dropped, and nothing is logged. Hence:

- `raise_nofile_limit` lifts the soft limit to the hard one at start (as Go's runtime
  does), so a busy relay is not held to a default meant for interactive shells;
- `FdBudget` counts the sockets a server holds and says when one more client would
  eat into a `reserve` kept for the files, logs and links the process also needs. The
  server answers such a client with an error it can read (the relay: HTTP 503)
  instead of the silent drop.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NofileLimit:
    soft: int
    hard: int
    #: the soft limit before `raise_nofile_limit` (equal to `soft` when unchanged)
    was: int
    #: why it could not be raised ("" when it was, or did not need to be)
    error: str = ""

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.error:
            return f"file descriptor limit {self.soft} (not raised to {self.hard}: {self.error})"
        if self.was != self.soft:
            return f"file descriptor limit raised from {self.was} to {self.soft}"
        return f"file descriptor limit {self.soft}"


def raise_nofile_limit() -> NofileLimit:
    """Set the soft RLIMIT_NOFILE to the hard limit (capped at the kernel's
    `fs.nr_open` when the hard limit is unlimited); returns what was set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            return NofileLimit(soft, target, soft, str(exc) or type(exc).__name__)
        return NofileLimit(target, target, soft)
    return NofileLimit(soft, hard, soft)


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20  # Linux's default nr_open


def open_fds() -> int:
    """Descriptors this process has open now (-1 where the system does not list
    them). A directory listing: call it at start, not per connection."""
    for d in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(d)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return -1


def reserve_for(limit: int) -> int:
    """Descriptors kept free of clients: for stored files, logs, the cluster link
    and the handshakes in flight (a twentieth of the limit, at least 32)."""
    return max(32, limit // 20)


@dataclass(slots=True)
class FdBudget:
    """Sockets a server holds against the descriptor limit (sans-I/O: the adapter
    reports each socket opened and closed, and asks before serving a client)."""

    limit: int
    #: descriptors open besides the counted sockets (listeners, logs, links)
    base: int
    reserve: int
    sockets: int = 0
    #: clients refused since the last report, and when that was (`refuse`)
    refused: int = 0
    reported: float = float("-inf")

    @classmethod
    def for_process(cls, limit: int | None = None) -> FdBudget | None:
        """The budget of this process at this moment (call it once the listeners
        are up), or None when the limit is unlimited or unknown."""
        if limit is None:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        base = open_fds()
        if limit == resource.RLIM_INFINITY or limit <= 0 or base < 0:
            return None
        return cls(limit, base, reserve_for(limit))

    def opened(self) -> None:
        self.sockets += 1

    def closed(self) -> None:
        self.sockets -= 1

    @property
    def in_use(self) -> int:
        return self.base + self.sockets

    @property
    def room(self) -> bool:
        """May the sockets held now (the newest included) be served?"""
        return self.in_use + self.reserve <= self.limit

    def describe(self) -> str:
        return (
            f"{self.in_use} of {self.limit} file descriptors in use ({self.sockets} by "
            f"client connections, {self.reserve} kept for files and links)"
        )

    def refuse(self, now: float, every: float = 60.0) -> int:
        """Count a client refused for want of room; returns how many to report now
        (the first at once, then at most one report per `every` seconds, so that a
        reconnect storm does not flood the log), else 0."""
        self.refused += 1
        if now - self.reported < every:
            return 0
        n, self.refused, self.reported = self.refused, 0, now
        return n
