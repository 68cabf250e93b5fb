"""Relay cluster over NATS: several relay nodes serving one network.

Optional: `hotlink-relay serve --nats URL` attaches a `ClusterNode` to the server;
without it nothing of this package is imported and the relay's data path is the
single-node one. Design: docs/design.md "Relay cluster".

Modules:
- `membership` who is connected where; virtual connections, node loss (sans-I/O)
- `codec`      subjects and inter-node payloads (sans-I/O)
- `registry`   the session registry in JetStream KV
- `node`       `ClusterNode`, the asyncio/NATS adapter and its server hooks
- `publisher`  synchronous publishes; `RemotePeer`, an agent on another node
- `store_sync` keeps each node's store index in line with the shared store
"""

from __future__ import annotations

import os
import re
import socket

from .node import ClusterNode

__all__ = ["ClusterNode", "default_node_id"]


def default_node_id() -> str:
    """HOST-PID, reduced to what a NATS subject token allows."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:40] or "relay"
    return f"{host}-{os.getpid()}"
