"""Hotlink agent: one per peer, one WebSocket to the relay, session endpoints for apps.

Run: `hotlink-agent --server ws://HOST:PORT --email E --token-file F --root DIR`
(flags, `HOTLINK_*` env or a TOML file; see `hotlink-agent --help`). Control it over
gRPC (`hotlink.v1.HotlinkAgent`) on `DIR/.hotlink/agent.sock`.

Modules (decisions live in plain classes; adapters only move bytes):
- `config`      flag > env > TOML > default
- `transport`   the internal transport interface (WS relay link now, P2P later)
- `link`        WebSocket relay link: reconnect with backoff + jitter, sync send/receive
- `sessions`    session state machine and manager (sender queueing, reader delivery)
- `reorder`     sans-I/O bounded reorder buffer with gap timeout
- `ipc`         stream.sock / stream.tcp endpoints, per-app bounded writers
- `runtime_dir` private socket dir, long-path rule, pipe naming
- `pubsync`     uploads own syft.pub.yaml files
- `control`     grpc.aio servicer, health, reflection
- `tunnels/`    TCP tunnels over sessions (mux, adapters, manager; see its __init__)
- `app`, `cli`  wiring and entry point
"""
