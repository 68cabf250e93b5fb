"""gRPC methods for tunnels (`OpenTunnel`, `CloseTunnel`, `ListTunnels`, and the
tunnels in `GetStatus`), mixed into the agent's servicer so the session servicer in
`agent/control.py` needs no tunnel code."""

from __future__ import annotations

from typing import Any

import grpc
from hotlink.v1 import agent_pb2 as pb

from ..control import _CODES, ControlServicer
from ..open_args import SessionError
from .manager import Tunnel, TunnelManager


def counters_to_proto(c: Any) -> pb.TunnelCounters:
    return pb.TunnelCounters(
        connections=c.connections,
        active=max(0, c.active),
        bytes_in=c.bytes_in,
        bytes_out=c.bytes_out,
        resets=c.resets,
        refused=c.refused,
        last_refusal=c.last_refusal,
    )


def self_window(t: Tunnel) -> int:
    return next((link.window for link in t.links.values()), 0)


def tunnel_to_proto(t: Tunnel, link: str = "") -> pb.Tunnel:
    """`link`: why the relay link is not up ("" when it is). A tunnel whose pipes are
    ready still carries nothing then: its sessions wait for the link."""
    s = t.spec
    state, reason = t.state, t.reason
    if link and state == "ready":
        state, reason = "waiting", f"relay link {link}: connections wait for it"
    return pb.Tunnel(
        path=s.path,
        side=s.side,
        target=s.target,
        to=s.to,
        listen=s.bound,
        state=state,
        reason=reason,
        peers=[
            pb.TunnelPeer(
                email=p,
                state=link.state,
                reason=link.reason,
                counters=counters_to_proto(link.counters),
            )
            for p, link in sorted(t.links.items())
        ],
        counters=counters_to_proto(t.totals()),
        fallback_mode=s.fallback_mode or pb.FALLBACK_MODE_ON_FAILURE,
        opened_unix_nano=s.created_ns,
        connect_timeout_seconds=s.connect_timeout or 15.0,
        window_bytes=s.window or self_window(t),
    )


class TunnelServicer(ControlServicer):
    """The agent's servicer: sessions (inherited) plus tunnels."""

    tunnels: TunnelManager

    def _link_problem(self) -> str:
        link = self.mgr.link
        return "" if link.up else f"is {link.state.name.lower()}"

    def with_tunnels(self, tunnels: TunnelManager) -> TunnelServicer:
        self.tunnels = tunnels
        return self

    async def _tabort(self, context: Any, exc: SessionError) -> None:
        await context.abort(_CODES.get(exc.code, grpc.StatusCode.INTERNAL), str(exc))

    async def OpenTunnel(self, request: pb.OpenTunnelRequest, context: Any) -> Any:
        try:
            t = await self.tunnels.open(
                request.path,
                target=request.target,
                to=request.to,
                listen=request.listen,
                allow_remote=request.allow_remote_listen,
                fallback_mode=request.fallback_mode,
                connect_timeout=request.connect_timeout_seconds,
                window=request.window_bytes,
            )
        except SessionError as exc:
            await self._tabort(context, exc)
            raise AssertionError("unreachable") from None
        return pb.OpenTunnelResponse(
            tunnel=tunnel_to_proto(t, self._link_problem()), warnings=t.warnings
        )

    async def CloseTunnel(self, request: pb.CloseTunnelRequest, context: Any) -> Any:
        try:
            t = await self.tunnels.close(request.path)
        except SessionError as exc:
            await self._tabort(context, exc)
            raise AssertionError("unreachable") from None
        return pb.CloseTunnelResponse(tunnel=tunnel_to_proto(t, self._link_problem()))

    async def CloseSession(self, request: pb.CloseSessionRequest, context: Any) -> Any:
        try:
            why = self.tunnels.owner_of(self._find(request.session).path)
        except SessionError as exc:
            await self._tabort(context, exc)
            raise AssertionError("unreachable") from None
        if why:
            await self._abort(context, SessionError(SessionError.PRECONDITION, why))
        return await super().CloseSession(request, context)

    async def ListTunnels(self, request: pb.ListTunnelsRequest, context: Any) -> Any:
        link = self._link_problem()
        return pb.ListTunnelsResponse(
            tunnels=[tunnel_to_proto(t, link) for t in self.tunnels.list()]
        )

    async def GetStatus(self, request: pb.GetStatusRequest, context: Any) -> Any:
        resp = await super().GetStatus(request, context)
        link = self._link_problem()
        resp.tunnels.extend(tunnel_to_proto(t, link) for t in self.tunnels.list())
        return resp
