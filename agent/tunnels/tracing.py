"""Spans for tunnel connections: one per connection (open to close), never per chunk.

`hotlink.tunnel.connection` runs from the moment the connection carries data both ways
to its end, with bytes each way and how it ended (an ERROR status when reset);
`hotlink.tunnel.refused` marks an open that never got through (target down, no answer).
"""

from __future__ import annotations

import time
from typing import Any

from hotlink.telemetry import names as N

from . import mux as M

SPAN_CONNECTION = "hotlink.tunnel.connection"
SPAN_REFUSED = "hotlink.tunnel.refused"
TUNNEL_PATH = "hotlink.tunnel.path"
TUNNEL_PEER = "hotlink.tunnel.peer"
TUNNEL_CONN = "hotlink.tunnel.connection_id"
BYTES_IN = "hotlink.tunnel.bytes_in"
BYTES_OUT = "hotlink.tunnel.bytes_out"


class TunnelTracer:
    def __init__(self, tel: Any) -> None:
        self.tel = tel
        self.started: dict[tuple[str, str, int], tuple[int, Any]] = {}

    def conn_event(self, path: str, peer: str, cid: int, e: M.Opened | M.Ended) -> None:
        key = (path, peer, cid)
        now = time.time_ns()
        if isinstance(e, M.Opened):
            self.started[key] = (now, self.tel.sample_lifecycle())
            return
        t0, ctx = self.started.pop(key, (now, None))
        attrs = {TUNNEL_PATH: path, TUNNEL_PEER: peer, TUNNEL_CONN: cid, N.REASON: e.reason}
        if ctx is None:  # never opened: refused
            self.tel.record(
                SPAN_REFUSED, self.tel.sample_lifecycle(), now, now, attrs, error=e.reason
            )
            return
        attrs[BYTES_IN] = e.bytes_in
        attrs[BYTES_OUT] = e.bytes_out
        self.tel.record(SPAN_CONNECTION, ctx, t0, now, attrs, error="" if e.clean else e.reason)
