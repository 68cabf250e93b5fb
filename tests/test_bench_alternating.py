"""The bench's alternating measurement: blocks, their order, and that every channel
gets its share of the samples from every block (in-memory channels: this checks the
bookkeeping; the bench e2e tests run it over real devstacks), and the CPU per message
each channel's processes are charged with."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from hotlink.ctl.bench_measure import (
    Channel,
    block_order,
    block_sizes,
    measure_alternating,
    throughput_alternating,
)
from hotlink.ctl.proc_stat import cpu_ns


def test_block_sizes_split_evenly_and_never_empty() -> None:
    assert block_sizes(10, 4) == [3, 3, 2, 2]
    assert block_sizes(3, 4) == [1, 1, 1]
    assert block_sizes(1000, 1) == [1000]
    assert block_sizes(0, 4) == [0]
    for count in range(1, 40):
        for blocks in range(1, 9):
            parts = block_sizes(count, blocks)
            assert sum(parts) == count and min(parts) >= 1
            assert max(parts) - min(parts) <= 1


def test_block_order_alternates_direction() -> None:
    assert [block_order(3, b) for b in range(4)] == [[0, 1, 2], [2, 1, 0], [0, 1, 2], [2, 1, 0]]


class Echo:
    """A channel whose messages come back at once; records which channel ran when."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.q: asyncio.Queue[bytes] = asyncio.Queue()
        self.name, self.log = name, log

    async def send(self, data: bytes) -> None:
        self.log.append(self.name)
        await self.q.put(data)

    async def recv(self) -> bytes:
        return await self.q.get()

    async def close(self) -> None:
        pass

    def channel(self) -> Channel:
        return Channel(self.name, self.send, self.recv, self.close)


@pytest.mark.parametrize("inflight", [1, 4])
def test_measure_alternating_interleaves_blocks(inflight: int) -> None:
    log: list[str] = []
    a, b = Echo("a", log), Echo("b", log)

    async def main() -> list:
        return await measure_alternating(
            [a.channel(), b.channel()], 64, 10, blocks=4, labels=["a", "b"],
            inflight=inflight, warmup=2,
        )  # fmt: skip

    sums = asyncio.run(main())
    assert [s.count for s in sums] == [10, 10]
    measured = log[4:]  # after each channel's 2 warm-up messages
    runs = [measured[0]]
    for name in measured[1:]:
        if name != runs[-1]:
            runs.append(name)
    # blocks a, b | b, a | a, b | b, a: runs a b a b a (the middle b b and a a merge)
    assert runs == ["a", "b", "a", "b", "a"]


def test_throughput_alternating_counts_every_frame() -> None:
    log: list[str] = []
    a, b = Echo("a", log), Echo("b", log)
    results = asyncio.run(
        throughput_alternating([a.channel(), b.channel()], 10_000, 1000, 2, 10.0, blocks=3)
    )
    assert [r.frames for r in results] == [10, 10]
    assert log.count("a") == log.count("b") == 10
    assert all(r.elapsed_s > 0 for r in results)


class BurnsOnA(Echo):
    """An echo that burns CPU in a child process of its own while channel A sends, so
    the CPU of A's 'path' is known to be large and B's (an idle sleeper) nil."""

    def __init__(self, name: str, log: list[str], pid: int, burn: bool) -> None:
        super().__init__(name, log)
        self.pid, self.burn = pid, burn

    async def send(self, data: bytes) -> None:
        if self.burn:
            os.kill(self.pid, signal.SIGCONT)
            await asyncio.sleep(0.01)
            os.kill(self.pid, signal.SIGSTOP)
        await super().send(data)

    def channel(self) -> Channel:
        return Channel(self.name, self.send, self.recv, self.close, (("worker", self.pid),))


def test_measure_alternating_reports_cpu_of_each_path_s_processes() -> None:
    """CPU is read around each block of a channel only: the busy process of A counts
    for A alone, and an idle one for nothing."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(busy.pid, signal.SIGSTOP)
        log: list[str] = []
        a = BurnsOnA("a", log, busy.pid, burn=True)
        b = BurnsOnA("b", log, idle.pid, burn=False)

        async def main() -> list:
            await asyncio.sleep(0.3)  # the sleeper's start-up is over
            return await measure_alternating(
                [a.channel(), b.channel()], 64, 20, blocks=2, labels=["a", "b"], warmup=0
            )

        sa, sb = asyncio.run(main())
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()
    assert set(sa.cpu_us) == {"worker"} and set(sb.cpu_us) == {"worker"}
    assert sa.cpu_us["worker"] > 2000  # ~10 ms of spinning per message
    assert sb.cpu_us["worker"] < 100
    assert sa.to_dict()["cpu_us"] == sa.cpu_us


def test_cpu_ns_of_a_gone_process_is_nil() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert cpu_ns(p.pid) == 0
    assert cpu_ns(os.getpid()) > 0
