"""`hotlink-relay`: run the relay (`serve`) or mint a user token (`token`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from hotlink import telemetry
from hotlink.common import sizes
from hotlink.common.argtypes import non_negative
from hotlink.common.fd_limit import raise_nofile_limit
from hotlink.common.loop import run_main
from hotlink.common.version import version_line
from hotlink.telemetry import names as N
from hotlink.wire.envelope import DEFAULT_MAX_MESSAGE, EVENTS_PATH

from . import store_cli
from .auth import AuthError
from .router import Limits
from .server import DEFAULT_MAX_BAD_MESSAGES, DEFAULT_MAX_CONNS_PER_USER
from .tls import TlsConfigError, server_context
from .token_cli import TOKEN_EPILOG, add_mint_arguments, mint_main, revoke_main


def parse_size(text: str) -> int:
    """`16777216`, `16MiB`, `512k` -> bytes (`hotlink.common.sizes`), at least 1 KiB."""
    return sizes.parse_size(text, minimum=1024)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotlink-relay",
        description="Hotlink relay: authenticates agents, checks ACLs and routes "
        "hotlink sessions and file writes between them over one WebSocket each.",
    )
    p.add_argument("--version", action="version", version=version_line("hotlink-relay"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "serve",
        help="run the relay",
        description="Run the relay. Once listening it prints exactly one line, "
        "'hotlink-relay listening on ws://HOST:PORT', to stdout. "
        f"WebSocket endpoint: {EVENTS_PATH}; health: GET /healthz. "
        "Each connected agent holds a file descriptor: the relay raises its soft limit "
        "to the hard one at start (logged), and past that limit, less a twentieth kept "
        "for files, new clients get HTTP 503 (raise it with ulimit -n or systemd's "
        "LimitNOFILE=).",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    s.add_argument(
        "--port", type=int, default=8080, help="port to bind; 0 picks a free one (default 8080)"
    )
    s.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="relay state: relay.secret (created 0600 on first start) and "
        "datasites/<owner>/... with files and syft.pub.yaml ACLs",
    )
    s.add_argument(
        "--max-message",
        type=parse_size,
        default=DEFAULT_MAX_MESSAGE,
        metavar="BYTES",
        help="largest WebSocket message accepted; larger ones close the connection "
        "with code 1009 (default 16MiB)",
    )
    s.add_argument(
        "--max-queue",
        type=parse_size,
        default=None,
        metavar="BYTES",
        help="bound of each connection's send queue; a client that lets it fill up "
        "(reads too slowly) is closed with code 1008 (default max(64MiB, 4 x --max-message))",
    )
    d = Limits()
    s.add_argument(
        "--max-sessions-per-user",
        type=non_negative(int),
        default=d.max_sessions_per_user,
        metavar="N",
        help="live sessions one user may send at once; an open over it gets "
        "Reject 'too many sessions' (default %(default)s; 0 = unlimited)",
    )
    s.add_argument(
        "--open-rate",
        type=non_negative(float),
        default=d.open_rate,
        metavar="PER_SEC",
        help="opens per second per connection (token bucket refill); an open over "
        "it gets Reject 'rate limited', the connection stays (default %(default)s; 0 = off)",
    )
    s.add_argument(
        "--open-burst",
        type=non_negative(int),
        default=d.open_burst,
        metavar="N",
        help="token bucket size for --open-rate (default %(default)s)",
    )
    s.add_argument(
        "--idle-timeout",
        type=non_negative(float),
        default=d.idle_timeout,
        metavar="SECONDS",
        help="a session with no data or control message for this long is closed: "
        "Close 'idle timeout' to its sender and readers (default %(default)s; 0 = never)",
    )
    s.add_argument(
        "--reader-stall-timeout",
        type=non_negative(float),
        default=d.reader_stall_timeout,
        metavar="SECONDS",
        help="a reader that confirms delivery, is behind the session's last frame and has "
        "confirmed nothing new for this long is dropped from the session ('reader stalled' "
        "to it and to the sender), so it cannot hold the sender's re-send window and the "
        "other readers (default %(default)s; 0 = never)",
    )
    s.add_argument(
        "--sid-grace",
        type=non_negative(float),
        default=d.sid_grace,
        metavar="SECONDS",
        help="an ended session's id stays reserved for its sender this long: nobody else "
        "can open a session under it (default %(default)s; 0 = not reserved)",
    )
    s.add_argument(
        "--nats",
        metavar="URL",
        default=os.environ.get("HOTLINK_NATS", ""),
        help="join a relay cluster through this NATS server (e.g. nats://127.0.0.1:4222; "
        "JetStream enabled, for the session registry). Every node of a cluster must "
        "share the same --data directory (relay.secret and ACL files). Without it the "
        "relay runs alone (env HOTLINK_NATS)",
    )
    s.add_argument(
        "--node-id",
        metavar="NAME",
        default=os.environ.get("HOTLINK_NODE_ID", ""),
        help="this node's name in the cluster: letters, digits, '-' and '_', unique "
        "per running node (default HOST-PID; env HOTLINK_NODE_ID)",
    )
    s.add_argument(
        "--max-connections-per-user",
        type=non_negative(int),
        default=DEFAULT_MAX_CONNS_PER_USER,
        metavar="N",
        help="WebSocket connections one user (token subject) may hold at once; one more "
        "is refused with HTTP 429 before the upgrade (default %(default)s; 0 = unlimited)",
    )
    s.add_argument(
        "--max-bad-messages",
        type=non_negative(int),
        default=DEFAULT_MAX_BAD_MESSAGES,
        metavar="N",
        help="undecodable or invalid messages after which a connection is dropped (each "
        "gets an Error 400 until then; default %(default)s; 0 = never)",
    )
    s.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve wss:// with this certificate chain (PEM); needs --tls-key. Without "
        "TLS, tokens and frames cross the network in clear: use it whenever agents "
        "connect from other hosts",
    )
    s.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert (PEM)")
    s.add_argument(
        "--log-level",
        default=os.environ.get("HOTLINK_LOG_LEVEL", "INFO"),
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (default INFO, env HOTLINK_LOG_LEVEL)",
    )
    store_cli.add_arguments(s)
    telemetry.add_arguments(s)

    t = sub.add_parser(
        "token",
        help="print a token for a user ('token revoke --help': revoke tokens)",
        description="Print a bearer token naming EMAIL (or write it 0600 to --out FILE), "
        "signed with DIR/relay.secret. "
        "Agents present it as 'Authorization: Bearer <token>'.",
        epilog=TOKEN_EPILOG,
    )
    add_mint_arguments(t)
    return p


async def _serve(args: argparse.Namespace) -> int:
    from .server import RelayServer

    limits = Limits(
        max_sessions_per_user=args.max_sessions_per_user,
        open_rate=args.open_rate,
        open_burst=args.open_burst,
        idle_timeout=args.idle_timeout,
        reader_stall_timeout=args.reader_stall_timeout,
        sid_grace=args.sid_grace,
    )
    ssl_ctx = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    tel = telemetry.setup(telemetry.options_from_args(args), service_name=N.SERVICE_RELAY)
    try:
        server = RelayServer(
            args.data,
            args.host,
            args.port,
            args.max_message,
            args.max_queue,
            limits=limits,
            tel=tel,
            ssl_context=ssl_ctx,
            max_conns_per_user=args.max_connections_per_user,
            max_bad_messages=args.max_bad_messages,
        )
        if args.nats:
            from .cluster import ClusterNode, default_node_id

            server.cluster = ClusterNode(server, args.nats, args.node_id or default_node_id())
        sweeper = store_cli.install(server, args)
        try:
            return await _serve_until_stopped(server)
        finally:
            sweeper.cancel()
    finally:
        tel.shutdown()  # export what is still queued


async def _serve_until_stopped(server: Any) -> int:
    from .server import format_url

    host, port = await server.start()
    url = format_url(host, port, tls=getattr(server, "ssl_context", None) is not None)
    print(f"hotlink-relay listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger(__name__).info("shutting down")
    await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["token", "revoke"]:
        return revoke_main(argv[2:])
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return mint_main(args)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if bool(args.tls_cert) != bool(args.tls_key):
        print("hotlink-relay: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    # One line per HTTP request is noise; and at DEBUG websockets logs every upgrade
    # request's headers, `Authorization: Bearer <token>` included: never below INFO.
    logging.getLogger("websockets").setLevel(
        logging.INFO if args.log_level == "DEBUG" else logging.WARNING
    )
    # every agent connected is a descriptor: a default soft limit of 1024 is a cap
    logging.getLogger("hotlink.relay.server").info("%s", raise_nofile_limit().describe())
    try:
        return run_main(_serve(args))
    except (AuthError, OSError, ValueError, TlsConfigError) as exc:
        print(f"hotlink-relay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
