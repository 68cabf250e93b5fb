"""asyncio adapter of the direct link: the one import for its owner.

Only moves bytes: every decision is in `handshake` (who may connect) and `records`
(what is accepted); docs/design.md "Direct path: handshake and records". The parts
live in `link` (an established link), `listener` and `dial`.
"""

from __future__ import annotations

from .addresses import default_listen
from .dial import DirectConnectFailed, connect
from .link import DirectLink, DirectLinkClosed
from .listener import DirectListener

__all__ = [
    "DirectConnectFailed",
    "DirectLink",
    "DirectLinkClosed",
    "DirectListener",
    "connect",
    "default_listen",
]
