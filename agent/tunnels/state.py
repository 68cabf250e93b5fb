"""Tunnels survive agent restarts: `ROOT/.hotlink/tunnels.json`.

Kept apart from `state.json` (the sessions' file) because a tunnel is a client of
sessions: the session layer restores its sessions on its own, this file only says
which tunnels to set up again on top of them (and, on the expose side, which peers the
relay had admitted, so their links come back without waiting for a new accept). The
forward side stores the address it actually bound, so a `--listen HOST:0` tunnel comes
back on the same port. Written atomically (temp + rename, 0600) on every change: tunnels
change rarely, never per byte.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hotlink.common.atomic import write_atomic
from hotlink.common.hostport import split_hostport

log = logging.getLogger("hotlink.agent.tunnels")

VERSION = 1


@dataclass(slots=True)
class TunnelSpec:
    #: full datasite path `owner@x/rest` of the exposed folder
    path: str
    #: 1 forward (listen here), 2 expose (connect to the target here)
    side: int
    target: str = ""
    to: str = ""
    #: forward: the address asked for, and the one bound (port 0 resolved)
    listen: str = ""
    bound: str = ""
    allow_remote: bool = False
    fallback_mode: int = 0
    connect_timeout: float = 0.0
    #: receive window per connection; 0 = the agent's --tunnel-window
    window: int = 0
    #: expose: forwarders the relay admitted on the door session (informational: after
    #: a restart each must be admitted again)
    peers: list[str] = field(default_factory=list)
    created_ns: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TunnelSpec:
        names = {f.name for f in fields(cls)}
        spec = cls(**{k: v for k, v in d.items() if k in names})
        if not isinstance(spec.path, str) or "/" not in spec.path or spec.side not in (1, 2):
            raise ValueError(f"bad tunnel record {d!r}")
        # the address the restored tunnel listens on or connects to (a hand-edited file
        # must not stop the agent at start)
        split_hostport(str((spec.bound or spec.listen) if spec.side == 1 else spec.target))
        return spec


def save_tunnels(path: Path, specs: list[TunnelSpec]) -> None:
    text = json.dumps({"version": VERSION, "tunnels": [asdict(s) for s in specs]}, indent=1)
    try:
        write_atomic(path, text, mode=0o600)
    except OSError as exc:
        log.warning("cannot save tunnels in %s: %s", path, exc)


def load_tunnels(path: Path) -> list[TunnelSpec]:
    """Saved tunnels; a missing or unreadable file means none (logged, never fatal)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable tunnel file %s: %s", path, exc)
        return []
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        log.warning("ignoring tunnel file %s: unknown version", path)
        return []
    out: list[TunnelSpec] = []
    for d in raw.get("tunnels") or []:
        try:
            out.append(TunnelSpec.from_dict(d))
        except (TypeError, ValueError) as exc:
            log.warning("ignoring a tunnel record in %s: %s", path, exc)
    return out
