#!/usr/bin/env python
"""CPU cost of the agent's data path per frame, without the network.

    python tests/load/agent_path_cpu.py [LABEL]          # MICRO_N=50000 frames a round
    MICRO_TRACE=1 python tests/load/agent_path_cpu.py    # tracing on, every frame sampled
    MICRO_TRACE=0.01 python tests/load/agent_path_cpu.py # the default sampler

Drives a real `SessionManager` through its public events with an in-memory link: the
sender's `app_frames` -> `link.send`, and the reader's `on_message(HotlinkData)` -> the
write to an app connection. Prints CPU ns per 1 KB frame (this thread's CPU time, so
that being preempted on a busy machine does not count; best of 5 rounds). Latency
benchmarks on a shared machine are too noisy to see a change of a few hundred ns;
this is how docs/performance.md compares two trees (run it with each tree's venv,
alternating; it also runs on trees from before the agent core split). With
`MICRO_TRACE=1` both agents trace every frame (`AgentTracer`, ratio 1; `0.01`: the
default sampler) and the queued records are pickled as for the exporter process every
64 frames, in the loop: the in-process cost of tracing, flusher work included. Only the session
endpoints bind loopback TCP ports, which nothing connects to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hotlink.agent.config import AgentConfig
from hotlink.agent.ipc import EndpointRegistry
from hotlink.agent.sessions import SessionManager
from hotlink.agent.tracing import AgentTracer
from hotlink.agent.transport import LinkState, Transport
from hotlink.telemetry.core import Telemetry
from hotlink.telemetry.exporter_process import encode_batch
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

    tracer: AgentTracer | None = None

    def send(self, msg: m.Message, id: str | None = None) -> str:
        self.n += 1
        oid = id or f"m{self.n}"
        tr = self.tracer
        if tr is not None:  # as `WsLink.send` does (the encode itself is not measured)
            rec, _tp = tr.before_send(msg, oid)
            if rec is not None:
                tr.after_send(rec)
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


#: MICRO_TRACE=RATIO: tracing on with that sampler ratio (1: every frame)
TRACE = float(os.environ.get("MICRO_TRACE", "") or 0)


class PickleSink:
    """What `exporter_process.ProcessSink` does with the records, minus the pipe."""

    compact = True

    def export(self, records: list[Any]) -> None:
        encode_batch(records)

    def force_flush(self, timeout: float) -> None:
        pass

    def shutdown(self, timeout: float) -> None:
        pass


def traced(mgr: SessionManager, link: MemLink) -> Telemetry | None:
    """Tracing on for `mgr` (every frame sampled) when MICRO_TRACE is set."""
    if not TRACE:
        return None
    tel = Telemetry(enabled=True, root_ratio=TRACE, sink=PickleSink(), start_thread=False)
    tr = AgentTracer(tel, mgr)
    mgr.tracer = tr
    link.tracer = tr
    return tel


def flush(tel: Telemetry) -> None:
    """The flusher thread's work for one chunk (without its `sleep(0)`, which only
    hands the GIL over)."""
    q = tel._pending
    batch = list(q)
    q.clear()
    encode_batch(batch)


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
    tel = traced(mgr, link)
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time_ns()
        for i in range(N):
            s.app_frames(None, frames)  # type: ignore[arg-type]
            if tel is not None and i % 64 == 63:
                flush(tel)
            if len(window.recent) > 1000:  # the reader confirms, as a real one does
                mgr.on_message(Envelope("p", m.HotlinkProgress(s.sid, s.seq, frm=PEER)))
        best = min(best, (time.thread_time_ns() - t0) / N)
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
    tel = traced(mgr, link)
    tp = "00-1234567890abcdef1234567890abcdef-1234567890abcdef-01" if tel is not None else ""
    sampled = random.Random(1)
    seq = 0
    best = float("inf")
    for _ in range(5):
        envs = [
            Envelope(
                "d",
                m.HotlinkData("sid1", seq + i + 1, f"{PATH}/x.request", b"x" * 1024),
                tp if sampled.random() < TRACE else "",  # the sender's sampling decision
            )
            for i in range(N)
        ]
        seq += N
        t0 = time.thread_time_ns()
        if tel is None:
            for e in envs:
                mgr.on_message(e)
        else:  # as `WsLink._on_raw` does with tracing on
            tr = mgr.tracer
            for i, e in enumerate(envs):
                if e.traceparent:
                    tr.on_message(e, time.time_ns(), mgr)  # type: ignore[union-attr]
                else:
                    mgr.on_message(e)
                if i % 64 == 63:
                    flush(tel)
        best = min(best, (time.thread_time_ns() - t0) / N)
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
