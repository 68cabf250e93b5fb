"""`hotlinkctl tunnel ...`: TCP tunnels over Hotlink (like `ssh -L`, per datasite path).

Registered by `cli.build_parser` through `register`; the agent plumbing (address,
event loop, client) comes in as `call` so this module never imports `cli`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from hotlink.v1 import agent_pb2 as pb

from . import output
from .client import AgentClient
from .errors import ExitCode
from .stats import parse_size

CallFn = Callable[[argparse.Namespace, Callable[[AgentClient], Awaitable[Any]]], Any]

DESCRIPTION = """\
Carry plain TCP connections between peers through their agents, with the ACLs,
fallback, ordering and tracing of sessions (like `ssh -L`, one tunnel per path).

owner (where the real server listens):
  hotlinkctl tunnel expose _mpc/mpyc/p0 --target 127.0.0.1:7000 [--to bob@example.org]
peer (where the client connects):
  hotlinkctl tunnel forward alice@example.org/_mpc/mpyc/p0 --listen 127.0.0.1:7100
  # the client now connects to 127.0.0.1:7100 instead of alice's host:7000

Only peers the relay lets read the path (the owner's syft.pub.yaml) get through;
connections that cannot be kept are reset on both ends, never left hanging.
"""

FALLBACK = {
    "off": pb.FALLBACK_MODE_OFF,
    "on-failure": pb.FALLBACK_MODE_ON_FAILURE,
    "tee": pb.FALLBACK_MODE_TEE,
}


def register(
    add: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser, call: CallFn
) -> argparse.ArgumentParser:
    p = add(
        "tunnel", "TCP tunnels: expose a local server, forward a peer's", _no_action, DESCRIPTION
    )
    sub = p.add_subparsers(dest="tunnel_action", metavar="ACTION")

    def sp(name: str, help: str, fn: Callable[[argparse.Namespace], int]) -> Any:
        q = sub.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        q.set_defaults(func=fn, _call=call)
        return q

    q = sp("expose", "owner side: connections forwarded to PATH go to --target", cmd_expose)
    q.add_argument("path", metavar="PATH", help="folder in your datasite, e.g. _mpc/mpyc/p0")
    q.add_argument(
        "--target",
        required=True,
        metavar="HOST:PORT",
        help="the real server; the agent connects only here",
    )
    q.add_argument("--to", metavar="EMAIL", help="admit only this peer (the ACL still applies)")
    _window_arg(q)
    _fallback_arg(q)

    q = sp("forward", "peer side: listen locally, carry connections to OWNER/PATH", cmd_forward)
    q.add_argument("path", metavar="OWNER/PATH", help="e.g. alice@example.org/_mpc/mpyc/p0")
    q.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where local clients connect (default 127.0.0.1:0: a free port, "
        "printed and shown by `tunnel ls`)",
    )
    q.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --listen address (anyone reaching it can use the tunnel as you)",
    )
    q.add_argument(
        "--connect-timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="reset a connection the owner has not answered in S s (default 15)",
    )
    _window_arg(q)
    _fallback_arg(q)

    q = sp("ls", "list tunnels with their peers and counters", cmd_ls)
    q = sp("close", "close the tunnel on PATH; its connections are reset", cmd_close)
    q.add_argument("path", metavar="PATH", help="as given to expose or forward")
    return p


def _window_arg(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--window",
        type=parse_size,
        default=0,
        metavar="BYTES",
        help="bytes the other end may have in flight per connection towards this agent "
        "(its memory bound per stream; e.g. 4MiB; default: the agent's --tunnel-window)",
    )


def _fallback_arg(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--fallback",
        choices=sorted(FALLBACK),
        default="on-failure",
        help="fallback mode of the tunnel's sessions (default on-failure)",
    )


def _no_action(args: argparse.Namespace) -> int:
    print(
        "hotlinkctl tunnel: choose an action: expose, forward, ls, close "
        "(hotlinkctl tunnel --help)",
        file=sys.stderr,
    )
    return ExitCode.USAGE


async def _open(c: AgentClient, req: pb.OpenTunnelRequest) -> pb.OpenTunnelResponse:
    return await c._call(f"tunnel {req.path}", c.stub.OpenTunnel(req, timeout=c.timeout + 10))


def cmd_expose(args: argparse.Namespace) -> int:
    req = pb.OpenTunnelRequest(
        path=args.path,
        target=args.target,
        to=args.to or "",
        fallback_mode=FALLBACK[args.fallback],
        window_bytes=args.window,
    )
    resp = args._call(args, lambda c: _open(c, req))
    return _show_opened(args, resp)


def cmd_forward(args: argparse.Namespace) -> int:
    req = pb.OpenTunnelRequest(
        path=args.path,
        listen=args.listen,
        allow_remote_listen=args.allow_remote,
        fallback_mode=FALLBACK[args.fallback],
        connect_timeout_seconds=args.connect_timeout,
        window_bytes=args.window,
    )
    resp = args._call(args, lambda c: _open(c, req))
    return _show_opened(args, resp)


def _show_opened(args: argparse.Namespace, resp: pb.OpenTunnelResponse) -> int:
    for w in resp.warnings:
        print(f"hotlinkctl: WARNING: {w}", file=sys.stderr, flush=True)
    t = resp.tunnel
    if args.json:
        output.dump_json(output.to_dict(t))
    elif t.side == pb.TUNNEL_SIDE_FORWARD:
        print(t.listen)
        print(f"forwarding {t.listen} -> {t.path} ({t.state})", file=sys.stderr)
    else:
        print(f"exposing {t.path} -> {t.target}" + (f" (only {t.to})" if t.to else ""))
    return ExitCode.OK


def cmd_ls(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> pb.ListTunnelsResponse:
        return await c._call(
            "list tunnels", c.stub.ListTunnels(pb.ListTunnelsRequest(), timeout=c.timeout)
        )

    resp = args._call(args, go)
    if args.json:
        output.dump_json({"tunnels": [output.to_dict(t) for t in resp.tunnels]})
    else:
        print(tunnels_table(list(resp.tunnels)))
    return ExitCode.OK


def cmd_close(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> pb.CloseTunnelResponse:
        return await c._call(
            f"close tunnel {args.path}",
            c.stub.CloseTunnel(pb.CloseTunnelRequest(path=args.path), timeout=c.timeout),
        )

    resp = args._call(args, go)
    if args.json:
        output.dump_json(output.to_dict(resp.tunnel))
    else:
        print(f"closed tunnel {resp.tunnel.path}")
    return ExitCode.OK


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def tunnels_table(tunnels: list[pb.Tunnel]) -> str:
    if not tunnels:
        return "no tunnels"
    rows = [
        (
            "SIDE",
            "PATH",
            "LOCAL",
            "STATE",
            "PEERS",
            "CONNS",
            "ACTIVE",
            "IN",
            "OUT",
            "RESETS",
            "REFUSED",
        )
    ]
    for t in tunnels:
        side = "forward" if t.side == pb.TUNNEL_SIDE_FORWARD else "expose"
        local = t.listen if t.side == pb.TUNNEL_SIDE_FORWARD else f"-> {t.target}"
        peers = ",".join(f"{p.email}({p.state})" for p in t.peers) or "-"
        c = t.counters
        rows.append(
            (
                side,
                t.path,
                local,
                t.state,
                peers,
                str(c.connections),
                str(c.active),
                _size(c.bytes_in),
                _size(c.bytes_out),
                str(c.resets),
                str(c.refused),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"{t.path}: {t.state}: {t.reason}" for t in tunnels if t.reason]
    lines += [
        f"{t.path}: last refused: {t.counters.last_refusal}"
        for t in tunnels
        if t.counters.last_refusal
    ]
    return "\n".join(lines)
