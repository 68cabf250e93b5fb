"""When the exporter process does its work: held back while its traced process is busy.

Why: the exporters' CPU is the traced stack's tail. Even at SCHED_IDLE (a waking relay
or agent preempts them at once) an exporter that decodes, encodes and sends a batch
every few hundred milliseconds while the data path is busy keeps evicting the data
path's caches and takes the second core whenever it looks free for a moment: with the
three exporters stopped (SIGSTOP) during a traced bench, P99 fell from 1.4-1.8 ms to
~0.4 ms. Export latency is not user-visible (every record carries its own clock
stamps), so the exporter now only stores the pickled chunks its process hands over
(one `os.read` per chunk, no unpickling) and does all of the work in one go once its
process has handed over nothing for `idle` seconds: the data path has gone quiet.

Bounds, so that holding back never loses spans nor grows without limit: the held
chunks go out anyway when the oldest has waited `max_hold` seconds or they pass
`max_bytes`; a flush request and the end of input release everything at once.

Sans-I/O: `HoldBack` is told what arrived and when, and says when to release; the
exporter process (`exporter_process.main`) does the reading and the exporting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

IDLE_ENV = "HOTLINK_OTEL_EXPORT_IDLE"
MAX_HOLD_ENV = "HOTLINK_OTEL_EXPORT_MAX_HOLD"

#: seconds without new records after which the held chunks are exported. Longer than
#: the traced process's flush interval (`core.Telemetry`, 0.2 s), which hands over
#: records that often while it is busy.
DEFAULT_IDLE = 0.5
#: seconds the oldest held chunk may wait, however busy the data path stays
DEFAULT_MAX_HOLD = 10.0
#: held bytes (pickled records, ~60-100 bytes a compact record) that force a release
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class HoldBack:
    """Decides when held chunks of records are released for export."""

    idle: float = DEFAULT_IDLE
    max_hold: float = DEFAULT_MAX_HOLD
    max_bytes: int = DEFAULT_MAX_BYTES
    held_bytes: int = 0
    _first: float = 0.0  # when the oldest held chunk arrived
    _last: float = 0.0  # when the newest arrived

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HoldBack:
        """`HOTLINK_OTEL_EXPORT_IDLE` / `_MAX_HOLD` (seconds; 0 idle: export at once)."""
        e = os.environ if env is None else env
        return cls(
            idle=_seconds(e, IDLE_ENV, DEFAULT_IDLE),
            max_hold=_seconds(e, MAX_HOLD_ENV, DEFAULT_MAX_HOLD),
        )

    def arrived(self, nbytes: int, now: float) -> None:
        """A chunk of `nbytes` was stored."""
        if not self.held_bytes:
            self._first = now
        self._last = now
        self.held_bytes += nbytes

    def due(self, now: float) -> float | None:
        """Seconds until the held chunks must go out (None: nothing held)."""
        if not self.held_bytes:
            return None
        at = min(self._last + self.idle, self._first + self.max_hold)
        return max(0.0, at - now)

    def should_release(self, now: float) -> bool:
        if not self.held_bytes:
            return False
        return self.held_bytes >= self.max_bytes or self.due(now) == 0.0

    def released(self) -> None:
        """Everything held was handed to the sink."""
        self.held_bytes = 0


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected seconds, e.g. 0.5") from None
    if value < 0 or value != value:
        raise ValueError(f"{name}={raw!r}: expected seconds >= 0")
    return value
