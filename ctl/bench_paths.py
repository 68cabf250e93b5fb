"""`hotlinkctl bench --direct off,auto`: relay path and direct path in the same run.

One devstack per value, its agents started with `--direct VALUE`, the same session
opened in each. For `auto` the bench waits until the sender's agent reports the direct
link to the reader up before measuring, so a "direct" row is never the relay in
disguise. Every size and mode is then measured on the floor and on each stack seconds
apart, and `compare_paths` sets direct against relay (ratios < 1: direct is faster).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hotlink.v1 import agent_pb2 as pb

from . import devstack
from .agent_client import AgentClient
from .bench_channels import open_file_channel, open_hotlink_channel
from .bench_measure import Channel, ThroughputResult
from .bench_progress import Progress
from .errors import CtlError, Unavailable
from .stats import LatencySummary

if TYPE_CHECKING:
    from .bench import BenchConfig, BenchReport

#: `--direct` value -> the row label ("" = no flag given: one devstack as before)
PATH_LABELS = {"": "hotlink", "off": "relay", "auto": "direct"}
#: how long `auto` may take to bring the direct link up before the bench gives up
DIRECT_UP_TIMEOUT = 30.0


@dataclass
class BenchStack:
    """One measured devstack and the channel through it."""

    label: str
    direct: str = ""
    state: devstack.DevstackState | None = None
    own_dir: tempfile.TemporaryDirectory[str] | None = None
    chan: Channel | None = None

    async def close_channel(self) -> None:
        if self.chan is not None:
            with contextlib.suppress(Exception):
                await self.chan.close()

    def stop(self) -> None:
        """Stop the devstack if this bench started it."""
        if self.own_dir is not None:
            if self.state is not None:
                devstack.down_state(self.state)
            self.own_dir.cleanup()


async def start_stacks(
    cfg: BenchConfig,
    variants: list[str],
    files: bool,
    rel: str,
    progress: Progress,
    stacks: list[BenchStack],
    clients: list[AgentClient],
    notes: list[str],
) -> None:
    """Start (or load) a devstack per variant and open the channel; appends as it goes
    to `stacks` and `clients`, so the caller stops whatever started if one fails."""
    for variant in variants:
        stack = BenchStack("files" if files else PATH_LABELS[variant], variant)
        stacks.append(stack)
        if cfg.devstack_dir:
            stack.state = devstack.DevstackState.load(cfg.devstack_dir)
            progress.note(f"using the devstack in {cfg.devstack_dir}")
        else:
            stack.own_dir = tempfile.TemporaryDirectory(prefix="hlbench-", dir="/tmp")
            flag = f" (agents --direct {variant})" if variant else ""
            progress.note(f"starting a devstack in {stack.own_dir.name}{flag}")
            keep = ["--keep-files"] if files else []
            stack.state = await devstack.up(
                stack.own_dir.name, agent_args=keep, tls=cfg.tls, direct=variant or None
            )
        state = stack.state
        if len(state.peers) < 2:
            raise CtlError(f"the devstack in {state.dir} has fewer than two peers")
        a, b = state.peers[0], state.peers[1]
        ca, cb = AgentClient(a.control), AgentClient(b.control)
        clients += [ca, cb]
        if files:
            stack.chan = await open_file_channel(ca, a.email, cb, b.email, rel, notes=notes)
        else:
            stack.chan = await open_hotlink_channel(ca, a.email, cb, b.email, rel, ipc=cfg.ipc)
        stack.chan.processes = path_processes(state)
        if variant == "auto":
            progress.note("waiting for the direct link between the two agents")
            await wait_direct(ca, f"{a.email}/{rel}", b.email, DIRECT_UP_TIMEOUT)


def path_processes(state: devstack.DevstackState) -> tuple[tuple[str, int], ...]:
    """The processes a devstack's bench channel crosses (its first peer sends to its
    second), by role, for the bench's CPU per message: the sender's agent, the relay
    (in a cluster: the sender's node, NATS, the reader's node) and the reader's agent.
    A direct path crosses no relay: its relay rows show what the relay still does."""
    a, b = state.peers[0], state.peers[1]
    out = [("sender agent", a.pid)]
    if state.relay is not None:
        out.append(("relay", state.relay.pid))
    elif state.cluster is not None:
        nodes = {n["name"]: n["pid"] for n in state.cluster["nodes"]}
        place = state.cluster["placement"]
        first, second = place.get(a.email, ""), place.get(b.email, "")
        if first in nodes:
            out.append((first, nodes[first]))
        if second != first:  # across nodes: through NATS
            out.append(("nats-server", state.cluster["nats"]["pid"]))
            if second in nodes:
                out.append((second, nodes[second]))
    out.append(("reader agent", b.pid))
    return tuple(out)


def _direct_status(session: Any, reader: str) -> str:
    for peer in getattr(session, "direct", ()):
        if peer.peer == reader:
            return str(peer.status)
    return "no direct status reported"


async def wait_direct(sender: AgentClient, full: str, reader: str, timeout: float) -> None:
    """Until the sender's agent reports its direct link to `reader` up."""
    if "direct" not in pb.Session.DESCRIPTOR.fields_by_name:
        raise CtlError("this build's agent API has no direct path (Session.direct missing)")
    try:
        await sender.wait_session(
            full,
            lambda s: _direct_status(s, reader) == "up",
            timeout,
            f"the direct link to {reader}",
        )
    except Unavailable as exc:
        session = await sender.get_session(full)
        raise Unavailable(
            f"the direct link of {full} to {reader} did not come up within {timeout:g}s: "
            f"{_direct_status(session, reader)} ({exc.message})",
            "see the agents' logs in the devstack directory (logs/)",
        ) from None


@dataclass(frozen=True, slots=True)
class PathComparison:
    """Direct against relay for one size and mode (or for throughput: size 0)."""

    size: int
    mode: str
    relay: LatencySummary | None = None
    direct: LatencySummary | None = None
    relay_tp: ThroughputResult | None = None
    direct_tp: ThroughputResult | None = None

    def ratios(self) -> dict[str, float]:
        if self.relay is not None and self.direct is not None:
            return {
                "p50": round(self.direct.p50_ns / max(self.relay.p50_ns, 1), 3),
                "p99": round(self.direct.p99_ns / max(self.relay.p99_ns, 1), 3),
            }
        if self.relay_tp is not None and self.direct_tp is not None:
            return {
                "mb_per_s": round(self.direct_tp.mb_per_s / max(self.relay_tp.mb_per_s, 1e-9), 3)
            }
        return {}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"size": self.size, "mode": self.mode}
        if self.relay is not None and self.direct is not None:
            d["relay"] = {"p50_ns": self.relay.p50_ns, "p99_ns": self.relay.p99_ns,
                          "mb_per_s": round(self.relay.mb_per_s, 3)}  # fmt: skip
            d["direct"] = {"p50_ns": self.direct.p50_ns, "p99_ns": self.direct.p99_ns,
                           "mb_per_s": round(self.direct.mb_per_s, 3)}  # fmt: skip
        if self.relay_tp is not None and self.direct_tp is not None:
            d["relay"] = self.relay_tp.to_dict()
            d["direct"] = self.direct_tp.to_dict()
        d["direct_over_relay"] = self.ratios()
        return d


def compare_paths(report: BenchReport) -> list[PathComparison]:
    """Direct vs relay per size and mode, then throughput; empty unless both were run."""
    by_key: dict[tuple[int, str], dict[str, LatencySummary]] = {}
    for r in report.results:
        if r.path in ("relay", "direct"):
            by_key.setdefault((r.size, r.mode), {})[r.path] = r.hotlink
    out = [
        PathComparison(size, mode, pair["relay"], pair["direct"])
        for (size, mode), pair in by_key.items()
        if "relay" in pair and "direct" in pair
    ]
    tp = {t.path: t for t in report.throughput}
    if "relay" in tp and "direct" in tp:
        out.append(
            PathComparison(
                tp["relay"].frame_size, "throughput", relay_tp=tp["relay"], direct_tp=tp["direct"]
            )
        )
    return out
