"""The one internal interface between sessions and whatever carries their messages.

The WS relay link (`link.WsLink`) implements it today; a P2P path will implement the
same interface later, so the session layer never knows which one it talks to.

Contract:
- `send(msg)` is synchronous and never blocks: it writes the encoded message to the
  connection (or raises `LinkDown`). Callers check `writable` first on the data path;
  when it is False the transport's write buffer is over its high-water mark and the
  caller should hold frames until `TransportListener.on_writable()`.
- Events reach the listener synchronously from the event loop: `on_link_up()` after a
  connection is established, `on_message(envelope)` for every message in arrival
  order, `on_link_down(reason)` when it drops (the transport reconnects by itself).
"""

from __future__ import annotations

import abc
import enum
from typing import Protocol

from hotlink.wire.envelope import Envelope, new_id
from hotlink.wire.messages import Message


class LinkState(enum.IntEnum):
    """Values match `hotlink.v1.LinkState`."""

    DOWN = 1
    CONNECTING = 2
    UP = 3


class LinkDown(ConnectionError):
    """The transport has no connection right now."""


class TransportListener(Protocol):
    def on_link_up(self) -> None: ...

    def on_link_down(self, reason: str) -> None: ...

    def on_message(self, env: Envelope) -> None: ...

    def on_writable(self) -> None: ...


class Transport(abc.ABC):
    state: LinkState = LinkState.DOWN
    #: wall-clock ns of the last state change
    since_ns: int = 0
    last_error: str = ""
    reconnects: int = 0
    #: the relay URL in use now, or tried next ("" where there is none)
    url: str = ""

    @abc.abstractmethod
    def set_listener(self, listener: TransportListener) -> None: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin connecting (returns at once; connection state arrives as events)."""

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @property
    @abc.abstractmethod
    def writable(self) -> bool:
        """True when up and the write buffer is below its high-water mark."""

    @abc.abstractmethod
    def send(self, msg: Message, id: str | None = None) -> str:
        """Encode and write one message; return its message id. Raises `LinkDown`."""

    def next_id(self) -> str:
        """A fresh message id for a message this transport's owner sends another way
        (the direct links); `WsLink` draws no random number per id."""
        return new_id()

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP
