"""A fallback-file flood through the real relay: write rate, Ack round trip, the
relay's CPU per file and how late `/healthz` answers meanwhile.

    python tests/load/file_flood.py [--files 20000] [--size 1024] [--window 64]
                                    [--health-every 0.02]

Starts the real relay process (its DATA on the same disk as the system's temp
folder), connects alice (the writer) and bob (a reader of her folder: every stored
file is also sent to him, as in a fallback session), then alice writes `--files`
fallback files (`.request`, the agents' format) with `--window` unanswered at most.
Meanwhile a third client asks `GET /healthz` every 20 ms (`--health-every`) on a
fresh TCP connection; its answer time is what a cluster peer or a load balancer sees
of a busy relay.

Not a test: nothing is asserted; it prints JSON. To compare two trees, run it in each
(alternating): the relay is started from this checkout's `hotlink` package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures_relay import RelayProcess, relay_client
from hotlink.ctl.proc_stat import process_ticks
from hotlink.ctl.stats import percentile
from hotlink.wire import fallbackfile
from hotlink.wire.messages import Ack, FileWrite, Nack

A = "alice@example.org"
B = "bob@example.org"
FOLDER = f"{A}/_mpc/0_to_1"
ACL = f'rules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]\n'
TICKS = os.sysconf("SC_CLK_TCK")


def summary_ms(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0}
    ms = sorted(x * 1e3 for x in xs)
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3),
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of the relay; raises OSError if it is gone (no figure then)."""
    return process_ticks(pid) / TICKS


async def health_probe(
    host: str, port: int, every: float, stop: asyncio.Event, out: list[float]
) -> None:
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    while every and not stop.is_set():
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await reader.read()  # until the relay closes
        out.append(time.perf_counter() - t0)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(every)


async def flood(
    relay: RelayProcess, files: int, size: int, window: int, health_every: float
) -> dict[str, object]:
    payload = os.urandom(size)
    contents = [
        fallbackfile.encode("flood", i, f"{i:08d}.request", "", payload) for i in range(files)
    ]
    pid = relay.proc.pid  # type: ignore[union-attr]
    async with relay_client(relay, A) as alice, relay_client(relay, B) as bob:
        got_by_bob = 0

        async def drain_bob() -> None:
            nonlocal got_by_bob
            while got_by_bob < files - len(nacks):
                if isinstance(await bob.recv(timeout=120), FileWrite):
                    got_by_bob += 1

        sent_at: dict[str, float] = {}
        rtt: list[float] = []
        nacks: list[str] = []
        room = asyncio.Semaphore(window)

        async def read_acks() -> None:
            while len(rtt) + len(nacks) < files:
                env = await alice.recv_env(timeout=120)
                if isinstance(env.msg, Ack | Nack):
                    rtt.append(time.perf_counter() - sent_at.pop(env.msg.original_id))
                    if isinstance(env.msg, Nack):
                        nacks.append(env.msg.error)
                    room.release()

        stop = asyncio.Event()
        health: list[float] = []
        host, port = relay.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
        probe = asyncio.create_task(health_probe(host, int(port), health_every, stop, health))
        bob_task = asyncio.create_task(drain_bob())
        acks = asyncio.create_task(read_acks())
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        for i, content in enumerate(contents):
            await room.acquire()
            mid = f"w{i}"
            sent_at[mid] = time.perf_counter()
            path = f"{FOLDER}/{i:08d}.request"
            await alice.send(FileWrite(path, "", len(content), content), id=mid)
        await acks
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
        await asyncio.wait_for(bob_task, 120)
        stop.set()
        await probe
    return {
        "files": files,
        "size": size,
        "window": window,
        "files_per_s": round(files / elapsed),
        "relay_cpu_us_per_file": round(cpu / files * 1e6, 1),
        "ack_rtt": summary_ms(rtt),
        "healthz": summary_ms(health),
        "nacks": len(nacks),
        "first_nack": nacks[0] if nacks else "",
        "bob_received": got_by_bob,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=1024, help="payload bytes per file")
    ap.add_argument("--window", type=int, default=64, help="FileWrites without an answer")
    ap.add_argument(
        "--health-every", type=float, default=0.02, help="seconds between probes (0: none)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        site = data / "datasites" / A
        site.mkdir(parents=True)
        (site / "syft.pub.yaml").write_text(ACL)
        relay = RelayProcess(data, log_level="WARNING").start()
        try:
            res = asyncio.run(flood(relay, args.files, args.size, args.window, args.health_every))
        finally:
            relay.stop()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
