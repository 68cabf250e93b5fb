"""Which path a demo's tunnels really took: relay or direct.

A demo that prints a figure "through the direct path" must know the bytes went that
way, not assume it from the flag it passed. Two checks, both against what runs:
- `direct_flag_missing`: does the agent program the devstack starts accept
  `--direct off|auto` at all (an older build does not; it would refuse to start)?
- `tunnel_paths` / `wait_for_path`: the `active_path` the agents report for the
  sessions that carry the tunnels (their sender side: where new frames go).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections import Counter

from hotlink.v1 import agent_pb2 as pb

from . import devstack
from .client import AgentClient

#: the sessions of tunnels live under this area of the datasite (`agent.tunnels.naming`)
TUNNEL_AREA = "/_hotlink/tunnels/"
#: the enum value a direct-path build adds to `ActivePath`
DIRECT_NAME = "ACTIVE_PATH_DIRECT"
_FLAG = re.compile(r"(^|[\s,\[])--direct(?=[\s=,\]]|$)", re.M)


def direct_flag_missing(timeout: float = 30.0) -> str:
    """'' if the agent devstack would start takes `--direct`, else why not (shown to
    the user in place of the direct column)."""
    cmd = devstack.tool_command("hotlink-agent", "hotlink.agent.cli")
    try:
        r = subprocess.run(
            [*cmd, "--help"], capture_output=True, timeout=timeout, check=False, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot ask the agent for its options ({exc})"
    if r.returncode != 0:
        return f"`hotlink-agent --help` failed (exit {r.returncode})"
    if not _FLAG.search(r.stdout):
        return "this agent build has no --direct flag (no direct peer path in it)"
    try:
        pb.ActivePath.Value(DIRECT_NAME)
    except ValueError:
        return "this hotlinkctl's control API has no direct path (ActivePath lacks DIRECT)"
    return ""


def path_name(value: int) -> str:
    try:
        return pb.ActivePath.Name(value).removeprefix("ACTIVE_PATH_").lower()
    except ValueError:
        return str(value)


async def tunnel_paths(controls: list[str]) -> Counter[str]:
    """How many tunnel sender sessions on these agents are on each path right now."""
    seen: Counter[str] = Counter()
    for ctl in controls:
        async with AgentClient(ctl) as c:
            r = await c.stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
        for s in r.sessions:
            if TUNNEL_AREA in s.path and s.role == pb.ROLE_SENDER:
                seen[path_name(s.active_path)] += 1
    return seen


async def wait_for_path(
    controls: list[str], want: str, expect: int, timeout: float
) -> tuple[bool, Counter[str]]:
    """Until `expect` tunnel sessions are all on path `want` ('hotlink', 'direct'; ''
    for any path), or `timeout`; returns whether they got there and what was seen last."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await tunnel_paths(controls)
        total = sum(seen.values())
        if total >= expect and (not want or seen[want] == total):
            return True, seen
        if time.monotonic() >= deadline:
            return False, seen
        await asyncio.sleep(0.1)


def describe(seen: Counter[str]) -> str:
    return ", ".join(f"{n} on {p}" for p, n in sorted(seen.items())) or "no tunnel sessions"
