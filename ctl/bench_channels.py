"""The channels the bench measures: a hotlink session, the file path, the floor.

A channel is one direction of a topology as an app sees it (`bench_measure.Channel`).
The floor (`floor.py`: the same topology with plain forwarding) runs as three
processes of its own, started before any gRPC channel exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hotlink.common.atomic import write_atomic
from hotlink.common.loop import uvloop_available
from hotlink.v1 import agent_pb2 as pb

from .agent_client import AgentClient
from .bench_measure import Channel
from .errors import CtlError, Unavailable
from .stream import Endpoint, Stream
from .tlsgen import make_local_ca


async def _wait_attached(
    sender: AgentClient, reader: AgentClient, reader_email: str, full: str, timeout: float
) -> None:
    """Until the reader accepted and its app is attached: no frame can be lost."""
    await sender.wait_session(
        full,
        lambda s: s.state == pb.SESSION_STATE_OPEN and reader_email in s.readers,
        timeout,
        f"{reader_email} to accept",
    )
    await reader.wait_session(
        full,
        lambda s: s.state == pb.SESSION_STATE_OPEN and s.ipc_clients >= 1,
        timeout,
        "the reader app to attach",
    )


async def open_hotlink_channel(
    sender: AgentClient,
    sender_email: str,
    reader: AgentClient,
    reader_email: str,
    rel_path: str,
    *,
    ipc: str = "unix",
    timeout: float = 15.0,
) -> Channel:
    """Open `rel_path` on the sender's datasite for `reader_email`, connect both apps,
    and wait until the reader accepted and its app is attached (no frame can be lost)."""
    ipc_mode = pb.IPC_MODE_TCP if ipc == "tcp" else pb.IPC_MODE_UNIX
    full = f"{sender_email}/{rel_path}"
    s_sess = await sender.open_session(
        rel_path, to=reader_email, ipc_mode=ipc_mode, fallback_mode=pb.FALLBACK_MODE_OFF
    )
    r_sess = await reader.open_session(full, ipc_mode=ipc_mode, fallback_mode=pb.FALLBACK_MODE_OFF)
    rx = await Stream.connect(r_sess.session_dir, timeout=timeout)
    tx = await Stream.connect(s_sess.session_dir, timeout=timeout)
    await _wait_attached(sender, reader, reader_email, full, timeout)

    async def recv() -> bytes:
        return (await rx.recv()).payload

    async def close() -> None:
        await tx.close()
        await rx.close()
        for client, ref in ((sender, full), (reader, full)):
            with contextlib.suppress(CtlError):
                await client.close_session(ref, "bench done")

    return Channel(f"hotlink {sender_email}->{reader_email}", tx.send, recv, close)


async def open_file_channel(
    sender: AgentClient,
    sender_email: str,
    reader: AgentClient,
    reader_email: str,
    rel_path: str,
    *,
    timeout: float = 15.0,
    notes: list[str] | None = None,
) -> Channel:
    """The file path as an app sees it: write `.request` files on the sender side,
    read frames from the reader's stream.sock."""
    full = f"{sender_email}/{rel_path}"
    s_sess = await sender.open_session(rel_path, to=reader_email)
    r_sess = await reader.open_session(full)
    rx = await Stream.connect(r_sess.session_dir, timeout=timeout)
    await _wait_attached(sender, reader, reader_email, full, timeout)
    sdir, rdir = Path(s_sess.session_dir), Path(r_sess.session_dir)
    names = itertools.count()
    missing = [0]

    async def send(payload: bytes) -> None:
        name = f"e2e-{next(names):08d}.request"
        # atomic: the watcher never sees half a file
        write_atomic(sdir / name, payload, mode=0o644)

    async def recv() -> bytes:
        f = await rx.recv()
        if not (rdir / f.path[len(full) + 1 :]).exists():  # frames carry the full path
            missing[0] += 1
        return f.payload

    async def close() -> None:
        await rx.close()
        if missing[0] and notes is not None:
            notes.append(
                f"{missing[0]} replayed files were not in the reader's mirror "
                "(start its agent with --keep-files to keep them)"
            )
        for client in (sender, reader):
            with contextlib.suppress(CtlError):
                await client.close_session(full, "bench done")

    return Channel(f"files {sender_email}->{reader_email}", send, recv, close)


@dataclass
class FloorStack:
    """The three floor processes and the two app connections."""

    procs: list[asyncio.subprocess.Process]
    tmp: tempfile.TemporaryDirectory[str]
    channel: Channel

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        self.tmp.cleanup()


async def _spawn_floor(args: list[str], expect: str) -> tuple[asyncio.subprocess.Process, str]:
    argv = [sys.executable, "-m", "hotlink.ctl.floor"]
    if not uvloop_available():
        argv.append("--no-uvloop")
    proc = await asyncio.create_subprocess_exec(
        *argv, *args, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 15.0)).decode().strip()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Unavailable(f"floor process {' '.join(args)} did not start within 15s") from None
    if not line.startswith(expect):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CtlError(f"floor process {' '.join(args)} failed to start: {line!r}")
    return proc, line


async def start_floor(tls: bool = False) -> FloorStack:
    tmp = tempfile.TemporaryDirectory(prefix="hlfloor-", dir="/tmp")
    procs: list[asyncio.subprocess.Process] = []
    try:
        relay_args, peer_args = ["relay", "--port", "0"], []
        if tls:  # the same TLS as the measured path: the floor stays a like-for-like one
            files = make_local_ca(Path(tmp.name) / "tls")
            relay_args += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
            peer_args = ["--ca-file", str(files.ca)]
        relay, line = await _spawn_floor(relay_args, "floor-relay listening on ")
        procs.append(relay)
        url = line.rsplit(" ", 1)[-1]
        sa, sb = str(Path(tmp.name) / "a.sock"), str(Path(tmp.name) / "b.sock")
        for sock in (sa, sb):
            p, _ = await _spawn_floor(
                ["peer", "--server", url, "--socket", sock, *peer_args], "floor-peer"
            )
            procs.append(p)
        tx = await Stream.connect_endpoint(Endpoint("unix", path=sa))
        rx = await Stream.connect_endpoint(Endpoint("unix", path=sb))
    except BaseException:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
        tmp.cleanup()
        raise

    async def recv() -> bytes:
        return (await rx.recv()).payload

    async def close() -> None:
        await tx.close()
        await rx.close()

    path = (("sending peer", procs[1].pid), ("relay", procs[0].pid), ("reading peer", procs[2].pid))
    return FloorStack(procs, tmp, Channel("floor", tx.send, recv, close, path))
