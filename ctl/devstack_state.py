"""What `hotlinkctl devstack` records about a running stack (`D/devstack.json`).

The file is what `down`, `stop`, `start` and `status` work from, also in a later
process: each process's pid, the relay URL, each peer's root, control socket, token,
log and the extra flags it was started with (so a restarted process gets the same).
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hotlink.common.atomic import write_atomic

from .errors import CtlError, NotFound

STATE_FILE = "devstack.json"


@dataclass
class RelayInfo:
    url: str
    pid: int
    data: str
    log_file: str
    #: extra relay flags given to `up` (tracing; kept for `start`)
    args: list[str] = field(default_factory=list)


@dataclass
class PeerInfo:
    email: str
    root: str
    control: str
    pid: int
    token_file: str
    log_file: str
    #: extra agent flags given to `up` (kept for `start`)
    args: list[str] = field(default_factory=list)


@dataclass
class DevstackState:
    dir: str
    relay: RelayInfo | None = None
    peers: list[PeerInfo] = field(default_factory=list)
    started_unix: float = 0.0
    #: `--relays N`: nats-server, the relay nodes and each peer's node
    #: (ctl/devstack_cluster.py); None for the single relay
    cluster: dict[str, Any] | None = None

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        write_atomic(path, json.dumps(asdict(self), indent=2) + "\n", mode=0o644)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DevstackState:
        path = Path(directory) / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(
                f"no devstack in {directory} ({STATE_FILE} missing)",
                f"start one with: hotlinkctl devstack up --dir {shlex.quote(str(directory))}",
            ) from None
        except json.JSONDecodeError as exc:
            raise CtlError(f"{path} is not valid JSON: {exc}") from None
        rknown = set(RelayInfo.__dataclass_fields__)
        relay = (
            RelayInfo(**{k: v for k, v in raw["relay"].items() if k in rknown})
            if raw.get("relay")
            else None
        )
        known = set(PeerInfo.__dataclass_fields__)
        peers = [
            PeerInfo(**{k: v for k, v in p.items() if k in known}) for p in raw.get("peers", [])
        ]
        return cls(
            dir=str(directory),
            relay=relay,
            peers=peers,
            started_unix=raw.get("started_unix", 0.0),
            cluster=raw.get("cluster"),
        )

    def peer(self, email: str) -> PeerInfo:
        for p in self.peers:
            if p.email == email:
                return p
        raise NotFound(
            f"no peer {email} in the devstack at {self.dir}",
            "peers: " + ", ".join(p.email for p in self.peers),
        )
