"""Who may use a session id, and who may write a session's fallback files.

Two attacks need the same knowledge, "whose is this sid, and where is it":

- **Squatting.** A reader sees a sid in the Open the relay broadcasts. If the
  sender's agent goes away (the session ends with its connection), the reader could
  open a session of its own under that sid; the real sender's re-open would then be
  refused "session id in use" for good. So a sid stays reserved for its sender for
  `grace` seconds after its session ended (`SidRegistry.reserve`), and only that
  user may open it again meanwhile. (The agent also recovers from a refusal with a
  new sid; the reservation keeps its readers' resume state on the old one.)
- **Forged fallback frames.** A fallback file carries its session's sid and seq; a
  co-writer of the session's folder could store one and readers would replay it as
  the sender's frame (and drop the real one as a duplicate). `forgery` refuses, at
  store time, a fallback file for a live or reserved sid from anyone but its sender,
  and any `.request` file under a live session's folder from anyone but its sender.
  Readers check the relay's writer stamp too (`writers.py`), which also covers
  files stored while nothing here knew the sid (e.g. before a relay restart).

Sans-I/O: the router calls it with its clock; nothing here reads time or disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hotlink.wire.fallbackfile import peek_sid

#: how long a sid stays reserved for its sender after its session ended (seconds)
DEFAULT_GRACE = 24 * 3600.0
#: reservations kept per user; past it the user's oldest goes (a user churning
#: sessions costs bounded memory and can only evict its own)
MAX_RESERVED_PER_USER = 4096
REQUEST_SUFFIX = ".request"


@dataclass(slots=True, frozen=True)
class Reservation:
    owner: str
    path: str
    until: float


class SidRegistry:
    """Live sessions' folders (for the fallback-file check) and ended sessions' sids,
    reserved for their sender for a grace period."""

    def __init__(self, grace: float = DEFAULT_GRACE) -> None:
        self.grace = grace
        #: sid -> reservation of an ended session, oldest first (`until` grows with
        #: insertion, so expiry pops from the front)
        self.reserved: dict[str, Reservation] = {}
        #: user -> its reserved sids, oldest first
        self.by_owner: dict[str, dict[str, None]] = {}
        #: session folder -> {sid: sender} of the live sessions there
        self.live_paths: dict[str, dict[str, str]] = {}

    # --- life cycle (called by the router) ---------------------------------------

    def opened(self, sid: str, path: str, sender: str) -> None:
        self._unreserve(sid)
        self.live_paths.setdefault(path, {})[sid] = sender

    def _unreserve(self, sid: str) -> None:
        r = self.reserved.pop(sid, None)
        if r is None:
            return
        mine = self.by_owner.get(r.owner)
        if mine is not None:
            mine.pop(sid, None)
            if not mine:
                del self.by_owner[r.owner]

    def ended(self, sid: str, path: str, sender: str, now: float) -> None:
        on_path = self.live_paths.get(path)
        if on_path is not None:
            on_path.pop(sid, None)
            if not on_path:
                del self.live_paths[path]
        if self.grace <= 0:
            return
        self._unreserve(sid)
        self.reserved[sid] = Reservation(sender, path, now + self.grace)
        mine = self.by_owner.setdefault(sender, {})
        mine[sid] = None
        if len(mine) > MAX_RESERVED_PER_USER:
            self._unreserve(next(iter(mine)))

    def expire(self, now: float) -> None:
        gone = []
        for sid, r in self.reserved.items():
            if r.until > now:
                break
            gone.append(sid)
        for sid in gone:
            self._unreserve(sid)

    # --- checks --------------------------------------------------------------------

    def reserved_for(self, sid: str, now: float) -> str:
        """The user an ended session's sid is still reserved for ("" if none)."""
        r = self.reserved.get(sid)
        if r is None or r.until <= now:
            return ""
        return r.owner

    def forgery(
        self, user: str, path: str, content: bytes, live_sender: Callable[[str], str], now: float
    ) -> str:
        """Why `user` may not store `content` at `path` ("" if it may).

        `live_sender(sid)` is the sender of a live session ("" if none): the router's
        session table, passed as a lookup so nothing is copied."""
        sid = peek_sid(content)
        if sid is not None:
            owner = live_sender(sid) or self.reserved_for(sid, now)
            if owner and owner != user:
                return f"fallback file of session {sid!r}, which {user} does not send"
        if path.endswith(REQUEST_SUFFIX) and self.live_paths:
            folder = path
            while "/" in folder:
                folder = folder.rsplit("/", 1)[0]
                senders = self.live_paths.get(folder)
                if senders and user not in senders.values():
                    return f"{path} is in the folder of a live session that {user} does not send"
        return ""
