"""A nats-py client with a fast path for routed frames, from its read loop."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def direct_client() -> Any:
    """A nats-py client that hands the payloads of chosen subscriptions (`direct`:
    subscription id -> function) to a plain function from its read loop, instead of
    queueing a `Msg` for a per-subscription task: one task switch less per routed
    frame. Relies on nats-py's `_process_msg` (pinned < 3 in pyproject.toml)."""
    from nats.aio.client import Client

    class DirectClient(Client):
        def __init__(self) -> None:
            super().__init__()
            self.direct: dict[int, Any] = {}

        async def _process_msg(
            self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> None:
            fn = self.direct.get(sid)
            if fn is None or headers:
                await super()._process_msg(sid, subject, reply, data, headers)
                return
            try:
                fn(data)
            except Exception:
                log.exception("cluster: internal error handling a routed message")

    return DirectClient()
