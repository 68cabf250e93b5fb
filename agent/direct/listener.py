"""`DirectListener`: accepts the direct links its owner announced, refuses the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from hotlink.common.hostport import join_hostport

from .handshake import DEFAULT_TIMEOUT, Established, Expected, Failed, ResponderHandshake
from .keys import DirectBinding, LocalKey, link_tag
from .link import DirectLink, _HandshakeProtocol, _peer_name

log = logging.getLogger("hotlink.agent.direct")

# Refused connections logged per window; the rest are counted and summarised.
REFUSAL_LOG_BURST = 10
REFUSAL_LOG_WINDOW = 60.0
# Connections in their handshake at once, per listener.
MAX_PENDING = 256


class _RefusalLog:
    """One log line per refused connection, at most REFUSAL_LOG_BURST per window."""

    def __init__(self) -> None:
        self._window_start = 0.0
        self._logged = 0
        self._suppressed = 0

    def refused(self, peer: str, reason: str, now: float) -> None:
        if now - self._window_start >= REFUSAL_LOG_WINDOW:
            if self._suppressed:
                log.warning(
                    "direct listener: %d more refused connections not logged", self._suppressed
                )
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged < REFUSAL_LOG_BURST:
            self._logged += 1
            log.warning("direct listener refused %s: %s", peer, reason)
        else:
            self._suppressed += 1


class _Overloaded(asyncio.Protocol):
    """Refuses a connection at once: too many handshakes are already in progress."""

    def __init__(self, listener: DirectListener) -> None:
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = _peer_name(transport)
        self._listener._refuse_now(peer, "too many handshakes in progress")
        transport.abort()  # type: ignore[attr-defined]


@dataclass(slots=True, eq=False)
class _Expectation:
    key: LocalKey
    peer_public: bytes
    binding: DirectBinding
    on_link: Callable[[DirectLink], None]


class DirectListener:
    """Accepts direct links the owner announced with `expect` and refuses everything else.

    An expectation is used once: the first connection that completes the handshake
    for it becomes a DirectLink handed to `on_link`, and the expectation is gone (a new
    link needs a new negotiation and fresh keys). `close()` stops listening and drops
    connections still in their handshake; established links belong to their owner.
    """

    def __init__(self, handshake_timeout: float, max_pending: int = MAX_PENDING) -> None:
        self.addresses: list[str] = []
        self.refused = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._expected: dict[bytes, _Expectation] = {}
        self._pending: set[_HandshakeProtocol] = set()
        self._timeout = handshake_timeout
        self._max_pending = max_pending
        self._refusals = _RefusalLog()
        self._closed = False

    @classmethod
    async def start(
        cls,
        listen: list[tuple[str, int]],
        *,
        handshake_timeout: float = DEFAULT_TIMEOUT,
        strict: bool = True,
        max_pending: int = MAX_PENDING,
    ) -> DirectListener:
        """Bind every address (port 0: one ephemeral port shared where possible).

        strict: any address that cannot be bound is an error (OSError naming it);
        otherwise it is logged and skipped, and only "nothing bound" is an error.
        max_pending: connections allowed in their handshake at once; more are refused
        at once (a flood of silent connections cannot pile up timers and sockets).
        """
        self = cls(handshake_timeout, max_pending)
        loop = asyncio.get_running_loop()
        shared_port = 0
        failures: list[str] = []
        for host, port in listen:
            tries = [shared_port, 0] if port == 0 and shared_port else [port]
            for attempt in tries:
                try:
                    server = await loop.create_server(
                        self._protocol, host, attempt, reuse_address=True
                    )
                except OSError as exc:
                    error = f"{join_hostport(host, port)}: {exc.strerror or exc}"
                    continue
                self._servers.append(server)
                for sock in server.sockets:
                    bound = sock.getsockname()
                    self.addresses.append(join_hostport(str(bound[0]), int(bound[1])))
                    if port == 0 and not shared_port:
                        shared_port = int(bound[1])
                break
            else:
                failures.append(error)
        if failures and (strict or not self._servers):
            await self.close()
            raise OSError(f"direct listener cannot bind {'; '.join(failures)}")
        for failure in failures:
            log.warning("direct listener skips %s", failure)
        return self

    def _protocol(self) -> asyncio.Protocol:
        loop = asyncio.get_running_loop()
        if len(self._pending) >= self._max_pending:
            return _Overloaded(self)
        handshake = ResponderHandshake(self._lookup, now=loop.time(), timeout=self._timeout)
        proto = _HandshakeProtocol(handshake, self._on_handshake)
        self._pending.add(proto)
        return proto

    def _lookup(self, tag: bytes) -> Expected | None:
        entry = self._expected.get(tag)
        return (entry.key, entry.peer_public, entry.binding) if entry else None

    def expect(
        self,
        key: LocalKey,
        peer_public: bytes,
        binding: DirectBinding,
        on_link: Callable[[DirectLink], None],
    ) -> None:
        """Accept one link from the holder of `peer_public`'s private half for `binding`."""
        if self._closed:
            raise RuntimeError("direct listener is closed")
        if len(peer_public) != len(key.public):
            raise ValueError("peer public key must be 32 bytes")
        self._expected[link_tag(key.public, peer_public)] = _Expectation(
            key, peer_public, binding, on_link
        )

    def forget(self, key: LocalKey) -> None:
        """Stop expecting links for `key` (idempotent; a link already up is unaffected)."""
        for tag in [t for t, e in self._expected.items() if e.key is key]:
            del self._expected[tag]

    def handshaking(self) -> int:
        """Connections in their handshake now."""
        return len(self._pending)

    def expecting(self) -> int:
        """How many links are announced and not yet connected."""
        return len(self._expected)

    def _on_handshake(self, proto: _HandshakeProtocol, result: Established | Failed) -> None:
        self._pending.discard(proto)
        handshake = proto.handshake
        assert isinstance(handshake, ResponderHandshake)
        if isinstance(result, Established):
            tag = handshake.tag
            entry = self._expected.get(tag) if tag is not None else None
            if entry is not None and entry.key is result.key:
                del self._expected[tag]  # type: ignore[arg-type]
                link = proto.to_link(result, "responder")
                log.info("direct link %s up from %s (responder)", result.binding.sid, link.peer)
                entry.on_link(link)
                return
            result = Failed("link no longer expected (already connected or forgotten)")
        if not result.refused:
            log.debug("direct listener: %s went away during the handshake", proto.peer)
            proto.abort()
            return
        self._refuse_now(proto.peer, result.reason)
        proto.abort()

    def _refuse_now(self, peer: str, reason: str) -> None:
        self.refused += 1
        self._refusals.refused(peer, reason, asyncio.get_running_loop().time())

    async def close(self) -> None:
        self._closed = True
        self._expected.clear()
        for server in self._servers:
            server.close()
        for proto in list(self._pending):
            proto.reported = True  # closing is not a refusal
            if not proto.finished.done():
                proto.finished.set_result(None)
            proto.abort()
        self._pending.clear()
        for server in self._servers:
            await server.wait_closed()
