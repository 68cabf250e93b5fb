"""Hotlink relay: authenticates agents, routes session frames by ACL, stores files.

Run: `hotlink-relay serve --data DIR` (see `hotlink-relay serve --help`).

Modules (the decisions are in `router`, a sans-I/O class; `server` only moves bytes):
- `router`   connections, sessions, ACL checks: `handle -> Outgoing` (`forward`: a data
             frame's readers)
- `session`  `Session`, a live session as the router keeps it
- `lanes`    data frames of a session a connection already sends on, matched undecoded
             (`Router.forward_frame`)
- `file_routes` the router's FileWrite (store, fan-out), FileDelete and FileSync (catch-up)
- `quota`    per-datasite storage and file-count quota, per-user FileWrite byte rate
- `sync_index` the store's in-memory index by (mtime, path) per folder: catch-up pages
- `sync_cursor` sealed catch-up cursors (never name a file the caller cannot read)
- `retention` deletes old fallback files of ended sessions
- `store_cli` the `serve` flags of the store (quota, rate, retention) and their wiring
- `signal_routes` the router's HotlinkSignal route (direct-path negotiation between members)
- `upkeep_routes` the router's periodic `expire`: idle sessions, stalled readers
- `connection` `Conn` (one client as the router sees it) and `Outgoing`
- `sid_guard` session ids reserved for their sender; fallback files only from a session's sender
- `reader_guard` per-reader accept rate, low-seq resumes, dropping stalled readers
- `writers`  who wrote each stored fallback file (`DATA/fallback-writers.log`), for `wrt`
- `acl`      `syft.pub.yaml` parsing and the index answering "may U read/write P"
- `auth`     the relay secret and HMAC bearer tokens (`exp`, `jti`)
- `revocation` the deny list `DATA/revoked.json` (`token revoke`), reloaded when it changes
- `token_cli` `hotlink-relay token` (mint, `--init`, `--ttl`) and `token revoke`
- `tls`      the listener's TLS context (`--tls-cert`, `--tls-key`)
- `store`    atomic file storage under DATA/datasites
- `server`   websockets adapter: upgrade, auth, routing each message
- `peer`     one client connection's send path and bounded send queue
- `tracing`  the relay's OpenTelemetry spans, kept off the data path
- `cli`      `hotlink-relay serve | token`
- `cluster`  optional (`serve --nats`): several relay nodes over NATS, an adapter around
             the Router (`membership`, `codec`, `registry`, `node`,
             `store_sync`)
"""
