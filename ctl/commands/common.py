"""Plumbing shared by `hotlinkctl` commands: common options, finding the agent, running.

Kept apart from the command modules so each command group (sessions, ACLs, devstack,
bench, trace) can live in its own module without importing the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from hotlink.common.argtypes import non_negative
from hotlink.common.loop import run_main
from hotlink.v1 import agent_pb2 as pb

from ..agent_client import AgentClient, default_control_socket
from ..errors import UsageError

T = TypeVar("T")

#: argparse type of every duration flag: seconds, finite and >= 0 ("inf" is refused
#: with the reason instead of failing later as a deadline)
SECONDS = non_negative(float)

IPC_MODES = {"unix": pb.IPC_MODE_UNIX, "tcp": pb.IPC_MODE_TCP}
DIRECT_MODES = {
    "default": pb.DIRECT_MODE_UNSPECIFIED,
    "off": pb.DIRECT_MODE_OFF,
    "auto": pb.DIRECT_MODE_AUTO,
}

FALLBACK_MODES = {
    "off": pb.FALLBACK_MODE_OFF,
    "on-failure": pb.FALLBACK_MODE_ON_FAILURE,
    "tee": pb.FALLBACK_MODE_TEE,
}


def common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand.

    The subcommand copies use SUPPRESS defaults so they only override when given.
    """
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument(
        "--agent",
        default=d(None),
        metavar="ADDR",
        help="agent control address: socket path, unix:PATH or host:port (env HOTLINK_AGENT)",
    )
    p.add_argument(
        "--root",
        default=d(None),
        metavar="DIR",
        help="agent root; the control socket is DIR/.hotlink/agent.sock (env HOTLINK_ROOT)",
    )
    p.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    p.add_argument(
        "--rpc-timeout",
        type=SECONDS,
        default=d(10.0),
        metavar="S",
        help="seconds to wait for each control call (default 10)",
    )
    return p


def agent_address(args: argparse.Namespace) -> str:
    """--agent > --root > $HOTLINK_AGENT > $HOTLINK_ROOT."""
    if args.agent:
        return args.agent
    if args.root:
        return default_control_socket(args.root)
    if os.environ.get("HOTLINK_AGENT"):
        return os.environ["HOTLINK_AGENT"]
    if os.environ.get("HOTLINK_ROOT"):
        return default_control_socket(os.environ["HOTLINK_ROOT"])
    raise UsageError(
        "no agent given",
        "pass --agent SOCKET or --root ROOT, or set HOTLINK_ROOT (the agent's --root) "
        "or HOTLINK_AGENT",
    )


async def with_agent(args: argparse.Namespace, fn: Callable[[AgentClient], Awaitable[T]]) -> T:
    client = AgentClient(agent_address(args), timeout=args.rpc_timeout)
    try:
        return await fn(client)
    finally:
        await client.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Every subcommand's event loop: uvloop when available (`hotlink.common.loop`)."""
    return run_main(coro)


def say(args: argparse.Namespace, text: str) -> None:
    """Informational line for people: stderr, so stdout stays clean for data."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr, flush=True)
