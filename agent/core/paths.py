"""Paths and the policy that picks one per frame (pure; part of the agent core).

A *path* is a way for a session's frames to travel: the relay WebSocket
(`PathId.HOTLINK`), fallback files (`PathId.FILES`) and direct peer links
(`PathId.DIRECT`, `sender_direct.py`: the policy's `hotlink_ready` input is "the
relay or every reader's direct link can carry frames"). The sender's core asks the
policy for the active path once per batch of app frames and for every switch; the
reader merges whatever paths deliver by seq (`reorder.StreamMerge`). A new path (a
direct peer link) is a new `PathId` value, a new readiness input of `update()`, and a
new adapter that carries `Transmit(path)` effects, not edits all over the streams.

Modes (values match `hotlink.v1.FallbackMode`):

- OFF: hotlink only. Frames that cannot be sent wait in the session's bounded queue;
  a full queue pauses the apps (back-pressure).
- ON_FAILURE (default): hotlink while it works; while it does not (relay unreachable,
  session not accepted by any reader, send failure) every frame is written as a
  fallback file and travels by the file path.
- TEE: like ON_FAILURE, and while on the hotlink every frame is also written as a file
  in the background (audit / replay); a full background queue skips copies instead of
  slowing the hotlink.

Switching back is the delicate part: frames already handed to the file path must reach
the relay before the first hotlink frame after them, or a reader could see seq N+100 by
hotlink long before seq N by file and overflow its reorder window. So the policy only
returns to the hotlink once the session's file backlog is empty (every fallback file
written and acknowledged by the relay). On one relay connection the relay handles the
stored-and-broadcast files before the next data frame, so readers get them in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FallbackMode(enum.IntEnum):
    OFF = 1
    ON_FAILURE = 2
    TEE = 3


class ActivePath(enum.IntEnum):
    """Values match `hotlink.v1.ActivePath`."""

    HOTLINK = 1
    FILES = 2
    #: direct peer links to every reader (`sender_direct.DirectSenderStream`); the
    #: policy sees it as the online path (`hotlink_ready` includes direct readiness)
    DIRECT = 3


#: the path concept under its own name (`ActivePath` is the control API's name for it)
PathId = ActivePath


def normalize_mode(value: int) -> FallbackMode:
    """0 (unspecified) is ON_FAILURE; unknown values raise ValueError."""
    return FallbackMode(value or FallbackMode.ON_FAILURE)


@dataclass(slots=True)
class Switch:
    """A path change, for the event stream and the log."""

    to: ActivePath
    reason: str


@dataclass(slots=True)
class FallbackPolicy:
    mode: FallbackMode = FallbackMode.ON_FAILURE
    active: ActivePath = ActivePath.HOTLINK
    switches: int = 0

    @property
    def files_allowed(self) -> bool:
        return self.mode is not FallbackMode.OFF

    @property
    def tee(self) -> bool:
        return self.mode is FallbackMode.TEE

    def update(self, hotlink_ready: bool, backlog: int, why: str = "") -> Switch | None:
        """Re-evaluate after any input changed; returns the switch, if one happened.

        `hotlink_ready`: link up, session open on the relay, at least one reader.
        `backlog`: this session's frames on the file path not yet acknowledged.
        """
        if self.mode is FallbackMode.OFF:
            return self._go(ActivePath.HOTLINK, "fallback mode off") if self.files else None
        if self.active is ActivePath.HOTLINK:
            if not hotlink_ready:
                return self._go(ActivePath.FILES, why or "hotlink unavailable")
            return None
        if hotlink_ready and backlog == 0:
            return self._go(ActivePath.HOTLINK, why or "hotlink available, file backlog sent")
        return None

    def send_failed(self, why: str) -> Switch | None:
        """A hotlink send raised: leave the hotlink at once (if files are allowed)."""
        if self.mode is FallbackMode.OFF or self.active is ActivePath.FILES:
            return None
        return self._go(ActivePath.FILES, why)

    def set_mode(self, mode: FallbackMode, hotlink_ready: bool, backlog: int) -> Switch | None:
        self.mode = mode
        return self.update(hotlink_ready, backlog, f"fallback mode set to {mode.name}")

    @property
    def files(self) -> bool:
        return self.active is ActivePath.FILES

    def _go(self, to: ActivePath, reason: str) -> Switch:
        self.active = to
        self.switches += 1
        return Switch(to, reason)
