#!/usr/bin/env python
"""CPU cost of the agent's data path per frame, without the network.

    python tests/load/agent_path_cpu.py [LABEL]          # MICRO_N=50000 frames a round

Drives a real `SessionManager` through its public events with an in-memory link: the
sender's `app_frames` -> `link.send`, and the reader's `on_message(HotlinkData)` -> the
write to an app connection. Prints ns per 1 KB frame (best of 5 rounds). Latency
benchmarks on a shared machine are too noisy to see a change of a few hundred ns;
this is how docs/performance.md compares two trees (run it with each tree's venv,
alternating; it also runs on trees from before the agent core split). Only the session
endpoints bind loopback TCP ports, which nothing connects to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hotlink.agent.config import AgentConfig
from hotlink.agent.ipc import EndpointRegistry
from hotlink.agent.sessions import SessionManager
from hotlink.agent.transport import LinkState, Transport
from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope
from hotlink.wire.frames import Frame

N = int(os.environ.get("MICRO_N", "50000"))
ME, PEER = "alice@x.org", "bob@x.org"
PATH = f"{ME}/_mpc/0_to_1"


class MemLink(Transport):
    """Always up and writable; keeps control messages (and their ids), counts data."""

    def __init__(self) -> None:
        self.state = LinkState.UP
        self.sent: list[m.Message] = []
        self.ids: list[str] = []
        self.n = 0

    def set_listener(self, listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @property
    def writable(self) -> bool:
        return True

    def send(self, msg: m.Message, id: str | None = None) -> str:
        self.n += 1
        oid = id or f"m{self.n}"
        if type(msg) is not m.HotlinkData:
            self.sent.append(msg)
            self.ids.append(oid)
        return oid

    def last_id(self, t: type) -> str:
        """The message id of the last message of type `t` sent."""
        i = max(i for i, x in enumerate(self.sent) if type(x) is t)
        return self.ids[i]


class App:
    """An app connection that takes every frame at once."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, h: bytes, p: bytes) -> bool:
        self.n += 1
        return True

    def flushed_seq(self, last: int) -> int:
        return last

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def manager(tmp: Path, email: str) -> tuple[SessionManager, MemLink]:
    root = tmp / email
    cfg = AgentConfig(
        server="ws://127.0.0.1:1",
        email=email,
        token_file=tmp / "token",
        root=root,
        control=root / "agent.sock",
    )
    link = MemLink()
    reg = EndpointRegistry(root / "endpoints.json")
    return SessionManager(cfg, link, runtime_dir=tmp / "run", registry=reg), link


async def sender(tmp: Path) -> float:
    mgr, link = manager(tmp, ME)
    opening = asyncio.ensure_future(mgr.open_session("_mpc/0_to_1", fallback_mode=1, ipc_mode=2))
    while not any(type(x) is m.HotlinkOpen for x in link.sent):
        await asyncio.sleep(0.01)
    mgr.on_message(Envelope("a1", m.Ack(link.last_id(m.HotlinkOpen))))
    s = await opening
    mgr.on_message(Envelope("a2", m.HotlinkAccept(s.sid, frm=PEER)))
    frames = [Frame(b"x" * 1024)]
    window = getattr(s, "tx", s)  # the re-send window: on the core since the split
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(N):
            s.app_frames(None, frames)  # type: ignore[arg-type]
            if len(window.recent) > 1000:  # the reader confirms, as a real one does
                mgr.on_message(Envelope("p", m.HotlinkProgress(s.sid, s.seq, frm=PEER)))
        best = min(best, (time.perf_counter_ns() - t0) / N)
    mgr.close_all()
    return best


async def reader(tmp: Path) -> float:
    mgr, link = manager(tmp, PEER)
    mgr.on_message(Envelope("o1", m.HotlinkOpen("sid1", PATH, ME)))
    opening = asyncio.ensure_future(mgr.open_session(PATH, fallback_mode=1, ipc_mode=2))
    while not any(type(x) is m.FileSync for x in link.sent):
        await asyncio.sleep(0.01)
    mgr.on_message(Envelope("fs", m.FileSync(PATH, 0, "", sid="sid1")))
    mgr.on_message(Envelope("a1", m.Ack(link.last_id(m.HotlinkAccept))))
    s = await opening
    app = App()
    s.app_connected(app)  # type: ignore[arg-type]
    seq = 0
    best = float("inf")
    for _ in range(5):
        envs = [
            Envelope("d", m.HotlinkData("sid1", seq + i + 1, f"{PATH}/x.request", b"x" * 1024))
            for i in range(N)
        ]
        seq += N
        t0 = time.perf_counter_ns()
        for e in envs:
            mgr.on_message(e)
        best = min(best, (time.perf_counter_ns() - t0) / N)
        await asyncio.sleep(0)  # let the progress timer run
    assert app.n == seq, (app.n, seq)
    with contextlib.suppress(Exception):
        mgr.close_all()
    return best


async def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    tmp = Path(tempfile.mkdtemp(prefix="hlcpu-"))
    try:
        print(f"{label}\tsender app_frames -> link.send, ns/frame\t{await sender(tmp):.0f}")
        print(f"{label}\treader on_message -> app write, ns/frame\t{await reader(tmp):.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
