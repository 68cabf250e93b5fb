"""Processes of a devstack: spawn detached with a log file, find, stop, reap.

Children run in their own session (the CLI can return while they keep running) with
HOTLINK_* removed from their environment (flags decide everything). Stopping checks the
pid still belongs to a hotlink process (pids are reused), SIGTERM then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .errors import Unavailable
from .proc_stat import stat_fields

_RELAY_LINE = re.compile(r"hotlink-relay listening on (wss?://\S+)")
_TERM_WAIT = 5.0

#: Popen objects of processes this interpreter started, so `down()` in the same process
#: can reap them (no zombies, no ResourceWarning) instead of only signalling.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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
        return stat_fields(pid)[0] != "Z"
    except OSError:
        return True


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


async def _wait_relay(
    proc: subprocess.Popen[bytes], log_file: Path, timeout: float, offset: int = 0
) -> str:
    """Wait for the listening line the relay writes after `offset` in its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with open(log_file, "rb") as f:
                f.seek(offset)
                m = _RELAY_LINE.search(f.read().decode(errors="replace"))
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


def _write_header(log: Path, argv: list[str]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} hotlinkctl devstack: {' '.join(argv)}\n")
