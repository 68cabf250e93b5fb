"""Hotlink agent: one per peer, one WebSocket to the relay, session endpoints for apps.

Run: `hotlink-agent --server ws://HOST:PORT --email E --token-file F --root DIR`
(flags, `HOTLINK_*` env or a TOML file; see `hotlink-agent --help`). Control it over
gRPC (`hotlink.v1.HotlinkAgent`) on `DIR/.hotlink/agent.sock`.

Modules (decisions live in plain classes; adapters only move bytes; docs/design.md
"Agent core and adapters"):
- `core`        sans-I/O session core (package): `state` (transition table), `paths` (path
                policy), `effects`, `sender` + `sender_files`, `reader`, `limits`, `names`
- `session`     a session adapter's common part: endpoint, timer, effects carried out
- `sender_session` / `reader_session`  the adapters around the sender / reader core
- `sessions`    the manager: the sessions by path and sid, async control plane
- `relay_messages` the manager's other half: each relay message to its session
- `open_args`   OpenSession argument checks, path -> role, `SessionError`
- `filepath`    fallback files out, mirror in, uploads (adapter of the file path)
- `safe_files`  reading/writing inside a datasite: no symlink, FIFO or folder followed
- `held_files`  relay copies of fallback files to delete once the named reader has them
- `mirror_policy` which remote files are written to disk (sessions, --subscribe) and the
                mirror's byte bounds
- `diskqueue`   the file path's one disk thread
- `reorder`     sans-I/O bounded reorder buffer with gap timeout, and the stream merge
- `acks`        sans-I/O re-send plan of the sender after a reader's (re-)accept
- `transport`   the internal transport interface (WS relay link now, P2P later)
- `link`        WebSocket relay link: reconnect with backoff + jitter, sync send/receive
- `ipc`         stream.sock / stream.tcp endpoints, per-app bounded writers
- `appnames`    frame names apps write (full datasite path or session-relative)
- `peercred`    who owns the client end of a loopback TCP connection (/proc/net/tcp{,6})
- `budget`      the agent-wide byte bound on what reader apps have queued
- `control_auth` who may call the control API over `--control-tcp` (uid or bearer secret)
- `tls`         the relay link's TLS trust (`--ca-file`) and the ws:// cleartext warning
- `runtime_dir` private socket dir, long-path rule, pipe naming
- `state`       ROOT/.hotlink/state.json: open sessions survive a restart
- `pending`     what a PENDING session waits for, in words a user can act on
- `tokenfile`   token file checks at start: permissions, the token's user
- `tracing`     the agent's OpenTelemetry spans (nothing on the data path when off)
- `pubsync`     uploads own syft.pub.yaml files (at once on a watcher event)
- `watcher`     watch for `.request` files apps write and changed ACL files
- `inotify`     the watcher's Linux backend: inotify read from the event loop, no thread
- `control`     grpc.aio servicer, health, reflection
- `reflection`  gRPC reflection under both v1 and v1alpha
- `config`      flag > env > TOML > default; `config_values` reads each option's value
- `tunnels`     TCP tunnels over sessions (mux, adapters, manager; see its __init__)
- `direct`      the direct peer link: handshake, AES-GCM records, TCP adapter (see its __init__)
- `app`, `cli`  wiring and entry point
"""
