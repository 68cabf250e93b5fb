"""Measuring one channel: latency samples and throughput (the bench's inner loop).

Each payload carries `perf_counter_ns()` (CLOCK_MONOTONIC; sender and receiver are this
one process) little-endian in bytes 0..8 and its message index in bytes 8..16, so a lost
or reordered frame is detected rather than silently skewing the figures.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from .bench_progress import Progress
from .errors import CtlError, Unavailable, UsageError
from .proc_stat import cpu_ns
from .stats import LatencySummary, summarize

STAMP = struct.Struct("<QQ")  # send time ns, message index

SendFn = Callable[[bytes], Awaitable[None]]
RecvFn = Callable[[], Awaitable[bytes]]


@dataclass
class Channel:
    """One direction of a topology, as the app sees it."""

    name: str
    send: SendFn
    recv: RecvFn
    close: Callable[[], Awaitable[None]]
    #: (role, pid) of the processes that carry its messages, in path order, whose CPU
    #: time the bench reports per message (`CpuMeter`)
    processes: tuple[tuple[str, int], ...] = ()


class CpuMeter:
    """Time on CPU of a channel's processes over the blocks measured on it, per
    message: read before and after each block (`proc_stat.cpu_ns`), so the work of
    the other paths' processes in between is not counted. The processes' work that
    trails a block (a progress message's timer, an exporter) falls outside it."""

    def __init__(self, ch: Channel) -> None:
        self.roles = [role for role, _ in ch.processes]
        self.pids = [pid for _, pid in ch.processes]
        self.ns = [0] * len(self.pids)
        self.messages = 0
        self._at: list[int] = []

    def start(self) -> None:
        self._at = [cpu_ns(pid) for pid in self.pids]

    def stop(self, messages: int) -> None:
        for i, pid in enumerate(self.pids):
            self.ns[i] += max(0, cpu_ns(pid) - self._at[i])
        self.messages += messages

    def per_message_us(self) -> dict[str, float]:
        if not self.messages:
            return {}
        return {
            role: round(ns / 1000 / self.messages, 1)
            for role, ns in zip(self.roles, self.ns, strict=True)
        }


@dataclass
class ThroughputResult:
    path: str
    total_bytes: int
    frame_size: int
    frames: int
    elapsed_s: float

    @property
    def mb_per_s(self) -> float:
        return self.total_bytes / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "total_bytes": self.total_bytes,
            "frame_size": self.frame_size,
            "frames": self.frames,
            "elapsed_s": round(self.elapsed_s, 4),
            "mb_per_s": round(self.mb_per_s, 2),
            "frames_per_s": round(self.frames_per_s, 1),
        }


# --------------------------------------------------------------------------- measuring


async def measure(
    ch: Channel,
    size: int,
    count: int,
    *,
    inflight: int = 1,
    warmup: int = 0,
    timeout: float = 60.0,
    progress: Progress | None = None,
    label: str = "",
) -> LatencySummary:
    """Send `count` messages of `size` bytes with at most `inflight` unanswered."""
    (summary,) = await measure_alternating(
        [ch], size, count, blocks=1, labels=[label], inflight=inflight, warmup=warmup,
        timeout=timeout, progress=progress,
    )  # fmt: skip
    return summary


def _payload(size: int) -> bytearray:
    """`size` random bytes (a 4 KiB random block repeated), stamped per message."""
    return bytearray(os.urandom(min(size, 4096)) * (size // 4096 + 1))[:size]


def block_sizes(count: int, blocks: int) -> list[int]:
    """`count` split into at most `blocks` near-equal non-empty parts."""
    blocks = max(1, min(blocks, count)) if count else 1
    base, extra = divmod(count, blocks)
    return [base + (1 if i < extra else 0) for i in range(blocks)]


def block_order(n: int, block: int) -> list[int]:
    """Channel order of one block: forward, then backward, and so on (A B, B A, A B…),
    so that a drift of the machine that is linear over a run costs every channel the
    same instead of always favouring the one measured first."""
    order = list(range(n))
    return order if block % 2 == 0 else order[::-1]


async def measure_alternating(
    chans: list[Channel],
    size: int,
    count: int,
    *,
    blocks: int,
    labels: list[str],
    inflight: int = 1,
    warmup: int = 0,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> list[LatencySummary]:
    """`measure` for several channels at once, alternating between them in `blocks`
    blocks of about count/blocks messages each; one summary per channel over all its
    blocks. The latency of one path only means something against another measured at
    the same moment of a shared machine (this VM's floor moves 1.5x between runs), and
    one channel after the other lets that movement land in the ratio."""
    if size < STAMP.size:
        raise UsageError(f"payload size {size} below the {STAMP.size}-byte stamp")
    body = _payload(size)
    if warmup:
        for ch in chans:
            await _run(ch, body, warmup, inflight, timeout, None, 0)
    samples: list[list[int]] = [[] for _ in chans]
    elapsed = [0.0] * len(chans)
    base = [warmup] * len(chans)
    meters = [CpuMeter(ch) for ch in chans]
    parts = block_sizes(count, blocks)
    for b, n in enumerate(parts):
        for k in block_order(len(chans), b):
            if progress:
                more = f" ({b + 1}/{len(parts)})" if len(parts) > 1 else ""
                progress.start(labels[k] + more, n)
            meters[k].start()
            t0 = time.perf_counter()
            samples[k] += await _run(chans[k], body, n, inflight, timeout, progress, base[k])
            elapsed[k] += time.perf_counter() - t0
            meters[k].stop(n)
            base[k] += n
    return [
        replace(summarize(samples[k], size, elapsed[k]), cpu_us=meters[k].per_message_us())
        for k in range(len(chans))
    ]


async def _run(
    ch: Channel,
    body: bytearray,
    count: int,
    inflight: int,
    timeout: float,
    progress: Progress | None,
    base: int,
) -> list[int]:
    samples: list[int] = []
    send, recv, clock, stamp = ch.send, ch.recv, time.perf_counter_ns, STAMP.pack_into

    def check(msg: bytes, expect: int) -> None:
        now = clock()
        sent, idx = STAMP.unpack_from(msg)
        if idx != expect or len(msg) != len(body):
            raise CtlError(
                f"{ch.name}: expected message {expect} of {len(body)} bytes, got message "
                f"{idx} of {len(msg)} bytes (lost, duplicated or reordered frame)"
            )
        samples.append(now - sent)

    async def sequential() -> None:
        for i in range(count):
            stamp(body, 0, clock(), base + i)
            await send(bytes(body))
            check(await recv(), base + i)
            if progress is not None and not i % 16:
                progress.update(i)

    async def pipelined() -> None:
        window = asyncio.Semaphore(inflight)

        async def produce() -> None:
            for i in range(count):
                await window.acquire()
                stamp(body, 0, clock(), base + i)
                await send(bytes(body))

        producer = asyncio.create_task(produce())
        try:
            for i in range(count):
                check(await recv(), base + i)
                window.release()
                if progress is not None and not i % 16:
                    progress.update(i)
            await producer
        finally:
            producer.cancel()

    try:
        await asyncio.wait_for(sequential() if inflight <= 1 else pipelined(), timeout)
    except TimeoutError:
        raise Unavailable(
            f"{ch.name}: only {len(samples)} of {count} messages arrived within {timeout:g}s",
            "frames were lost or the path stalled; see the agent logs (devstack logs/)",
        ) from None
    if progress is not None:
        progress.update(count)
    return samples


async def throughput_alternating(
    chans: list[Channel],
    total_bytes: int,
    frame_size: int,
    inflight: int,
    timeout: float,
    *,
    blocks: int,
) -> list[ThroughputResult]:
    """`measure_throughput` for several channels, alternating in `blocks` blocks of
    frames (see `measure_alternating` for why)."""
    frames = max(1, -(-total_bytes // frame_size))
    body = _payload(frame_size)
    elapsed = [0.0] * len(chans)
    base = [0] * len(chans)
    for b, n in enumerate(block_sizes(frames, blocks)):
        for k in block_order(len(chans), b):
            t0 = time.perf_counter()
            await _run(chans[k], body, n, max(inflight, 1), timeout, None, base[k])
            elapsed[k] += time.perf_counter() - t0
            base[k] += n
    return [
        ThroughputResult(ch.name, frames * frame_size, frame_size, frames, elapsed[k])
        for k, ch in enumerate(chans)
    ]


async def measure_throughput(
    ch: Channel, total_bytes: int, frame_size: int, inflight: int, timeout: float
) -> ThroughputResult:
    """Stream `total_bytes` in `frame_size` frames, `inflight` unanswered at most."""
    (result,) = await throughput_alternating(
        [ch], total_bytes, frame_size, inflight, timeout, blocks=1
    )
    return result
