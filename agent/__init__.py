"""Hotlink agent: one per peer, one WebSocket to the relay, session endpoints for apps.

Run: `hotlink-agent --server ws://HOST:PORT --email E --token-file F --root DIR`
(flags, `HOTLINK_*` env or a TOML file; see `hotlink-agent --help`). Control it over
gRPC (`hotlink.v1.HotlinkAgent`) on `DIR/.hotlink/agent.sock`.

Modules (decisions live in plain classes; adapters only move bytes):
- `config`      flag > env > TOML > default
- `transport`   the internal transport interface (WS relay link now, P2P later)
- `link`        WebSocket relay link: reconnect with backoff + jitter, sync send/receive
- `sessions`    session state machine and manager (sender queueing, reader delivery)
- `acks`        sans-I/O re-send plan of the sender after a reader's (re-)accept
- `fallback`    sans-I/O policy: which path (hotlink or files) a sender's frames take
- `filepath`    the file path: fallback files out, the reader's mirror in (disk thread)
- `watcher`     inotify watch for `.request` files apps write themselves
- `reorder`     sans-I/O bounded reorder buffer with gap timeout, and the stream merge
- `ipc`         stream.sock / stream.tcp endpoints, per-app bounded writers
- `peercred`    who owns the client end of a loopback TCP connection (/proc/net/tcp{,6})
- `budget`      the agent-wide byte bound on what reader apps have queued
- `control_auth` who may call the control API over `--control-tcp` (uid or bearer secret)
- `tls`         the relay link's TLS trust (`--ca-file`) and the ws:// cleartext warning
- `runtime_dir` private socket dir, long-path rule, pipe naming
- `state`       ROOT/.hotlink/state.json: open sessions survive a restart
- `pubsync`     uploads own syft.pub.yaml files
- `tracing`     the agent's OpenTelemetry spans (nothing on the data path when off)
- `control`     grpc.aio servicer, health, reflection
- `app`, `cli`  wiring and entry point
"""
