"""`hotlinkctl devstack up --relays N`: nats-server and N relay nodes in one cluster.

The nodes share the devstack's relay data directory (one relay.secret, one ACL tree:
docs/design.md "Relay cluster"), each with `--nats` and `--node-id relay-I`; peer i
connects to node i mod N first and lists the other nodes after it (the agent tries
them in order). devstack.json records it under `cluster`:

    {"nats": {"url", "pid", "store", "log_file"},
     "nodes": [{"name": "relay-0", "url", "pid", "data", "log_file", "args"}, ...],
     "placement": {"alice@example.org": "relay-0", ...}}

`devstack stop/start relay-N` (and `nats`) act on one node; `down` stops them all.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hotlink.common.ports import free_port

from . import devstack as ds
from .errors import CtlError, NotFound, Unavailable

NATS_HINT = "install it (Debian/Ubuntu: apt-get install nats-server) or put nats-server on PATH"


def nats_binary() -> str:
    found = shutil.which("nats-server")
    if found is None and Path("/usr/sbin/nats-server").exists():
        found = "/usr/sbin/nats-server"  # Debian installs it outside a user's PATH
    if found is None:
        raise Unavailable("nats-server not found; --relays N needs it", NATS_HINT)
    return found


def _nats_argv(binary: str, port: int, store: str) -> list[str]:
    # the server name puts "hotlink" in its command line: `stop_pid`'s PID-reuse guard
    return [
        binary,
        "-n",
        "hotlink-devstack-nats",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-js",
        "-sd",
        store,
    ]


async def _wait_port(port: int, pid: int, log_file: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not ds.pid_alive(pid):
            raise Unavailable(
                f"nats-server exited before listening; last lines of {log_file}:\n"
                f"{ds.log_tail(log_file)}"
            )
        await asyncio.sleep(0.05)
    raise Unavailable(f"nats-server did not listen on port {port} within {timeout:g}s")


async def _start_nats(nats: dict[str, Any], timeout: float) -> int:
    argv = _nats_argv(nats_binary(), nats["port"], nats["store"])
    log = Path(nats["log_file"])
    ds._write_header(log, argv)
    proc = ds._spawn(argv, log)
    nats["pid"] = proc.pid
    await _wait_port(nats["port"], proc.pid, log, timeout)
    return proc.pid


def _node_argv(node: dict[str, Any], port: int, nats_url: str) -> list[str]:
    cmd = ds.tool_command("hotlink-relay", "hotlink.relay.cli")
    extra = ["--nats", nats_url, "--node-id", node["name"], *node["args"]]
    return ds._relay_argv(cmd, port, Path(node["data"]), extra=extra)


async def _start_node(
    node: dict[str, Any], port: int, nats_url: str, timeout: float, offset: int = 0
) -> str:
    argv = _node_argv(node, port, nats_url)
    log = Path(node["log_file"])
    ds._write_header(log, argv)
    proc = ds._spawn(argv, log)
    node["pid"] = proc.pid
    return await ds._wait_relay(proc, log, timeout, offset)


async def _wait_joined(nodes: list[dict[str, Any]], timeout: float) -> None:
    """Every node has seen every other node join (heartbeats exchanged)."""
    deadline = time.monotonic() + timeout
    for n in nodes:
        for other in nodes:
            if other is n:
                continue
            want = f"cluster: node {other['name']} joined"
            while want not in Path(n["log_file"]).read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{n['name']} did not see {other['name']} join within {timeout:g}s; "
                        f"last lines of {n['log_file']}:\n{ds.log_tail(n['log_file'])}"
                    )
                await asyncio.sleep(0.05)


async def up(
    state: ds.DevstackState,
    data: Path,
    logs: Path,
    relays: int,
    peers: list[str],
    log_level: str,
    extra: list[str],
    timeout: float,
) -> dict[str, Any]:
    """Start nats-server and `relays` nodes; records into `state.cluster` as it goes
    (so a failure half-way is cleaned up by `down`)."""
    binary = nats_binary()
    d = Path(state.dir)
    port = free_port()
    cluster: dict[str, Any] = {
        "nats": {
            "url": f"nats://127.0.0.1:{port}",
            "port": port,
            "pid": 0,
            "store": str(d / "nats"),
            "log_file": str(logs / "nats-server.log"),
            "binary": binary,
        },
        "nodes": [],
        "placement": {email: f"relay-{i % relays}" for i, email in enumerate(peers)},
    }
    state.cluster = cluster
    await _start_nats(cluster["nats"], timeout)
    state.save()
    args = (["--log-level", log_level] if log_level else []) + extra
    for i in range(relays):
        node = {
            "name": f"relay-{i}",
            "url": "",
            "pid": 0,
            "data": str(data),
            "log_file": str(logs / f"relay-{i}.log"),
            "args": args,
        }
        cluster["nodes"].append(node)
        node["url"] = await _start_node(node, 0, cluster["nats"]["url"], timeout)
        state.save()
    await _wait_joined(cluster["nodes"], timeout)
    return cluster


def peer_urls(cluster: dict[str, Any], email: str) -> str:
    """The relay URLs for a peer: its own node first, then the others in order."""
    nodes = cluster["nodes"]
    names = [n["name"] for n in nodes]
    first = names.index(cluster["placement"][email])
    return ",".join(nodes[(first + k) % len(nodes)]["url"] for k in range(len(nodes)))


def any_node_alive(cluster: dict[str, Any]) -> bool:
    return any(ds.pid_alive(n["pid"]) for n in cluster["nodes"])


def owns(cluster: dict[str, Any] | None, name: str) -> bool:
    return cluster is not None and (
        name == "nats" or any(n["name"] == name for n in cluster["nodes"])
    )


def _node(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    for n in cluster["nodes"]:
        if n["name"] == name:
            return n
    raise NotFound(
        f"no relay node {name} in this devstack",
        "nodes: " + ", ".join(n["name"] for n in cluster["nodes"]),
    )


def stop(cluster: dict[str, Any], name: str) -> str:
    if name == "nats":
        return ds.stop_pid(cluster["nats"]["pid"])
    return ds.stop_pid(_node(cluster, name)["pid"])


async def start(state: ds.DevstackState, name: str, timeout: float) -> int:
    """Start one stopped node (same port, same node id) or nats-server (same port and
    JetStream store: the session registry survives)."""
    cluster = state.cluster
    assert cluster is not None
    item = cluster["nats"] if name == "nats" else _node(cluster, name)
    if ds.pid_alive(item["pid"]):
        raise CtlError(
            f"{name} is already running (pid {item['pid']})",
            f"stop it first: hotlinkctl devstack stop {name} --dir {shlex.quote(str(state.dir))}",
        )
    if name == "nats":
        pid = await _start_nats(item, timeout)
        state.save()
        return pid
    port = int(item["url"].rsplit(":", 1)[1])
    log = Path(item["log_file"])
    offset = log.stat().st_size if log.exists() else 0
    try:
        url = await _start_node(item, port, cluster["nats"]["url"], timeout, offset)
    except BaseException:
        ds.stop_pid(item["pid"])
        raise
    state.save()
    if url != item["url"]:
        ds.stop_pid(item["pid"])
        raise Unavailable(f"{name} came back on {url}, not {item['url']}")
    return item["pid"]


def down(cluster: dict[str, Any]) -> dict[str, str]:
    """Relay nodes first (they would only log NATS reconnects), then nats-server."""
    out = {n["name"]: ds.stop_pid(n["pid"]) for n in cluster["nodes"] if n["pid"]}
    if cluster["nats"]["pid"]:
        out["nats"] = ds.stop_pid(cluster["nats"]["pid"])
    return out


def statuses(cluster: dict[str, Any]) -> list[ds.ComponentStatus]:
    nats = cluster["nats"]
    out = [ds.ComponentStatus("nats", nats["pid"], ds.pid_alive(nats["pid"]), nats["url"])]
    for n in cluster["nodes"]:
        peers = sorted(e for e, node in cluster["placement"].items() if node == n["name"])
        detail = f"{n['url']}, peers: {', '.join(peers) or '-'}"
        out.append(ds.ComponentStatus(n["name"], n["pid"], ds.pid_alive(n["pid"]), detail))
    return out


ds.CLUSTER = sys.modules[__name__]
