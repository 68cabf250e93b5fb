"""Cost of the direct link itself: plain TCP echo vs DirectLink echo, same run.

    python -m hotlink.ctl.bench_direct_link [--count 2000] [--sizes 1KB,100KB]

A child process (this module with `--serve`) runs two echo servers on 127.0.0.1: a
plain asyncio Protocol that writes back what it reads, and a DirectListener whose link
sends every record back. The parent measures round trips with one message in flight,
alternating the two in blocks so drift hits both alike, and prints round-trip / 2
("one-way-ish") percentiles. The difference between the rows is what the handshake's
AES-GCM records and framing cost per message; the handshake itself is not in the
samples (it runs once per link).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from hotlink.agent.direct.keys import DirectBinding, LocalKey
from hotlink.agent.direct.transport import DirectLink, DirectListener, connect
from hotlink.common.loop import run_main, running_on_uvloop
from hotlink.common.sizes import parse_size

from .stats import LatencySummary, fmt_size, summarize

BINDING = DirectBinding(sid="bench", sender="bench@local", reader="bench@local", leg="bench")
BLOCK = 100  # round trips per block before switching to the other transport


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def _serve(peer_public_b64: str) -> None:
    """Child: expect the parent's key, print addresses + own public key, echo until EOF."""
    loop = asyncio.get_running_loop()
    plain = await loop.create_server(_Echo, "127.0.0.1", 0)
    listener = await DirectListener.start([("127.0.0.1", 0)])
    key = LocalKey.generate()
    links: list[DirectLink] = []

    def on_link(link: DirectLink) -> None:
        link.on_message = link.send
        links.append(link)

    listener.expect(key, LocalKey.parse_public(peer_public_b64), BINDING, on_link)
    port = plain.sockets[0].getsockname()[1]
    hello = {"plain": port, "direct": listener.addresses[0], "public": key.public_b64()}
    print(json.dumps(hello), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    for link in links:
        link.close()
    plain.close()
    await listener.close()


class _PlainClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.want = 0
        self.got = 0
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= self.want and self.done is not None and not self.done.done():
            self.done.set_result(None)


async def _measure(rounds: int, once: Callable[[], Awaitable[None]], samples: list[int]) -> None:
    for _ in range(rounds):
        start = time.perf_counter_ns()
        await once()
        samples.append((time.perf_counter_ns() - start) // 2)


async def _bench(count: int, sizes: list[int]) -> list[tuple[str, int, LatencySummary]]:
    loop = asyncio.get_running_loop()
    key = LocalKey.generate()
    child = subprocess.Popen(
        [sys.executable, "-m", "hotlink.ctl.bench_direct_link", "--serve", key.public_b64()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        hello = json.loads(await loop.run_in_executor(None, child.stdout.readline) or "null")
        if not hello:
            raise RuntimeError("echo child did not start")
        _, plain = await loop.create_connection(_PlainClient, "127.0.0.1", hello["plain"])
        link = await connect(
            [hello["direct"]], key, LocalKey.parse_public(hello["public"]), BINDING
        )
        waiter: list[asyncio.Future[bytes]] = []
        link.on_message = lambda m: waiter.pop().set_result(m)
        rows: list[tuple[str, int, LatencySummary]] = []
        for size in sizes:
            payload = bytes(size)

            async def plain_once(size: int = size, payload: bytes = payload) -> None:
                plain.want, plain.got = size, 0
                plain.done = loop.create_future()
                plain.transport.write(payload)
                await plain.done

            async def direct_once(payload: bytes = payload) -> None:
                fut = loop.create_future()
                waiter.append(fut)
                link.send(payload)
                await fut

            for warm in (plain_once, direct_once):  # first use: buffers, caches
                await _measure(min(count, 200), warm, [])
            samples: dict[str, list[int]] = {"plain TCP": [], "direct link": []}
            elapsed = {"plain TCP": 0.0, "direct link": 0.0}
            done = 0
            while done < count:
                block = min(BLOCK, count - done)
                for name, once in (("plain TCP", plain_once), ("direct link", direct_once)):
                    t0 = time.perf_counter()
                    await _measure(block, once, samples[name])
                    elapsed[name] += time.perf_counter() - t0
                done += block
            for name, got in samples.items():
                rows.append((name, size, summarize(got, size, elapsed[name])))
        link.close()
        plain.transport.close()
        return rows
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def render(rows: list[tuple[str, int, LatencySummary]]) -> str:
    lines = [
        "one-way-ish = round trip / 2, one message in flight, 127.0.0.1, "
        f"{'uvloop' if running_on_uvloop() else 'asyncio'}",
        f"{'size':>7}  {'transport':<12} {'P50 µs':>8} {'P99 µs':>8} {'x plain P50':>11} "
        f"{'x plain P99':>11}",
    ]
    floor: dict[int, LatencySummary] = {}
    for name, size, s in rows:
        floor.setdefault(size, s)
        f = floor[size]
        lines.append(
            f"{fmt_size(size):>7}  {name:<12} {s.p50_ns / 1e3:8.1f} {s.p99_ns / 1e3:8.1f} "
            f"{s.p50_ns / f.p50_ns:11.2f} {s.p99_ns / f.p99_ns:11.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hotlink.ctl.bench_direct_link",
        description="Per-message cost of the direct link's AES-GCM records over TCP: "
        "plain TCP echo vs DirectLink echo between two processes, same run, "
        "P50/P99 of round trip / 2.",
    )
    parser.add_argument(
        "--count", type=int, default=2000, help="round trips per size and transport (default 2000)"
    )
    parser.add_argument("--sizes", default="1KB,100KB", help="payload sizes (default 1KB,100KB)")
    parser.add_argument("--serve", metavar="PEER_PUBLIC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_main(_serve(args.serve))
        return 0
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    except ValueError as exc:
        parser.error(str(exc))
    if not sizes or min(sizes) < 1:
        parser.error("--sizes needs sizes of at least 1 byte, e.g. 1KB,100KB")

    async def go() -> str:
        return render(await _bench(args.count, sizes))

    print(run_main(go()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
