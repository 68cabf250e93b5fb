"""`connect`: dial every candidate address of a peer at once, keep the first link."""

from __future__ import annotations

import asyncio

from .addresses import parse_address
from .handshake import Established, Failed, InitiatorHandshake
from .keys import DirectBinding, LocalKey
from .link import DirectLink, _HandshakeProtocol


class DirectConnectFailed(Exception):
    """No candidate completed the handshake; `reasons` maps candidate -> why."""

    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{c}: {r}" for c, r in reasons.items()) or "no candidates"
        super().__init__(f"direct link failed: {detail}")


async def connect(
    candidates: list[str],
    key: LocalKey,
    peer_public: bytes,
    binding: DirectBinding,
    timeout: float = 3.0,
) -> DirectLink:
    """Try every candidate at once; the first completed handshake wins, others are closed.

    Raises DirectConnectFailed (with a reason per candidate) once every candidate has
    failed or `timeout` seconds have passed, whichever comes first.
    """
    loop = asyncio.get_running_loop()
    unique = list(dict.fromkeys(candidates))
    reasons: dict[str, str] = {c: "not tried" for c in unique}
    winner: asyncio.Future[DirectLink] = loop.create_future()
    protos: list[_HandshakeProtocol] = []

    def on_done(candidate: str, proto: _HandshakeProtocol, result: Established | Failed) -> None:
        if isinstance(result, Failed):
            reasons[candidate] = result.reason
            proto.abort()
        elif winner.done():
            reasons[candidate] = "another candidate won"
            proto.abort()  # its Confirm was never written: the responder completes nothing
        else:
            reasons[candidate] = "connected"
            winner.set_result(proto.to_link(result, "initiator"))

    async def attempt(candidate: str) -> None:
        try:
            host, port = parse_address(candidate)
        except ValueError as exc:
            reasons[candidate] = str(exc)
            return

        def factory() -> _HandshakeProtocol:
            handshake = InitiatorHandshake(
                key, peer_public, binding, now=loop.time(), timeout=timeout
            )
            proto = _HandshakeProtocol(handshake, lambda p, r: on_done(candidate, p, r))
            protos.append(proto)
            return proto

        reasons[candidate] = "connecting"
        try:
            _, proto = await loop.create_connection(factory, host, port)
        except OSError as exc:
            reasons[candidate] = f"connect failed: {exc.strerror or exc}"
            return
        if not proto.reported:  # the reply may have been handled before we resumed
            reasons[candidate] = "no reply to Hello"
        await proto.finished

    tasks = [asyncio.ensure_future(attempt(c)) for c in unique]
    everything = asyncio.gather(*tasks)
    try:
        await asyncio.wait(
            [winner, everything], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if winner.done():
            return winner.result()
        for candidate, reason in reasons.items():
            if reason in ("connecting", "no reply to Hello", "not tried"):
                reasons[candidate] = f"no handshake within {timeout:g} s ({reason})"
        raise DirectConnectFailed(reasons)
    except BaseException:
        if winner.done() and not winner.cancelled():
            winner.result().close("connect cancelled", abort=True)
        raise
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(everything, return_exceptions=True)
        for proto in protos:
            if not proto.handed_over:
                proto.reported = True
                if not proto.finished.done():
                    proto.finished.set_result(None)
                proto.abort()
