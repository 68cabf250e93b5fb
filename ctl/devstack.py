"""A local stack on loopback: one relay and one agent per peer, for demos, tests and bench.

`up()` starts the processes detached (own session, output to log files under the
directory) so the CLI can return while they keep running; `D/devstack.json` records
what `down()` and `status()` need. Readiness follows the design contracts: the relay's
`hotlink-relay listening on ws://HOST:PORT` line, then each agent's gRPC health SERVING
and its link UP in GetStatus.

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
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hotlink.wire.paths import validate_email

from .client import AgentClient, default_control_socket
from .errors import CtlError, NotFound, Unavailable, UsageError

STATE_FILE = "devstack.json"
DEFAULT_PEERS = ("alice@example.org", "bob@example.org")
_RELAY_LINE = re.compile(r"hotlink-relay listening on (ws://\S+)")
#: sun_path is 108 bytes on Linux (104 on macOS); keep a margin.
_MAX_SOCK_PATH = 100
_TERM_WAIT = 5.0

#: Popen objects of processes this interpreter started, so `down()` in the same process
#: can reap them (no zombies, no ResourceWarning) instead of only signalling.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class RelayInfo:
    url: str
    pid: int
    data: str
    log_file: str


@dataclass
class PeerInfo:
    email: str
    root: str
    control: str
    pid: int
    token_file: str
    log_file: str


@dataclass
class DevstackState:
    dir: str
    relay: RelayInfo | None = None
    peers: list[PeerInfo] = field(default_factory=list)
    started_unix: float = 0.0

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DevstackState:
        path = Path(directory) / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(
                f"no devstack in {directory} ({STATE_FILE} missing)",
                f"start one with: hotlinkctl devstack up --dir {directory}",
            ) from None
        except json.JSONDecodeError as exc:
            raise CtlError(f"{path} is not valid JSON: {exc}") from None
        relay = RelayInfo(**raw["relay"]) if raw.get("relay") else None
        peers = [PeerInfo(**p) for p in raw.get("peers", [])]
        return cls(
            dir=str(directory),
            relay=relay,
            peers=peers,
            started_unix=raw.get("started_unix", 0.0),
        )

    def peer(self, email: str) -> PeerInfo:
        for p in self.peers:
            if p.email == email:
                return p
        raise NotFound(
            f"no peer {email} in the devstack at {self.dir}",
            "peers: " + ", ".join(p.email for p in self.peers),
        )


def parse_peers(text: str | None) -> list[str]:
    """`a@x,b@y` → validated emails (at least two, no duplicates)."""
    if not text:
        return list(DEFAULT_PEERS)
    peers = [p.strip() for p in text.split(",") if p.strip()]
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


def tool_command(name: str, module: str) -> list[str]:
    """The console script next to this Python, else on PATH, else `python -c` its main."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _child_env() -> dict[str, str]:
    """Our environment minus HOTLINK_* (flags decide everything), unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=_child_env(),
        )
    _CHILDREN[proc.pid] = proc
    return proc


def log_tail(path: str | os.PathLike[str], lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    tail = text.strip().splitlines()[-lines:]
    return "\n".join("    " + line for line in tail)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    if pid <= 0:
        return False
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_ours(pid: int) -> bool:
    """Guard against PID reuse: only signal a process whose command line is hotlink's."""
    if pid in _CHILDREN:
        return True
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no procfs (macOS): trust the state file
    return b"hotlink" in cmd


def stop_pid(pid: int, timeout: float = _TERM_WAIT) -> str:
    """SIGTERM, wait, then SIGKILL. Returns what happened, for the report."""
    if not pid_alive(pid):
        _reap(pid)
        return "not running"
    if not _is_ours(pid):
        return "skipped (pid reused by another program)"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return "stopped"
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.02)
    _reap(pid)
    return f"killed (did not stop within {timeout:.0f}s of SIGTERM)"


def _reap(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)


async def _wait_relay(proc: subprocess.Popen[bytes], log_file: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            m = _RELAY_LINE.search(log_file.read_text(errors="replace"))
            if m:
                return m.group(1)
        if proc.poll() is not None:
            raise Unavailable(
                f"hotlink-relay exited with code {proc.returncode} before listening; "
                f"last lines of {log_file}:\n{log_tail(log_file)}",
                "fix the error above, or run the relay by hand: hotlink-relay serve --port 0 "
                "--data DIR",
            )
        await asyncio.sleep(0.02)
    raise Unavailable(
        f"hotlink-relay did not print its URL within {timeout:g}s; see {log_file}:\n"
        f"{log_tail(log_file)}"
    )


def _mint_token(relay_cmd: list[str], email: str, data: Path) -> str:
    res = subprocess.run(
        [*relay_cmd, "token", email, "--data", str(data)],
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
) -> DevstackState:
    """Start relay + agents, wait until all are ready, return the recorded state.

    On any failure everything started so far is stopped again, so a failed `up` never
    leaves processes behind.
    """
    peers = peers or list(DEFAULT_PEERS)
    d = Path(directory).absolute()
    if (d / STATE_FILE).exists():
        old = DevstackState.load(d)
        live = [p for p in [old.relay, *old.peers] if p is not None and pid_alive(p.pid)]
        if live:
            raise CtlError(
                f"a devstack is already running in {d} (pids "
                + ", ".join(str(p.pid) for p in live)
                + ")",
                f"stop it first: hotlinkctl devstack down --dir {d}",
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

        relay_log = logs / "relay.log"
        relay_argv = [
            *relay_cmd,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data",
            str(relay_data),
        ]
        if log_level:
            relay_argv += ["--log-level", log_level]
        _write_header(relay_log, relay_argv)
        relay_proc = _spawn(relay_argv, relay_log)
        state.relay = RelayInfo(
            url="", pid=relay_proc.pid, data=str(relay_data), log_file=str(relay_log)
        )
        state.save()
        state.relay.url = await _wait_relay(relay_proc, relay_log, timeout)
        state.save()

        procs: list[tuple[PeerInfo, subprocess.Popen[bytes]]] = []
        for email in peers:
            root = d / email
            root.mkdir(parents=True, exist_ok=True)
            ctl = default_control_socket(root)
            log = logs / f"{email}.log"
            argv = [
                *agent_cmd,
                "--server",
                state.relay.url,
                "--email",
                email,
                "--token-file",
                str(token_files[email]),
                "--root",
                str(root),
                "--control",
                ctl,
            ]
            if log_level:
                argv += ["--log-level", log_level]
            _write_header(log, argv)
            proc = _spawn(argv, log)
            info = PeerInfo(
                email=email,
                root=str(root),
                control=ctl,
                pid=proc.pid,
                token_file=str(token_files[email]),
                log_file=str(log),
            )
            state.peers.append(info)
            procs.append((info, proc))
            state.save()
        await asyncio.gather(*(_wait_agent(info, proc, timeout) for info, proc in procs))
    except BaseException:
        with contextlib.suppress(Exception):
            down_state(state)
        raise
    return state


def _write_header(log: Path, argv: list[str]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} hotlinkctl devstack: {' '.join(argv)}\n")


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
