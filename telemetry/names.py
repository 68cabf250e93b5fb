"""Span names, their kinds, and attribute keys: the vocabulary shared by all processes.

Call sites use these constants (not string literals) so a Jaeger search, the
`hotlinkctl trace` table and the tests all agree on spelling. `STAGE_ORDER` is the
order a message goes through the stages; the breakdown table prints stages in it.

Kinds are plain strings here (mapped to `SpanKind` only in the exporter) so this
module, like the rest of the hot-path code, imports nothing from OpenTelemetry.
"""

from __future__ import annotations

# Span kinds (OpenTelemetry SpanKind names).
INTERNAL = "INTERNAL"
SERVER = "SERVER"
CLIENT = "CLIENT"
PRODUCER = "PRODUCER"
CONSUMER = "CONSUMER"

# --- hotlink path: sender agent -> relay -> reader agent
HOTLINK_IPC_READ = "hotlink.ipc_read"  # sender agent: frame read from an app (origin)
HOTLINK_SEND = "hotlink.send"  # sender agent: frame encoded and handed to the WS
RELAY_ROUTE = "relay.route"  # relay: data decoded, routed, queued to the readers
HOTLINK_RECEIVE_WS = "hotlink.receive_ws"  # reader agent: WS message decoded
HOTLINK_IPC_WRITE = "hotlink.ipc_write"  # reader agent: frame written to the apps
#: reader agent: a frame decoded from the direct peer link (the relay is skipped: the
#: trace goes hotlink.send -> hotlink.receive_direct -> hotlink.ipc_write)
HOTLINK_RECEIVE_DIRECT = "hotlink.receive_direct"

# --- file (fallback) path; names as in SyftBox
WATCHER_DETECTED = "watcher.detected"  # sender agent: a .request file appeared (origin)
PRIORITY_SEND = "priority.send"  # sender agent: FileWrite sent
SERVER_HANDLE_FILE_WRITE = "server.handle_file_write"  # relay: check + store
SERVER_BROADCAST = "server.broadcast"  # relay: FileNotify queued to the readers
CLIENT_RECEIVE_WS = "client.receive_ws"  # reader agent: FileNotify decoded
CLIENT_WRITE_FILE = "client.write_file"  # reader agent: file written (and replayed)

# --- session lifecycle (rare: always sampled when tracing is on)
AGENT_SESSION_OPEN = "hotlink.session.open"
AGENT_SESSION_ACCEPT = "hotlink.session.accept"
AGENT_SESSION_REJECT = "hotlink.session.reject"
AGENT_SESSION_CLOSE = "hotlink.session.close"
RELAY_SESSION_OPEN = "relay.session.open"
RELAY_SESSION_ACCEPT = "relay.session.accept"
RELAY_SESSION_REJECT = "relay.session.reject"
RELAY_SESSION_CLOSE = "relay.session.close"

#: Default kind per span name (`Telemetry.record` uses it when no kind is given).
KINDS: dict[str, str] = {
    HOTLINK_IPC_READ: CONSUMER,
    HOTLINK_SEND: PRODUCER,
    RELAY_ROUTE: CONSUMER,
    HOTLINK_RECEIVE_WS: CONSUMER,
    HOTLINK_IPC_WRITE: PRODUCER,
    HOTLINK_RECEIVE_DIRECT: CONSUMER,
    WATCHER_DETECTED: INTERNAL,
    PRIORITY_SEND: PRODUCER,
    SERVER_HANDLE_FILE_WRITE: CONSUMER,
    SERVER_BROADCAST: PRODUCER,
    CLIENT_RECEIVE_WS: CONSUMER,
    CLIENT_WRITE_FILE: INTERNAL,
    AGENT_SESSION_OPEN: CLIENT,
    AGENT_SESSION_ACCEPT: CLIENT,
    AGENT_SESSION_REJECT: INTERNAL,
    AGENT_SESSION_CLOSE: CLIENT,
    RELAY_SESSION_OPEN: SERVER,
    RELAY_SESSION_ACCEPT: SERVER,
    RELAY_SESSION_REJECT: SERVER,
    RELAY_SESSION_CLOSE: SERVER,
}

HOTLINK_STAGES = (
    HOTLINK_IPC_READ,
    HOTLINK_SEND,
    RELAY_ROUTE,
    HOTLINK_RECEIVE_WS,
    HOTLINK_IPC_WRITE,
)
FILE_STAGES = (
    WATCHER_DETECTED,
    PRIORITY_SEND,
    SERVER_HANDLE_FILE_WRITE,
    SERVER_BROADCAST,
    CLIENT_RECEIVE_WS,
    CLIENT_WRITE_FILE,
)
STAGE_ORDER = HOTLINK_STAGES + FILE_STAGES

# --- resource attributes
SERVICE_AGENT = "hotlink-agent"
SERVICE_RELAY = "hotlink-relay"
#: The agent's own user (resource attribute of `hotlink-agent`).
RES_PEER_EMAIL = "hotlink.peer.email"

# --- span attributes (OTel messaging semantic conventions where they fit)
MESSAGING_SYSTEM = "messaging.system"  # always "hotlink"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"  # send | receive | process
MESSAGING_DESTINATION = "messaging.destination.name"  # the session path
MESSAGING_MESSAGE_ID = "messaging.message.id"  # WS envelope id
MESSAGING_BODY_SIZE = "messaging.message.body.size"  # payload bytes
SESSION_ID = "hotlink.session.id"
PATH = "hotlink.path"  # frame / file path (datasite-relative)
SEQ = "hotlink.seq"
SENDER = "hotlink.sender"  # sender's email
READER = "hotlink.reader"  # reader's email (one) ...
READERS = "hotlink.readers"  # ... or the fan-out list (relay)
TRANSPORT = "hotlink.transport"  # "hotlink" (stream) | "file" (fallback)
#: the path that carried a frame: "relay" | "direct" | "relay+direct" (sender, some
#: readers linked) | "files"; on every data-path span of the agents
ROUTE = "hotlink.route"
FALLBACK_MODE = "hotlink.fallback.mode"  # off | on-failure | tee
IPC_MODE = "hotlink.ipc.mode"  # unix | tcp
REASON = "hotlink.reason"  # reject / close reason
#: reader agent, hotlink.ipc_write: written | reorder (held for a gap) | backlog (no app
#: connected yet) | unknown session
DELIVERY = "hotlink.delivery"
APP_CONNECTIONS = "hotlink.app.connections"  # app connections the frame was written to

SYSTEM_VALUE = "hotlink"
