"""Shared sans-I/O protocol core: one codec used by the relay, the agent and the CLI.

- `frames`   HLNK IPC frames (apps <-> agent) and their incremental decoder.
- `messages` typed WS messages (dataclasses) with the reference's type numbers and keys.
- `envelope` the SyftBox WS envelope: `SB` + msgpack binary frames, legacy JSON text frames.
- `paths`    datasite-relative path validation.
- `errors`   `ProtocolError`, the one error type every decoder raises.
- `etag`     `etag_of`: the content etag (md5 hex, as the reference) on every route.
- `fallbackfile` the `HLFB` file a frame becomes on the file path (sid + one HLNK frame).
- `keys`     payload keys per message type and encoding (the reference's Go field names
  in msgpack for its untagged payloads); both spellings are read.
- `extensions` our protocol extensions, their negotiation at connect, and what a peer
  that did not announce one may receive (`for_peer`).
- `cookie`   the TCP endpoint's session cookie: file content and the `HLCK` preamble.

Nothing here does I/O or imports a network library (`tests/test_wire_pure.py`); the
websockets adapter helpers are in `hotlink.common.websocket`.
"""
