"""FileSync page cost against folder size, and what it does to an honest round trip.

    python tests/sync_bench.py [--files 30000] [--pages 40] [--python PYTHON]

Fills a relay's DATA with `--files` small files in one folder of alice's datasite
(written to disk before the relay starts), starts the real relay process (with
`--python`, another checkout's interpreter, e.g. /work/main/.venv/bin/python, to
measure a "before"), then:

1. bob asks for `--pages` one-file pages (`FileSync(folder, max=1)`) from cursors
   spread over the folder, one after the other: per-page round trip percentiles;
2. while mallory (no access) sends 40 such requests at once, alice times FileWrite
   round trips: the honest cost of a catch-up storm.

Not a test: no timing is asserted; it prints JSON.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_relay import RelayProcess, relay_client
from hotlink.wire.messages import Ack, FileSync, FileWrite

A = "alice@example.org"
B = "bob@example.org"
M = "mallory@example.org"
FOLDER = f"{A}/pub/data"
ACL = f'rules: [{{pattern: "pub/**", access: {{read: ["{B}"]}}}}]\n'


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def summary(lat: list[float]) -> dict[str, float]:
    ms = [x * 1e3 for x in lat]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p90_ms": round(pct(ms, 90), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


def fill(data: Path, n: int) -> None:
    site = data / "datasites" / A
    folder = site / "pub" / "data"
    folder.mkdir(parents=True)
    (site / "syft.pub.yaml").write_text(ACL)
    base = time.time_ns() - n * 1000
    for i in range(n):
        p = folder / f"f{i:06d}.txt"
        p.write_bytes(b"x" * 64)
        os.utime(p, ns=(base + i * 1000, base + i * 1000))


async def run(relay: RelayProcess, n: int, pages: int) -> dict[str, object]:
    out: dict[str, object] = {}
    async with relay_client(relay, B) as bob:
        lat = []
        base = time.time_ns() - n * 1000
        for k in range(pages):
            i = k * (n // pages)
            since = base + i * 1000
            t0 = time.perf_counter()
            await bob.send(FileSync(FOLDER, since, f"{FOLDER}/f{i:06d}.txt", 1))
            await bob.recv_type(FileSync, timeout=60)
            lat.append(time.perf_counter() - t0)
        out["one_file_page"] = summary(lat)
    async with relay_client(relay, A) as alice, relay_client(relay, M) as mallory:
        rtt = []
        for k in range(20):  # honest baseline
            t0 = time.perf_counter()
            await alice.send(FileWrite(f"{A}/pub/w{k}", "", 3, b"abc"), id=f"b{k}")
            await alice.recv_type(Ack, timeout=60)
            rtt.append(time.perf_counter() - t0)
        out["honest_filewrite_rtt"] = summary(rtt)
        for _ in range(40):
            await mallory.send(FileSync(FOLDER, 0, "", 1))
        rtt = []
        for k in range(20):
            t0 = time.perf_counter()
            await alice.send(FileWrite(f"{A}/pub/s{k}", "", 3, b"abc"), id=f"s{k}")
            await alice.recv_type(Ack, timeout=120)
            rtt.append(time.perf_counter() - t0)
        out["honest_filewrite_rtt_during_40_syncs"] = summary(rtt)
    return out


class OtherPython(RelayProcess):
    """The relay run by another interpreter (another checkout's venv)."""

    python = sys.executable

    def start(self) -> RelayProcess:
        real = sys.executable
        sys.executable = self.python
        try:
            return super().start()
        finally:
            sys.executable = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--pages", type=int, default=40)
    ap.add_argument("--python", default=sys.executable, help="interpreter running the relay")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        fill(data, args.files)
        OtherPython.python = args.python
        t0 = time.perf_counter()
        relay = OtherPython(data, log_level="WARNING").start()
        started = time.perf_counter() - t0
        try:
            res = asyncio.run(run(relay, args.files, args.pages))
        finally:
            relay.stop()
    print(json.dumps({"files": args.files, "relay_start_s": round(started, 2), **res}, indent=1))


if __name__ == "__main__":
    main()
