"""The direct peer link: TCP between two agents, AES-256-GCM records, keys via the relay.

Modules (decisions sans-I/O, one asyncio adapter; docs/design.md "Direct path:
handshake and records"):
- `keys`       ephemeral X25519 `LocalKey`, `DirectBinding` (sid, sender, reader, leg), tag
- `identity`   the agent's long-term Ed25519 `Identity`; what it signs for a leg
- `pins`       `PinStore`: peers' identity fingerprints, pinned on first use (peers.json)
- `handshake`  3-message handshake proving both ends hold this binding's keys (sans-I/O)
- `records`    `RecordCodec`: length-prefixed AES-GCM records, implicit counters (sans-I/O)
- `addresses`  "host:port" parsing and the default listen set (loopback + interfaces)
- `link`       asyncio: an established `DirectLink` and the per-connection handshake protocol
- `listener`   asyncio: `DirectListener` (expected links in, strangers refused and counted)
- `dial`       asyncio: `connect` (all candidates in parallel, first handshake wins)
- `transport`  the owner's one import: re-exports the above and `default_listen`
- `negotiator` who offers, answers and connects for a session's legs (sans-I/O, over
               HotlinkSignal through the relay)
- `service`    asyncio glue: one listener per agent, negotiators per session, links to
               the sessions' cores
"""
