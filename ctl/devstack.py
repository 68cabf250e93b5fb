"""A local stack on loopback: one relay and one agent per peer, for demos, tests and bench.

`up()` starts the processes detached (own session, output to log files under the
directory) so the CLI can return while they keep running; `D/devstack.json` records
what `down()` and `status()` need. Readiness follows the design contracts: the relay's
`hotlink-relay listening on ws://HOST:PORT` line, then each agent's gRPC health SERVING
and its link UP in GetStatus.

`stop(D, NAME)` / `start(D, NAME)` stop and restart one process (NAME = a peer's email
or `relay`) of a running stack, for fault tests and demos: the relay comes back on the
same port with the same data dir, an agent with the same root (its sessions are
restored from its state file). `devstack.json` always holds each process's pid.

Modules: `devstack_state` (devstack.json), `devstack_procs` (spawn, stop, reap);
`devstack_cluster` adds `--relays N`.

Layout under D:
    devstack.json         relay url/pid, per peer: email, root, control, pid, token, log
    relay/                relay data dir (ACLs pre-seeded under relay/datasites/)
    <email>/              the peer's agent root (control socket in .hotlink/agent.sock)
    tokens/<email>.token  bearer token (0600)
    logs/relay.log, logs/<email>.log
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotlink.wire.paths import validate_email

from .agent_client import AgentClient, default_control_socket
from .devstack_procs import _CHILDREN as _CHILDREN
from .devstack_procs import _child_env, _spawn, _wait_relay, _write_header
from .devstack_procs import log_tail as log_tail
from .devstack_procs import pid_alive as pid_alive
from .devstack_procs import stop_pid as stop_pid
from .devstack_procs import tool_command as tool_command
from .devstack_state import STATE_FILE as STATE_FILE
from .devstack_state import DevstackState as DevstackState
from .devstack_state import PeerInfo as PeerInfo
from .devstack_state import RelayInfo as RelayInfo
from .errors import CtlError, NotFound, Unavailable, UsageError
from .tlsgen import make_local_ca

DEFAULT_PEERS = ("alice@example.org", "bob@example.org")
#: sun_path is 108 bytes on Linux (104 on macOS); keep a margin.
_MAX_SOCK_PATH = 100
#: values of the agents' `--direct` flag that `up(direct=...)` passes on
DIRECT_MODES = ("off", "auto")
#: `--otel` without an endpoint: the OTLP/gRPC port of docker-compose.otel.yaml's Jaeger
DEFAULT_OTEL_ENDPOINT = "http://127.0.0.1:4317"

#: The relay-cluster part (`--relays N`): `ctl.devstack_cluster` registers itself here
#: when imported (it builds on this module, so this module does not import it).
CLUSTER: Any = None


def parse_peers(text: str | None) -> list[str]:
    """`a@x,b@y` → validated emails (at least two, no duplicates)."""
    if not text:
        return list(DEFAULT_PEERS)
    peers = [p.strip().lower() for p in text.split(",") if p.strip()]
    for p in peers:
        try:
            validate_email(p)
        except ValueError as exc:
            raise UsageError(
                str(exc), "peers look like alice@example.org,bob@example.org"
            ) from None
    if len(set(peers)) != len(peers):
        raise UsageError(f"duplicate peer in {text!r}")
    if len(peers) < 2:
        raise UsageError("a devstack needs at least two peers", "e.g. --peers a@x.org,b@x.org")
    return peers


def acl_yaml(readers: list[str]) -> str:
    """Everyone listed may read the folder; only the owner writes (owner is implicit)."""
    read = ", ".join(json.dumps(r) for r in readers)
    return (
        "# written by hotlinkctl devstack: peers may read this owner's _mpc sessions\n"
        "rules:\n"
        '  - pattern: "**"\n'
        "    access:\n"
        "      admin: []\n"
        "      write: []\n"
        f"      read: [{read}]\n"
    )


def otel_args(endpoint: str | None, ratio: float | None = None) -> list[str]:
    """Tracing flags for every relay and agent of a devstack (`up --otel [ENDPOINT]`):
    export to `endpoint` over OTLP/gRPC; sampler ratio `ratio` (None: the processes'
    default, 0.01, unless OTEL_TRACES_SAMPLER[_ARG] in the environment say otherwise).
    None/"" endpoint: no flags (the OTEL_* environment still reaches the processes)."""
    if not endpoint:
        return []
    args = ["--otel", "--otel-endpoint", endpoint]
    if ratio is not None:
        args += ["--otel-sampler-arg", f"{ratio:g}"]
    return args


def _mint_token(relay_cmd: list[str], email: str, data: Path) -> str:
    res = subprocess.run(
        [*relay_cmd, "token", email, "--data", str(data), "--init"],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=30,
        check=False,
    )
    token = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    if res.returncode != 0 or not token:
        raise CtlError(
            f"hotlink-relay token {email} failed (exit {res.returncode}): {res.stderr.strip()}",
            "check that hotlink-relay is installed: hotlink-relay --help",
        )
    return token


async def _wait_agent(peer: PeerInfo, proc: subprocess.Popen[bytes], timeout: float) -> None:
    client = AgentClient(peer.control, timeout=2.0)
    try:
        wait = asyncio.create_task(client.wait_ready(timeout, link_up=True))
        while not wait.done():
            if proc.poll() is not None:
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError, CtlError):
                    await wait
                raise Unavailable(
                    f"hotlink-agent for {peer.email} exited with code {proc.returncode}; "
                    f"last lines of {peer.log_file}:\n{log_tail(peer.log_file)}",
                    "fix the error above; the full command is at the top of the log",
                )
            await asyncio.wait({wait}, timeout=0.05)
        try:
            wait.result()
        except CtlError as exc:
            raise Unavailable(
                f"agent {peer.email} not ready: {exc.message}; last lines of "
                f"{peer.log_file}:\n{log_tail(peer.log_file)}",
                exc.hint,
            ) from None
    finally:
        await client.close()


async def up(
    directory: str | os.PathLike[str],
    peers: list[str] | None = None,
    *,
    timeout: float = 30.0,
    log_level: str = "",
    agent_args: list[str] | None = None,
    otel: str | None = None,
    otel_ratio: float | None = None,
    relays: int = 1,
    tls: bool = False,
    direct: str | None = None,
) -> DevstackState:
    """Start relay + agents, wait until all are ready, return the recorded state.

    `otel`: an OTLP/gRPC endpoint every process exports spans to (`otel_args`).
    `tls`: the relay serves wss:// with a throwaway CA made in D/tls (`tlsgen`), which
    the agents trust by `--ca-file`.
    `direct`: "off" or "auto", passed to every agent as `--direct` (None: no flag, the
    agents' own default).

    On any failure everything started so far is stopped again, so a failed `up` never
    leaves processes behind.
    """
    peers = peers or list(DEFAULT_PEERS)
    if direct is not None and direct not in DIRECT_MODES:
        raise UsageError(f"--direct {direct!r}: use one of {', '.join(DIRECT_MODES)}")
    d = Path(directory).absolute()
    if (d / STATE_FILE).exists():
        old = DevstackState.load(d)
        live = [p for p in [old.relay, *old.peers] if p is not None and pid_alive(p.pid)]
        if live:
            raise CtlError(
                f"a devstack is already running in {d} (pids "
                + ", ".join(str(p.pid) for p in live)
                + ")",
                f"stop it first: hotlinkctl devstack down --dir {shlex.quote(str(d))}",
            )
    d.mkdir(parents=True, exist_ok=True)
    for email in peers:
        ctl = default_control_socket(d / email)
        if len(ctl.encode()) > _MAX_SOCK_PATH:
            raise UsageError(
                f"control socket path {ctl} is {len(ctl.encode())} bytes, over the "
                f"{_MAX_SOCK_PATH}-byte UNIX socket limit",
                "use a shorter --dir (e.g. under /tmp)",
            )
    relay_cmd = tool_command("hotlink-relay", "hotlink.relay.cli")
    agent_cmd = tool_command("hotlink-agent", "hotlink.agent.cli")
    relay_data = d / "relay"
    logs = d / "logs"
    tokens = d / "tokens"
    for p in (relay_data, logs, tokens):
        p.mkdir(parents=True, exist_ok=True)
    tokens.chmod(0o700)

    # ACLs first, both in the relay's store (in force from the start) and in each
    # peer's own datasite (what a real agent would upload).
    for email in peers:
        readers = [p for p in peers if p != email]
        text = acl_yaml(readers)
        for base in (relay_data / "datasites", d / email / "datasites"):
            f = base / email / "_mpc" / "syft.pub.yaml"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)

    state = DevstackState(dir=str(d), started_unix=time.time())
    try:
        token_files: dict[str, Path] = {}
        for email in peers:
            tf = tokens / f"{email}.token"
            tf.write_text(_mint_token(relay_cmd, email, relay_data) + "\n")
            tf.chmod(0o600)
            token_files[email] = tf

        tracing = otel_args(otel, otel_ratio)
        relay_extra, agent_tls = list(tracing), []
        if tls:
            if relays > 1:
                raise UsageError("--tls runs one relay; it does not combine with --relays")
            files = make_local_ca(d / "tls")
            relay_extra += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
            agent_tls = ["--ca-file", str(files.ca)]
        if relays > 1:
            await _cluster().up(state, relay_data, logs, relays, peers, log_level, tracing, timeout)
        else:
            relay_log = logs / "relay.log"
            relay_argv = _relay_argv(relay_cmd, 0, relay_data, log_level, relay_extra)
            # A directory reused after `down` keeps the old relay's log (appended to): only
            # the listening line this relay writes counts, or agents get the old URL.
            relay_offset = relay_log.stat().st_size if relay_log.exists() else 0
            _write_header(relay_log, relay_argv)
            relay_proc = _spawn(relay_argv, relay_log)
            state.relay = RelayInfo(
                url="",
                pid=relay_proc.pid,
                data=str(relay_data),
                log_file=str(relay_log),
                args=relay_extra,
            )
            state.save()
            state.relay.url = await _wait_relay(relay_proc, relay_log, timeout, relay_offset)
            state.save()

        procs: list[tuple[PeerInfo, subprocess.Popen[bytes]]] = []
        for email in peers:
            root = d / email
            root.mkdir(parents=True, exist_ok=True)
            ctl = default_control_socket(root)
            log = logs / f"{email}.log"
            extra = [
                *(["--log-level", log_level] if log_level else []),
                *tracing,
                *agent_tls,
                *(["--direct", direct] if direct is not None else []),
                *(agent_args or []),
            ]
            info = PeerInfo(
                email=email,
                root=str(root),
                control=ctl,
                pid=0,
                token_file=str(token_files[email]),
                log_file=str(log),
                args=extra,
            )
            argv = _agent_argv(agent_cmd, info, _relay_url(state, email))
            _write_header(log, argv)
            proc = _spawn(argv, log)
            info.pid = proc.pid
            state.peers.append(info)
            procs.append((info, proc))
            state.save()
        await asyncio.gather(*(_wait_agent(info, proc, timeout) for info, proc in procs))
    except BaseException:
        with contextlib.suppress(Exception):
            down_state(state)
        raise
    return state


def _cluster() -> Any:
    if CLUSTER is None:
        raise CtlError("the relay cluster support (hotlink.ctl.devstack_cluster) is not loaded")
    return CLUSTER


def _relay_url(state: DevstackState, email: str) -> str:
    """The --server value of a peer: the relay, or its node first and the others after."""
    if state.cluster is not None:
        return _cluster().peer_urls(state.cluster, email)
    assert state.relay is not None
    return state.relay.url


def _relay_argv(
    cmd: list[str], port: int, data: Path, log_level: str = "", extra: list[str] | None = None
) -> list[str]:
    argv = [*cmd, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)]
    return argv + (["--log-level", log_level] if log_level else []) + (extra or [])


def _agent_argv(cmd: list[str], p: PeerInfo, relay_url: str) -> list[str]:
    return [
        *cmd,
        "--server",
        relay_url,
        "--email",
        p.email,
        "--token-file",
        p.token_file,
        "--root",
        p.root,
        "--control",
        p.control,
        *p.args,
    ]


def stop(directory: str | os.PathLike[str], name: str) -> str:
    """Stop one process of a running devstack: `relay` or a peer's email."""
    state = DevstackState.load(directory)
    if state.cluster is not None and _cluster().owns(state.cluster, name):
        return _cluster().stop(state.cluster, name)
    if name == "relay":
        if state.relay is None:
            raise NotFound(f"the devstack in {directory} has no relay")
        return stop_pid(state.relay.pid)
    return stop_pid(state.peer(name).pid)


async def start(directory: str | os.PathLike[str], name: str, timeout: float = 30.0) -> int:
    """Start one stopped process again (same port / data dir / root); returns its pid."""
    state = DevstackState.load(directory)
    if state.cluster is not None:
        if _cluster().owns(state.cluster, name):
            return await _cluster().start(state, name, timeout)
        return await _start_peer(state, name, _cluster().any_node_alive(state.cluster), timeout)
    if state.relay is None or not state.relay.url:
        raise NotFound(f"the devstack in {directory} has no relay")
    relay = state.relay
    info_pid = relay.pid if name == "relay" else state.peer(name).pid
    if pid_alive(info_pid):
        raise CtlError(
            f"{name} is already running (pid {info_pid})",
            f"stop it first: hotlinkctl devstack stop {name} --dir {shlex.quote(str(directory))}",
        )
    if name == "relay":
        port = int(relay.url.rsplit(":", 1)[1])
        log_file = Path(relay.log_file)
        relay_cmd = tool_command("hotlink-relay", "hotlink.relay.cli")
        argv = _relay_argv(relay_cmd, port, Path(relay.data), extra=relay.args)
        offset = log_file.stat().st_size if log_file.exists() else 0
        _write_header(log_file, argv)
        proc = _spawn(argv, log_file)
        relay.pid = proc.pid
        state.save()
        try:
            url = await _wait_relay(proc, log_file, timeout, offset)
        except BaseException:
            stop_pid(proc.pid)
            raise
        if url != relay.url:
            stop_pid(proc.pid)
            raise Unavailable(f"relay came back on {url}, not {relay.url}")
        return proc.pid
    return await _start_peer(state, name, pid_alive(relay.pid), timeout)


async def _start_peer(state: DevstackState, name: str, link_up: bool, timeout: float) -> int:
    """Start a stopped agent; wait for its link only when a relay runs (`link_up`)."""
    peer = state.peer(name)
    if pid_alive(peer.pid):
        raise CtlError(
            f"{name} is already running (pid {peer.pid})",
            f"stop it first: hotlinkctl devstack stop {name} --dir {shlex.quote(str(state.dir))}",
        )
    argv = _agent_argv(
        tool_command("hotlink-agent", "hotlink.agent.cli"), peer, _relay_url(state, name)
    )
    _write_header(Path(peer.log_file), argv)
    proc = _spawn(argv, Path(peer.log_file))
    peer.pid = proc.pid
    state.save()
    try:
        if link_up:
            await _wait_agent(peer, proc, timeout)
        else:
            client = AgentClient(peer.control, timeout=2.0)
            try:
                await client.wait_ready(timeout)
            finally:
                await client.close()
    except BaseException:
        stop_pid(proc.pid)
        raise
    return proc.pid


def down(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Stop the devstack recorded in `directory`; returns name → what happened."""
    return down_state(DevstackState.load(directory))


def down_state(state: DevstackState) -> dict[str, str]:
    """Agents first (so they do not reconnect-loop against a dead relay), then the relay."""
    out: dict[str, str] = {}
    for p in state.peers:
        out[p.email] = stop_pid(p.pid)
    if state.relay is not None:
        out["relay"] = stop_pid(state.relay.pid)
    if state.cluster is not None:
        out.update(_cluster().down(state.cluster))
    with contextlib.suppress(OSError):
        (Path(state.dir) / STATE_FILE).rename(Path(state.dir) / (STATE_FILE + ".stopped"))
    return out


@dataclass
class ComponentStatus:
    name: str
    pid: int
    running: bool
    detail: str


async def status(directory: str | os.PathLike[str]) -> list[ComponentStatus]:
    """Process liveness plus, for agents, health and link state."""
    from hotlink.v1 import agent_pb2 as pb

    state = DevstackState.load(directory)
    out: list[ComponentStatus] = []
    if state.relay is not None:
        r = state.relay
        out.append(ComponentStatus("relay", r.pid, pid_alive(r.pid), r.url))
    if state.cluster is not None:
        out += _cluster().statuses(state.cluster)
    for p in state.peers:
        running = pid_alive(p.pid)
        detail = "process not running"
        if running:
            client = AgentClient(p.control, timeout=2.0)
            try:
                st = await client.get_status()
                detail = (
                    f"link {pb.LinkState.Name(st.link_state).removeprefix('LINK_STATE_')}, "
                    f"{len(st.sessions)} session(s), control {p.control}"
                )
                if st.last_error:
                    detail += f", last error: {st.last_error}"
            except CtlError as exc:
                detail = f"control API: {exc.message}"
            finally:
                await client.close()
        out.append(ComponentStatus(p.email, p.pid, running, detail))
    return out
