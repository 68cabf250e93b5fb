"""Honest peers' one-way latency through the relay, without and with hostile clients.

    python tests/attack_latency.py [--messages 2000] [--interval 0.001] [--size 256]

Starts a real relay process, connects alice (sender) and bob (reader), streams
`--messages` frames paced every `--interval` s (payload starts with a
`perf_counter_ns` stamp; both ends live in this process, so the clock is shared) and
reports P50/P90/P99/max. Then starts an attacker *process* (`--attack`, so it does not
share our event loop) that loops the attacks of `test_relay_hostile.py` (forged
`frm`, foreign data, accept without read access, open floods, 1 GiB length prefixes,
token-less connects) and streams again. Not a test: no timing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_relay import RelayProcess, relay_client
from test_relay_hostile import (
    A,
    B,
    M,
    attack_accept_without_read,
    attack_foreign_data,
    attack_forged_frm,
    attack_huge_frame,
    attack_no_token,
    attack_open_flood,
    honest_setup,
    honest_stream,
    mallory_setup,
)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def summary(lat: list[float]) -> dict[str, float]:
    us = [x * 1e6 for x in lat]
    return {
        "n": len(us),
        "p50_us": round(pct(us, 50), 1),
        "p90_us": round(pct(us, 90), 1),
        "p99_us": round(pct(us, 99), 1),
        "max_us": round(max(us), 1),
        "mean_us": round(statistics.fmean(us), 1),
    }


# ------------------------------------------------------------------------ attacker


async def attacker(relay: RelayProcess) -> None:
    """Loop every attack until killed; prints a JSON line of counts every second."""
    counts = {"rounds": 0, "huge_frames": 0, "no_token": 0, "floods": 0}
    async with relay_client(relay, M) as m, relay_client(relay, M) as m2:
        await mallory_setup(m)
        print("attacking", flush=True)

        async def control_attacks() -> None:
            i = 0
            while True:
                i += 1
                tag = str(i)
                await attack_forged_frm(relay, m, tag)
                await attack_foreign_data(relay, m, tag)
                await attack_accept_without_read(relay, m, tag)
                counts["rounds"] += 1

        async def floods() -> None:
            i = 0
            while True:
                i += 1
                await attack_open_flood(relay, m2, f"fl{i}", n=300)
                counts["floods"] += 1

        async def raw() -> None:
            while True:
                code, _ = await attack_huge_frame(relay)
                assert code == 1009
                counts["huge_frames"] += 1
                assert await attack_no_token(relay) == 401
                counts["no_token"] += 1

        async def report() -> None:
            while True:
                await asyncio.sleep(1)
                print(json.dumps(counts), flush=True)

        tasks = asyncio.gather(control_attacks(), floods(), raw(), report())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, tasks.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await tasks
    print(json.dumps(counts), flush=True)


# -------------------------------------------------------------------------- driver


async def measure(relay: RelayProcess, args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    async with relay_client(relay, A) as a, relay_client(relay, B) as b:
        await honest_setup(relay, a, b)
        await honest_stream(a, b, 200, args.interval, args.size)  # warm-up
        lat = await honest_stream(a, b, args.messages, args.interval, args.size)
        out["baseline"] = summary(lat)
        cmd = [sys.executable, __file__, "--attack", relay.url, str(relay.data_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line.strip() == "attacking", line
            await asyncio.sleep(1.0)  # let the attacks ramp up
            t0 = time.monotonic()
            lat = await honest_stream(a, b, args.messages, args.interval, args.size)
            out["under_attack"] = summary(lat)
            out["attack_seconds"] = round(time.monotonic() - t0, 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rest, _ = await asyncio.to_thread(proc.communicate, timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                rest, _ = await asyncio.to_thread(proc.communicate)
        lines = [ln for ln in rest.splitlines() if ln.startswith("{")]
        out["attacks_total"] = json.loads(lines[-1]) if lines else {}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--interval", type=float, default=0.001, help="seconds between sends")
    p.add_argument("--size", type=int, default=256, help="payload bytes (>= 8)")
    p.add_argument("--attack", nargs=2, metavar=("URL", "DATA"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.attack:
        url, data = args.attack
        relay = RelayProcess(Path(data))
        relay.url = url
        asyncio.run(attacker(relay))
        return 0
    with tempfile.TemporaryDirectory(prefix="hotlink-attack-") as tmp:
        data = Path(tmp) / "relay"
        data.mkdir()
        relay = RelayProcess(data, log_level="WARNING").start()
        try:
            result = asyncio.run(measure(relay, args))
        finally:
            relay.stop()
    print(json.dumps(result, indent=1))
    base, att = result["baseline"], result["under_attack"]
    assert isinstance(base, dict) and isinstance(att, dict)
    print(f"{'':14}{'P50 µs':>10}{'P90 µs':>10}{'P99 µs':>10}{'max µs':>10}")
    for name, r in (("baseline", base), ("under attack", att)):
        print(f"{name:14}{r['p50_us']:>10}{r['p90_us']:>10}{r['p99_us']:>10}{r['max_us']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
