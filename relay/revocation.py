"""Per-token revocation without rotating the relay secret: `DATA/revoked.json`.

The file holds token ids (`jti`, with their expiry so entries can be pruned once the
token would have expired anyway) and, per user, a time before which every token of
that user is revoked ("all tokens of bob issued up to now"):

    {"tokens": {"<jti>": <exp>}, "users": {"bob@example.org": <unix seconds>}}

`hotlink-relay token revoke` edits it (under an advisory lock, atomic replace); a
running relay notices the change by its mtime/size (`refresh`, a `stat` per
handshake and per tick), refuses new connections of revoked tokens and closes the
live ones. A file that cannot be parsed keeps the last good list in force (logged):
a typo must never un-revoke tokens.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hotlink.common.locks import file_lock

from .auth import TokenClaims

log = logging.getLogger("hotlink.relay.revocation")

REVOKED_FILE = "revoked.json"


@dataclass
class DenyList:
    tokens: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)

    def reason(self, c: TokenClaims) -> str | None:
        """Why a token is revoked, or None."""
        if c.jti and c.jti in self.tokens:
            return f"token {c.jti} revoked"
        before = self.users.get(c.sub)
        if before is not None and c.iat <= before:
            return f"tokens of {c.sub} issued up to {before} revoked"
        return None

    @classmethod
    def parse(cls, text: str) -> DenyList:
        raw = json.loads(text) if text.strip() else {}
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        tokens, users = raw.get("tokens", {}), raw.get("users", {})
        if not isinstance(tokens, dict) or not isinstance(users, dict):
            raise ValueError("'tokens' and 'users' must be objects")
        for v in (*tokens.values(), *users.values()):
            if type(v) is not int:
                raise ValueError("values must be unix seconds")
        return cls({str(k): v for k, v in tokens.items()}, {str(k): v for k, v in users.items()})

    def to_json(self) -> str:
        return json.dumps({"tokens": self.tokens, "users": self.users}, indent=1, sort_keys=True)


class Revocations:
    """The relay's view of `DATA/revoked.json`, reloaded when the file changes."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / REVOKED_FILE
        self.deny = DenyList()
        self._sig: tuple[int, int] | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Reload if the file changed; True if the list in force changed."""
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            sig = None
        except OSError as exc:
            log.warning("cannot stat %s: %s; the last list stays in force", self.path, exc)
            return False
        if sig == self._sig:
            return False
        self._sig = sig
        if sig is None:
            changed = bool(self.deny.tokens or self.deny.users)
            self.deny = DenyList()
            return changed
        try:
            new = DenyList.parse(self.path.read_text())
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable %s (%s); the last list stays in force", self.path, exc)
            return False
        changed = new != self.deny
        self.deny = new
        if changed:
            log.info(
                "revocation list loaded: %d token ids, %d users",
                len(new.tokens),
                len(new.users),
            )
        return changed

    def reason(self, c: TokenClaims) -> str | None:
        return self.deny.reason(c)


def revoke(
    data_dir: str | os.PathLike[str],
    *,
    tokens: dict[str, int] | None = None,
    users: list[str] | None = None,
    now: int | None = None,
) -> DenyList:
    """Add token ids (jti -> exp) and users (all their tokens issued up to `now`) to the
    deny list; entries of tokens already expired are pruned. Returns the new list."""
    d = Path(data_dir)
    now = int(time.time()) if now is None else now
    with file_lock(d / f".{REVOKED_FILE}.lock"):
        path = d / REVOKED_FILE
        try:
            deny = DenyList.parse(path.read_text())
        except FileNotFoundError:
            deny = DenyList()
        deny.tokens = {j: e for j, e in deny.tokens.items() if e > now}
        deny.tokens.update(tokens or {})
        for u in users or ():
            deny.users[u] = now
        tmp = path.with_name(f".{REVOKED_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(deny.to_json() + "\n")
        os.replace(tmp, path)
    return deny
