"""Subjects and payloads between relay nodes (sans-I/O).

Subjects (all under `PREFIX`, default `hotlink`):

- `hotlink.hb`             heartbeat of every node (JSON `{n, e}`: node, epoch)
- `hotlink.conn.<node>`    that node's agent connections: `up`, `down`, `snap` (JSON)
- `hotlink.ctl.<node>`     requests to that node (`snap?`: announce your connections)
- `hotlink.acl`            an ACL file changed in the shared data dir (JSON `{n, f}`)
- `hotlink.to.<node>`      a relay message for one agent connection on that node
- `hotlink.in.<node>`      a message of an agent on another node, for the session's
                           home node (accept, reject, close, progress)

The two routed subjects carry one binary payload: `len(origin) | origin | len(epoch) |
epoch | cid (4 bytes, big-endian) | kind (0 binary, 1 text) | the WebSocket message as
it is`, so a data frame crosses the cluster without being re-encoded. The epoch names
the node instance the connection id belongs to (on `to.`: the target's, as the sender
knows it; on `in.`: the origin's own): connection ids restart with a node, so a
message for or from a previous instance is dropped, never given to a new connection
that happens to have the same id.
"""

from __future__ import annotations

import json
from typing import Any

from hotlink.wire.errors import ProtocolError

PREFIX = "hotlink"
KIND_BINARY = 0
KIND_TEXT = 1


def hb_subject() -> str:
    return f"{PREFIX}.hb"


def conn_subject(node: str) -> str:
    return f"{PREFIX}.conn.{node}"


def ctl_subject(node: str) -> str:
    return f"{PREFIX}.ctl.{node}"


def acl_subject() -> str:
    return f"{PREFIX}.acl"


def file_subject() -> str:
    """A file of the shared store was written or deleted: `{n, e, p}`; or files below a
    folder were, too many to name one by one: `{n, e, d}` (re-read it from disk)."""
    return f"{PREFIX}.file"


def to_subject(node: str) -> str:
    return f"{PREFIX}.to.{node}"


def in_subject(node: str) -> str:
    return f"{PREFIX}.in.{node}"


def routed_head(origin: bytes, epoch: bytes, cid: int, text: bool) -> bytes:
    """Everything of a routed payload before the message itself."""
    return (
        bytes((len(origin),))
        + origin
        + bytes((len(epoch),))
        + epoch
        + cid.to_bytes(4, "big")
        + (b"\x01" if text else b"\x00")
    )


def parse_routed(payload: bytes) -> tuple[str, str, int, bytes | str]:
    """(origin node, epoch, connection id, message) of a routed payload."""
    try:
        n = payload[0]
        origin = payload[1 : 1 + n].decode()
        e = payload[1 + n]
        epoch = payload[2 + n : 2 + n + e].decode()
        at = 2 + n + e
        cid = int.from_bytes(payload[at : at + 4], "big")
        kind = payload[at + 4]
        body = payload[at + 5 :]
    except (IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad routed payload: {exc}") from None
    if kind == KIND_TEXT:
        return origin, epoch, cid, body.decode()
    return origin, epoch, cid, body


def pack_json(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


def unpack_json(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"bad cluster message: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad cluster message: not an object")
    return obj


def valid_node_id(name: str) -> bool:
    """A node id is one NATS subject token: letters, digits, `-` and `_`, <= 64."""
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "-_" for c in name) and name.isascii()
