"""Process-side helpers shared by the relay, the agent and `hotlinkctl`.

`hotlink.wire` is the pure codec (bytes in, messages out, no I/O); this package holds
what every process needs *around* it and must do the same way everywhere. Each module
is one idea and imports nothing from Hotlink outside this package (`ws_masked` builds
on `websocket`'s frame header), so any component may depend on it without an import
circle:

- `atomic`    `write_atomic` and `TMP_PREFIX`: temp file + rename, the one temp name
              every scanner skips
- `websocket` `DirectMessages`: whole WS messages straight from websockets' protocol
              callback (relay, agent link, benchmark floor); pins websockets' internals
- `ws_masked` `send_binary`, `MaskKeys`: a client's masked binary frame in one transport
              write, keys from a refilled urandom buffer (agent link, benchmark floor)
- `loop`      `run_main`: a process's main coroutine on uvloop when available, else asyncio
- `version`   `VERSION` from the installed package's metadata (pyproject.toml is the source)
- `sizes`     `parse_size`: `16MiB`, `512k`, `4096` for every byte-size flag, env or TOML key
- `hot_modules` `HOT_MODULES` (compiled by setup.py with mypyc) and `status()`: which of
              them run compiled, which as Python, which are stale
- `ports`     `free_port`: a port for a process that binds it itself (devstack's
              servers, MPyC parties, tests)
- `argtypes`  `non_negative`: argparse types for finite, non-negative numbers (relay
              and hotlinkctl flags)
- `hostport`  `split_hostport`, `join_hostport`: HOST:PORT by one set of rules (agent
              flags, tunnel and direct addresses, endpoint files, control addresses)
- `locks`     `acquire`, `file_lock`: an exclusive flock on a lock file (one agent per
              root, read-modify-write of peers.json and revoked.json)
- `fd_limit`  `raise_nofile_limit` (relay and agent start) and `FdBudget`: the relay's
              client sockets against the descriptor limit (HTTP 503 past it, not a
              silent drop)
"""
