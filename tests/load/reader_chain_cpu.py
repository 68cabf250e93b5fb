#!/usr/bin/env python
"""CPU cost of the reader agent's whole receive chain per frame, without the network.

    python tests/load/reader_chain_cpu.py [LABEL]        # MICRO_N=30000 frames a round

From the relay's bytes to the app write: `WsLink._on_raw` (envelope decode) ->
`SessionManager.on_message` -> `ReaderSession.on_data` -> `ReaderStream.on_data` ->
`AppConnection.write` on a real `AppConnection` whose transport takes every write at
once. `agent_path_cpu.py` starts after the decode and ends before the connection; this
one covers what a real reader process runs per 1 KB frame (less websockets' frame
parsing, which the floor pays too). Prints this thread's CPU ns per frame, best of 5
rounds; run it with each tree's venv from that tree, alternating, to compare trees.

    MICRO_EVICT_MB=4 python tests/load/reader_chain_cpu.py   # caches cold, as in a chain

With `MICRO_EVICT_MB` it instead overwrites that many MiB between frames (what the
other processes of a one-in-flight chain do to this core's caches) and prints the
median wall time of each frame's chain, next to the same frames through only the
fast decode and an app write (the least a reader can do per frame): the gap between
the two is what a leaner hot path could still save with cold caches.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import agent_path_cpu as apc
from hotlink.agent.ipc import AppConnection
from hotlink.agent.link import WsLink
from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope, decode_data_view, encode
from hotlink.wire.frames import encode_header

N = apc.N if "MICRO_N" in apc.os.environ else 30000
EVICT_MB = int(apc.os.environ.get("MICRO_EVICT_MB", "0"))


class TakesAll:
    """A transport whose writes all reach the kernel at once (nothing buffered)."""

    def writelines(self, parts: object) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    tmp = Path(tempfile.mkdtemp(prefix="hlcpu-"))
    try:
        mgr, link = apc.manager(tmp, apc.PEER)
        mgr.on_message(Envelope("o1", m.HotlinkOpen("sid1", apc.PATH, apc.ME)))
        opening = asyncio.ensure_future(mgr.open_session(apc.PATH, fallback_mode=1, ipc_mode=2))
        while not any(type(x) is m.FileSync for x in link.sent):
            await asyncio.sleep(0.01)
        mgr.on_message(Envelope("fs", m.FileSync(apc.PATH, 0, "", sid="sid1")))
        mgr.on_message(Envelope("a1", m.Ack(link.last_id(m.HotlinkAccept))))
        s = await opening
        conn = AppConnection(
            s,  # type: ignore[arg-type]
            is_sender=False,
            max_payload=1 << 24,
            queue_limit=1 << 20,
            buffer_bytes=1 << 30,
            queue_bytes=1 << 30,
        )
        conn.transport = TakesAll()  # type: ignore[assignment]
        s.app_connected(conn)
        ws = WsLink("ws://127.0.0.1:1", "t", max_message=1 << 24)
        ws.set_listener(mgr)
        on_raw = ws._on_raw
        if EVICT_MB:
            _cold(on_raw, label)
            mgr.close_all()
            return
        seq = 0
        best = float("inf")
        for _ in range(5):
            frames = _frames(seq, N)
            seq += N
            t0 = time.thread_time_ns()
            for f in frames:
                on_raw(f)
            best = min(best, (time.thread_time_ns() - t0) / N)
            assert s.rx.last_seq == seq
            await asyncio.sleep(0)  # let the progress timer run
        print(f"{label}\treader _on_raw -> AppConnection.write, ns/frame\t{best:.0f}")
        mgr.close_all()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _frames(after: int, n: int) -> list[bytes]:
    """`n` 1 KB HotlinkData frames of session sid1 as the relay sends them, seqs after `after`."""
    return [
        encode(m.HotlinkData("sid1", after + i + 1, f"{apc.PATH}/x.request", b"x" * 1024))
        for i in range(n)
    ]


def _cold(on_raw: object, label: str, n: int = 3000) -> None:
    """Median ns per frame with `EVICT_MB` MiB overwritten before each frame: the whole
    chain, then the least a reader does (fast decode, HLNK header, one app write)."""
    big, src = bytearray(EVICT_MB << 20), bytes(EVICT_MB << 20)
    sink = TakesAll()

    def least(frame: bytes) -> None:
        env = decode_data_view(frame)
        assert env is not None
        msg: m.HotlinkData = env.msg  # type: ignore[assignment]
        header = encode_header(msg.path.encode(), b"", len(msg.payload), msg.seq)
        sink.writelines((header, msg.payload))

    for name, fn in (("reader chain", on_raw), ("decode + app write only", least)):
        frames = _frames(0, n)
        times = []
        for f in frames:
            big[:] = src
            t0 = time.perf_counter_ns()
            fn(f)  # type: ignore[operator]
            times.append(time.perf_counter_ns() - t0)
        times.sort()
        print(f"{label}\t{name}, caches cold ({EVICT_MB} MiB evicted), ns/frame\t{times[n // 2]}")


if __name__ == "__main__":
    asyncio.run(main())
