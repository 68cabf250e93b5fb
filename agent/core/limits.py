"""Bounds the stream cores enforce, and the agent-wide counters they add to.

Plain data handed in by the adapter (built from `AgentConfig`), so the cores never
read configuration or globals.
"""

from __future__ import annotations

from dataclasses import dataclass

#: bytes of envelope, keys, sid and seq around a HotlinkData payload (generous)
ENVELOPE_SLACK = 256


@dataclass(slots=True, frozen=True)
class StreamLimits:
    max_message: int = 16 * 1024 * 1024
    send_queue_frames: int = 10_000
    send_queue_bytes: int = 64 * 1024 * 1024
    resend_frames: int = 8192
    resend_bytes: int = 64 * 1024 * 1024
    reorder_window: int = 4096
    reorder_timeout: float = 2.0
    reader_queue: int = 4096
    reader_queue_bytes: int = 64 * 1024 * 1024


@dataclass(slots=True)
class Totals:
    """Agent-wide counters (GetStatus); every stream of the agent adds to the same one."""

    frames_out: int = 0
    bytes_out: int = 0
    drops: int = 0
